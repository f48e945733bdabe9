"""optzoo: a pure-JAX zoo of research optimizers, each a drop-in optax GradientTransformation.

>>> import optax, optzoo
>>> tx = optzoo.lion(learning_rate=1e-3)   # where you had optax.adam(1e-3)

See ``optzoo.registry`` for the catalogue and ``optzoo.testing`` for the conformance kit.
"""

from optzoo.lion import ScaleByLionState, lion, scale_by_lion
from optzoo.testing import bytes_per_param, state_bytes

__version__ = "0.1.0"

__all__ = [
    "ScaleByLionState",
    "bytes_per_param",
    "lion",
    "scale_by_lion",
    "state_bytes",
]
