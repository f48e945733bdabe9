"""AVGrad: AMSGrad with the running max of the second moment replaced by a running average.

Introduced in the MADA paper as the corner of the MADA family that is smooth in its coefficients
(``rho = 0``); see :func:`optzoo.mada`.

References:
  Ozkara et al., `MADA: Meta-Adaptive Optimizers through hyper-gradient Descent
  <https://arxiv.org/abs/2401.08893>`_, 2024
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


from optzoo._src import alias
from optzoo._src.base import checks, trees


class ScaleByAvgradState(NamedTuple):
  """State of :func:`scale_by_avgrad`.

  Attributes:
    count: int32 step counter ``t`` (``optax.safe_increment``); it drives the bias
      corrections and the ``1/t`` of the running mean.
    mu: first moment ``m_t`` (dtype ``mu_dtype``).
    nu: raw second moment ``v_t`` (EMA of ``|g|^2``, no bias correction; real for complex
      params).
    nu_avg: ``vbar_t``, the uniform running mean of ``v_1 .. v_t`` (real).
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  nu_avg: optax.Updates


def _cast_wider(x, other):
  """x cast to what standard promotion makes of two float dtypes, spelled out: the common
  dtype if they agree, else float64 if either is, else float32."""
  if x.dtype == other.dtype:
    return x
  wide = any(d in (x.dtype, other.dtype) for d in (jnp.float64, jnp.complex128))
  if jnp.iscomplexobj(x) or jnp.iscomplexobj(other):  # complex params: keep the phase
    return x.astype(jnp.complex128 if wide else jnp.complex64)
  return x.astype(jnp.float64 if wide else jnp.float32)


def scale_by_avgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AVGrad's learning-rate-free direction.

  .. math::
    m_t = b_1 m_{t-1} + (1-b_1) g_t,\qquad v_t = b_2 v_{t-1} + (1-b_2) |g_t|^2,\qquad
    \bar v_t = \bar v_{t-1} + (v_t - \bar v_{t-1}) / t,

    u_t = \frac{m_t / (1-b_1^t)}{\sqrt{\bar v_t / (1-b_2^t) + \epsilon_{root}} + \epsilon}

  ``vbar_t`` is the mean of the *raw* ``v_1 .. v_t`` and one bias correction divides the
  mean, as in the MADA authors' code. AMSGrad takes a running max where AVGrad takes the mean,
  so AVGrad's denominator is never larger.

  Complex parameters work as in ``optax.adam``: ``v`` accumulates ``|g|^2`` (real), and the
  update has the gradient's complex dtype (descend along ``jnp.conj(jax.grad(loss)(params))``
  for a real loss of complex params, as with optax). Once ``v_t`` overflows to ``inf`` (float32
  gradients above ~1e19) the running mean stays ``inf`` and the update is 0, as
  ``optax.amsgrad``'s, never NaN. Integer leaves are rejected at ``init``.

  Args:
    b1: first-moment EMA rate, in [0, 1). Default 0.9 (the paper's).
    b2: second-moment EMA rate, in [0, 1). Default 0.999 (optax.amsgrad's); the MADA code
      uses 0.95 (GPT-2) or 0.99 (toy).
    eps: added outside the square root (>= 0). Default 1e-8 (MADA's toy and Shakespeare runs;
      1e-6 for GPT-2).
    eps_root: added inside the square root (>= 0). Default 0.
    mu_dtype: dtype of the first moment; ``None`` keeps the params' dtype.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; updates have the gradients' dtype.

  Example:
    >>> import jax.numpy as jnp, optax, optzoo
    >>> tx = optax.chain(optzoo.scale_by_avgrad(), optax.scale(-1e-3))
    >>> state = tx.init({"w": jnp.ones(2)})
    >>> updates, state = tx.update({"w": jnp.array([1.0, -2.0])}, state)
    >>> [round(x, 6) for x in updates["w"].tolist()]
    [-0.001, 0.001]

  References:
    Ozkara et al., `MADA: Meta-Adaptive Optimizers through hyper-gradient Descent
    <https://arxiv.org/abs/2401.08893>`_, 2024
  """
  checks.check_beta("b1", b1)
  checks.check_beta("b2", b2)
  checks.check_range("eps", eps, 0.0)
  checks.check_range("eps_root", eps_root, 0.0)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)

  def init_fn(params):
    checks.check_float_leaves("avgrad", params)
    real = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=jnp.finfo(p.dtype).dtype), params)
    return ScaleByAvgradState(
        count=jnp.zeros([], jnp.int32),
        mu=optax.tree.zeros_like(params, dtype=mu_dtype),
        nu=real,
        nu_avg=jax.tree.map(jnp.copy, real),
    )

  def update_fn(updates, state, params=None, **extra_args):
    del extra_args
    checks.check_same_structure(updates, params)
    checks.check_leaf_shapes("avgrad", updates, state.nu)
    count = optax.safe_increment(state.count)
    # float ** int32 (lax.pow, as b1**count does): float64 under x64, float32 otherwise
    bc1 = 1.0 - jax.lax.pow(jnp.asarray(b1), count)
    bc2 = 1.0 - jax.lax.pow(jnp.asarray(b2), count)
    inv_t = 1.0 / count.astype(jnp.result_type(float))

    def leaf(g, m, v, vb):
      # One fused per-leaf pass: moments, running mean and the direction.
      m_new = b1 * m + (1.0 - b1) * g
      v_new = b2 * v + (1.0 - b2) * jnp.real(g * jnp.conj(g))  # g * g for real g
      dv = v_new - vb
      # an overflowed v_t = inf keeps vbar = inf (inf - inf would be NaN)
      vb_new = jnp.where(jnp.isinf(vb), vb, vb + dv * inv_t.astype(dv.dtype))
      # the direction in the promoted dtype of the moments and the bias corrections
      m_hat = _cast_wider(m_new, bc1) / _cast_wider(bc1, m_new)
      v_hat = _cast_wider(vb_new, bc2) / _cast_wider(bc2, vb_new)
      denom = jnp.sqrt(v_hat + eps_root) + eps
      u = _cast_wider(m_hat, denom) / _cast_wider(denom, m_hat)
      return (u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype),
              vb_new.astype(vb.dtype))

    treedef = jax.tree.structure(updates)
    out = [leaf(*xs) for xs in zip(*(treedef.flatten_up_to(t) for t in
                                    (updates, state.mu, state.nu, state.nu_avg)))]
    u, m, v, vb = trees.unzip(treedef, out, 4)
    return u, ScaleByAvgradState(count=count, mu=m, nu=v, nu_avg=vb)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@alias.static_args("mu_dtype", "mask")
def avgrad(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AVGrad with decoupled weight decay: ``optax.amsgrad`` with the max replaced by a mean.

  .. math::
    \theta_t = \theta_{t-1} - \alpha_t \Bigl(\frac{m_t/(1-b_1^t)}{\sqrt{\bar v_t/(1-b_2^t)}
      + \epsilon} + \lambda \theta_{t-1}\Bigr),\qquad \bar v_t = \tfrac1t \sum_{\tau\le t} v_\tau

  Built as ``optax.chain(scale_by_avgrad(...), optax.add_decayed_weights(weight_decay, mask),
  optax.scale_by_learning_rate(learning_rate))`` (AdamW-style decoupled decay, as MADA).

  Args:
    learning_rate: step size or schedule (>= 0).
    b1: first-moment rate, in [0, 1). Default 0.9.
    b2: second-moment rate, in [0, 1). Default 0.999 (MADA code: 0.95 GPT-2, 0.99 toy).
    eps: outside the square root (>= 0). Default 1e-8.
    eps_root: inside the square root (>= 0). Default 0.
    mu_dtype: first-moment dtype; ``None`` keeps the params' dtype.
    weight_decay: decoupled decay (>= 0). Default 0.
    mask: pytree of bools (or a callable returning one) selecting the params to decay.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = jnp.array([1.0, -2.0])
    >>> tx = optzoo.avgrad(learning_rate=1e-2)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Ozkara et al., `MADA: Meta-Adaptive Optimizers through hyper-gradient Descent
    <https://arxiv.org/abs/2401.08893>`_, 2024
  """
  return alias.decoupled_alias(
      scale_by_avgrad(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype),
      learning_rate, weight_decay, mask)
