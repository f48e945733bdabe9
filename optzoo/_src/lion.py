"""Lion: EvoLved Sign Momentum.

A drop-in for ``optax.lion``: same signature, same defaults, bitwise-identical
updates (the order of operations follows optax's so the match is exact).

References:
  Chen et al., `Symbolic Discovery of Optimization Algorithms
  <https://arxiv.org/abs/2302.06675>`_, 2023
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


from optzoo._src import alias
from optzoo._src.base import checks


class ScaleByLionState(NamedTuple):
  """State of :func:`scale_by_lion`.

  Attributes:
    count: int32 step counter (``optax.safe_increment``).
    mu: the b2-EMA of the gradients, one array per param (dtype ``mu_dtype``).
  """

  count: jax.Array
  mu: optax.Updates


def scale_by_lion(
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Lion's learning-rate-free direction: the sign of an interpolated momentum.

  .. math::
    c_t = b_1 \mu_{t-1} + (1 - b_1) g_t,\qquad u_t = \operatorname{sign}(c_t),\qquad
    \mu_t = b_2 \mu_{t-1} + (1 - b_2) g_t

  The interpolation uses the *old* momentum, and the momentum is refreshed after
  the step with its own rate ``b2``. ``sign(0) = 0``. No bias correction, no eps. Complex
  parameters behave as in ``optax.lion`` (``sign(z) = z / |z|``); integer leaves are rejected
  at ``init``.

  Args:
    b1: interpolation rate for the update direction, in [0, 1). Paper: 0.9.
    b2: EMA rate of the momentum, in [0, 1). Paper: 0.99.
    mu_dtype: dtype of the momentum; ``None`` keeps the params' dtype.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; updates have the gradients' dtype.

  Example:
    >>> import jax.numpy as jnp, optax, optzoo
    >>> tx = optax.chain(optzoo.scale_by_lion(), optax.scale(-1e-3))
    >>> params = {"w": jnp.ones(3)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.array([1.0, -2.0, 0.0])}, state, params)
    >>> (updates["w"] / 1e-3).round(6).tolist()   # -lr * sign(c): c = 0.1 g at step 1
    [-1.0, 1.0, -0.0]

  References:
    Chen et al., `Symbolic Discovery of Optimization Algorithms
    <https://arxiv.org/abs/2302.06675>`_, 2023
  """
  checks.check_beta("b1", b1)
  checks.check_beta("b2", b2)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init_fn(params):
    checks.check_float_leaves("lion", params)
    mu = optax.tree.zeros_like(params, dtype=mu_dtype)
    return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=mu)

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    checks.check_same_structure(updates, params)
    checks.check_leaf_shapes("lion", updates, state.mu)

    def direction(g, m):
      return jnp.sign((1.0 - b1) * g + b1 * m).astype(g.dtype)

    new_updates = jax.tree.map(direction, updates, state.mu)
    mu = optax.tree.update_moment(updates, state.mu, b2, 1)
    mu = optax.tree.cast_like(mu, state.mu)
    return new_updates, ScaleByLionState(count=optax.safe_increment(state.count), mu=mu)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@alias.static_args("mu_dtype", "mask")
def lion(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.99,
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule = 1e-3,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Lion with decoupled weight decay: a drop-in for ``optax.lion``.

  .. math::
    \theta_t = \theta_{t-1} - \eta_t\,\bigl(\operatorname{sign}(b_1\mu_{t-1} + (1-b_1)g_t)
      + \lambda\,\theta_{t-1}\bigr),\qquad \mu_t = b_2\mu_{t-1} + (1-b_2)g_t

  Built as ``optax.chain(scale_by_lion(b1, b2, mu_dtype), optax.add_decayed_weights(weight_decay, mask),
  optax.scale_by_learning_rate(learning_rate))``, so the decay is multiplied by the full learning
  rate (as in the paper and optax), and schedules are evaluated at the step count before the update.

  Args:
    learning_rate: step size or schedule (>= 0). The paper advises 3-10x smaller than AdamW's.
    b1: interpolation rate, in [0, 1). Default 0.9 (paper); 0.95 is the paper's stable choice.
    b2: momentum EMA rate, in [0, 1). Default 0.99 (paper); 0.98 for stability.
    mu_dtype: momentum dtype; ``None`` keeps the params' dtype.
    weight_decay: decoupled decay (>= 0). Default 1e-3, **as optax.lion**; the paper's
      reference code defaults to 0. The paper advises 3-10x larger than AdamW's.
    mask: pytree of bools (or a callable returning one) selecting the params to decay.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = jnp.array([1.0, -2.0])
    >>> tx = optzoo.lion(learning_rate=1e-2)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Chen et al., `Symbolic Discovery of Optimization Algorithms
    <https://arxiv.org/abs/2302.06675>`_, 2023
  """
  return alias.decoupled_alias(
      scale_by_lion(b1=b1, b2=b2, mu_dtype=mu_dtype),
      learning_rate, weight_decay, mask)
