"""Linear minimization oracles (LMOs) and dual norms for geometry-aware optimizers.

Pure functions on arrays (no optax): Newton-Schulz orthogonalization, the sign and
spectral LMOs, and the dual norms LANTON measures gradient noise in. Every matrix
function works on ``(..., m, n)`` arrays and is batched over the leading axes, so a
scanned stack of layers ``(L, d_in, d_out)`` is orthogonalized in one call.

Conventions: an LMO returns the *descent* direction ``argmin_{||A|| <= 1} <B, A>``, so
``<B, lmo(B)> = -||B||_*`` (the dual norm). Optimizers that follow optax's sign
convention (the transform outputs an ascent-like direction that
``scale_by_learning_rate`` negates) use ``-lmo(B)``, i.e. ``newton_schulz(B)`` or
``sign(B)`` directly.

>>> import jax.numpy as jnp
>>> from optzoo import lmo
>>> g = jnp.arange(12.0).reshape(3, 4)
>>> o = lmo.newton_schulz(g)            # ~ U V^T with singular values in [0.68, 1.14]
>>> o.shape
(3, 4)
>>> float(lmo.l1_norm(jnp.array([1.0, -2.0])))
3.0

References:
  Jordan et al., `Muon: An optimizer for hidden layers in neural networks
  <https://github.com/KellerJordan/Muon>`_, 2024 (the quintic Newton-Schulz coefficients)

  Pethick et al., `Training Deep Learning Models with Norm-Constrained LMOs
  <https://arxiv.org/abs/2502.07529>`_, 2025 (the LMO view)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "NS_COEFFS",
    "DUAL_NORMS",
    "dual_norm",
    "l1_norm",
    "l2_norm",
    "newton_schulz",
    "newton_schulz_many",
    "nuclear_norm",
    "nuclear_norm_fro_bound",
    "nuclear_norm_gram",
    "nuclear_norm_ns",
    "sign",
    "sign_lmo",
    "spectral_lmo",
    "spectral_lmo_svd",
]

#: Keller Jordan's quintic coefficients (a, b, c): X <- a X + (b A + c A^2) X, A = X X^T.
NS_COEFFS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)


def _swap(x: jax.Array) -> jax.Array:
  return jnp.swapaxes(x, -1, -2)


def _ns_divisor(x: jax.Array, eps: float) -> jax.Array:
  """``||x||_F + eps * min(||x||_F, 1)`` per slice (keepdims), in ``x``'s dtype; 1 where it is 0.

  The norm is computed in float32; for norms >= 1 the divisor is the usual ``||x||_F + eps``.
  """
  norm = jnp.sqrt(jnp.sum(jnp.square(x.astype(jnp.float32)), axis=(-2, -1), keepdims=True))
  div = (norm + eps * jnp.minimum(norm, 1.0)).astype(x.dtype)
  return jnp.where(div > 0, div, jnp.ones_like(div))


def newton_schulz(
    x: jax.Array,
    steps: int = 5,
    coeffs: Sequence[float] = NS_COEFFS,
    eps: float = 1e-7,
    dtype: Any = jnp.float32,
) -> jax.Array:
  r"""Approximate orthogonalization ``U S' V^T`` of ``x = U S V^T`` by the quintic Newton-Schulz map.

  .. math::
    X_0 = \frac{B}{\|B\|_F + \epsilon \min(\|B\|_F, 1)},\qquad A_k = X_k X_k^\top,\qquad
    X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

  with the wide orientation (``m <= n``; taller inputs are transposed and transposed back,
  so ``newton_schulz(x.T) == newton_schulz(x).T``). After 5 steps, singular values that were
  at least 1% of the Frobenius norm land in about [0.68, 1.14]; the scalar map never exceeds
  1.2024 on [0, 1].

  The guard ``epsilon`` is relative to ``||B||_F`` below 1 and absolute above, so the result
  does not depend on the scale of ``x``: ``newton_schulz(c x)`` equals ``newton_schulz(x)`` up
  to a relative ``epsilon`` for every ``c > 0`` (an absolute guard would change the result of
  small inputs: gradients of a loss scaled by 1e-5). For ``||B||_F >= 1`` the divisor is the
  usual ``||B||_F + epsilon``. A zero matrix maps to zero.

  Args:
    x: array of shape ``(..., m, n)``; the leading axes are a batch (one matrix per slice).
    steps: Newton-Schulz iterations (static). Default 5 (Muon, Moonlight, Scion).
    coeffs: the quintic's ``(a, b, c)``. Default ``(3.4445, -4.7750, 2.0315)``.
    eps: guard of the normalization, ``||B||_F + eps * min(||B||_F, 1)``. Default 1e-7
      (Muon's PyTorch code adds 1e-7, optax 1e-8, to the norm at every scale).
    dtype: compute dtype. Default float32; ``jnp.bfloat16`` is the fast option of the PyTorch
      references (less accurate). ``None`` computes in ``x``'s dtype.

  Returns:
    An array like ``x`` (same shape and dtype).
  """
  if x.ndim < 2:
    raise ValueError(f"newton_schulz needs an array of rank >= 2, got shape {x.shape}.")
  out_dtype = x.dtype
  if dtype is not None:
    x = x.astype(dtype)
  transposed = x.shape[-2] > x.shape[-1]
  if transposed:
    x = _swap(x)
  x = x / _ns_divisor(x, eps)
  a, b, c = coeffs
  for _ in range(steps):
    gram = x @ _swap(x)
    poly = b * gram + c * (gram @ gram)
    x = a * x + poly @ x
  if transposed:
    x = _swap(x)
  return x.astype(out_dtype)


def newton_schulz_many(
    xs: Sequence[jax.Array],
    steps: int = 5,
    coeffs: Sequence[float] = NS_COEFFS,
    eps: float = 1e-7,
    dtype: Any = jnp.float32,
    whole_on: jax.sharding.Mesh | None = None,
) -> list[jax.Array]:
  r""":func:`newton_schulz` of many arrays at once: one batched call per matrix shape.

  Each ``x`` of shape ``(..., m, n)`` becomes a stack of ``(m, n)`` matrices, turned wide (a
  tall stack is transposed, so ``(m, n)`` and ``(n, m)`` matrices share a call); the stacks of
  one oriented shape (and compute dtype) are concatenated, orthogonalized by one
  :func:`newton_schulz` call, and split back. A model with many layers of few distinct shapes
  thus costs one call per shape instead of one per leaf. Every result is
  ``newton_schulz(x, steps, coeffs, eps, dtype)`` up to float rounding (a batched matrix
  product may round differently from a single one).

  Args:
    xs: arrays of rank >= 2, any mix of shapes.
    steps: Newton-Schulz iterations (static). Default 5.
    coeffs: the quintic's ``(a, b, c)``. Default ``(3.4445, -4.7750, 2.0315)``.
    eps: relative guard of the normalization (see :func:`newton_schulz`). Default 1e-7.
    dtype: compute dtype. Default float32; ``None`` computes in each input's dtype.
    whole_on: a ``jax.sharding.Mesh``, or None (default). With a mesh, each input's matrices
      are made whole on the devices that hold them (one all-gather of a matrix that FSDP splits;
      a stack split along its leading axes stays split, each device orthogonalizing its own
      layers), inputs are not concatenated (that would move stacks between devices), and the
      iterations run with no collective; a result used in a split layout is sliced locally.
      Without, the iterations run wherever the inputs are (on split matrices, XLA gathers or
      all-reduces partial products at every iteration).

  Returns:
    A list with one array per input, of the input's shape and in the compute dtype (``dtype``,
    or the input's dtype when ``dtype`` is None).

  >>> import jax.numpy as jnp
  >>> from optzoo import lmo
  >>> xs = [jnp.ones((3, 4)), jnp.ones((2, 4, 3)), jnp.ones((5, 6))]  # 2 calls: (3, 4), (5, 6)
  >>> [o.shape for o in lmo.newton_schulz_many(xs)]
  [(3, 4), (2, 4, 3), (5, 6)]
  """
  prepared, buckets = [], {}
  for i, x in enumerate(xs):
    if x.ndim < 2:
      raise ValueError(f"newton_schulz_many needs arrays of rank >= 2, got shape {x.shape}.")
    x = _whole(x, whole_on)
    lead = x.shape[:-2]
    x3 = x.reshape((math.prod(lead),) + x.shape[-2:])  # not -1: a zero-size x has no -1
    if dtype is not None:
      x3 = x3.astype(dtype)
    t = x3.shape[1] > x3.shape[2]
    if t:
      x3 = jnp.swapaxes(x3, 1, 2)
    prepared.append((lead, t, x3.shape[0]))
    # with a mesh, no concatenation: an input split along its stack stays where it is
    key = (x3.shape[1:], x3.dtype) if whole_on is None else i
    buckets.setdefault(key, []).append((i, x3))
  out: list[Any] = [None] * len(xs)
  for items in buckets.values():
    stack = jnp.concatenate([x3 for _, x3 in items]) if len(items) > 1 else items[0][1]
    # pinned whole on both sides, or XLA propagates the results' split layout into the loop
    res = _whole(newton_schulz(_whole(stack, whole_on), steps, coeffs, eps, None), whole_on)
    start = 0
    for i, _ in items:
      lead, t, nb = prepared[i]
      r = res[start:start + nb]
      start += nb
      if t:
        r = jnp.swapaxes(r, 1, 2)
      out[i] = r.reshape(lead + r.shape[1:])
  return out


def _whole(x: jax.Array, mesh: jax.sharding.Mesh | None) -> jax.Array:
  """``x``'s last two axes whole on every device of ``mesh`` (its leading axes left to XLA:
  a stack split along them stays split); unchanged without a mesh."""
  if mesh is None:
    return x
  free = jax.sharding.PartitionSpec.UNCONSTRAINED
  spec = jax.sharding.PartitionSpec(*([free] * (x.ndim - 2)), None, None)
  return jax.lax.with_sharding_constraint(x, jax.sharding.NamedSharding(mesh, spec))


def sign(x: jax.Array) -> jax.Array:
  """Entrywise sign (``sign(0) = 0``), in ``x``'s dtype."""
  return jnp.sign(x)


def sign_lmo(b: jax.Array) -> jax.Array:
  r"""LMO of the entrywise max norm (l1 -> l_inf operator norm): ``-sign(B)``.

  ``<B, sign_lmo(B)> = -||B||_1`` (the dual, entrywise l1 norm) exactly.
  """
  return -jnp.sign(b)


def spectral_lmo_svd(b: jax.Array) -> jax.Array:
  r"""Exact LMO of the spectral norm: ``-U V^T`` from the (batched) thin SVD of ``b``.

  ``<B, spectral_lmo_svd(B)> = -||B||_*`` (the nuclear norm). For tests and small models.
  """
  u, _, vt = jnp.linalg.svd(b.astype(jnp.float32), full_matrices=False)
  return (-(u @ vt)).astype(b.dtype)


def spectral_lmo(b: jax.Array, steps: int = 5, coeffs: Sequence[float] = NS_COEFFS,
                 eps: float = 1e-7, dtype: Any = jnp.float32) -> jax.Array:
  """Newton-Schulz LMO of the spectral norm: ``-newton_schulz(b)`` (see :func:`newton_schulz`)."""
  return -newton_schulz(b, steps, coeffs, eps, dtype)


def _f32(x):
  return x.astype(jnp.float32) if x.dtype != jnp.float64 else x


def l1_norm(x: jax.Array, axis: int | Sequence[int] | None = None) -> jax.Array:
  """Entrywise l1 norm (the dual of the max norm), over ``axis`` (default: all), in float32."""
  if axis is not None and not isinstance(axis, int):
    axis = tuple(axis)
  return jnp.sum(jnp.abs(_f32(x)), axis=axis)


def l2_norm(x: jax.Array, axis: int | Sequence[int] | None = None) -> jax.Array:
  """Euclidean (Frobenius) norm over ``axis`` (default: all), in float32 (SGD's dual norm)."""
  if axis is not None and not isinstance(axis, int):
    axis = tuple(axis)
  return jnp.sqrt(jnp.sum(jnp.square(_f32(x)), axis=axis))


def nuclear_norm(x: jax.Array) -> jax.Array:
  """Exact nuclear norm (sum of singular values) of each ``(m, n)`` slice, via SVD, in float32."""
  return jnp.sum(jnp.linalg.svd(_f32(x), compute_uv=False), axis=-1)


def nuclear_norm_ns(x: jax.Array, steps: int = 5, coeffs: Sequence[float] = NS_COEFFS,
                    eps: float = 1e-7, dtype: Any = jnp.float32) -> jax.Array:
  r"""Nuclear norm estimated by one Newton-Schulz pass: ``sum(X * NS(X))`` per slice.

  Since ``NS(X) = U S' V^T``, the estimate is ``sum_i sigma_i s'_i`` with ``s'_i`` in about
  [0.68, 1.14]; on Gaussian inputs it reads 0.85-0.94 of the true value.
  """
  x = _f32(x)
  return jnp.sum(x * newton_schulz(x, steps, coeffs, eps, dtype).astype(x.dtype), axis=(-2, -1))


def nuclear_norm_fro_bound(x: jax.Array) -> jax.Array:
  r"""Upper bound ``sqrt(min(m, n)) ||X||_F >= ||X||_*`` (exact for flat spectra); costs one reduction."""
  x = _f32(x)
  k = min(x.shape[-2], x.shape[-1])
  return jnp.sqrt(float(k)) * jnp.sqrt(jnp.sum(jnp.square(x), axis=(-2, -1)))


def nuclear_norm_gram(x: jax.Array) -> jax.Array:
  r"""Lower bound of the nuclear norm from the Frobenius and Schatten-4 norms (one Gram product).

  .. math:: \widehat{\|X\|_*} = \frac{(\sum_i \sigma_i^2)^{3/2}}{(\sum_i \sigma_i^4)^{1/2}}
            = \frac{\|X\|_F^3}{\|X X^\top\|_F} \le \|X\|_*

  (Hölder; equality when the nonzero singular values are equal). It costs one ``m x m`` Gram
  matrix, about 1/15 of a 5-step Newton-Schulz pass. Not in the paper: an optzoo option.
  """
  x = _f32(x)
  if x.shape[-2] > x.shape[-1]:
    x = _swap(x)
  fro2 = jnp.sum(jnp.square(x), axis=(-2, -1))
  gram = x @ _swap(x)
  s4 = jnp.sum(jnp.square(gram), axis=(-2, -1))
  return fro2 * jnp.sqrt(fro2) / jnp.sqrt(jnp.maximum(s4, jnp.finfo(x.dtype).tiny))


#: Dual norms of the matrix geometry by name (each maps ``(..., m, n)`` to ``(...)``).
DUAL_NORMS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "svd": nuclear_norm,
    "ns": nuclear_norm_ns,
    "gram": nuclear_norm_gram,
    "fro_bound": nuclear_norm_fro_bound,
    "l1": lambda x: l1_norm(x, axis=(-2, -1)),
    "l2": lambda x: l2_norm(x, axis=(-2, -1)),
}


def dual_norm(name: str) -> Callable[[jax.Array], jax.Array]:
  """The matrix dual norm called ``name`` (one of :data:`DUAL_NORMS`)."""
  try:
    return DUAL_NORMS[name]
  except KeyError:
    raise ValueError(f"dual_norm={name!r} is not one of {sorted(DUAL_NORMS)}.") from None
