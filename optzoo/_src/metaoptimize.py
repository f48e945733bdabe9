"""MetaOptimize: step sizes learned by a meta-gradient.

A wrapper around any learning-rate-free optax direction (``optax.scale_by_adam()``,
``optax.scale_by_lion()``, ``optzoo.scale_by_lion()``, ``optax.identity()`` for SGD, ...). It
owns the step size ``alpha = exp(beta)`` and the decoupled weight decay, and it learns
``beta`` (the log step sizes) online by descending an eligibility-trace estimate of the
gradient of the discounted sum of future losses with respect to ``beta``. This is the
paper's Hessian-free, 2x2-approximated algorithm (its Algorithm 3), which needs no extra
gradient or loss evaluation and one extra param-shaped vector (the trace ``h``).

>>> import jax.numpy as jnp, optax, optzoo
>>> tx = optzoo.metaoptimize(optax.scale_by_adam(), initial_learning_rate=1e-4)
>>> state = tx.init({"w": jnp.ones(3)})
>>> round(float(optzoo.metaoptimize_learning_rates(state)), 9)
0.0001

References:
  Sharifnassab et al., `MetaOptimize: A Framework for Optimizing Step Sizes and Other
  Meta-parameters <https://arxiv.org/abs/2402.02342>`_, 2024
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


from optzoo._src import alias
from optzoo._src.base import checks, trees

__all__ = [
    "MetaOptimizeState",
    "metaoptimize",
    "metaoptimize_learning_rates",
]

_GRANULARITIES = ("scalar", "per_leaf", "per_weight")
_METAS = ("lion", "adam", "rmsprop", "sgd")
_TIMINGS = ("current", "next")


class MetaOptimizeState(NamedTuple):
  """State of :func:`metaoptimize`.

  Attributes:
    count: int32 step counter (``optax.safe_increment``).
    log_learning_rate: ``beta``, the log step sizes (float32): a scalar (``'scalar'``), a
      pytree of scalars like the params (``'per_leaf'``), a params-shaped pytree
      (``'per_weight'``) or a dict ``{str(label): scalar}`` (label-defined blocks).
      :func:`metaoptimize_learning_rates` returns ``exp`` of it.
    trace: ``h``, the eligibility trace ``~ dw/dbeta`` (params-shaped, float32, or float64 for
      float64 params, unless ``trace_dtype`` says otherwise).
    meta_mu: first moment of the meta optimizer (like ``log_learning_rate``; None for SGD and
      RMSProp meta).
    meta_nu: second moment of the meta optimizer (Adam, RMSProp; None otherwise).
    meta_peak: the largest magnitude of the meta signal seen so far, like
      ``log_learning_rate`` (the safeguard's reference; None for SGD meta or without the
      safeguard).
    base_state: the state of the wrapped base direction.
  """

  count: jax.Array
  log_learning_rate: Any
  trace: optax.Updates
  meta_mu: Any | None
  meta_nu: Any | None
  meta_peak: Any | None
  base_state: optax.OptState


def metaoptimize_learning_rates(state: Any) -> Any:
  """The current step sizes ``exp(log_learning_rate)`` of a MetaOptimize state.

  ``state`` may be the state of :func:`metaoptimize` itself or of anything wrapping it
  (``optax.chain``, ``optax.inject_hyperparams``, ``optax.MultiSteps``, ``apply_if_finite``);
  the field is found with ``optax.tree.get(state, "log_learning_rate")``. The result has the
  structure of ``log_learning_rate`` (scalar, per-leaf pytree, params-shaped pytree or dict
  of labels).
  """
  return jax.tree.map(jnp.exp, optax.tree.get(state, "log_learning_rate"))


# --------------------------------------------------------------------------- base checks
#: Probe steps with a constant gradient (enough for optax.MultiSteps up to 16 micro-steps).
_PROBE_STEPS = 16
#: Params larger than this (in elements) are probed with every axis cut to _PROBE_AXIS.
_PROBE_MAX_SIZE = 1 << 20
_PROBE_AXIS = 8


def _probe_leaves(params):
  """Concrete probe params ``w`` and gradient ``g`` with the structure and dtypes of ``params``
  (their shapes, or every axis cut to ``_PROBE_AXIS`` when the params are large)."""
  leaves, treedef = jax.tree.flatten(params)
  shrink = sum(int(np.prod(np.shape(x))) for x in leaves) > _PROBE_MAX_SIZE
  ws, gs = [], []
  for i, x in enumerate(leaves):
    shape = tuple(min(d, _PROBE_AXIS) for d in np.shape(x)) if shrink else tuple(np.shape(x))
    k = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    w = 0.5 + 0.25 * np.cos(0.7 * k + i)   # nonzero weights: a decay shows up
    g = np.where(k % 2 == 0, 1.0, -1.0) * (1.0 + (k % 3)) * 0.1 + 0.05 * np.sin(k + i)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
      w = w * np.exp(0.3j * (k + 1))
      g = g * np.exp(1j * (0.4 * k + 0.2))
    ws.append(np.asarray(w).astype(x.dtype))
    gs.append(np.asarray(g).astype(x.dtype))
  return treedef.unflatten(ws), treedef.unflatten(gs)


def _probe_kwargs(grad, extra: bool) -> dict:
  """No extra arguments, or an ``obj_fn`` whose gradient is the probe gradient (for bases that
  need the objective)."""
  if not extra:
    return {}
  g_leaves = jax.tree.leaves(grad)

  def obj_fn(p):
    return sum((jnp.sum(jnp.real(jnp.conj(gi) * pi)) for gi, pi in
                zip(g_leaves, jax.tree.leaves(p))), jnp.zeros([], jnp.float32))

  return {"obj_fn": obj_fn}


def _leaf_stats(g, u):
  """Per leaf of one update ``u``: whether it is finite and not all zero, Re<g, u> (float32), and
  whether any entry is finite and nonzero."""
  wide = jnp.promote_types(u.dtype, jnp.float32)
  u, g = u.astype(wide), g.astype(wide)
  finite, nonzero = jnp.isfinite(u), u != 0
  return (jnp.all(finite) & jnp.any(nonzero),
          jnp.sum(jnp.real(jnp.conj(g) * u)).astype(jnp.float32),
          jnp.any(finite & nonzero))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _probe_program(base, extra, w, g):
  """The base stepped ``_PROBE_STEPS`` times from a fresh state at ``w``, once with the constant
  gradient ``g`` and once with a zero gradient, in one program: ``active`` and ``inner`` of the
  first run and ``moved`` of the second (:func:`_leaf_stats`), each ``(steps, leaves)``."""
  base = optax.with_extra_args_support(base)

  def run(grad):
    kwargs = _probe_kwargs(grad, extra)

    def body(state, _):
      u, state = base.update(grad, state, w, **kwargs)
      stats = [_leaf_stats(gi, ui) for gi, ui in zip(jax.tree.leaves(g), jax.tree.leaves(u))]
      return state, tuple(jnp.stack(s) for s in zip(*stats))

    return jax.lax.scan(body, base.init(w), None, length=_PROBE_STEPS)[1]

  active, inner, _ = run(g)
  return active, inner, run(jax.tree.map(jnp.zeros_like, g))[2]


def _probe_verdict(paths, active, inner, z_moved) -> str | None:
  """Why the probe's outcome refuses the base, or None. Arrays ``(..., steps, leaves)``: leading
  axes (a vmapped init) are judged point by point. The constant-gradient run counts the steps
  until every leaf has moved (a leaf never moved, like ``optax.set_to_zero``, is fine); the
  zero-gradient run is judged over as many steps."""
  active, inner, z_moved = (np.asarray(a).reshape((-1,) + np.shape(a)[-2:])
                            for a in (active, inner, z_moved))
  for act, inn, zm in zip(active, inner, z_moved):
    seen = np.zeros(act.shape[1], bool)
    steps = 0
    for step in range(act.shape[0]):
      against = np.flatnonzero(act[step] & (inn[step] < 0))
      if against.size:
        return (f"base's update on the leaf {paths[against[0]]} points against the gradient: "
                "it already descends (a learning rate such as optax.adam(lr), optax.sgd(lr), "
                "optax.scale_by_learning_rate or a negative optax.scale, however it is "
                "composed), so the wrapper's own -alpha would make it ascend. " + _BASE_HINT)
      seen |= act[step]
      steps = step + 1
      if seen.all():
        break
    if not seen.any():
      return (f"base returned zero updates for {steps} steps of a constant gradient, so it "
              "could not be checked (optax.MultiSteps inside the base? wrap metaoptimize in "
              "it instead). " + _BASE_HINT)
    moved = np.flatnonzero(zm[:steps].any(axis=0))
    if moved.size:
      return (f"base moves the leaf {paths[moved[0]]} at a zero gradient: it applies weight "
              "decay (optax.add_decayed_weights, optax.adamw, ...) or otherwise depends on the "
              "weights, which the trace does not see. " + _BASE_HINT)
  return None


def _raise_verdict(paths, *outcome) -> None:
  message = _probe_verdict(paths, *outcome)
  if message is not None:
    raise ValueError(message)


def _probe_base(base, params) -> None:
  """Refuses (``ValueError``) a base whose update descends by itself or moves the weights at a
  zero gradient, from a probe on the params' structure, dtypes and shapes (not their values).

  The probe is one compiled program (:func:`_probe_program`, cached by JAX per base and
  shapes). When ``init`` runs eagerly it runs at once and the error is raised here. When
  ``init`` is traced (inside ``jax.jit``, ``optzoo.sweep``), the probe becomes part of the
  caller's program, so it adds no compilation of its own, and its verdict is checked by a
  host callback when that program runs (the ``ValueError`` then arrives wrapped in JAX's
  runtime error). The probe is optzoo's own check, so it runs under JAX's standard dtype
  promotion whatever the user's setting (optax's Adam, for one, computes ``float ** int32``,
  which strict promotion refuses); the base's real updates run under the user's setting.
  """
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  if not flat:
    return
  paths = [jax.tree_util.keystr(k) for k, _ in flat]
  w, g = _probe_leaves(params)
  error = None
  with jax.numpy_dtype_promotion("standard"):
    for extra in (False, True):
      try:
        outcome = _probe_program(base, extra, w, g)
        break
      except Exception as e:  # noqa: BLE001 - any failure of a foreign base on the probe
        error = error or e
    else:
      raise ValueError(f"base could not be probed ({type(error).__name__}: {error}). "
                       + _BASE_HINT) from error
  if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(outcome)):
    jax.debug.callback(functools.partial(_raise_verdict, paths), *outcome)
  else:
    _raise_verdict(paths, *outcome)


_BASE_HINT = (
    "MetaOptimize owns the step size and the weight decay: pass a learning-rate-free base "
    "such as optax.scale_by_adam(), optax.scale_by_lion() or optax.identity(), and give the "
    "step size as initial_learning_rate and the decay as weight_decay (check_base=False "
    "skips this check)."
)


# --------------------------------------------------------------------------- configuration
class _Config(NamedTuple):
  """The validated, static arguments of :func:`metaoptimize`."""

  initial_learning_rate: Any
  meta_learning_rate: Any
  gamma: Any
  meta: str
  kind: str            # 'scalar', 'per_leaf', 'per_weight' or 'labels'
  granularity: Any
  weight_decay: Any
  mask: Any
  lo: float | None
  hi: float | None
  meta_b1: Any
  meta_b2: Any
  meta_eps: Any
  alpha_timing: str
  trace_dtype: Any
  check_base: bool
  safeguard: bool


def _block_kind(granularity: Any) -> str:
  if isinstance(granularity, str):
    checks.check_choice("granularity", granularity, _GRANULARITIES)
    return granularity
  if granularity is None:
    raise ValueError(
        f"granularity=None is not valid: use one of {_GRANULARITIES} or a pytree of labels.")
  return "labels"


def _log_lr_bounds(log_lr_bounds: Any, initial_learning_rate: Any):
  """``(low, high)`` (either may be None); ``ValueError`` unless low < high and the initial
  step size lies inside."""
  if log_lr_bounds is None:
    return None, None
  try:
    lo, hi = log_lr_bounds
  except (TypeError, ValueError):
    raise ValueError(f"log_lr_bounds={log_lr_bounds!r} must be a pair (low, high).") from None
  if lo is not None and hi is not None and not float(lo) < float(hi):
    raise ValueError(f"log_lr_bounds={log_lr_bounds!r}: need low < high.")
  a0 = None if callable(initial_learning_rate) else checks.concrete_float(initial_learning_rate)
  if a0 is not None:
    la0 = math.log(a0)
    if (lo is not None and la0 < lo) or (hi is not None and la0 > hi):
      raise ValueError(
          f"initial_learning_rate={initial_learning_rate!r} (log {la0:.4g}) lies outside "
          f"log_lr_bounds={log_lr_bounds!r}.")
  return lo, hi


def _config(base, initial_learning_rate, meta_learning_rate, gamma, meta, granularity,
            weight_decay, mask, log_lr_bounds, meta_b1, meta_b2, meta_eps, alpha_timing,
            trace_dtype, check_base, safeguard) -> _Config:
  """Validates the arguments of :func:`metaoptimize` (errors name the argument)."""
  if not (hasattr(base, "init") and hasattr(base, "update")):
    raise TypeError(f"base must be an optax GradientTransformation, got {type(base).__name__}.")
  checks.check_choice("meta", meta, _METAS)
  checks.check_choice("alpha_timing", alpha_timing, _TIMINGS)
  kind = _block_kind(granularity)
  if not callable(initial_learning_rate):
    checks.check_range("initial_learning_rate", initial_learning_rate, 0.0, low_open=True)
  checks.check_learning_rate(meta_learning_rate, "meta_learning_rate")
  checks.check_range("gamma", gamma, 0.0, 1.0)
  checks.check_range("weight_decay", weight_decay, 0.0)
  checks.check_beta("meta_b1", meta_b1)
  if meta_b2 is None:
    meta_b2 = 0.99 if meta == "lion" else 0.999
  checks.check_beta("meta_b2", meta_b2)
  checks.check_range("meta_eps", meta_eps, 0.0)
  lo, hi = _log_lr_bounds(log_lr_bounds, initial_learning_rate)
  return _Config(
      initial_learning_rate=initial_learning_rate, meta_learning_rate=meta_learning_rate,
      gamma=gamma, meta=meta, kind=kind, granularity=granularity, weight_decay=weight_decay,
      mask=mask, lo=lo, hi=hi, meta_b1=meta_b1, meta_b2=meta_b2, meta_eps=meta_eps,
      alpha_timing=alpha_timing, trace_dtype=trace_dtype, check_base=check_base,
      safeguard=bool(safeguard))


# --------------------------------------------------------------------------- blocks
def _leaf_labels(cfg: _Config, tree: Any) -> list[str]:
  """One block label ``str(label)`` per leaf of ``tree`` (label-defined blocks)."""
  return [str(label) for label in trees.leaf_values(cfg.granularity, tree)]


def _init_beta(cfg: _Config, params: Any, log_a0: jax.Array) -> Any:
  """``beta`` at ``log(alpha_0)``, one entry per block."""
  if cfg.kind == "scalar":
    return log_a0
  if cfg.kind == "per_leaf":
    return jax.tree.map(lambda _: log_a0, params)
  if cfg.kind == "per_weight":
    return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=jnp.float32) + log_a0, params)
  return {label: log_a0 for label in sorted(set(_leaf_labels(cfg, params)))}


def _meta_gradient(cfg: _Config, treedef, hg: list[jax.Array], beta: Any, labels) -> Any:
  """``z``: block sums of ``h * g`` (float32), with the structure of ``beta``."""
  if cfg.kind == "scalar":
    return sum((jnp.sum(x) for x in hg), jnp.zeros([], jnp.float32))
  if cfg.kind == "per_leaf":
    return treedef.unflatten([jnp.sum(x) for x in hg])
  if cfg.kind == "per_weight":
    return treedef.unflatten(hg)
  sums = {label: jnp.zeros([], jnp.float32) for label in beta}
  for label, x in zip(labels, hg):
    sums[label] = sums[label] + jnp.sum(x)
  return sums


def _leaf_step_sizes(cfg: _Config, treedef, beta: Any, labels, n: int) -> list[jax.Array]:
  """``alpha = exp(beta)``, one (broadcastable) value per leaf."""
  if cfg.kind == "scalar":
    return [jnp.exp(beta)] * n
  if cfg.kind in ("per_leaf", "per_weight"):
    return [jnp.exp(x) for x in treedef.flatten_up_to(beta)]
  return [jnp.exp(beta[label]) for label in labels]


# --------------------------------------------------------------------------- meta optimizers
#: The safeguard's threshold: a meta step is cut in proportion once the meta signal falls
#: below this fraction of the largest magnitude it has had.
_SAFEGUARD_FRACTION = 0.1


def _guard(x, peak):
  """The safeguard's factor on a meta step, ``min(1, |x| / (_SAFEGUARD_FRACTION * peak))``."""
  floor = _SAFEGUARD_FRACTION * peak
  return jnp.where(jnp.abs(x) >= floor, 1.0, jnp.abs(x) / jnp.where(floor > 0, floor, 1.0))


def _peak(peak, x):
  return None if peak is None else jax.tree.map(lambda p, v: jnp.maximum(p, jnp.abs(v)), peak, x)


def _meta_sgd(cfg, beta, z, mu, nu, peak, eta, t):
  del cfg, t
  return jax.tree.map(lambda b, g: b - eta * g, beta, z), mu, nu, peak


def _meta_lion(cfg, beta, z, mu, nu, peak, eta, t):
  del t
  b1, b2 = cfg.meta_b1, cfg.meta_b2
  if peak is None:  # the authors' Lion meta
    new_beta = jax.tree.map(
        lambda b, g, m: b - eta * jnp.sign(b1 * m + (1.0 - b1) * g), beta, z, mu)
  else:
    x = jax.tree.map(lambda g, m: b1 * m + (1.0 - b1) * g, z, mu)
    peak = _peak(peak, x)
    new_beta = jax.tree.map(lambda b, v, p: b - eta * jnp.sign(v) * _guard(v, p), beta, x, peak)
  mu = jax.tree.map(lambda m, g: b2 * m + (1.0 - b2) * g, mu, z)
  return new_beta, mu, nu, peak


def _meta_adam(cfg, beta, z, mu, nu, peak, eta, t):
  b1, b2 = cfg.meta_b1, cfg.meta_b2
  mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, mu, z)
  nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, nu, z)
  c1 = 1.0 - jnp.power(jnp.asarray(b1, jnp.float32), t)
  c2 = 1.0 - jnp.power(jnp.asarray(b2, jnp.float32), t)
  if peak is None:  # the authors' Adam meta
    new_beta = jax.tree.map(
        lambda b, m, v: b - eta * (m / c1) / (jnp.sqrt(v / c2) + cfg.meta_eps), beta, mu, nu)
  else:
    x = jax.tree.map(lambda m: m / c1, mu)
    peak = _peak(peak, x)
    new_beta = jax.tree.map(
        lambda b, m, v, p: b - eta * m / (jnp.sqrt(v / c2) + cfg.meta_eps) * _guard(m, p),
        beta, x, nu, peak)
  return new_beta, mu, nu, peak


def _meta_rmsprop(cfg, beta, z, mu, nu, peak, eta, t):
  b2 = cfg.meta_b2
  nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, nu, z)
  c2 = 1.0 - jnp.power(jnp.asarray(b2, jnp.float32), t)
  if peak is None:  # the authors' RMSProp meta
    new_beta = jax.tree.map(lambda b, g, v: b - eta * g / jnp.sqrt(v / c2 + cfg.meta_eps),
                            beta, z, nu)
  else:
    peak = _peak(peak, z)
    new_beta = jax.tree.map(
        lambda b, g, v, p: b - eta * g / jnp.sqrt(v / c2 + cfg.meta_eps) * _guard(g, p),
        beta, z, nu, peak)
  return new_beta, mu, nu, peak


#: ``(beta, z, mu, nu, peak, eta, t) -> (beta, mu, nu, peak)`` per meta optimizer (descent on
#: ``z``); ``peak`` is None for the authors' rule.
_META_STEPS = {"sgd": _meta_sgd, "lion": _meta_lion, "adam": _meta_adam,
               "rmsprop": _meta_rmsprop}


def _meta_step(cfg: _Config, beta, z, mu, nu, peak, count):
  """One meta step on ``beta`` from the meta-gradient ``z``, clipped into ``log_lr_bounds``."""
  eta = cfg.meta_learning_rate
  eta = eta(count) if callable(eta) else eta
  t = (count + 1).astype(jnp.float32)
  new_beta, new_mu, new_nu, new_peak = _META_STEPS[cfg.meta](cfg, beta, z, mu, nu, peak, eta, t)
  if cfg.lo is not None or cfg.hi is not None:
    new_beta = jax.tree.map(lambda b: jnp.clip(b, cfg.lo, cfg.hi), new_beta)
  return (optax.tree.cast_like(new_beta, beta), optax.tree.cast_like(new_mu, mu),
          optax.tree.cast_like(new_nu, nu), optax.tree.cast_like(new_peak, peak))


# --------------------------------------------------------------------------- the transform
def _trace_dtype(cfg: _Config, dtype) -> Any:
  if cfg.trace_dtype is not None:
    dt = jnp.dtype(cfg.trace_dtype)
    if jnp.issubdtype(dtype, jnp.complexfloating) and not jnp.issubdtype(dt, jnp.complexfloating):
      dt = trees.promote(dt, jnp.complex64)  # a complex trace for complex params
    return dt
  dtype = jnp.dtype(dtype)  # at least float32 (complex64 for complex params), spelled out
  if jnp.issubdtype(dtype, jnp.complexfloating):
    return dtype
  if not (jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4):
    dtype = jnp.dtype(jnp.float32)
  return dtype


def _init(cfg: _Config, base, user_base, params) -> MetaOptimizeState:
  checks.check_float_leaves("metaoptimize", params)
  a0 = cfg.initial_learning_rate
  a0 = a0(0) if callable(a0) else a0
  beta = _init_beta(cfg, params, jnp.log(jnp.asarray(a0, jnp.float32)))
  base_state = base.init(params)
  if cfg.check_base:
    _probe_base(user_base, params)
  return MetaOptimizeState(
      count=jnp.zeros([], jnp.int32),
      log_learning_rate=beta,
      trace=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=_trace_dtype(cfg, p.dtype)), params),
      meta_mu=jax.tree.map(jnp.zeros_like, beta) if cfg.meta in ("lion", "adam") else None,
      meta_nu=jax.tree.map(jnp.zeros_like, beta) if cfg.meta in ("adam", "rmsprop") else None,
      meta_peak=(jax.tree.map(jnp.zeros_like, beta) if cfg.safeguard and cfg.meta != "sgd"
                 else None),
      base_state=base_state,
  )


def _decays(cfg: _Config, treedef, params, count, n: int) -> list[Any]:
  """Per leaf ``(kappa, w)`` where the weight decays, else None."""
  wd = cfg.weight_decay
  if (not callable(wd)) and checks.concrete_float(wd) == 0.0:
    return [None] * n
  if params is None:
    raise ValueError("metaoptimize with weight_decay needs params: call "
                     "update(updates, state, params).")
  kappa = wd(count) if callable(wd) else wd
  flags = trees.leaf_values(cfg.mask, params, default=True)
  return [(kappa, p) if f else None for f, p in zip(flags, treedef.flatten_up_to(params))]


def _leaf_step(gamma, g, h, u, alpha, decay, diag):
  """One leaf: ``dw = -alpha (u + kappa w)`` and the new trace
  ``gamma * keep * h + dw`` with ``keep = [max(0,] 1 - alpha (kappa + d) [)]``."""
  hd = h.dtype
  rd = jnp.finfo(hd).dtype  # hd itself for real params; the trace decay is real
  direction = u.astype(hd)
  curv = None
  if decay is not None:
    kappa, p = decay
    direction = direction + kappa * p.astype(hd)
    curv = kappa
  dw = -(alpha.astype(hd) * direction)
  if diag is not None:
    curv = diag.astype(rd) if curv is None else curv + diag.astype(rd)
    keep = jnp.maximum(0.0, 1.0 - alpha.astype(rd) * curv)
  elif curv is not None:
    keep = 1.0 - alpha.astype(rd) * curv
  else:
    keep = None
  hh = h if keep is None else keep * h
  return dw.astype(g.dtype), (gamma * hh + dw).astype(hd)


def _trace_times_grad(h, g):
  """``Re(h conj(g))`` in float32: ``h * g`` for real params, the real inner product of the
  displacement with the descent direction for complex ones."""
  if jnp.iscomplexobj(h) or jnp.iscomplexobj(g):
    return jnp.real(h * jnp.conj(g.astype(h.dtype))).astype(jnp.float32)
  return h.astype(jnp.float32) * g.astype(jnp.float32)


def _update(cfg: _Config, base, updates, state: MetaOptimizeState, params=None, **extra_args):
  checks.check_same_structure(updates, params)
  checks.check_leaf_shapes("metaoptimize", updates, state.trace)
  hessian_diag = extra_args.get("hessian_diag")
  g_leaves, treedef = jax.tree.flatten(updates)
  h_leaves = treedef.flatten_up_to(state.trace)
  n = len(g_leaves)
  # z: block sums of Re(h conj(g)) (h * g for real params) with the OLD trace, in float32.
  hg = [_trace_times_grad(h, g) for h, g in zip(h_leaves, g_leaves)]
  beta = state.log_learning_rate
  labels = _leaf_labels(cfg, updates) if cfg.kind == "labels" else None
  z = _meta_gradient(cfg, treedef, hg, beta, labels)
  if cfg.alpha_timing == "next":
    new_beta, mu, nu, peak = _meta_step(cfg, beta, z, state.meta_mu, state.meta_nu,
                                        state.meta_peak, state.count)
    alpha = _leaf_step_sizes(cfg, treedef, new_beta, labels, n)
  else:
    alpha = _leaf_step_sizes(cfg, treedef, beta, labels, n)
  u, base_state = base.update(updates, state.base_state, params, **extra_args)
  decays = _decays(cfg, treedef, params, state.count, n)
  diags = [None] * n if hessian_diag is None else treedef.flatten_up_to(hessian_diag)
  outs = [_leaf_step(cfg.gamma, *leaf) for leaf in zip(
      g_leaves, h_leaves, treedef.flatten_up_to(u), alpha, decays, diags)]
  new_updates, trace = trees.unzip(treedef, outs, 2)
  if cfg.alpha_timing == "current":
    new_beta, mu, nu, peak = _meta_step(cfg, beta, z, state.meta_mu, state.meta_nu,
                                        state.meta_peak, state.count)
  return new_updates, MetaOptimizeState(
      count=optax.safe_increment(state.count), log_learning_rate=new_beta, trace=trace,
      meta_mu=mu, meta_nu=nu, meta_peak=peak, base_state=base_state)


@alias.static_args("base", "meta", "granularity", "mask", "log_lr_bounds", "alpha_timing",
                   "trace_dtype", "check_base", "safeguard")
def metaoptimize(
    base: optax.GradientTransformation,
    initial_learning_rate: optax.ScalarOrSchedule,
    meta_learning_rate: optax.ScalarOrSchedule = 1e-3,
    gamma: float = 1.0,
    *,
    meta: Literal["lion", "adam", "rmsprop", "sgd"] = "lion",
    granularity: Literal["scalar", "per_leaf", "per_weight"] | Any = "scalar",
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    log_lr_bounds: tuple[float | None, float | None] | None = None,
    meta_b1: float = 0.9,
    meta_b2: float | None = None,
    meta_eps: float = 1e-16,
    alpha_timing: Literal["current", "next"] = "current",
    trace_dtype: Any | None = None,
    check_base: bool = True,
    safeguard: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""MetaOptimize (Hessian-free, 2x2): any lr-free base with meta-learned log step sizes.

  With gradient :math:`g_t`, the base's lr-free direction :math:`u_t`, blocks :math:`j` with
  log step sizes :math:`\beta_j` (``log_learning_rate``), step sizes :math:`\alpha = e^\beta`
  broadcast to the weights of each block, decay :math:`\kappa` and mask :math:`m`:

  .. math::
    z_j &= \textstyle\sum_{i \in j} h_i\, g_i \qquad \text{(meta-gradient, uses the old trace)}\\
    \Delta w &= -\alpha \odot (u_t + \kappa\, m \odot w_t)\\
    h &\leftarrow \gamma\,(1 - \kappa\,\alpha\, m) \odot h + \Delta w\\
    \beta &\leftarrow \operatorname{clip}\bigl(\beta - \eta\, d(z), \text{log\_lr\_bounds}\bigr)

  ``updates`` returned are :math:`\Delta w`. The meta direction :math:`d(z)`, per block:
  ``'lion'`` :math:`d = \operatorname{sign}(b_1 \bar m + (1-b_1) z)`, then
  :math:`\bar m \leftarrow b_2 \bar m + (1-b_2) z` (so :math:`|\Delta\beta| \le \eta`);
  ``'adam'`` :math:`d = \hat{\bar m} / (\sqrt{\hat{\bar v}} + \epsilon)` with the EMAs of
  :math:`z, z^2` updated first; ``'rmsprop'`` :math:`d = z / \sqrt{\hat{\bar v} + \epsilon}`;
  ``'sgd'`` :math:`d = z` (IDBD-like, scale-dependent).

  ``h ~ dw/dbeta`` is the paper's eligibility trace with every Hessian term ("Hessian-free")
  and the trace's own Jacobian blocks ("2x2") dropped, which makes it one param-shaped vector.
  ``h_0 = 0``, so the first step never moves ``beta``; with no decay and ``gamma=1``,
  ``h = w_t - w_0``.

  **The base must be learning-rate free**: the wrapper applies ``-alpha`` and the decay, so a
  base that already descends (``optax.adam(1e-3)``, ``optax.sgd``, a learning-rate scale)
  would make the run ascend, and one that decays the weights hides the decay from the trace.
  With ``check_base=True`` such bases are refused with a ``ValueError``, however they are
  composed (``optax.chain``, ``optax.partition``, ``optax.multi_transform``,
  ``optax.MultiSteps``, ``optax.contrib.muon``, ``optax.inject_hyperparams``, ...), at
  ``init``, by their behaviour alone: a probe steps the base on a copy of the params' structure, shapes and dtypes (every axis
  cut to 8 above a million elements), never on their values. A learning-rate-free direction
  points *along* a constant gradient :math:`g` (:math:`\mathrm{Re}\langle g, u\rangle \ge 0`
  on every leaf: Adam, Lion, RMSProp, SGD, Muon's orthogonalization, sign methods, clipping
  all do) and is zero at a zero gradient; a learning rate flips the sign (optax's are
  negative) and a weight decay moves the weights at a zero gradient, so any composition that
  carries one shows it on some leaf, whatever its structure. The probe steps until every
  leaf has moved (at most 16 steps, enough for ``optax.MultiSteps`` up to 16 micro-steps; a
  base that never moves any leaf is refused as unverifiable, a leaf it never moves, like
  ``optax.set_to_zero``, is accepted). The probe is one compiled program of 32 base steps on
  that copy (16 at the constant gradient, 16 at zero), cached per base and shapes. When ``init``
  is traced (``jax.jit``, ``optzoo.sweep``) it becomes part of that program, so a sweep still
  compiles once, and its ``ValueError`` arrives wrapped in ``jax.errors.JaxRuntimeError`` when
  the program runs (under ``jax.eval_shape`` nothing runs, so nothing is checked). A
  *positive* constant factor (``optax.scale(2.0)``) passes the probe: it only rescales the
  step size, which is learned anyway. Pre-processing before the wrapper
  (``optax.clip_by_global_norm``) is fine; nothing that rescales may follow.

  The log step sizes are shared by the weights of a block (all of them at the default
  ``'scalar'`` granularity): one NaN or infinite gradient entry makes the meta-gradient, hence
  the step size and every weight's update in that block, NaN from that step on. Wrap the
  optimizer in ``optax.apply_if_finite(tx, max_consecutive_errors)``: it skips a step whose
  gradient is not finite as a whole (the state is left untouched), so nothing is poisoned.

  **Safeguard** (``safeguard=True``, the default; beyond the paper): the normalised meta
  optimizers (Lion, Adam, RMSProp) turn a vanishing meta-gradient into full-size steps. Once
  the loss has converged, :math:`z \to 0` while Lion's momentum keeps its sign, so
  :math:`\beta` climbs by :math:`\eta` per step and :math:`\alpha` grows like
  :math:`e^{\eta t}` (the Hessian-free trace, with no curvature decay, keeps reporting that
  a larger step would help) until the run diverges; the authors' code does the same. The
  safeguard keeps, per block, the largest magnitude :math:`p` the meta signal :math:`s` has
  had (Lion: :math:`b_1 \bar m + (1-b_1) z`; Adam: :math:`\hat{\bar m}`; RMSProp:
  :math:`z`) and multiplies the meta step by :math:`\min(1, |s| / (0.1\, p))`: while the
  signal is at its working level the step is the authors', and once it has decayed below a
  tenth of its peak the step shrinks in proportion, so the total movement after convergence
  is a convergent series instead of :math:`\eta t`. The peak never decays, so a converged run
  whose meta-gradient sits at rounding level cannot wake it again (with a reference that
  forgets over ~1000 steps instead, the step size on a converged parabola grew again 70x
  between steps 10k and 30k). SGD meta already steps in proportion to :math:`z` and is
  unchanged. ``safeguard=False`` is the authors' algorithm exactly.

  Parameters may be complex (as in ``optax.adam``; descend along
  ``jnp.conj(jax.grad(loss)(params))`` for a real loss): the trace is complex and the
  meta-gradient is the real inner product :math:`\sum \mathrm{Re}(h_i \bar g_i)`. Integer
  leaves are rejected at ``init``; every ``update`` checks the gradient's shapes against the
  state and names a mismatching leaf; an empty pytree gives empty updates. With a normalised
  base (Adam, Lion, AMSGrad) float32 gradients of ``1e20`` give finite updates, as
  ``optax.amsgrad``; an SGD base moves the weights by ``alpha * g`` itself, and the
  meta-gradient may then overflow. The base's update is MetaOptimize's direction, so a base
  that is not finite gives an update that is not finite: ``optax.scale_by_adam()`` on float16
  params is one (a squared gradient below about 6e-8 underflows to 0 in float16, and so does
  its ``eps=1e-8``, so it divides by zero); train float16 models with float32 params, or with
  a base that keeps its moments in float32.

  Optional extra keyword to ``update`` (beyond the paper): ``hessian_diag``, a params-shaped
  pytree of diagonal-Hessian estimates :math:`d`; the trace then decays as
  :math:`h \leftarrow \gamma \max(0, 1 - \alpha(\kappa m + d)) \odot h + \Delta w`. With
  an SGD base and meta, ``'per_weight'``, ``alpha_timing='next'``, ``gamma=1`` and
  :math:`d = x^2` this is exactly Sutton's IDBD on a linear model. Others go to the base.

  Args:
    base: the learning-rate-free direction, an ``optax.GradientTransformation`` whose updates
      point uphill (like ``optax.scale_by_adam()``); static.
    initial_learning_rate: :math:`\alpha_0 > 0`, the step size ``beta`` starts from (of a
      schedule only the value at step 0 is used). The paper starts 1-2 orders of magnitude
      below a good fixed step (its runs: 1e-6 to 1e-4).
    meta_learning_rate: :math:`\eta \ge 0` (float or schedule of the step count). Default 1e-3,
      the paper's value for every run. 0 freezes the step size at :math:`\alpha_0`.
    gamma: trace discount in [0, 1]. Default 1.0 (paper, stationary problems); 0.999 for
      continual problems; use < 1 with an SGD base (there ``gamma=1`` never forgets).
    meta: ``'lion'`` (default, the paper's recommendation), ``'adam'``, ``'rmsprop'`` or
      ``'sgd'``; static. This and every following argument is keyword-only.
    granularity: the blocks sharing one step size; static. ``'scalar'``
      (default, as the paper's main runs), ``'per_leaf'`` (one per parameter array),
      ``'per_weight'`` (IDBD-style), or a pytree with the params' structure (or a prefix of
      it) of hashable labels, or a callable ``params -> labels``: one step size per distinct
      label (keyed ``str(label)``). Under ``optax.inject_hyperparams`` list it in
      ``static_args``.
    weight_decay: decoupled decay :math:`\kappa \ge 0`, multiplied by :math:`\alpha` as in
      ``optax.adamw`` (float or schedule). Default 0.0 (the paper's CIFAR/ImageNet runs:
      0.1). When it is not a concrete 0, ``update`` needs ``params``.
    mask: pytree of bools (or callable ``params -> bools``) selecting the weights to decay, as
      in ``optax.add_decayed_weights``; static. Default None: decay every weight.
    log_lr_bounds: optional ``(low, high)`` bounds on ``log_learning_rate`` (either may be
      None), applied after every meta step; static. Default None (the paper has none). Lion
      meta keeps moving ``beta`` once gradients vanish, so bounds can help.
    meta_b1: Lion interpolation / Adam first-moment rate, in [0, 1). Default 0.9 (paper).
    meta_b2: Lion momentum / Adam and RMSProp second-moment rate, in [0, 1). Default None:
      0.99 for Lion, 0.999 otherwise (paper).
    meta_eps: :math:`\epsilon \ge 0` of Adam/RMSProp meta. Default 1e-16: the meta-gradient is
      proportional to :math:`\alpha` and may be tiny, so a usual 1e-8 would stall ``beta``.
    alpha_timing: ``'current'`` (default, as the paper: step with
      :math:`\alpha_t`, then update ``beta``) or ``'next'`` (``beta`` first, as IDBD); static.
    trace_dtype: dtype of the trace ``h``. Default None: float32 (float64 for float64 params).
    check_base: refuse (``ValueError``) a ``base`` that carries a learning rate or a weight
      decay, by the probe at ``init`` (see above); static. Default True. False skips it.
    safeguard: keyword-only, static. Default True: the meta step shrinks once the meta signal
      falls below a tenth of its peak (see above), so the step size settles when the loss
      has converged. False: the authors' algorithm exactly (the step size can then run away
      after convergence).

  Returns:
    An ``optax.GradientTransformationExtraArgs``; updates have the gradients' dtype.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = {"w": jnp.array([1.0, -2.0])}
    >>> tx = optzoo.metaoptimize(optax.scale_by_adam(), initial_learning_rate=1e-3)
    >>> state = tx.init(params)
    >>> loss = lambda p: jnp.sum(p["w"] ** 2)
    >>> for _ in range(3):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params)
    ...   params = optax.apply_updates(params, updates)
    >>> lr = float(optzoo.metaoptimize_learning_rates(state))  # exp(log_learning_rate)
    >>> bool(abs(lr / 1e-3 - 1) <= 2.1e-3)   # Lion meta moves log lr by <= 1e-3 per step
    True

  References:
    Sharifnassab et al., `MetaOptimize: A Framework for Optimizing Step Sizes and Other
    Meta-parameters <https://arxiv.org/abs/2402.02342>`_, 2024

    Sutton, `Adapting Bias by Gradient Descent: An Incremental Version of Delta-Bar-Delta
    <https://cdn.aaai.org/AAAI/1992/AAAI92-027.pdf>`_, 1992
  """
  cfg = _config(base, initial_learning_rate, meta_learning_rate, gamma, meta, granularity,
                weight_decay, mask, log_lr_bounds, meta_b1, meta_b2, meta_eps, alpha_timing,
                trace_dtype, check_base, safeguard)
  # the probe gets the user's own base: JAX caches its program per base object
  wrapped = optax.with_extra_args_support(base)
  return optax.GradientTransformationExtraArgs(
      functools.partial(_init, cfg, wrapped, base), functools.partial(_update, cfg, wrapped))
