"""Krylov cubic regularized Newton (Jiang, Raman, Sabach, Mokhtari, Hong, Cevher; arXiv 2401.03058).

A second-order method for (convex) deterministic objectives: each step minimizes the cubic
regularized Newton model restricted to the m-dimensional Krylov space spanned by the gradient
and m - 1 Hessian-vector products, with an adaptive regularization M (backtracking). The
convergence rate O(1/(mk) + 1/k^2) does not depend on the dimension.

It is a whole optimizer (the step is ``x + V^T z`` with an acceptance test on the objective),
so it takes the objective as the ``obj_fn`` keyword of ``update``, like ``optax.contrib.sophia``,
and must not be chained with a learning rate. :func:`minimize` is a solver entry point for
deterministic problems.
"""

from __future__ import annotations

import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree


from optzoo._src import checks
from optzoo.curvature import lanczos

__all__ = [
    "KrylovInfo",
    "ScaleByKrylovCubicNewtonState",
    "krylov_cubic_newton",
    "minimize",
    "scale_by_krylov_cubic_newton",
    "solve_cubic_subproblem",
]

_INT32_MAX = np.iinfo(np.int32).max


# ----------------------------------------------------------------------------- subproblem
def _default_secular_iters(dtype) -> int:
  return 100 if jnp.finfo(dtype).bits > 32 else 60


def _solve_eig(theta: jax.Array, gamma: jax.Array, M: jax.Array, iters: int):
  """Cubic subproblem in the eigenbasis of B: minimize gamma.y + y.diag(theta).y/2 + M/6 |y|^3.

  Returns ``(y, lam, model)`` with ``y = -gamma / (theta + lam)``, ``lam = M |y| / 2`` found by
  fixed-count bisection on the secular equation, and ``model`` the model value at ``y``.
  """
  dtype = theta.dtype
  tiny = jnp.finfo(dtype).tiny
  M = jnp.maximum(M.astype(dtype), tiny)
  gnorm = jnp.linalg.norm(gamma)
  # Solve for mu = lam + s with s = min(theta_min, 0) <= 0, so that theta + lam = (theta - s) + mu
  # is accurate when B is indefinite and lam sits just above -theta_min; lam = mu - s >= 0.
  s = jnp.minimum(jnp.min(theta), 0.0)
  shifted = theta - s  # >= 0
  hi = jnp.sqrt(M * gnorm / 2.0)  # phi(hi) <= 0 always (see the spec); phi(0+) > 0

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
  y = step_of(mu)  # from the upper end: B + lam I stays positive definite
  lam = mu - s
  ny = jnp.linalg.norm(y)
  model = jnp.vdot(gamma, y) + 0.5 * jnp.vdot(theta * y, y) + (M / 6.0) * ny**3
  return y, lam, model


class CubicSubproblemSolution(NamedTuple):
  """Minimizer ``z`` of the cubic model, its multiplier ``lam = M |z| / 2`` and ``model(z)``."""

  z: jax.Array
  lam: jax.Array
  model: jax.Array


def solve_cubic_subproblem(
    b: jax.Array, B: jax.Array, M: float | jax.Array, iters: int | None = None
) -> CubicSubproblemSolution:
  r"""Global minimizer of :math:`b^\top z + \tfrac12 z^\top B z + \tfrac{M}{6}\lVert z\rVert^3`.

  Dense and small (B is m x m, symmetric, possibly indefinite). With :math:`B = Q\,\mathrm{diag}
  (\theta)\,Q^\top` the minimizer is :math:`z = -(B + \lambda I)^{-1} b` where
  :math:`\lambda \ge \max(0, -\theta_{\min})` solves the secular equation
  :math:`\lVert z(\lambda)\rVert = 2\lambda / M`; the root is bracketed in
  :math:`[\max(0,-\theta_{\min}),\ \max(0,-\theta_{\min}) + \sqrt{M\lVert b\rVert/2}]` and found by
  ``iters`` bisection steps (default 60 in float32, 100 in float64), taking the upper end so that
  :math:`B + \lambda I \succ 0`. At the solution :math:`(B+\lambda I)z = -b`, :math:`\lambda =
  M\lVert z\rVert/2` and :math:`B + \lambda I \succeq 0` (the global optimality conditions).

  Args:
    b: linear term, shape (m,).
    B: symmetric matrix, shape (m, m).
    M: cubic regularization (> 0), M/6 convention (Nesterov-Polyak).
    iters: bisection steps (static).

  Example:
    >>> import jax.numpy as jnp
    >>> sol = solve_cubic_subproblem(jnp.array([1.0, 0.0]), jnp.eye(2), 1e-8)
    >>> [round(float(v), 4) for v in sol.z]   # ~ Newton step -B^{-1} b
    [-1.0, 0.0]
  """
  dtype = jnp.promote_types(jnp.result_type(b), jnp.float32)
  b = jnp.asarray(b, dtype)
  theta, Q = jnp.linalg.eigh(jnp.asarray(B, dtype))
  iters = _default_secular_iters(dtype) if iters is None else iters
  y, lam, model = _solve_eig(theta, Q.T @ b, jnp.asarray(M, dtype), iters)
  return CubicSubproblemSolution(Q @ y, lam, model)


# ----------------------------------------------------------------------------- transform
class ScaleByKrylovCubicNewtonState(NamedTuple):
  """State of :func:`scale_by_krylov_cubic_newton` (all scalars).

  Attributes:
    count: int32 step counter.
    M: the cubic regularization after the last step (adapted by backtracking).
    lam: the subproblem multiplier ``M |z| / 2`` of the last trial.
    model_decrease: ``-model(z) >= 0``, the predicted decrease of the last trial.
    value: ``f(x)`` at the params the last step started from.
    grad_norm: ``|g|`` there.
    num_backtracks: how many trials the last step rejected before accepting (or giving up).
    accepted: whether the last step was accepted (False: params unchanged).
    hvp_count: Hessian-vector products used so far (m per step; int32, saturating).
  """

  count: jax.Array
  M: jax.Array
  lam: jax.Array
  model_decrease: jax.Array
  value: jax.Array
  grad_norm: jax.Array
  num_backtracks: jax.Array
  accepted: jax.Array
  hvp_count: jax.Array


def _compute_dtype(params) -> Any:
  leaves = jax.tree.leaves(params)
  if not leaves:
    return jnp.float32
  return jnp.promote_types(jnp.result_type(*[jnp.dtype(l.dtype) for l in leaves]), jnp.float32)


def _missing_obj_fn():
  raise ValueError(
      "krylov_cubic_newton needs the objective: call "
      "`tx.update(grads, state, params, obj_fn=loss_fn)` with `obj_fn(params) -> scalar loss` "
      "(the same function the gradient came from; close over the batch)."
  )


def _make_step(subspace_dim, init_M, shrink, grow, max_backtracks, min_M, max_M, reortho,
               secular_iters, adaptive, breakdown_tol):
  """The shared step: ``(obj_fn, params, grad or None, state) -> (updates, state, grad_flat)``."""

  def step(obj_fn, params, grad, state):
    flat_p, unravel = ravel_pytree(params)
    dtype = state.M.dtype
    iters = _default_secular_iters(dtype) if secular_iters is None else secular_iters

    def to_tree(v):
      return unravel(v.astype(flat_p.dtype))

    def flat(tree):
      return ravel_pytree(tree)[0].astype(dtype)

    (f, g_obj), lin = jax.linearize(jax.value_and_grad(obj_fn), params)
    f = jnp.asarray(f, dtype)
    g = flat(g_obj) if grad is None else flat(grad)
    gnorm = jnp.linalg.norm(g)

    basis, tridiag = lanczos(lambda v: flat(lin(to_tree(v))[1]), g, subspace_dim,
                             reortho=reortho, breakdown_tol=breakdown_tol)
    theta, Q = jnp.linalg.eigh(tridiag)
    gamma = gnorm * Q[0, :]  # Q^T (V g) with V g = |g| e_1

    def trial(M):
      y, lam, model = _solve_eig(theta, gamma, M, iters)
      step_tree = to_tree(basis.T @ (Q @ y))
      new_params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, step_tree)
      f_new = jnp.asarray(obj_fn(new_params), dtype)
      return step_tree, lam, model, f_new

    M_prev = state.M
    zeros = jax.tree.map(jnp.zeros_like, params)
    if adaptive:
      M0 = jnp.clip(shrink * M_prev, min_M, max_M).astype(dtype)

      def cond(c):
        t, _, done, *_ = c
        return (~done) & (t < max_backtracks)

      def body(c):
        t, M, _, _, _, _, _ = c
        step_tree, lam, model, f_new = trial(M)
        ok = jnp.isfinite(f_new) & (f_new <= f + model)
        M_next = jnp.where(ok, M, jnp.minimum(M * grow, max_M)).astype(dtype)
        return t + 1, M_next, ok, step_tree, lam, model, f_new

      init = (jnp.zeros([], jnp.int32), M0, jnp.array(False), zeros, jnp.zeros([], dtype),
              jnp.zeros([], dtype), f)
      t, M, accepted, step_tree, lam, model, _ = jax.lax.while_loop(cond, body, init)
      num_bt = jnp.where(accepted, t - 1, t)
    else:
      M = M_prev
      step_tree, lam, model, _ = trial(M)
      accepted = jnp.array(True)
      num_bt = jnp.zeros([], jnp.int32)

    updates = jax.tree.map(lambda s, z: jnp.where(accepted, s, z), step_tree, zeros)
    hvps = jnp.minimum(state.hvp_count, _INT32_MAX - subspace_dim) + subspace_dim
    new_state = ScaleByKrylovCubicNewtonState(
        count=optax.safe_increment(state.count),
        M=jnp.asarray(M, dtype),
        lam=jnp.asarray(lam, dtype),
        model_decrease=jnp.asarray(-model, dtype),
        value=f,
        grad_norm=gnorm,
        num_backtracks=jnp.asarray(num_bt, jnp.int32),
        accepted=jnp.asarray(accepted, jnp.bool_),
        hvp_count=jnp.asarray(hvps, jnp.int32),
    )
    return updates, new_state, g

  return step


def scale_by_krylov_cubic_newton(
    subspace_dim: int = 10,
    init_M: float = 2e-3,
    shrink: float = 0.5,
    grow: float = 2.0,
    max_backtracks: int = 20,
    min_M: float = 1e-12,
    max_M: float = 1e12,
    reortho: str = "full",
    secular_iters: int | None = None,
    adaptive: bool = True,
    breakdown_tol: float | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Krylov cubic regularized Newton step (the whole optimizer; needs ``obj_fn``).

  With :math:`g = \nabla f(x)` (the incoming ``updates``) and Hessian :math:`H` (via
  Hessian-vector products of ``obj_fn``), each step

  1. runs m Lanczos steps on :math:`H` from :math:`g` (full reorthogonalization):
     :math:`V \in \mathbb R^{m\times d}` orthonormal rows spanning
     :math:`\mathcal K_m(H, g)`, :math:`T = VHV^\top` tridiagonal, :math:`Vg = \lVert g\rVert e_1`;
  2. solves the subspace cubic model
     :math:`z^* = \arg\min_z \lVert g\rVert z_1 + \tfrac12 z^\top T z + \tfrac M6 \lVert z\rVert^3`
     (eigendecomposition of T, bisection on the secular equation);
  3. adapts M: starting from :math:`\max(\text{shrink}\cdot M_{k-1}, M_{\min})`, multiply by
     ``grow`` until :math:`f(x + V^\top z^*) \le f(x) + m_M(z^*)` (the actual decrease is at
     least the predicted one), at most ``max_backtracks`` trials. If no trial passes, the step
     is **rejected** (zero update, the enlarged M kept) instead of accepting an increase, as
     the reference code does after its 20 trials; so f never increases.

  The update is :math:`V^\top z^*` (positive sign: ``optax.apply_updates`` adds it). Do not
  chain a learning rate or other transforms after it: the acceptance test is done at
  ``x + V^T z``. Uses m HVPs (forward-over-reverse, the gradient linearized once per step),
  one value-and-gradient and one objective value per trial. The model uses the paper's M/6
  convention; the reference code's sigma/3 convention has ``M = 2 sigma``.

  Args:
    subspace_dim: m, the Krylov dimension (static int >= 1). Paper: 10.
    init_M: M before the first step (> 0); the first trial uses ``shrink * init_M``. Default
      2e-3 (the reference code's sigma_0 = 1e-3).
    shrink: factor applied to the previous M at the start of a step, in (0, 1]. Paper code: 0.5.
    grow: factor applied after a failed trial (>= 1). Paper code: 2.
    max_backtracks: trials per step (static int >= 1). Paper code: 20 (then accepts anyway;
      here: rejects).
    min_M, max_M: clamp on M (min_M > 0). Defaults 1e-12 and 1e12 (ours).
    reortho: ``"full"`` (default; needed in float32) or ``"none"`` (the reference, float64).
    secular_iters: bisection steps of the subproblem (static); None: 60 in float32, 100 in
      float64.
    adaptive: static. True (default): the backtracking above. False: the theory version, a
      fixed ``M = init_M`` and every step accepted.
    breakdown_tol: Lanczos breakdown threshold (see :func:`optzoo.curvature.lanczos`).

  Returns:
    An ``optax.GradientTransformationExtraArgs``. ``update(updates, state, params, *, obj_fn)``:
    ``updates`` is the gradient of ``obj_fn`` at ``params``; unknown keywords are ignored.
    Work is done in at least float32 (flattened params); updates have the params' dtypes.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> loss = lambda x: jnp.sum((x - 1.0) ** 2) + 0.1 * jnp.sum(x ** 4)
    >>> tx = optzoo.scale_by_krylov_cubic_newton(subspace_dim=3)
    >>> params = jnp.zeros(3)
    >>> state = tx.init(params)
    >>> for _ in range(10):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
    ...   params = optax.apply_updates(params, updates)
    >>> bool(jnp.linalg.norm(jax.grad(loss)(params)) < 1e-4)
    True

  Reference: Jiang et al., Krylov Cubic Regularized Newton: A Subspace Second-Order Method with
  Dimension-Free Convergence Rate, AISTATS 2024, arXiv 2401.03058.
  """
  subspace_dim = checks.check_int("subspace_dim", subspace_dim, 1)
  max_backtracks = checks.check_int("max_backtracks", max_backtracks, 1)
  if secular_iters is not None:
    secular_iters = checks.check_int("secular_iters", secular_iters, 1)
  checks.check_choice("reortho", reortho, ("full", "none"))
  checks.check_choice("adaptive", adaptive, (True, False))
  checks.check_range("init_M", init_M, 0.0, low_open=True)
  checks.check_range("shrink", shrink, 0.0, 1.0, low_open=True)
  checks.check_range("grow", grow, 1.0)
  checks.check_range("min_M", min_M, 0.0, low_open=True)
  checks.check_range("max_M", max_M, 0.0, low_open=True)
  lo, hi = checks.concrete_float(min_M), checks.concrete_float(max_M)
  if lo is not None and hi is not None and lo > hi:
    raise ValueError(f"min_M={min_M!r} must not exceed max_M={max_M!r}.")
  if breakdown_tol is not None:
    checks.check_range("breakdown_tol", breakdown_tol, 0.0)

  step = _make_step(subspace_dim, init_M, shrink, grow, max_backtracks, min_M, max_M, reortho,
                    secular_iters, adaptive, breakdown_tol)
  # One compiled program per objective when called eagerly (inlined under an outer jit).
  jitted_step = jax.jit(step, static_argnums=0)

  def init_fn(params):
    dtype = _compute_dtype(params)
    zero = jnp.zeros([], dtype)
    return ScaleByKrylovCubicNewtonState(
        count=jnp.zeros([], jnp.int32),
        M=jnp.asarray(init_M, dtype),
        lam=zero,
        model_decrease=zero,
        value=zero,
        grad_norm=zero,
        num_backtracks=jnp.zeros([], jnp.int32),
        accepted=jnp.array(False),
        hvp_count=jnp.zeros([], jnp.int32),
    )

  def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
    del extra_args
    if obj_fn is None:
      _missing_obj_fn()
    if params is None:
      raise ValueError("krylov_cubic_newton needs params: call tx.update(grads, state, params, "
                       "obj_fn=loss_fn).")
    checks.check_same_structure(updates, params)
    try:
      hash(obj_fn)
      run = jitted_step
    except TypeError:
      run = step
    new_updates, new_state, _ = run(obj_fn, params, updates, state)
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _resolve_mask(mask, params):
  if mask is None:
    return jax.tree.map(lambda _: True, params)
  return mask(params) if callable(mask) else mask


def krylov_cubic_newton(
    subspace_dim: int = 10,
    init_M: float = 2e-3,
    shrink: float = 0.5,
    grow: float = 2.0,
    max_backtracks: int = 20,
    min_M: float = 1e-12,
    max_M: float = 1e12,
    reortho: str = "full",
    secular_iters: int | None = None,
    adaptive: bool = True,
    breakdown_tol: float | None = None,
    weight_decay: float = 0.0,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Krylov cubic regularized Newton, with optional (coupled) L2 weight decay.

  Minimizes :math:`F(x) = f(x) + \tfrac{\lambda_{wd}}2 \lVert x_{\text{mask}}\rVert^2` with
  :func:`scale_by_krylov_cubic_newton`: the gradient becomes :math:`g + \lambda_{wd} x` and
  ``obj_fn`` becomes F, so the acceptance test and the Krylov space see the regularizer. This
  differs from the zoo's usual ``optax.add_decayed_weights`` chain on purpose: a decoupled decay
  added after the step would void the acceptance test (the paper has no weight decay; its
  experiments are unregularized). There is no learning rate (the cubic model fixes the step
  length), so the registry entry has ``lr_arg=None``.

  Args:
    subspace_dim, init_M, shrink, grow, max_backtracks, min_M, max_M, reortho, secular_iters,
      adaptive, breakdown_tol: as :func:`scale_by_krylov_cubic_newton` (paper: m = 10).
    weight_decay: L2 coefficient (>= 0), default 0 (paper: none).
    mask: pytree of bools (or callable params -> pytree) selecting the decayed params.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> loss = lambda w: jnp.sum(jnp.logaddexp(0.0, -jnp.array([1.0, 2.0]) @ w.reshape(2, 1)))
    >>> tx = optzoo.krylov_cubic_newton(subspace_dim=2, weight_decay=0.1)
    >>> w = jnp.zeros(2)
    >>> state = tx.init(w)
    >>> updates, state = tx.update(jax.grad(loss)(w), state, w, obj_fn=loss)
    >>> w = optax.apply_updates(w, updates)
    >>> bool(state.accepted), bool(loss(w) < loss(jnp.zeros(2)))
    (True, True)

  Reference: Jiang et al., arXiv 2401.03058 (AISTATS 2024).
  """
  checks.check_range("weight_decay", weight_decay, 0.0)
  core = scale_by_krylov_cubic_newton(
      subspace_dim=subspace_dim, init_M=init_M, shrink=shrink, grow=grow,
      max_backtracks=max_backtracks, min_M=min_M, max_M=max_M, reortho=reortho,
      secular_iters=secular_iters, adaptive=adaptive, breakdown_tol=breakdown_tol)

  def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
    del extra_args
    if obj_fn is None:
      _missing_obj_fn()
    if params is None:
      return core.update(updates, state, params, obj_fn=obj_fn)
    m = _resolve_mask(mask, params)

    def reg(p):
      terms = jax.tree.map(lambda x, on: jnp.sum(jnp.square(x)) if on else 0.0, p, m)
      return 0.5 * weight_decay * sum(jax.tree.leaves(terms))

    def full_obj(p):
      return obj_fn(p) + reg(p)

    checks.check_same_structure(updates, params)
    grads = jax.tree.map(
        lambda g, x, on: (g + weight_decay * x).astype(g.dtype) if on else g, updates, params, m)
    return core.update(grads, state, params, obj_fn=full_obj)

  return optax.GradientTransformationExtraArgs(core.init, update_fn)


# ----------------------------------------------------------------------------- solver
class KrylovInfo(NamedTuple):
  """What :func:`minimize` did.

  Attributes:
    iterations: steps taken.
    hvps: Hessian-vector products used in total (m per step).
    converged: whether ``|grad| <= tol`` was reached.
    values: f at x_0, ..., x_iterations (numpy, length iterations + 1).
    grad_norms: |grad f| at the same points.
    M: the regularization after each step (length iterations).
    accepted: whether each step was accepted.
    hvp_counts: cumulative HVPs after each step.
    times: cumulative wall-clock seconds after each step (the first includes compilation
      unless the step was warmed up).
  """

  iterations: int
  hvps: int
  converged: bool
  values: np.ndarray
  grad_norms: np.ndarray
  M: np.ndarray
  accepted: np.ndarray
  hvp_counts: np.ndarray
  times: np.ndarray


def minimize(
    fun: Callable[[Any], jax.Array],
    x0: Any,
    subspace_dim: int = 10,
    max_iters: int = 100,
    tol: float = 1e-6,
    warmup: bool = True,
    **kwargs,
) -> tuple[Any, KrylovInfo]:
  """Minimizes ``fun`` from ``x0`` with Krylov cubic regularized Newton.

  A jitted step (value, gradient and m HVPs from one linearization, the subspace cubic model,
  backtracking on M) in a Python loop that stops when ``|grad f(x_k)| <= tol`` or after
  ``max_iters`` steps. For deterministic (full-batch) problems, convex ones in the paper.

  Args:
    fun: ``x -> scalar``, jittable; ``x0`` any pytree of float arrays.
    x0: starting point.
    subspace_dim: m (paper: 10).
    max_iters: step limit.
    tol: gradient-norm tolerance (Euclidean norm over all leaves).
    warmup: compile the step before timing, so ``info.times`` excludes compilation.
    **kwargs: any other argument of :func:`scale_by_krylov_cubic_newton` (init_M, ...).

  Returns:
    ``(x, info)`` with ``info`` a :class:`KrylovInfo`.

  Example:
    >>> import jax.numpy as jnp
    >>> from optzoo import krylov
    >>> x, info = krylov.minimize(lambda x: jnp.sum(jnp.cosh(x - 2.0)), jnp.zeros(4),
    ...                           subspace_dim=2, tol=1e-5)
    >>> info.converged, [round(float(v), 3) for v in x]
    (True, [2.0, 2.0, 2.0, 2.0])
  """
  tx = scale_by_krylov_cubic_newton(subspace_dim=subspace_dim, **kwargs)
  step = _make_step(subspace_dim, *_step_args(kwargs))

  @jax.jit
  def jstep(x, state):
    updates, state, g = step(fun, x, None, state)
    done = jnp.linalg.norm(g) <= tol
    updates = jax.tree.map(lambda u: jnp.where(done, jnp.zeros_like(u), u), updates)
    return optax.apply_updates(x, updates), state, done

  state = tx.init(x0)
  if warmup:
    jax.block_until_ready(jstep(x0, state))
  x = x0
  values, gnorms, Ms, acc, hvps, times = [], [], [], [], [], []
  converged = False
  t0 = time.perf_counter()
  for _ in range(max_iters):
    x_new, state, done = jstep(x, state)
    done = bool(done)
    values.append(float(state.value))
    gnorms.append(float(state.grad_norm))
    if done:
      converged = True
      break
    x = x_new
    times.append(time.perf_counter() - t0)
    Ms.append(float(state.M))
    acc.append(bool(state.accepted))
    hvps.append(int(state.hvp_count))
  else:
    fx, gx = jax.value_and_grad(fun)(x)
    values.append(float(fx))
    gnorms.append(float(jnp.linalg.norm(ravel_pytree(gx)[0])))
    converged = gnorms[-1] <= tol
  info = KrylovInfo(
      iterations=len(Ms),
      hvps=hvps[-1] if hvps else 0,
      converged=converged,
      values=np.asarray(values),
      grad_norms=np.asarray(gnorms),
      M=np.asarray(Ms),
      accepted=np.asarray(acc, bool),
      hvp_counts=np.asarray(hvps, np.int64),
      times=np.asarray(times),
  )
  return x, info


_STEP_DEFAULTS = (
    ("init_M", 2e-3), ("shrink", 0.5), ("grow", 2.0), ("max_backtracks", 20), ("min_M", 1e-12),
    ("max_M", 1e12), ("reortho", "full"), ("secular_iters", None), ("adaptive", True),
    ("breakdown_tol", None),
)


def _step_args(kwargs):
  unknown = set(kwargs) - {k for k, _ in _STEP_DEFAULTS}
  if unknown:
    raise TypeError(f"minimize got unexpected keyword arguments {sorted(unknown)}")
  return tuple(kwargs.get(k, v) for k, v in _STEP_DEFAULTS)
