r"""Curvature building blocks on arrays and pytrees (no optax).

* Hessian-vector products: :func:`hvp`, :func:`grad_and_hvp`, :func:`value_grad_and_hvp`.
* Hutchinson's diagonal estimate with Rademacher probes: :func:`rademacher_like`,
  :func:`hutchinson_estimate` (any symmetric linear map), :func:`hutchinson_diagonal`,
  :func:`grad_and_hutchinson`, :func:`value_grad_and_hutchinson` (used by AdaHessian).
* Krylov subspaces: :func:`lanczos` (used by Krylov cubic regularized Newton).
* The cubic regularized model :math:`b^\top z + \tfrac12 z^\top B z + \tfrac M6 \lVert z\rVert^3`:
  its global minimizer (:func:`solve_cubic_subproblem`, :func:`solve_cubic_subproblem_diagonal`)
  and the adaptive choice of ``M`` by backtracking (:func:`backtrack_cubic_step`).
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple

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
  shifts = jnp.arange(32, dtype=jnp.uint32).reshape((1,) * bits.ndim + (32,))
  signs = (bits[..., None] >> shifts) & jnp.uint32(1)
  signs = signs.reshape(tuple(shape[:-1]) + (words * 32,))[..., :last]
  return (2 * signs.astype(jnp.int32) - 1).astype(dtype)


def _sample_keys(key: jax.Array, n_samples: int) -> list[jax.Array]:
  return [key] if n_samples == 1 else list(jax.random.split(key, n_samples))


def _probe_mean(
    probe: Callable[[PyTree], tuple[Any, PyTree]], like: PyTree, key: jax.Array, n_samples: int
) -> tuple[Any, PyTree]:
  """``(aux of the last probe, mean over probes z of z * probe(z)[1])``; the one probe loop."""
  aux, est = None, None
  for k in _sample_keys(key, n_samples):
    z = rademacher_like(k, like)
    aux, hz = probe(z)
    zhz = jax.tree.map(jnp.multiply, z, hz)
    est = zhz if est is None else jax.tree.map(jnp.add, est, zhz)
  if n_samples > 1:
    est = jax.tree.map(lambda e: e / n_samples, est)
  return aux, est


def hutchinson_estimate(
    matvec: Callable[[PyTree], PyTree], like: PyTree, key: jax.Array, n_samples: int = 1
) -> PyTree:
  r"""Hutchinson's estimate of the diagonal of a symmetric linear map ``A``.

  .. math::
    \widehat{\operatorname{diag}}(A) = \frac1n \sum_{s=1}^{n} z_s \odot (A z_s),

  with :math:`z_s` Rademacher probes shaped like ``like`` (:func:`rademacher_like`). Unbiased:
  :math:`\mathbb E[z_i (Az)_i] = A_{ii}`; exact for every key when ``A`` is diagonal. The signed
  products are averaged (no absolute value). Probe keys: ``key`` itself when ``n_samples == 1``,
  else ``jax.random.split(key, n_samples)``; each probe key is then split once per leaf.

  Args:
    matvec: ``z -> A z`` on pytrees like ``like`` (e.g. ``lambda z: hvp(f, params, z)`` or the
      linear map of ``jax.linearize(jax.grad(f), params)``).
    like: pytree of float arrays (or shape/dtype structs) giving the probes' shapes and dtypes.
    key: raw ``uint32[2]`` PRNG key (or a typed key).
    n_samples: number of probes (static Python int >= 1). Default 1.

  Returns:
    A pytree like ``like``: the estimate of ``diag(A)``.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> a = jnp.array([1.0, 2.0, 3.0])
    >>> hutchinson_estimate(lambda z: a * z, jnp.zeros(3), jax.random.PRNGKey(0)).tolist()
    [1.0, 2.0, 3.0]
  """
  return _probe_mean(lambda z: (None, matvec(z)), like, key, n_samples)[1]


def hutchinson_diagonal(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, key: jax.Array, n_samples: int = 1
) -> PyTree:
  """Hutchinson's estimate of ``diag(H)``: the mean over probes of ``z * (H z)``.

  Unbiased for any Hessian; exact (for every key) when ``H`` is diagonal. With
  ``n_samples > 1`` the signed estimates are averaged (probe keys split from ``key``, as in
  :func:`hutchinson_estimate`).

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
  return _probe_mean(lambda z: grad_and_hvp(obj_fn, params, z), params, key, n_samples)


def value_grad_and_hutchinson(
    loss_fn: Callable[..., jax.Array], params: PyTree, key: jax.Array, *args
) -> tuple[jax.Array, PyTree, PyTree]:
  """``(loss, grad, z * (H z))`` of ``loss_fn(params, *args)`` in one pass (one probe).

  Tangents are put on ``params`` only (never on the data in ``args``), so ``H`` is the
  Hessian with respect to the parameters. The result feeds AdaHessian's ``hessian_diag=``.

  >>> import jax, jax.numpy as jnp
  >>> f = lambda w, x: jnp.sum((w * x) ** 2)
  >>> x = jnp.array([1.0, 2.0])
  >>> loss, g, d = value_grad_and_hutchinson(f, jnp.ones(2), jax.random.PRNGKey(0), x)
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
    reortho: Literal["full", "none"] = "full",
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
  dtype = flat0.dtype  # at least float32: promote_types(., float32) spelled out
  if not (jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4):
    dtype = jnp.dtype(jnp.float32)
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


# ----------------------------------------------------------------------------- cubic model
def _default_secular_iters(dtype: Any) -> int:
  return 100 if jnp.finfo(dtype).bits > 32 else 60


class CubicSubproblemSolution(NamedTuple):
  """Minimizer ``z`` of the cubic model, its multiplier ``lam = M |z| / 2`` and ``model(z)``."""

  z: jax.Array
  lam: jax.Array
  model: jax.Array


def solve_cubic_subproblem_diagonal(
    theta: jax.Array, gamma: jax.Array, M: float | jax.Array, iters: int | None = None
) -> CubicSubproblemSolution:
  r"""Global minimizer of the cubic model with a diagonal matrix.

  Minimizes :math:`\gamma^\top y + \tfrac12 \sum_i \theta_i y_i^2 + \tfrac M6 \lVert y\rVert^3`:
  the cubic model with a diagonal matrix :math:`\operatorname{diag}(\theta)` (possibly
  indefinite): the form :func:`solve_cubic_subproblem` reduces to once :math:`B` is
  diagonalized (:math:`\gamma = Q^\top b`), reused for every trial ``M`` of a backtracking
  search. The minimizer is :math:`y_i = -\gamma_i / (\theta_i + \lambda)` where
  :math:`\lambda \ge \max(0, -\theta_{\min})` solves the secular equation
  :math:`\lVert y(\lambda)\rVert = 2\lambda / M`. The root is bracketed in
  :math:`[\max(0,-\theta_{\min}),\ \max(0,-\theta_{\min}) + \sqrt{M\lVert\gamma\rVert/2}]`
  and found by ``iters`` bisection steps, taking the upper end so that
  :math:`\theta_i + \lambda > 0`. Entries with :math:`\gamma_i = 0` get :math:`y_i = 0`, except
  in the hard case below.

  The hard case: when :math:`\theta_{\min} < 0` and the equation has no root above
  :math:`-\theta_{\min}` (:math:`\gamma` vanishes on the eigenvectors of :math:`\theta_{\min}`
  and :math:`\lVert y(-\theta_{\min})\rVert \le -2\theta_{\min}/M`; e.g. :math:`\gamma = 0`),
  the minimizer is :math:`\lambda = -\theta_{\min}` and
  :math:`y = y(\lambda) + t\,e_k`, with :math:`k` the (first) index of :math:`\theta_{\min}`
  and :math:`t \ge 0` the length that makes :math:`\lVert y\rVert = 2\lambda/M`. For
  :math:`\gamma = 0` that is :math:`y = (-2\theta_{\min}/M)\,e_k`, model value
  :math:`\tfrac23\theta_{\min}^3/M^2 < 0`: the model descends along negative curvature even
  with no linear term. (Any point of that eigenspace at that radius is a minimizer as well.)

  Args:
    theta: the diagonal, shape (m,). Worked on in at least float32.
    gamma: linear term, shape (m,).
    M: cubic regularization (> 0; values below the dtype's ``tiny`` are raised to it), in the
      M/6 convention of Nesterov and Polyak.
    iters: bisection steps (static Python int). Default None: 60 in float32, 100 in float64.

  Returns:
    A :class:`CubicSubproblemSolution` ``(z, lam, model)`` with ``z`` the minimizer ``y``.

  Example:
    >>> import jax.numpy as jnp
    >>> sol = solve_cubic_subproblem_diagonal(jnp.array([2.0, -1.0]), jnp.array([1.0, 1.0]), 1.0)
    >>> [round(float(v), 4) for v in sol.z], round(float(sol.lam), 4)   # theta_min < 0: lam > 1
    ([-0.2969, -2.7193], 1.3677)
    >>> sol = solve_cubic_subproblem_diagonal(jnp.array([2.0, -1.0]), jnp.array([1.0, 0.0]), 1.0)
    >>> [round(float(v), 4) for v in sol.z], round(float(sol.lam), 4)   # the hard case
    ([-0.3333, 1.972], 1.0)
  """
  dtype = jnp.result_type(theta)  # at least float32: promote_types(., float32) spelled out
  if not (jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4):
    dtype = jnp.dtype(jnp.float32)
  theta = jnp.asarray(theta, dtype)
  gamma = jnp.asarray(gamma, dtype)
  iters = _default_secular_iters(dtype) if iters is None else iters
  tiny = jnp.finfo(dtype).tiny
  M = jnp.maximum(jnp.asarray(M, dtype), tiny)
  gnorm = jnp.linalg.norm(gamma)
  # Solve for mu = lam + s with s = min(theta_min, 0) <= 0, so that theta + lam = (theta - s) + mu
  # is accurate when the matrix is indefinite and lam sits just above -theta_min; lam = mu - s.
  s = jnp.minimum(jnp.min(theta), 0.0)
  shifted = theta - s  # >= 0
  hi = jnp.sqrt(M * gnorm / 2.0)  # phi(hi) <= 0 always; phi(0+) > 0

  def step_of(mu):
    den = jnp.maximum(shifted + mu, tiny)
    return jnp.where(gamma == 0, 0.0, -gamma / den)

  def phi(mu):  # strictly decreasing on (0, inf): |y| - 2 lam / M
    return jnp.linalg.norm(step_of(mu)) - 2.0 * (mu - s) / M

  def body(_, bracket):
    a, b = bracket
    mid = 0.5 * (a + b)
    pos = phi(mid) > 0
    return jnp.where(pos, mid, a), jnp.where(pos, b, mid)

  _, mu = jax.lax.fori_loop(0, iters, body, (jnp.zeros_like(hi), hi))
  y = step_of(mu)  # from the upper end: theta + lam stays positive
  lam = mu - s
  # The hard case: the matrix is indefinite and the secular equation has no root above
  # -theta_min (phi(0) <= 0: gamma vanishes on theta_min's eigenvector, e.g. gamma = 0). Then
  # lam = -theta_min and the minimizer adds, along that eigenvector, the length that makes
  # |y| = 2 lam / M. Selected with jnp.where, so every other case is untouched.
  y0 = step_of(jnp.zeros_like(mu))
  radius = -2.0 * s / M  # 2 lam / M at lam = -theta_min
  n0 = jnp.linalg.norm(y0)
  hard = (s < 0) & (n0 <= radius)
  k = jnp.argmin(theta)
  ratio = n0 / jnp.where(hard, radius, 1.0)
  t = radius * jnp.sqrt(jnp.maximum(1.0 - ratio * ratio, 0.0))  # no overflow of radius**2
  t = jnp.where(gamma[k] > 0, -t, t)  # gamma_k y_k <= 0 (gamma_k is 0 in the exact hard case)
  y = jnp.where(hard, y0.at[k].add(t), y)
  lam = jnp.where(hard, -s, lam)
  ny = jnp.linalg.norm(y)
  model = jnp.vdot(gamma, y) + 0.5 * jnp.vdot(theta * y, y) + (M / 6.0) * ny**3
  return CubicSubproblemSolution(y, lam, model)


def solve_cubic_subproblem(
    b: jax.Array, B: jax.Array, M: float | jax.Array, iters: int | None = None
) -> CubicSubproblemSolution:
  r"""Global minimizer of :math:`b^\top z + \tfrac12 z^\top B z + \tfrac{M}{6}\lVert z\rVert^3`.

  Dense and small (B is m x m, symmetric, possibly indefinite). With :math:`B = Q\,\mathrm{diag}
  (\theta)\,Q^\top` the minimizer is :math:`z = -(B + \lambda I)^{-1} b` where
  :math:`\lambda \ge \max(0, -\theta_{\min})` solves the secular equation
  :math:`\lVert z(\lambda)\rVert = 2\lambda / M`; the root is bracketed in
  :math:`[\max(0,-\theta_{\min}),\ \max(0,-\theta_{\min}) + \sqrt{M\lVert b\rVert/2}]` and found by
  ``iters`` bisection steps, taking the upper end so that :math:`B + \lambda I \succ 0`
  (:func:`solve_cubic_subproblem_diagonal` in the eigenbasis). At the solution
  :math:`(B+\lambda I)z = -b`, :math:`\lambda = M\lVert z\rVert/2` and
  :math:`B + \lambda I \succeq 0` (the global optimality conditions). In the hard case
  (:math:`B` indefinite and :math:`b` orthogonal to the eigenvectors of its smallest
  eigenvalue :math:`\theta_{\min}`, e.g. :math:`b = 0`) :math:`\lambda = -\theta_{\min}` and
  :math:`z` has a component of length making :math:`\lVert z\rVert = 2\lambda/M` along the
  eigenvector of :math:`\theta_{\min}` returned by ``eigh`` (see
  :func:`solve_cubic_subproblem_diagonal`): for :math:`b = 0`,
  :math:`z = (-2\theta_{\min}/M)\,q_{\min}`, never 0.

  Args:
    b: linear term, shape (m,). Worked on in at least float32.
    B: symmetric matrix, shape (m, m).
    M: cubic regularization (> 0), in the M/6 convention of Nesterov and Polyak.
    iters: bisection steps (static Python int). Default None: 60 in float32, 100 in float64.

  Returns:
    A :class:`CubicSubproblemSolution` ``(z, lam, model)``.

  Example:
    >>> import jax.numpy as jnp
    >>> sol = solve_cubic_subproblem(jnp.array([1.0, 0.0]), jnp.eye(2), 1e-8)
    >>> [round(float(v), 4) for v in sol.z]   # ~ Newton step -B^{-1} b
    [-1.0, 0.0]
    >>> sol = solve_cubic_subproblem(jnp.zeros(2), jnp.diag(jnp.array([-1.0, 2.0])), 1.0)
    >>> [abs(round(float(v), 4)) for v in sol.z], float(sol.lam)   # hard case: b = 0
    ([2.0, 0.0], 1.0)
  """
  dtype = jnp.result_type(b)  # at least float32: promote_types(., float32) spelled out
  if not (jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4):
    dtype = jnp.dtype(jnp.float32)
  b = jnp.asarray(b, dtype)
  theta, Q = jnp.linalg.eigh(jnp.asarray(B, dtype))
  y, lam, model = solve_cubic_subproblem_diagonal(theta, Q.T @ b, jnp.asarray(M, dtype), iters)
  return CubicSubproblemSolution(Q @ y, lam, model)


class CubicBacktracking(NamedTuple):
  """What :func:`backtrack_cubic_step` found.

  Attributes:
    step: the last trial's step (the accepted one when ``accepted``).
    M: the regularization after the search: the accepted ``M``, or the enlarged one after
      ``max_backtracks`` failed trials.
    lam: the subproblem multiplier ``M |y| / 2`` of the last trial.
    model: the model value of the last trial (<= 0: minus the predicted decrease).
    accepted: whether a trial passed the test.
    num_backtracks: the number of failed trials (int32).
  """

  step: PyTree
  M: jax.Array
  lam: jax.Array
  model: jax.Array
  accepted: jax.Array
  num_backtracks: jax.Array


def backtrack_cubic_step(
    theta: jax.Array,
    gamma: jax.Array,
    value: jax.Array,
    M_prev: jax.Array,
    try_step: Callable[[jax.Array], tuple[PyTree, jax.Array]],
    *,
    shrink: float | jax.Array,
    grow: float | jax.Array,
    max_backtracks: int,
    min_M: float | jax.Array,
    max_M: float | jax.Array,
    secular_iters: int | None = None,
) -> CubicBacktracking:
  r"""Adaptive cubic regularization: the smallest tried ``M`` whose model step really descends.

  For a cubic model :math:`m_M(y) = \gamma^\top y + \tfrac12 \sum_i \theta_i y_i^2 +
  \tfrac M6 \lVert y\rVert^3` written in the eigenbasis of its matrix (an orthonormal change of
  variables; see :func:`solve_cubic_subproblem_diagonal`) around a point with objective
  ``value`` = :math:`f(x)`: start from :math:`M = \operatorname{clip}(\text{shrink}\cdot
  M_{\text{prev}}, M_{\min}, M_{\max})`, and, at most ``max_backtracks`` times,

  1. minimize the model: :math:`y^* = \arg\min_y m_M(y)`;
  2. ``step, f_new = try_step(y*)``: the step in the caller's space and :math:`f(x + \text{step})`;
  3. accept when :math:`f_{\text{new}}` is finite and :math:`f_{\text{new}} \le f(x) + m_M(y^*)`
     (the actual decrease is at least the predicted one); otherwise
     :math:`M \leftarrow \min(\text{grow}\cdot M, M_{\max})` and try again.

  A ``lax.while_loop``: jittable, one objective value per trial. The dtype of the search is
  ``theta``'s (at least float32); ``value``, ``M_prev`` and ``f_new`` should have it too.

  Args:
    theta: the model's eigenvalues, shape (m,).
    gamma: the model's linear term in the same eigenbasis, shape (m,).
    value: :math:`f(x)`, a scalar.
    M_prev: the previous regularization (> 0), a scalar array.
    try_step: ``y -> (step, f(x + step))``; ``step`` may be any pytree.
    shrink: factor on ``M_prev`` before the first trial, in (0, 1].
    grow: factor after a failed trial, >= 1.
    max_backtracks: the most trials (static Python int >= 1).
    min_M: lower clamp of the first trial's ``M`` (> 0).
    max_M: upper clamp of every ``M`` (``jnp.inf`` for none).
    secular_iters: bisection steps of each model minimization (static). Default None: 60 in
      float32, 100 in float64.

  Returns:
    A :class:`CubicBacktracking`. When no trial passes, ``accepted`` is False and ``step`` is
    the last (rejected) trial's: the caller decides what to do (e.g. keep ``x``).

  Example:
    >>> import jax.numpy as jnp
    >>> f = lambda x: jnp.sum(jnp.sqrt(1.0 + x ** 2))     # Newton overshoots from x = 2
    >>> x = jnp.array([2.0])
    >>> theta, gamma = (1.0 + x ** 2) ** -1.5, x / jnp.sqrt(1.0 + x ** 2)  # diagonal H, grad
    >>> out = backtrack_cubic_step(theta, gamma, f(x), jnp.array(1e-6), lambda y: (y, f(x + y)),
    ...                            shrink=0.5, grow=2.0, max_backtracks=30, min_M=1e-12, max_M=1e12)
    >>> bool(out.accepted), int(out.num_backtracks) > 0, bool(f(x + out.step) < f(x))
    (True, True, True)
  """
  dtype = jnp.result_type(theta)  # at least float32: promote_types(., float32) spelled out
  if not (jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4):
    dtype = jnp.dtype(jnp.float32)
  M0 = jnp.clip(shrink * M_prev, min_M, max_M).astype(dtype)

  def trial(M):
    y, lam, model = solve_cubic_subproblem_diagonal(theta, gamma, M, secular_iters)
    step, f_new = try_step(y)
    return step, lam, model, f_new

  def cond(c):
    t, _, done, *_ = c
    return (~done) & (t < max_backtracks)

  def body(c):
    t, M, _, _, _, _, _ = c
    step, lam, model, f_new = trial(M)
    ok = jnp.isfinite(f_new) & (f_new <= value + model)
    M_next = jnp.where(ok, M, jnp.minimum(M * grow, max_M)).astype(dtype)
    return t + 1, M_next, ok, step, lam, model, f_new

  step_shape = jax.eval_shape(lambda M: trial(M)[0], M0)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), step_shape)
  init = (jnp.zeros([], jnp.int32), M0, jnp.array(False), zeros, jnp.zeros([], dtype),
          jnp.zeros([], dtype), value)
  t, M, accepted, step, lam, model, _ = jax.lax.while_loop(cond, body, init)
  num_backtracks = jnp.where(accepted, t - 1, t)
  return CubicBacktracking(step, M, lam, model, accepted, num_backtracks)
