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
import optax


from optzoo._src import checks, trees

__all__ = [
    "MetaOptimizeState",
    "metaoptimize",
    "metaoptimize_learning_rates",
]

_GRANULARITIES = ("scalar", "per_leaf", "per_weight")
_METAS = ("lion", "adam", "rmsprop", "sgd")
_TIMINGS = ("current", "next")
# optax factories whose presence inside ``base`` means the base already scales by a
# learning rate (or applies weight decay, which this wrapper owns).
_LR_FACTORIES = ("scale", "scale_by_learning_rate", "scale_by_schedule", "add_decayed_weights")


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
    base_state: the state of the wrapped base direction.
  """

  count: jax.Array
  log_learning_rate: Any
  trace: optax.Updates
  meta_mu: Any | None
  meta_nu: Any | None
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
def _lr_factory_in(fn: Any, seen: set[int], depth: int = 0) -> str | None:
  """Name of an optax learning-rate/decay factory found in ``fn``'s closures, else None."""
  if depth > 12 or id(fn) in seen:
    return None
  seen.add(id(fn))
  if isinstance(fn, (tuple, list)):
    for item in fn:
      found = _lr_factory_in(item, seen, depth + 1)
      if found:
        return found
    return None
  if not callable(fn):
    return None
  qualname = getattr(fn, "__qualname__", "") or ""
  module = getattr(fn, "__module__", "") or ""
  outer = qualname.split(".<locals>")[0]
  if module.startswith("optax") and ".<locals>" in qualname and outer in _LR_FACTORIES:
    return f"optax.{outer}"
  for cell in getattr(fn, "__closure__", None) or ():
    try:
      content = cell.cell_contents
    except ValueError:  # empty cell
      continue
    found = _lr_factory_in(content, seen, depth + 1)
    if found:
      return found
  return None


def _injected_lr_in(state: Any, depth: int = 0) -> bool:
  """Whether a base state holds an ``inject_hyperparams`` state with a learning rate."""
  if depth > 12:
    return False
  hyper = getattr(state, "hyperparams", None)
  if isinstance(hyper, dict) and "learning_rate" in hyper:
    return True
  if isinstance(state, dict):
    return any(_injected_lr_in(v, depth + 1) for v in state.values())
  if isinstance(state, (tuple, list)):
    return any(_injected_lr_in(v, depth + 1) for v in state)
  return False


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
            trace_dtype, check_base) -> _Config:
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
  if check_base:
    found = _lr_factory_in(base.update, set())
    if found:
      raise ValueError(f"base contains {found}, a learning-rate scale or weight decay. "
                       + _BASE_HINT)
  return _Config(
      initial_learning_rate=initial_learning_rate, meta_learning_rate=meta_learning_rate,
      gamma=gamma, meta=meta, kind=kind, granularity=granularity, weight_decay=weight_decay,
      mask=mask, lo=lo, hi=hi, meta_b1=meta_b1, meta_b2=meta_b2, meta_eps=meta_eps,
      alpha_timing=alpha_timing, trace_dtype=trace_dtype, check_base=check_base)


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
def _meta_sgd(cfg, beta, z, mu, nu, eta, t):
  del cfg, t
  return jax.tree.map(lambda b, g: b - eta * g, beta, z), mu, nu


def _meta_lion(cfg, beta, z, mu, nu, eta, t):
  del t
  b1, b2 = cfg.meta_b1, cfg.meta_b2
  new_beta = jax.tree.map(
      lambda b, g, m: b - eta * jnp.sign(b1 * m + (1.0 - b1) * g), beta, z, mu)
  mu = jax.tree.map(lambda m, g: b2 * m + (1.0 - b2) * g, mu, z)
  return new_beta, mu, nu


def _meta_adam(cfg, beta, z, mu, nu, eta, t):
  b1, b2 = cfg.meta_b1, cfg.meta_b2
  mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, mu, z)
  nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, nu, z)
  c1 = 1.0 - jnp.power(jnp.asarray(b1, jnp.float32), t)
  c2 = 1.0 - jnp.power(jnp.asarray(b2, jnp.float32), t)
  new_beta = jax.tree.map(
      lambda b, m, v: b - eta * (m / c1) / (jnp.sqrt(v / c2) + cfg.meta_eps), beta, mu, nu)
  return new_beta, mu, nu


def _meta_rmsprop(cfg, beta, z, mu, nu, eta, t):
  b2 = cfg.meta_b2
  nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * g * g, nu, z)
  c2 = 1.0 - jnp.power(jnp.asarray(b2, jnp.float32), t)
  new_beta = jax.tree.map(lambda b, g, v: b - eta * g / jnp.sqrt(v / c2 + cfg.meta_eps),
                          beta, z, nu)
  return new_beta, mu, nu


#: ``(beta, z, mu, nu, eta, t) -> (beta, mu, nu)`` per meta optimizer (descent on ``z``).
_META_STEPS = {"sgd": _meta_sgd, "lion": _meta_lion, "adam": _meta_adam,
               "rmsprop": _meta_rmsprop}


def _meta_step(cfg: _Config, beta, z, mu, nu, count):
  """One meta step on ``beta`` from the meta-gradient ``z``, clipped into ``log_lr_bounds``."""
  eta = cfg.meta_learning_rate
  eta = eta(count) if callable(eta) else eta
  t = (count + 1).astype(jnp.float32)
  new_beta, new_mu, new_nu = _META_STEPS[cfg.meta](cfg, beta, z, mu, nu, eta, t)
  if cfg.lo is not None or cfg.hi is not None:
    new_beta = jax.tree.map(lambda b: jnp.clip(b, cfg.lo, cfg.hi), new_beta)
  return (optax.tree.cast_like(new_beta, beta), optax.tree.cast_like(new_mu, mu),
          optax.tree.cast_like(new_nu, nu))


# --------------------------------------------------------------------------- the transform
def _trace_dtype(cfg: _Config, dtype) -> Any:
  if cfg.trace_dtype is not None:
    return jnp.dtype(cfg.trace_dtype)
  dtype = jnp.dtype(dtype)  # at least float32: promote_types(., float32) spelled out
  if not (jnp.issubdtype(dtype, jnp.inexact) and dtype.itemsize >= 4):
    dtype = jnp.dtype(jnp.float32)
  return dtype


def _init(cfg: _Config, base, params) -> MetaOptimizeState:
  a0 = cfg.initial_learning_rate
  a0 = a0(0) if callable(a0) else a0
  beta = _init_beta(cfg, params, jnp.log(jnp.asarray(a0, jnp.float32)))
  base_state = base.init(params)
  if cfg.check_base and _injected_lr_in(base_state):
    raise ValueError("base is built by optax.inject_hyperparams with a learning_rate. "
                     + _BASE_HINT)
  return MetaOptimizeState(
      count=jnp.zeros([], jnp.int32),
      log_learning_rate=beta,
      trace=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=_trace_dtype(cfg, p.dtype)), params),
      meta_mu=jax.tree.map(jnp.zeros_like, beta) if cfg.meta in ("lion", "adam") else None,
      meta_nu=jax.tree.map(jnp.zeros_like, beta) if cfg.meta in ("adam", "rmsprop") else None,
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
  direction = u.astype(hd)
  curv = None
  if decay is not None:
    kappa, p = decay
    direction = direction + kappa * p.astype(hd)
    curv = kappa
  dw = -(alpha.astype(hd) * direction)
  if diag is not None:
    curv = diag.astype(hd) if curv is None else curv + diag.astype(hd)
    keep = jnp.maximum(0.0, 1.0 - alpha.astype(hd) * curv)
  elif curv is not None:
    keep = 1.0 - alpha.astype(hd) * curv
  else:
    keep = None
  hh = h if keep is None else keep * h
  return dw.astype(g.dtype), (gamma * hh + dw).astype(hd)


def _update(cfg: _Config, base, updates, state: MetaOptimizeState, params=None, **extra_args):
  checks.check_same_structure(updates, params)
  hessian_diag = extra_args.get("hessian_diag")
  g_leaves, treedef = jax.tree.flatten(updates)
  h_leaves = treedef.flatten_up_to(state.trace)
  n = len(g_leaves)
  # z: block sums of h * g with the OLD trace, reduced in float32.
  hg = [h.astype(jnp.float32) * g.astype(jnp.float32) for h, g in zip(h_leaves, g_leaves)]
  beta = state.log_learning_rate
  labels = _leaf_labels(cfg, updates) if cfg.kind == "labels" else None
  z = _meta_gradient(cfg, treedef, hg, beta, labels)
  if cfg.alpha_timing == "next":
    new_beta, mu, nu = _meta_step(cfg, beta, z, state.meta_mu, state.meta_nu, state.count)
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
    new_beta, mu, nu = _meta_step(cfg, beta, z, state.meta_mu, state.meta_nu, state.count)
  return new_updates, MetaOptimizeState(
      count=optax.safe_increment(state.count), log_learning_rate=new_beta, trace=trace,
      meta_mu=mu, meta_nu=nu, base_state=base_state)


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

  **The base must be learning-rate free**: the wrapper applies ``-alpha`` and the decay, so
  ``optax.scale_by_learning_rate``, ``optax.scale`` (e.g. ``optax.adam(1e-3)``) or
  ``optax.add_decayed_weights`` inside ``base`` is wrong; where optax's combinators show it
  (or an injected ``learning_rate`` at ``init``) this raises ``ValueError``. Pre-processing
  before the wrapper (``optax.clip_by_global_norm``) is fine; nothing that rescales may follow.

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
    check_base: raise ``ValueError`` when ``base`` visibly contains a learning-rate scale or a
      weight decay; static. Default True.

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
                trace_dtype, check_base)
  base = optax.with_extra_args_support(base)
  return optax.GradientTransformationExtraArgs(
      functools.partial(_init, cfg, base), functools.partial(_update, cfg, base))
