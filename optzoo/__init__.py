"""optzoo: a pure-JAX zoo of research optimizers, each a drop-in optax GradientTransformation.

>>> import optax, optzoo
>>> tx = optzoo.lion(learning_rate=1e-3)   # where you had optax.adam(1e-3)

The optimizers live in private modules (``optzoo._src``) and are re-exported here. Public
modules: the building blocks ``optzoo.compression``, ``optzoo.curvature``, ``optzoo.layouts`` and
``optzoo.lmo``; ``optzoo.models`` (the ``flax.nnx`` model suite);
``optzoo.registry`` (the catalogue); ``optzoo.objectives`` (toy problems); ``optzoo.training``
(a full-batch training loop); ``optzoo.sweep`` (hyperparameter grids x seeds, vmapped, in one
compilation); ``optzoo.compare`` (the leaderboard's protocol on your own workload, an API and a
command) with ``optzoo.workloads``; ``optzoo.testing`` (the conformance kit). The registry,
``optzoo.compare`` and the kit are not loaded by ``import optzoo``.
"""

from optzoo import compression as compression
from optzoo import curvature as curvature
from optzoo import layouts as layouts
from optzoo import lmo as lmo
from optzoo._src.adahessian import ADAHESSIAN_AVERAGING_MODES as ADAHESSIAN_AVERAGING_MODES
from optzoo._src.adahessian import ScaleByAdaHessianState as ScaleByAdaHessianState
from optzoo._src.adahessian import adahessian as adahessian
from optzoo._src.adahessian import average_curvature as average_curvature
from optzoo._src.adahessian import scale_by_adahessian as scale_by_adahessian
from optzoo._src.alias import inject_hyperparams as inject_hyperparams
from optzoo._src.avgrad import ScaleByAvgradState as ScaleByAvgradState
from optzoo._src.avgrad import avgrad as avgrad
from optzoo._src.avgrad import scale_by_avgrad as scale_by_avgrad
from optzoo._src.base.masking import FrozenObjective as FrozenObjective
from optzoo._src.base.masking import frozen_objective as frozen_objective
from optzoo._src.base.memory import bytes_per_param as bytes_per_param
from optzoo._src.base.memory import state_bytes as state_bytes
from optzoo._src.base.memory import temp_bytes_per_param as temp_bytes_per_param
from optzoo._src.krylov import KrylovInfo as KrylovInfo
from optzoo._src.krylov import ScaleByKrylovCubicNewtonState as ScaleByKrylovCubicNewtonState
from optzoo._src.krylov import krylov_cubic_newton as krylov_cubic_newton
from optzoo._src.krylov import krylov_cubic_newton_minimize as krylov_cubic_newton_minimize
from optzoo._src.krylov import scale_by_krylov_cubic_newton as scale_by_krylov_cubic_newton
from optzoo._src.lanton import ScaleByLantonState as ScaleByLantonState
from optzoo._src.lanton import default_lanton_labels as default_lanton_labels
from optzoo._src.lanton import lanton as lanton
from optzoo._src.lanton import scale_by_lanton as scale_by_lanton
from optzoo._src.layer_rates import layer_rates as layer_rates
from optzoo._src.lion import ScaleByLionState as ScaleByLionState
from optzoo._src.lion import lion as lion
from optzoo._src.lion import scale_by_lion as scale_by_lion
from optzoo._src.mada import MADA_COEFF_NAMES as MADA_COEFF_NAMES
from optzoo._src.mada import ScaleByMadaState as ScaleByMadaState
from optzoo._src.mada import mada_coefficients as mada_coefficients
from optzoo._src.mada import mada as mada
from optzoo._src.mada import scale_by_mada as scale_by_mada
from optzoo._src.metaoptimize import MetaOptimizeState as MetaOptimizeState
from optzoo._src.metaoptimize import metaoptimize as metaoptimize
from optzoo._src.metaoptimize import metaoptimize_learning_rates as metaoptimize_learning_rates
from optzoo._src.microadam import ScaleByMicroAdamState as ScaleByMicroAdamState
from optzoo._src.microadam import microadam as microadam
from optzoo._src.microadam import scale_by_microadam as scale_by_microadam
from optzoo._src.noise_adaptive_layerwise import NoiseAdaptiveLayerwiseState as NoiseAdaptiveLayerwiseState
from optzoo._src.noise_adaptive_layerwise import noise_adaptive_layerwise as noise_adaptive_layerwise
from optzoo.curvature import CubicSubproblemSolution as CubicSubproblemSolution
from optzoo.curvature import solve_cubic_subproblem as solve_cubic_subproblem

__version__ = "0.1.0"

# The re-exported names: not the public modules, and not the names pytest's assertion rewriting
# adds to the modules of an installed pytest plugin's distribution ('@py_builtins', ...).
__all__ = sorted(
    name for name, value in list(globals().items())
    if name.isidentifier() and not name.startswith("_")
    and type(value).__name__ != "module"
)
