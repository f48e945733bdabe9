"""Curvature building blocks on pytrees (no optax): Hessian-vector products and friends.

Used by AdaHessian (Hutchinson diagonal) and Krylov cubic Newton (Lanczos).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

PyTree = Any


def hvp(obj_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
  """Hessian-vector product ``H(params) @ v`` by forward-over-reverse differentiation.

  >>> import jax.numpy as jnp
  >>> hvp(lambda x: jnp.sum(x ** 3), jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0])).tolist()
  [6.0, 12.0]
  """
  return jax.jvp(jax.grad(obj_fn), (params,), (v,))[1]


def grad_and_hvp(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree
) -> tuple[PyTree, PyTree]:
  """``(grad(params), H(params) @ v)`` from one forward-over-reverse pass."""
  return jax.jvp(jax.grad(obj_fn), (params,), (v,))


def value_grad_and_hvp(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree
) -> tuple[jax.Array, PyTree, PyTree]:
  """``(loss, grad, H @ v)`` in one forward-over-reverse pass."""

  def value_and_grad(p):
    val, g = jax.value_and_grad(obj_fn)(p)
    return g, val

  g, hv, val = jax.jvp(value_and_grad, (params,), (v,), has_aux=True)
  return val, g, hv


# ----------------------------------------------------------------------------- Hutchinson
def rademacher_like(key: jax.Array, tree: PyTree, dtype: Any | None = None) -> PyTree:
  """Rademacher probes (+1 or -1, probability 1/2 each) shaped like ``tree``.

  Every leaf gets its own key (``key`` split once per leaf, in flattening order), so two
  leaves of the same shape never share a probe: their cross terms in ``z * (H z)`` cancel in
  expectation. Each probe is built as ``zeros_like(leaf) + draw``, so a concrete sharded leaf
  gives a probe with the leaf's sharding (under ``jit``, sharding propagation does the same).

  Args:
    key: a raw ``uint32[2]`` PRNG key (or a typed key).
    tree: pytree of arrays (or anything with ``shape`` and ``dtype``).
    dtype: probe dtype; ``None`` uses each leaf's dtype.

  >>> import jax, jax.numpy as jnp
  >>> z = rademacher_like(jax.random.PRNGKey(0), {"a": jnp.zeros(3), "b": jnp.zeros(3)})
  >>> sorted({float(v) for v in jnp.concatenate([z["a"], z["b"]])} - {-1.0, 1.0})
  []
  """
  leaves, treedef = jax.tree.flatten(tree)
  if not leaves:
    return tree
  keys = jax.random.split(key, len(leaves))
  out = []
  for k, leaf in zip(keys, leaves):
    dt = jnp.dtype(leaf.dtype if dtype is None else dtype)
    draw = rademacher(k, tuple(leaf.shape), dt)
    if isinstance(leaf, jax.Array):
      draw = jnp.zeros_like(leaf, dtype=dt) + draw
    out.append(draw)
  return jax.tree.unflatten(treedef, out)


def rademacher(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
  """i.i.d. Rademacher signs (+1/-1 with probability 1/2) from 32 random bits per draw word.

  Same distribution as ``jax.random.rademacher`` but unpacks every 32-bit random word into 32
  signs (along the last axis), so it needs up to 32x fewer threefry evaluations: the probe
  of a 10M-parameter model costs a small fraction of its Hessian-vector product.

  >>> import jax
  >>> sorted(set(rademacher(jax.random.PRNGKey(0), (3, 40)).ravel().tolist()))
  [-1.0, 1.0]
  """
  if len(shape) == 0 or 0 in shape:
    return jax.random.rademacher(key, shape, dtype=dtype)
  last = shape[-1]
  words = -(-last // 32)
  bits = jax.random.bits(key, tuple(shape[:-1]) + (words,), jnp.uint32)
  signs = (bits[..., None] >> jnp.arange(32, dtype=jnp.uint32)) & jnp.uint32(1)
  signs = signs.reshape(tuple(shape[:-1]) + (words * 32,))[..., :last]
  return (2 * signs.astype(jnp.int32) - 1).astype(dtype)


def _sample_keys(key: jax.Array, n_samples: int) -> list[jax.Array]:
  return [key] if n_samples == 1 else list(jax.random.split(key, n_samples))


def hutchinson_diagonal(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, key: jax.Array, n_samples: int = 1
) -> PyTree:
  """Hutchinson's estimate of ``diag(H)``: the mean over probes of ``z * (H z)``.

  Unbiased for any Hessian; exact (for every key) when ``H`` is diagonal. With
  ``n_samples > 1`` the signed estimates are averaged (probe keys split from ``key``).

  >>> import jax, jax.numpy as jnp
  >>> f = lambda x: jnp.sum(jnp.array([1.0, 2.0, 3.0]) * x ** 2)
  >>> hutchinson_diagonal(f, jnp.ones(3), jax.random.PRNGKey(0)).tolist()
  [2.0, 4.0, 6.0]
  """
  return grad_and_hutchinson(obj_fn, params, key, n_samples)[1]


def grad_and_hutchinson(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, key: jax.Array, n_samples: int = 1
) -> tuple[PyTree, PyTree]:
  """``(grad, Hutchinson diag estimate)`` with one forward-over-reverse pass per probe."""
  g, est = None, None
  for k in _sample_keys(key, n_samples):
    z = rademacher_like(k, params)
    g, hz = grad_and_hvp(obj_fn, params, z)
    zhz = jax.tree.map(jnp.multiply, z, hz)
    est = zhz if est is None else jax.tree.map(jnp.add, est, zhz)
  if n_samples > 1:
    est = jax.tree.map(lambda e: e / n_samples, est)
  return g, est


def value_grad_and_hutchinson(
    loss_fn: Callable[..., jax.Array], params: PyTree, key: jax.Array, *args
) -> tuple[jax.Array, PyTree, PyTree]:
  """``(loss, grad, z * (H z))`` of ``loss_fn(params, *args)`` in one pass (one probe).

  Tangents are put on ``params`` only (never on the data in ``args``), so ``H`` is the
  Hessian with respect to the parameters. The result feeds AdaHessian's ``hessian_diag=``.

  >>> import jax, jax.numpy as jnp
  >>> f = lambda w, x: jnp.sum((w * x) ** 2)
  >>> loss, g, d = value_grad_and_hutchinson(f, jnp.ones(2), jax.random.PRNGKey(0), jnp.array([1.0, 2.0]))
  >>> (float(loss), g.tolist(), d.tolist())
  (5.0, [2.0, 8.0], [2.0, 8.0])
  """
  z = rademacher_like(key, params)
  val, g, hz = value_grad_and_hvp(lambda p: loss_fn(p, *args), params, z)
  return val, g, jax.tree.map(jnp.multiply, z, hz)


# ----------------------------------------------------------------------------- Lanczos
def lanczos(
    matvec: Callable[[PyTree], PyTree],
    v0: PyTree,
    num_steps: int,
    *,
    reortho: str = "full",
    breakdown_tol: float | None = None,
) -> tuple[PyTree, jax.Array]:
  r"""``num_steps`` Lanczos steps on a symmetric linear map, started at ``v0``.

  Builds an orthonormal basis :math:`V = [q_1; \dots; q_m]` of the Krylov space
  :math:`\mathcal K_m(H, v_0) = \operatorname{span}\{v_0, Hv_0, \dots, H^{m-1}v_0\}` and the
  tridiagonal :math:`T = V H V^\top` (diagonal :math:`\alpha_j = q_j^\top H q_j`, off-diagonal
  :math:`\beta_{j+1} = \lVert w_j \rVert`) with the three-term recurrence
  :math:`w_j = Hq_j - \alpha_j q_j - \beta_j q_{j-1}`, :math:`q_{j+1} = w_j / \beta_{j+1}`.

  The number of steps is static (a ``lax.fori_loop`` over preallocated arrays): exactly
  ``num_steps`` calls of ``matvec``. With ``reortho="full"`` every new vector is orthogonalized
  against all previous ones twice (classical Gram-Schmidt, two passes), which keeps ``V``
  orthonormal to float32 rounding even when the spectrum has large outliers; ``"none"`` is the
  plain three-term recurrence (loses orthogonality quickly in float32; kept for comparison).

  Breakdown: when ``beta_{j+1} <= breakdown_tol * scale`` (``scale`` = the largest
  :math:`\lVert Hq_i \rVert` seen so far) the Krylov space is invariant; every later basis vector,
  diagonal and off-diagonal entry is exactly zero (never NaN), so ``T`` is block diagonal with a
  zero tail block that contributes nothing to a subspace model. A zero (or all-zero) ``v0``
  gives an all-zero basis and ``T``.

  Pytrees: ``v0`` may be any pytree of arrays; the work is done on the flattened vector (in
  at least float32; ``ravel_pytree`` promotes mixed dtypes) and ``matvec`` receives and returns
  pytrees like ``v0``.

  Args:
    matvec: ``v -> H v`` for a symmetric ``H`` (e.g. ``lambda v: hvp(f, x, v)``).
    v0: start vector (pytree). Need not be normalized.
    num_steps: m, the number of Lanczos steps (Python int >= 1).
    reortho: ``"full"`` (default) or ``"none"``.
    breakdown_tol: relative breakdown threshold. Default (None): ``10 * eps`` of the working
      dtype with full reorthogonalization (1.2e-6 in float32), where a missed breakdown is
      harmless (the next vector is just another orthonormal direction) and a loose threshold
      would cut genuine directions under a few large outlier eigenvalues; ``sqrt(eps)`` without
      it. The reference code uses an absolute 1e-6 in float64.

  Returns:
    ``(basis, tridiag)``: ``basis`` is a pytree like ``v0`` whose leaves have a leading axis of
    size m (row j is :math:`q_{j+1}`; for a flat ``v0`` of size d it is the (m, d) matrix ``V``);
    ``tridiag`` is the dense (m, m) symmetric tridiagonal ``T``.

  Example:
    >>> import jax.numpy as jnp
    >>> h = jnp.diag(jnp.array([1.0, 2.0, 3.0]))
    >>> v, t = lanczos(lambda x: h @ x, jnp.ones(3), 3)
    >>> bool(jnp.allclose(v @ v.T, jnp.eye(3), atol=1e-6))
    True
    >>> bool(jnp.allclose(jnp.linalg.eigvalsh(t), jnp.array([1.0, 2.0, 3.0]), atol=1e-5))
    True
  """
  from jax.flatten_util import ravel_pytree  # noqa: PLC0415

  if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
    raise ValueError(f"num_steps={num_steps!r} must be a Python int >= 1 (it fixes a shape).")
  if reortho not in ("full", "none"):
    raise ValueError(f"reortho={reortho!r} is not one of 'full', 'none'.")
  flat0, unravel = ravel_pytree(v0)
  dtype = jnp.promote_types(flat0.dtype, jnp.float32)
  x0 = flat0.astype(dtype)
  m, d = num_steps, x0.shape[0]
  if breakdown_tol is None:
    eps = float(jnp.finfo(dtype).eps)
    breakdown_tol = 10.0 * eps if reortho == "full" else eps**0.5
  tol = breakdown_tol
  tol = jnp.asarray(tol, dtype)

  def mv(q):
    out = matvec(unravel(q.astype(flat0.dtype)))
    return ravel_pytree(out)[0].astype(dtype)

  norm0 = jnp.linalg.norm(x0)
  ok0 = norm0 > jnp.finfo(dtype).tiny
  q0 = jnp.where(ok0, x0 / jnp.where(ok0, norm0, 1.0), 0.0)

  def body(j, carry):
    basis, alphas, betas, q, q_prev, b_prev, scale, active = carry
    basis = basis.at[j].set(q)
    hq = mv(q)
    w = hq - b_prev * q_prev
    a = jnp.vdot(q, w)
    w = w - a * q
    if reortho == "full":
      for _ in range(2):  # CGS2; rows not yet filled are zero
        w = w - basis.T @ (basis @ w)
    b = jnp.linalg.norm(w)
    scale = jnp.maximum(scale, jnp.linalg.norm(hq))
    ok = active & (b > tol * scale)
    q_next = jnp.where(ok, w / jnp.where(ok, b, 1.0), 0.0)
    b = jnp.where(ok, b, 0.0)
    a = jnp.where(active, a, 0.0)
    alphas = alphas.at[j].set(a)
    betas = betas.at[j].set(b)
    return basis, alphas, betas, q_next, q, b, scale, ok

  init = (jnp.zeros((m, d), dtype), jnp.zeros((m,), dtype), jnp.zeros((m,), dtype), q0,
          jnp.zeros_like(q0), jnp.zeros((), dtype), jnp.zeros((), dtype), ok0)
  basis, alphas, betas, *_ = jax.lax.fori_loop(0, m, body, init)
  off = betas[: m - 1]
  tridiag = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
  basis_tree = jax.vmap(unravel)(basis.astype(flat0.dtype))
  return basis_tree, tridiag
