"""MetaOptimize: step sizes learned by a meta-gradient (Sharifnassab et al., arXiv 2402.02342).

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
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


from optzoo._src import checks

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
    meta_mu: first moment of the meta optimizer (like ``log_learning_rate``; ``()`` for SGD
      and RMSProp meta).
    meta_nu: second moment of the meta optimizer (Adam, RMSProp; ``()`` otherwise).
    base_state: the state of the wrapped base direction.
  """

  count: jax.Array
  log_learning_rate: Any
  trace: optax.Updates
  meta_mu: Any
  meta_nu: Any
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


# --------------------------------------------------------------------------- blocks
def _leaf_labels(granularity: Any, tree: Any) -> list[str]:
  """One string label per leaf of ``tree`` for label-defined blocks."""
  labels = granularity(tree) if callable(granularity) else granularity
  out: list[str] = []

  def expand(label, sub):
    out.extend([str(label)] * len(jax.tree.leaves(sub)))

  try:
    jax.tree.map(expand, labels, tree)
  except (ValueError, TypeError) as e:
    raise ValueError(
        "granularity labels must be a pytree with the params' structure (or a prefix of it) "
        f"whose leaves are block labels: {e}") from None
  return out


def _block_kind(granularity: Any) -> str:
  if isinstance(granularity, str):
    checks.check_choice("granularity", granularity, _GRANULARITIES)
    return granularity
  if granularity is None:
    raise ValueError(
        f"granularity=None is not valid: use one of {_GRANULARITIES} or a pytree of labels.")
  return "labels"


def _meta_defaults(meta: str, meta_b2: Any) -> Any:
  if meta_b2 is None:
    return 0.99 if meta == "lion" else 0.999
  return meta_b2


# --------------------------------------------------------------------------- the wrapper
def metaoptimize(
    base: optax.GradientTransformation,
    initial_learning_rate: optax.ScalarOrSchedule,
    meta_learning_rate: optax.ScalarOrSchedule = 1e-3,
    gamma: float = 1.0,
    meta: str = "lion",
    granularity: Any = "scalar",
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    log_lr_bounds: tuple[float | None, float | None] | None = None,
    meta_b1: float = 0.9,
    meta_b2: float | None = None,
    meta_eps: float = 1e-16,
    alpha_timing: str = "current",
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

  ``updates`` returned are :math:`\Delta w` (``optax.apply_updates`` adds them). The meta
  direction :math:`d(z)` is, elementwise per block:

  * ``'lion'`` (paper's recommendation): :math:`d = \operatorname{sign}(b_1 \bar m + (1-b_1) z)`,
    then :math:`\bar m \leftarrow b_2 \bar m + (1-b_2) z`; so :math:`|\Delta\beta| \le \eta`.
  * ``'adam'``: :math:`\bar m, \bar v` EMAs of :math:`z, z^2` (updated first, standard Adam
    order), :math:`d = \hat{\bar m} / (\sqrt{\hat{\bar v}} + \epsilon)`.
  * ``'rmsprop'`` (authors' code only): :math:`d = z / \sqrt{\hat{\bar v} + \epsilon}`.
  * ``'sgd'`` (IDBD-like, scale-dependent): :math:`d = z`.

  ``h ~ dw/dbeta`` is the trace of the paper's backward view (eligibility trace of the future
  discounted loss, discount ``gamma``) with every Hessian term dropped ("Hessian-free") and the
  trace's own Jacobian rows/columns dropped ("2x2"); under those approximations the paper's
  trace matrix collapses exactly to this one param-shaped vector and the meta-gradient of
  block ``j`` is :math:`\sum_{i\in j} h_i g_i`. The first step never moves ``beta``
  (``h_0 = 0``). With ``weight_decay=0`` and ``gamma=1`` the trace is ``w_t - w_0``.

  **The base must be learning-rate free.** The wrapper applies ``-alpha`` itself, so a base
  containing ``optax.scale_by_learning_rate`` / ``optax.scale`` (e.g. ``optax.adam(1e-3)``,
  which would flip the sign and apply a step size twice) or ``optax.add_decayed_weights``
  (the trace would not see the decay) is wrong. When the base is built from optax's
  combinators this is detected at construction and at ``init`` (an injected
  ``learning_rate`` hyperparameter) and raises ``ValueError``; other cases cannot be seen,
  so it is your responsibility. Pre-processing before the wrapper (``optax.chain(
  optax.clip_by_global_norm(1.0), metaoptimize(...))``) is fine and the meta-gradient then
  uses the processed gradient; nothing that rescales updates may come after it.

  Extra keyword to ``update`` (optional, an option beyond the paper's Algorithm 3):
  ``hessian_diag``, a params-shaped pytree of diagonal-Hessian estimates :math:`d`. When given,
  the trace decays as :math:`h \leftarrow \gamma \max(0, 1 - \alpha(\kappa m + d)) \odot h +
  \Delta w`, the diagonal, rectified version of the paper's full trace recursion. With
  ``base=optax.identity()``, ``meta='sgd'``, ``granularity='per_weight'``,
  ``alpha_timing='next'``, ``gamma=1`` and :math:`d = x^2` this is exactly Sutton's IDBD
  (1992) on a linear model. Unknown extra keywords are passed to the base and otherwise ignored.

  Args:
    base: the learning-rate-free direction, an ``optax.GradientTransformation`` whose updates
      point uphill (like ``optax.scale_by_adam()``); static.
    initial_learning_rate: :math:`\alpha_0 > 0`, the step size ``beta`` starts from. A schedule
      is accepted for API compatibility and only its value at step 0 is used. The paper
      starts 1-2 orders of magnitude below a good fixed step (its runs: 1e-6 to 1e-4).
    meta_learning_rate: :math:`\eta \ge 0` (float or schedule of the step count). Default 1e-3,
      the paper's value for every run ("no tuning needed" with Lion/Adam meta). 0 freezes
      the step size at :math:`\alpha_0` (the base with a fixed step).
    gamma: trace discount in [0, 1]. Default 1.0 (paper, stationary problems); 0.999 for
      continual problems; use < 1 with an SGD base (with ``gamma=1`` the Hessian-free trace
      never forgets).
    meta: ``'lion'`` (default, paper's recommendation), ``'adam'``, ``'rmsprop'`` or ``'sgd'``;
      static.
    granularity: the blocks sharing one step size; static. ``'scalar'`` (default, one step
      size, as the paper's main runs), ``'per_leaf'`` (one per parameter array),
      ``'per_weight'`` (one per weight, IDBD-style), or label-defined blocks: a pytree with
      the params' structure (or a prefix of it) of hashable labels, or a callable
      ``params -> labels``; one step size per distinct label (keyed ``str(label)``). Under
      ``optax.inject_hyperparams`` list it in ``static_args`` (a callable would otherwise be
      taken for a schedule).
    weight_decay: decoupled decay :math:`\kappa \ge 0`, multiplied by :math:`\alpha` as in
      ``optax.adamw`` (float or schedule). Default 0.0 (paper's CIFAR/ImageNet runs: 0.1).
      When it is not a concrete 0, ``update`` needs ``params``.
    mask: pytree of bools (or callable ``params -> bools``) selecting the weights to decay, as
      in ``optax.add_decayed_weights``; static.
    log_lr_bounds: optional ``(low, high)`` bounds on ``log_learning_rate`` (either may be
      None); ``beta`` is clipped after every meta step. Default None (paper: no bounds). Useful
      because Lion meta has no dead zone once gradients vanish; static.
    meta_b1: Lion interpolation :math:`\bar c` / Adam first-moment rate, in [0, 1). Default 0.9
      (paper, both).
    meta_b2: Lion momentum EMA :math:`\bar\rho` / Adam and RMSProp second-moment rate, in
      [0, 1). Default None: 0.99 for Lion, 0.999 for Adam/RMSProp (paper).
    meta_eps: :math:`\epsilon \ge 0` of Adam/RMSProp meta. Default 1e-16: the meta-gradient is
      proportional to :math:`\alpha` and may be tiny, so a usual 1e-8 would stall ``beta``.
    alpha_timing: ``'current'`` (default, paper/authors' code: step with :math:`\alpha_t`, then
      update ``beta``) or ``'next'`` (update ``beta`` first and step with
      :math:`\alpha_{t+1}`, as IDBD); static.
    trace_dtype: dtype of the trace ``h``; default None = float32 (float64 for float64
      params); static.
    check_base: raise ``ValueError`` when ``base`` visibly contains a learning-rate scale or a
      weight decay (default True); static.

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

  Reference: A. Sharifnassab, S. Salehkaleybar, R. S. Sutton, MetaOptimize: A Framework for
  Optimizing Step Sizes and Other Meta-parameters, ICML 2025, arXiv 2402.02342 (Algorithm 3).
  IDBD: R. S. Sutton, Adapting Bias by Gradient Descent, AAAI 1992.
  """
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
  meta_b2 = _meta_defaults(meta, meta_b2)
  checks.check_beta("meta_b2", meta_b2)
  checks.check_range("meta_eps", meta_eps, 0.0)
  lo = hi = None
  if log_lr_bounds is not None:
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
  if check_base:
    found = _lr_factory_in(base.update, set())
    if found:
      raise ValueError(f"base contains {found}, a learning-rate scale or weight decay. "
                       + _BASE_HINT)
  base = optax.with_extra_args_support(base)
  decay_is_zero = (not callable(weight_decay)) and checks.concrete_float(weight_decay) == 0.0
  uses_mu = meta in ("lion", "adam")
  uses_nu = meta in ("adam", "rmsprop")

  def trace_dt(dtype):
    if trace_dtype is not None:
      return jnp.dtype(trace_dtype)
    return jnp.promote_types(dtype, jnp.float32)

  def init_beta(params, log_a0):
    if kind == "scalar":
      return log_a0
    if kind == "per_leaf":
      return jax.tree.map(lambda _: log_a0, params)
    if kind == "per_weight":
      return jax.tree.map(lambda p: jnp.zeros_like(p, dtype=jnp.float32) + log_a0, params)
    labels = sorted(set(_leaf_labels(granularity, params)))
    return {label: log_a0 for label in labels}

  def init_fn(params):
    a0 = initial_learning_rate(0) if callable(initial_learning_rate) else initial_learning_rate
    log_a0 = jnp.log(jnp.asarray(a0, jnp.float32))
    beta = init_beta(params, log_a0)
    zeros_beta = jax.tree.map(jnp.zeros_like, beta)
    base_state = base.init(params)
    if check_base and _injected_lr_in(base_state):
      raise ValueError("base is built by optax.inject_hyperparams with a learning_rate. "
                       + _BASE_HINT)
    return MetaOptimizeState(
        count=jnp.zeros([], jnp.int32),
        log_learning_rate=beta,
        trace=jax.tree.map(lambda p: jnp.zeros_like(p, dtype=trace_dt(p.dtype)), params),
        meta_mu=zeros_beta if uses_mu else (),
        meta_nu=jax.tree.map(jnp.zeros_like, beta) if uses_nu else (),
        base_state=base_state,
    )

  def meta_step(beta, z, mu, nu, count):
    eta = meta_learning_rate(count) if callable(meta_learning_rate) else meta_learning_rate
    t = (count + 1).astype(jnp.float32)
    if meta == "sgd":
      new_beta = jax.tree.map(lambda b, g: b - eta * g, beta, z)
    elif meta == "lion":
      new_beta = jax.tree.map(
          lambda b, g, m: b - eta * jnp.sign(meta_b1 * m + (1.0 - meta_b1) * g), beta, z, mu)
      mu = jax.tree.map(lambda m, g: meta_b2 * m + (1.0 - meta_b2) * g, mu, z)
    elif meta == "adam":
      mu = jax.tree.map(lambda m, g: meta_b1 * m + (1.0 - meta_b1) * g, mu, z)
      nu = jax.tree.map(lambda v, g: meta_b2 * v + (1.0 - meta_b2) * g * g, nu, z)
      c1 = 1.0 - jnp.power(jnp.asarray(meta_b1, jnp.float32), t)
      c2 = 1.0 - jnp.power(jnp.asarray(meta_b2, jnp.float32), t)
      new_beta = jax.tree.map(
          lambda b, m, v: b - eta * (m / c1) / (jnp.sqrt(v / c2) + meta_eps), beta, mu, nu)
    else:  # rmsprop
      nu = jax.tree.map(lambda v, g: meta_b2 * v + (1.0 - meta_b2) * g * g, nu, z)
      c2 = 1.0 - jnp.power(jnp.asarray(meta_b2, jnp.float32), t)
      new_beta = jax.tree.map(lambda b, g, v: b - eta * g / jnp.sqrt(v / c2 + meta_eps),
                              beta, z, nu)
    if lo is not None or hi is not None:
      new_beta = jax.tree.map(lambda b: jnp.clip(b, lo, hi), new_beta)
    cast = lambda new, old: jax.tree.map(lambda a, b: a.astype(b.dtype), new, old)  # noqa: E731
    return cast(new_beta, beta), cast(mu, mu), cast(nu, nu)

  def update_fn(updates, state, params=None, **extra_args):
    checks.check_same_structure(updates, params)
    hessian_diag = extra_args.get("hessian_diag")
    g_leaves, treedef = jax.tree.flatten(updates)
    h_leaves = treedef.flatten_up_to(state.trace)
    n = len(g_leaves)

    # z: block sums of h * g with the OLD trace, reduced in float32.
    hg = [h.astype(jnp.float32) * g.astype(jnp.float32) for h, g in zip(h_leaves, g_leaves)]
    beta = state.log_learning_rate
    if kind == "scalar":
      z = sum((jnp.sum(x) for x in hg), jnp.zeros([], jnp.float32))
    elif kind == "per_leaf":
      z = treedef.unflatten([jnp.sum(x) for x in hg])
    elif kind == "per_weight":
      z = treedef.unflatten(hg)
    else:
      leaf_labels = _leaf_labels(granularity, updates)
      sums = {label: jnp.zeros([], jnp.float32) for label in beta}
      for label, x in zip(leaf_labels, hg):
        sums[label] = sums[label] + jnp.sum(x)
      z = sums

    def alphas(b):
      if kind == "scalar":
        return [jnp.exp(b)] * n
      if kind in ("per_leaf", "per_weight"):
        return [jnp.exp(x) for x in treedef.flatten_up_to(b)]
      return [jnp.exp(b[label]) for label in leaf_labels]

    if alpha_timing == "next":
      new_beta, mu, nu = meta_step(beta, z, state.meta_mu, state.meta_nu, state.count)
      alpha = alphas(new_beta)
    else:
      alpha = alphas(beta)

    u, base_state = base.update(updates, state.base_state, params, **extra_args)
    u_leaves = treedef.flatten_up_to(u)

    if decay_is_zero:
      decay = [None] * n
    else:
      if params is None:
        raise ValueError("metaoptimize with weight_decay needs params: call "
                         "update(updates, state, params).")
      kappa = weight_decay(state.count) if callable(weight_decay) else weight_decay
      m = mask(params) if callable(mask) else mask
      if m is None:
        flags = [True] * n
      else:
        flags = []
        jax.tree.map(lambda f, sub: flags.extend([f] * len(jax.tree.leaves(sub))), m, params)
      p_leaves = treedef.flatten_up_to(params)
      decay = [(kappa, p) if f else None for f, p in zip(flags, p_leaves)]
    d_leaves = (treedef.flatten_up_to(hessian_diag) if hessian_diag is not None
                else [None] * n)

    new_updates, new_h = [], []
    for g, h, uu, a, dec, d in zip(g_leaves, h_leaves, u_leaves, alpha, decay, d_leaves):
      hd = h.dtype
      direction = uu.astype(hd)
      curv = None
      if dec is not None:
        kappa, p = dec
        direction = direction + kappa * p.astype(hd)
        curv = kappa
      dw = -(a.astype(hd) * direction)
      if d is not None:
        curv = d.astype(hd) if curv is None else curv + d.astype(hd)
        keep = jnp.maximum(0.0, 1.0 - a.astype(hd) * curv)
      elif curv is not None:
        keep = 1.0 - a.astype(hd) * curv
      else:
        keep = None
      hh = h if keep is None else keep * h
      new_h.append((gamma * hh + dw).astype(hd))
      new_updates.append(dw.astype(g.dtype))

    if alpha_timing == "current":
      new_beta, mu, nu = meta_step(beta, z, state.meta_mu, state.meta_nu, state.count)
    return treedef.unflatten(new_updates), MetaOptimizeState(
        count=optax.safe_increment(state.count),
        log_learning_rate=new_beta,
        trace=treedef.unflatten(new_h),
        meta_mu=mu,
        meta_nu=nu,
        base_state=base_state,
    )

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
