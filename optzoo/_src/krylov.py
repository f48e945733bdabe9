"""Krylov cubic regularized Newton (Jiang, Raman, Sabach, Mokhtari, Hong, Cevher; arXiv 2401.03058).

A second-order method for (convex) deterministic objectives: each step minimizes the cubic
regularized Newton model restricted to the m-dimensional Krylov space spanned by the gradient
and m - 1 Hessian-vector products, with an adaptive regularization M (backtracking). The
convergence rate O(1/(mk) + 1/k^2) does not depend on the dimension.

It is a whole optimizer (the step is ``x + V^T z`` with an acceptance test on the objective),
so it takes the objective as the ``obj_fn`` keyword of ``update``, like ``optax.contrib.sophia``,
and must not be chained with a learning rate. :func:`krylov_cubic_newton_minimize` is a solver
entry point for deterministic problems.
The array-level pieces (Lanczos, the cubic subproblem, the backtracking on M) are public in
``optzoo.curvature``.
"""

from __future__ import annotations

import inspect
import time
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from optzoo import curvature as _curvature
from optzoo._src import alias
from optzoo._src.base import checks, masking, trees

__all__ = [
    "KrylovInfo",
    "ScaleByKrylovCubicNewtonState",
    "krylov_cubic_newton",
    "krylov_cubic_newton_minimize",
    "scale_by_krylov_cubic_newton",
]

_INT32_MAX = np.iinfo(np.int32).max


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
  # the widest leaf dtype, at least float32
  return jnp.dtype(jnp.float64 if any(jnp.dtype(l.dtype) == jnp.float64 for l in leaves)
                   else jnp.float32)


def _is_low_precision(params, dtype) -> bool:
  """Whether some leaf is narrower than the compute dtype (bfloat16 / float16 params)."""
  return any(jnp.dtype(l.dtype).itemsize < jnp.dtype(dtype).itemsize
             for l in jax.tree.leaves(params))


def _widen(params, dtype):
  """``params`` with every leaf narrower than ``dtype`` cast up to it (the same point)."""
  return jax.tree.map(lambda l: l.astype(trees.promote(l.dtype, dtype)), params)


def _next_state(state, *, subspace_dim, dtype, M, lam, model, value, grad_norm, num_backtracks,
                accepted) -> ScaleByKrylovCubicNewtonState:
  hvps = jnp.minimum(state.hvp_count, _INT32_MAX - subspace_dim) + subspace_dim
  return ScaleByKrylovCubicNewtonState(
      count=optax.safe_increment(state.count),
      M=jnp.asarray(M, dtype),
      lam=jnp.asarray(lam, dtype),
      model_decrease=jnp.asarray(-model, dtype),
      value=value,
      grad_norm=grad_norm,
      num_backtracks=jnp.asarray(num_backtracks, jnp.int32),
      accepted=jnp.asarray(accepted, jnp.bool_),
      hvp_count=jnp.asarray(hvps, jnp.int32),
  )


class _Config(NamedTuple):
  """The step's settings, validated (static ints as Python ints)."""

  subspace_dim: int
  shrink: Any
  grow: Any
  max_backtracks: int
  min_M: Any
  max_M: Any
  reortho: str
  secular_iters: int | None
  adaptive: bool
  breakdown_tol: float | None


def _make_step(cfg: _Config):
  """The shared step: ``(obj_fn, params, grad or None, state) -> (updates, state, grad_flat)``."""

  def step(obj_fn, params, grad, state):
    flat_p, unravel = ravel_pytree(params)
    dtype = state.M.dtype

    def to_tree(v):
      return unravel(v.astype(flat_p.dtype))

    def flat(tree):
      return ravel_pytree(tree)[0].astype(dtype)

    # The model (value, gradient, HVPs) and the acceptance test are evaluated at the params
    # with every narrower leaf widened to the compute dtype (the same point): a loss computed
    # in bfloat16 cannot register the small decreases the test needs, and the rounding noise
    # of a bfloat16 gradient makes the model promise decreases that do not exist; M would
    # climb to max_M and every step be rejected. So with narrow params the incoming gradient
    # is replaced by obj_fn's at the widened point. Trial points are rounded to the leaves'
    # dtypes first, as optax.apply_updates rounds them.
    wide = _widen(params, dtype)
    flat_w, unravel_w = ravel_pytree(wide)
    (f, g_obj), lin = jax.linearize(jax.value_and_grad(obj_fn), wide)
    f = jnp.asarray(f, dtype)
    use_obj_grad = grad is None or _is_low_precision(params, dtype)
    g = flat(g_obj) if use_obj_grad else flat(grad)
    gnorm = jnp.linalg.norm(g)

    def hvp(v):
      return flat(lin(unravel_w(v.astype(flat_w.dtype)))[1])

    basis, tridiag = _curvature.lanczos(hvp, g, cfg.subspace_dim,
                                       reortho=cfg.reortho, breakdown_tol=cfg.breakdown_tol)
    theta, Q = jnp.linalg.eigh(tridiag)
    gamma = gnorm * Q[0, :]  # Q^T (V g) with V g = |g| e_1

    def to_step(y):  # eigenbasis of T -> Krylov basis -> params space
      return to_tree(basis.T @ (Q @ y))

    def try_step(y):
      step_tree = to_step(y)
      new_params = jax.tree.map(lambda p, u: (p + u).astype(p.dtype), params, step_tree)
      return step_tree, jnp.asarray(obj_fn(_widen(new_params, dtype)), dtype)

    if cfg.adaptive:
      step_tree, M, lam, model, accepted, num_bt = _curvature.backtrack_cubic_step(
          theta, gamma, f, state.M, try_step, shrink=cfg.shrink, grow=cfg.grow,
          max_backtracks=cfg.max_backtracks, min_M=cfg.min_M, max_M=cfg.max_M,
          secular_iters=cfg.secular_iters)
    else:
      M = state.M
      y, lam, model = _curvature.solve_cubic_subproblem_diagonal(theta, gamma, M,
                                                                 cfg.secular_iters)
      step_tree = to_step(y)
      accepted = jnp.array(True)
      num_bt = jnp.zeros([], jnp.int32)

    zeros = jax.tree.map(jnp.zeros_like, params)
    updates = jax.tree.map(lambda s, z: jnp.where(accepted, s, z), step_tree, zeros)
    new_state = _next_state(state, subspace_dim=cfg.subspace_dim, dtype=dtype, M=M, lam=lam,
                            model=model, value=f, grad_norm=gnorm, num_backtracks=num_bt,
                            accepted=accepted)
    return updates, new_state, g

  return step


class _Objective:
  """An objective traced to a jaxpr, without its constants: the static argument of the eager
  step's ``jax.jit``. Two objectives with the same program (the same loss closed over another
  batch of the same shapes and dtypes) compare equal, so they share one compiled step and
  their constants (the batch) are passed as arguments.

  The program is compared by its printed form plus the constants' types; Python numbers the
  objective captures are literals of the program (another value, another program). Custom
  derivative rules print by name, so two rules of the same name and primal are taken as one.
  """

  __slots__ = ("jaxpr", "key")

  def __init__(self, jaxpr, key):
    self.jaxpr, self.key = jaxpr, key

  def __hash__(self):
    return hash(self.key)

  def __eq__(self, other):
    return isinstance(other, _Objective) and self.key == other.key

  def bind(self, consts):
    """``params -> loss``: the program evaluated with these constants."""

    def obj_fn(params):
      return jax.core.eval_jaxpr(self.jaxpr, consts, *jax.tree.leaves(params))[0]

    return obj_fn


def _trace_objective(obj_fn, params) -> tuple[_Objective, list[Any]]:
  """``(program, constants)`` of ``obj_fn`` at ``params``' shapes (one trace, no compile)."""
  leaves, treedef = jax.tree.flatten(params)
  closed = jax.make_jaxpr(lambda *xs: obj_fn(jax.tree.unflatten(treedef, xs)))(*leaves)
  consts = list(closed.consts)
  key = (str(closed.jaxpr), treedef, tuple(jax.typeof(c) for c in consts))
  return _Objective(closed.jaxpr, key), consts


def _is_traced(*trees_) -> bool:
  return any(isinstance(x, jax.core.Tracer) for t in trees_ for x in jax.tree.leaves(t))


def _check_args(*, subspace_dim, init_M, shrink, grow, max_backtracks, min_M, max_M, reortho,
                secular_iters, adaptive, breakdown_tol) -> _Config:
  """Validates the arguments; returns the step's settings."""
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
  return _Config(subspace_dim=subspace_dim, shrink=shrink, grow=grow,
                 max_backtracks=max_backtracks, min_M=min_M, max_M=max_M, reortho=reortho,
                 secular_iters=secular_iters, adaptive=adaptive, breakdown_tol=breakdown_tol)


def _init_state(params, init_M) -> ScaleByKrylovCubicNewtonState:
  checks.check_float_leaves("krylov_cubic_newton", params,
                           complex_reason=masking.REAL_HVP_REASON,
                           remedy=masking.FROZEN_REMEDY)
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


def scale_by_krylov_cubic_newton(
    subspace_dim: int = 10,
    init_M: float = 2e-3,
    shrink: float = 0.5,
    grow: float = 2.0,
    max_backtracks: int = 20,
    min_M: float = 1e-12,
    max_M: float = 1e12,
    *,
    reortho: Literal["full", "none"] = "full",
    secular_iters: int | None = None,
    adaptive: bool = True,
    breakdown_tol: float | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Krylov cubic regularized Newton step (the whole optimizer; needs ``obj_fn``).

  With :math:`g = \nabla f(x)` (the incoming ``updates``) and Hessian :math:`H` (via
  Hessian-vector products of ``obj_fn``), each step

  1. runs m Lanczos steps on :math:`H` from :math:`g` (:func:`optzoo.curvature.lanczos`, full
     reorthogonalization): :math:`V \in \mathbb R^{m\times d}` orthonormal rows spanning
     :math:`\mathcal K_m(H, g)`, :math:`T = VHV^\top` tridiagonal, :math:`Vg = \lVert g\rVert e_1`;
  2. solves the subspace cubic model :math:`z^* = \arg\min_z m_M(z)`,
     :math:`m_M(z) = \lVert g\rVert z_1 + \tfrac12 z^\top T z + \tfrac M6 \lVert z\rVert^3`
     (eigendecomposition of T, bisection on the secular equation:
     :func:`optzoo.curvature.solve_cubic_subproblem_diagonal`);
  3. adapts M (:func:`optzoo.curvature.backtrack_cubic_step`): starting from
     :math:`\operatorname{clip}(\text{shrink}\cdot M_{k-1}, M_{\min}, M_{\max})`, multiply by
     ``grow`` (capped at :math:`M_{\max}`) until :math:`f(x + V^\top z^*) \le f(x) + m_M(z^*)`
     (the actual decrease is at least the predicted one), at most ``max_backtracks`` trials.
     If no trial passes, the step is **rejected** (zero update, the enlarged M kept) instead of
     accepting an increase, as the authors' code does after its 20 trials; so f never increases.

  The update is :math:`V^\top z^*` (positive sign: ``optax.apply_updates`` adds it). Do not
  chain a learning rate or other transforms after it: the acceptance test is done at
  ``x + V^T z``. Uses m HVPs (forward-over-reverse, the gradient linearized once per step),
  one value-and-gradient and one objective value per trial. The model uses the paper's M/6
  convention; the authors' code's sigma/3 convention has ``M = 2 sigma``.

  ``update(updates, state, params, *, obj_fn)``: ``updates`` is the gradient of ``obj_fn``
  (params -> scalar loss) at ``params``; a missing ``obj_fn`` or ``params`` is a
  ``ValueError``; other keywords are ignored. Called eagerly (no outer ``jax.jit``), ``update``
  traces ``obj_fn`` to a jaxpr and runs one compiled step per *program*: a fresh closure of
  the same loss over a new batch of the same shapes reuses the compiled step (its arrays are
  passed as arguments), so nothing recompiles from step to step; Python numbers the closure
  captures are part of the program. Under an outer ``jax.jit`` the step is traced into the
  caller's program. Inside ``optax.masked`` / ``optax.partition`` pass
  ``obj_fn=optzoo.frozen_objective(loss_fn, params)`` (a plain ``obj_fn`` there is a
  ``ValueError`` saying so).

  Inputs: real floating-point leaves (integer and complex leaves are a ``TypeError`` at
  ``init`` naming the leaf); a gradient whose shape differs from its param's is a
  ``ValueError`` naming the leaf; an empty pytree gives an empty update.

  Args:
    subspace_dim: m, the Krylov dimension (static int >= 1). Default 10 (paper).
    init_M: M before the first step (> 0); the first trial uses ``shrink * init_M``. Default
      2e-3 (the authors' code's sigma_0 = 1e-3).
    shrink: factor applied to the previous M at the start of a step, in (0, 1]. Default 0.5
      (authors' code).
    grow: factor applied after a failed trial (>= 1). Default 2.0 (authors' code).
    max_backtracks: trials per step (static int >= 1). Default 20 (authors' code, which then
      accepts anyway; here: rejects).
    min_M: lower clamp of M (> 0). Default 1e-12 (ours).
    max_M: upper clamp of M (>= min_M). Default 1e12 (ours).
    reortho: ``"full"`` (default; needed in float32) or ``"none"`` (the authors' code, float64).
    secular_iters: bisection steps of the subproblem (static int >= 1). Default None: 60 in
      float32, 100 in float64.
    adaptive: static. True (default): the backtracking above. False: the theory version, a
      fixed ``M = init_M`` and every step accepted.
    breakdown_tol: Lanczos breakdown threshold. Default None: see
      :func:`optzoo.curvature.lanczos`.

  Low-precision params (bfloat16, float16): ``obj_fn``'s value, gradient and HVPs, and the
  acceptance test, are evaluated at the params widened to float32 (the same point; trial
  points are rounded to the params' dtypes first, as ``optax.apply_updates`` rounds them), and
  the incoming gradient is replaced by ``obj_fn``'s gradient there: in bfloat16 the test could
  not see the small decreases it needs, and the gradient's rounding noise makes the model
  promise decreases that do not exist. So ``obj_fn`` is called with float32 leaves.

  Returns:
    An ``optax.GradientTransformationExtraArgs``. Work is done in at least float32 (flattened
    params); updates have the params' dtypes.

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

  References:
    Jiang et al., `Krylov Cubic Regularized Newton: A Subspace Second-Order Method with
    Dimension-Free Convergence Rate <https://arxiv.org/abs/2401.03058>`_, 2024
  """
  cfg = _check_args(
      subspace_dim=subspace_dim, init_M=init_M, shrink=shrink, grow=grow,
      max_backtracks=max_backtracks, min_M=min_M, max_M=max_M, reortho=reortho,
      secular_iters=secular_iters, adaptive=adaptive, breakdown_tol=breakdown_tol)
  return _transform("scale_by_krylov_cubic_newton", init_M, cfg)


def _transform(who, init_M, cfg: _Config,
               regularize=None) -> optax.GradientTransformationExtraArgs:
  """The transformation; ``regularize(obj_fn, grads, params) -> (grads, obj_fn)`` (the
  alias's L2 term) is applied after the input checks."""
  step = _make_step(cfg)

  def eager_step(objective, consts, params, grad, state):
    return step(objective.bind(consts), params, grad, state)

  # Called eagerly, each update traces obj_fn to a jaxpr and runs this compiled step, keyed by
  # the program: a new closure of the same loss over a new batch reuses it (no recompilation,
  # no growing cache). Under an outer jit the step is traced into the caller's program.
  jitted_step = jax.jit(eager_step, static_argnums=0)

  def init_fn(params):
    return _init_state(params, init_M)

  def update_fn(updates, state, params=None, *, obj_fn=None, **extra_args):
    del extra_args
    checks.require_obj_fn(who, obj_fn, params)
    masking.check_objective(who, obj_fn, params)
    checks.check_leaf_shapes(who, updates, params)
    if regularize is not None:
      updates, obj_fn = regularize(obj_fn, updates, params)
    if _is_traced(updates, state, params):
      new_updates, new_state, _ = step(obj_fn, params, updates, state)
    else:
      # the step evaluates obj_fn at the widened params only (see _make_step)
      objective, consts = _trace_objective(obj_fn, _widen(params, state.M.dtype))
      new_updates, new_state, _ = jitted_step(objective, consts, params, updates, state)
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _l2_regularized(obj_fn, updates, params, weight_decay, mask):
  """``(g + wd x on masked leaves, x -> obj_fn(x) + wd/2 |x_masked|^2)``."""
  flags = trees.leaf_values(mask, params, default=True)

  def full_obj(p):
    value = obj_fn(p)
    terms = [jnp.sum(jnp.square(x.astype(trees.promote(value.dtype, x.dtype))))
             for x, on in zip(jax.tree.leaves(p), flags) if on]
    reg = sum(terms).astype(value.dtype) if terms else 0.0
    return value + 0.5 * weight_decay * reg

  treedef = jax.tree.structure(updates)
  grads = [(g + weight_decay * x).astype(g.dtype) if on else g
           for g, x, on in zip(jax.tree.leaves(updates), jax.tree.leaves(params), flags)]
  return jax.tree.unflatten(treedef, grads), full_obj


@alias.static_args("subspace_dim", "max_backtracks", "reortho", "secular_iters", "adaptive",
                   "breakdown_tol", "mask")
def krylov_cubic_newton(
    subspace_dim: int = 10,
    init_M: float = 2e-3,
    shrink: float = 0.5,
    grow: float = 2.0,
    max_backtracks: int = 20,
    min_M: float = 1e-12,
    max_M: float = 1e12,
    *,
    reortho: Literal["full", "none"] = "full",
    secular_iters: int | None = None,
    adaptive: bool = True,
    breakdown_tol: float | None = None,
    weight_decay: float = 0.0,
    mask: Any | Callable[[optax.Params], Any] | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Krylov cubic regularized Newton, with optional (coupled) L2 weight decay.

  Minimizes :math:`F(x) = f(x) + \tfrac{\lambda_{wd}}2 \lVert x_{\text{mask}}\rVert^2` with
  :func:`scale_by_krylov_cubic_newton`: the gradient becomes :math:`g + \lambda_{wd} x` and
  ``obj_fn`` becomes F, so the acceptance test and the Krylov space see the regularizer. This
  differs from the zoo's usual ``optax.add_decayed_weights`` chain on purpose: a decoupled decay
  added after the step would void the acceptance test (the paper has no weight decay; its
  experiments are unregularized). There is no learning rate: the cubic model fixes the step
  length. ``update(updates, state, params, *, obj_fn)`` as in
  :func:`scale_by_krylov_cubic_newton`.

  Args:
    subspace_dim: m, the Krylov dimension (static int >= 1). Default 10 (paper).
    init_M: M before the first step (> 0). Default 2e-3.
    shrink: factor on M at the start of a step, in (0, 1]. Default 0.5.
    grow: factor on M after a failed trial (>= 1). Default 2.0.
    max_backtracks: trials per step (static int >= 1). Default 20.
    min_M: lower clamp of M (> 0). Default 1e-12.
    max_M: upper clamp of M. Default 1e12.
    reortho: Lanczos reorthogonalization, ``"full"`` (default) or ``"none"``.
    secular_iters: bisection steps of the subproblem. Default None (60 in float32, 100 in
      float64).
    adaptive: backtracking on M (default True) or a fixed M (False).
    breakdown_tol: Lanczos breakdown threshold. Default None.
    weight_decay: L2 coefficient (>= 0). Default 0 (paper: none).
    mask: which params are decayed: a pytree of bools (the params' structure or a prefix of it)
      or a callable params -> such a pytree. Default None: all.

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

  References:
    Jiang et al., `Krylov Cubic Regularized Newton: A Subspace Second-Order Method with
    Dimension-Free Convergence Rate <https://arxiv.org/abs/2401.03058>`_, 2024
  """
  checks.check_range("weight_decay", weight_decay, 0.0)
  cfg = _check_args(
      subspace_dim=subspace_dim, init_M=init_M, shrink=shrink, grow=grow,
      max_backtracks=max_backtracks, min_M=min_M, max_M=max_M, reortho=reortho,
      secular_iters=secular_iters, adaptive=adaptive, breakdown_tol=breakdown_tol)

  def regularize(obj_fn, updates, params):
    return _l2_regularized(obj_fn, updates, params, weight_decay, mask)

  return _transform("krylov_cubic_newton", init_M, cfg, regularize)


# ----------------------------------------------------------------------------- solver
class KrylovInfo(NamedTuple):
  """What :func:`krylov_cubic_newton_minimize` did.

  Attributes:
    iterations: steps taken.
    hvps: Hessian-vector products used in total (m per step).
    converged: whether ``|grad| <= tol`` was reached.
    values: f at x_0, ..., x_iterations (numpy, length iterations + 1).
    grad_norms: ``|grad f|`` at the same points.
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


def _solver_step(fun, subspace_dim, tol, kwargs):
  """``(tx, jitted (x, state) -> (x_next, state, done))``; ``kwargs`` are the transform's."""
  bound = inspect.signature(scale_by_krylov_cubic_newton).bind(subspace_dim=subspace_dim, **kwargs)
  bound.apply_defaults()
  tx = scale_by_krylov_cubic_newton(*bound.args, **bound.kwargs)
  step = _make_step(_check_args(**bound.arguments))

  @jax.jit
  def jstep(x, state):
    updates, state, g = step(fun, x, None, state)
    done = jnp.linalg.norm(g) <= tol
    updates = jax.tree.map(lambda u: jnp.where(done, jnp.zeros_like(u), u), updates)
    return optax.apply_updates(x, updates), state, done

  return tx, jstep


def krylov_cubic_newton_minimize(
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
  backtracking on M: :func:`scale_by_krylov_cubic_newton`) in a Python loop that stops when
  ``|grad f(x_k)| <= tol`` or after ``max_iters`` steps. For deterministic (full-batch)
  problems, convex ones in the paper.

  Args:
    fun: ``x -> scalar``, jittable.
    x0: starting point, any pytree of float arrays.
    subspace_dim: m. Default 10 (paper).
    max_iters: step limit. Default 100.
    tol: gradient-norm tolerance (Euclidean norm over all leaves). Default 1e-6.
    warmup: compile the step before timing, so ``info.times`` excludes compilation. Default
      True.
    **kwargs: any other argument of :func:`scale_by_krylov_cubic_newton` (``init_M``, ...),
      with its default there; an unknown one is a ``TypeError``.

  Returns:
    ``(x, info)`` with ``info`` a :class:`KrylovInfo`.

  Example:
    >>> import jax.numpy as jnp, optzoo
    >>> x, info = optzoo.krylov_cubic_newton_minimize(
    ...     lambda x: jnp.sum(jnp.cosh(x - 2.0)), jnp.zeros(4), subspace_dim=2, tol=1e-5)
    >>> info.converged, [round(float(v), 3) for v in x]
    (True, [2.0, 2.0, 2.0, 2.0])

  References:
    Jiang et al., `Krylov Cubic Regularized Newton: A Subspace Second-Order Method with
    Dimension-Free Convergence Rate <https://arxiv.org/abs/2401.03058>`_, 2024
  """
  tx, jstep = _solver_step(fun, subspace_dim, tol, kwargs)
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
