"""optzoo: a pure-JAX zoo of research optimizers, each a drop-in optax GradientTransformation.

>>> import optax, optzoo
>>> tx = optzoo.lion(learning_rate=1e-3)   # where you had optax.adam(1e-3)

See ``optzoo.registry`` for the catalogue and ``optzoo.testing`` for the conformance kit.
"""

from optzoo.adahessian import ScaleByAdaHessianState, adahessian, scale_by_adahessian
from optzoo.lanton import (
    NoiseAdaptiveLayerwiseState,
    ScaleByLantonState,
    lanton,
    noise_adaptive_layerwise,
    scale_by_lanton,
)
from optzoo.avgrad import ScaleByAvgradState, avgrad, scale_by_avgrad
from optzoo.krylov import (
    ScaleByKrylovCubicNewtonState,
    krylov_cubic_newton,
    scale_by_krylov_cubic_newton,
)
from optzoo.lion import ScaleByLionState, lion, scale_by_lion
from optzoo.mada import ScaleByMadaState, mada, scale_by_mada
from optzoo.metaoptimize import MetaOptimizeState, metaoptimize, metaoptimize_learning_rates
from optzoo.microadam import ScaleByMicroAdamState, microadam, scale_by_microadam
from optzoo.testing import bytes_per_param, state_bytes

__version__ = "0.1.0"

__all__ = [
    "adahessian",
    "avgrad",
    "bytes_per_param",
    "krylov_cubic_newton",
    "lanton",
    "lion",
    "mada",
    "metaoptimize",
    "metaoptimize_learning_rates",
    "MetaOptimizeState",
    "microadam",
    "noise_adaptive_layerwise",
    "NoiseAdaptiveLayerwiseState",
    "scale_by_adahessian",
    "scale_by_avgrad",
    "scale_by_krylov_cubic_newton",
    "scale_by_lanton",
    "scale_by_lion",
    "scale_by_mada",
    "scale_by_microadam",
    "ScaleByAdaHessianState",
    "ScaleByAvgradState",
    "ScaleByKrylovCubicNewtonState",
    "ScaleByLantonState",
    "ScaleByLionState",
    "ScaleByMadaState",
    "ScaleByMicroAdamState",
    "state_bytes",
]
