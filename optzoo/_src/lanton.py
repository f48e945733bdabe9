"""LANTON: noise-adaptive layerwise learning rates over LMO (Muon/Scion-style) updates.

Every layer keeps an EMA ``H`` of its squared gradient noise, measured in the *dual* norm of its
group's geometry (nuclear norm for hidden matrices, entrywise l1 for embedding and head), and
runs at the group's learning rate times ``r_l = sqrt(H_ref / H_l)`` clipped to ``[r_min, 1]``:
the quietest layer of a group keeps the base rate, noisier layers take smaller steps.

:func:`scale_by_lanton` (and its alias :func:`lanton`) puts these rates on Newton-Schulz and
sign updates; :func:`noise_adaptive_layerwise` puts the same rates on any optax optimizer. Both
use the one layer-rate machinery of this module: the noise sample, its EMA with an optional
sparse refresh, the normalisation inside a group, the warmup and the previous-gradient buffer.

The paper's algorithm listing was not available when optzoo was written. Where the paper does
not give a detail (the noise estimator, the normalisation and clip of the rates, their warmup,
the update scales, the nuclear-norm estimator, the group of vectors), the docstrings say which
choice optzoo makes and why, and every such choice is an argument.

References:
  Hao et al., `Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware Optimization
  for Deep Neural Network Training <https://arxiv.org/abs/2510.14009>`_, 2025
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from typing import Any, Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from optzoo import lmo as _lmo
from optzoo._src import alias, checks
from optzoo._src import trees

__all__ = [
    "NoiseAdaptiveLayerwiseState",
    "ScaleByLantonState",
    "default_lanton_labels",
    "lanton",
    "layer_rates",
    "noise_adaptive_layerwise",
    "scale_by_lanton",
]

NoiseEstimator = Literal["prev_grad", "momentum", "split"]
WrapperNoiseEstimator = Literal["prev_grad", "split"]
Normalize = Literal["min", "mean", "max", "none"]
HiddenScale = Literal["rms_match", "spectral", "keller", "none"]
HiddenDualNorm = Literal["ns", "svd", "gram", "fro_bound"]
LeafDualNorm = Literal["l1", "l2", "svd", "ns", "gram", "fro_bound"]

_TINY = 1e-30
_EMBED_KEYS = ("embed", "wte", "lm_head")
_LABELS = ("hidden", "embed_head", "vector")
#: RMS of an AdamW-like update (D-Muon's 0.2): the 'rms_match' hidden scale gives hidden
#: updates this RMS, and it is the default radius of the sign groups, so that both groups move
#: alike at one learning rate. The two uses must agree.
_UPDATE_RMS = 0.2


# ----------------------------------------------------------------------------- labels
def default_lanton_labels(params: Any) -> Any:
  """LANTON's default groups from shape and path.

  ``ndim >= 2`` and a path containing 'embed', 'wte' or 'lm_head' (any case) -> 'embed_head';
  other ``ndim >= 2`` -> 'hidden'; ``ndim < 2`` -> 'vector'.

  >>> import jax.numpy as jnp
  >>> default_lanton_labels({"wte": jnp.zeros((5, 2)), "mlp": jnp.zeros((2, 2)), "b": jnp.zeros(2)})
  {'b': 'vector', 'mlp': 'hidden', 'wte': 'embed_head'}
  """

  def label(path, p):
    if p.ndim < 2:
      return "vector"
    name = jax.tree_util.keystr(path).lower()
    return "embed_head" if any(k in name for k in _EMBED_KEYS) else "hidden"

  return jax.tree_util.tree_map_with_path(label, params)


# ----------------------------------------------------------------------------- rates
def layer_rates(
    noise: Sequence[jax.Array],
    groups: Sequence[Any],
    *,
    normalize: Normalize = "min",
    r_min: float = 0.05,
    r_max: float = 1.0,
    rate_eps: float = 1e-8,
) -> list[jax.Array]:
  r"""Layer rates from the noise EMAs ``H`` (one array of layer slices per leaf).

  Within each group ``g`` (the leaves with equal ``groups`` entries; every slice is a layer):

  .. math::
    \mathrm{ref}_g = \min_{j \in g} H_j,\qquad
    r_l = \operatorname{clip}\Bigl(\sqrt{\tfrac{\mathrm{ref}_g (1 + \epsilon) + \tau}
          {H_l + \epsilon\,\mathrm{ref}_g + \tau}},\ r_{\min},\ 1\Bigr)

  with ``epsilon = rate_eps`` and ``tau = 1e-30``. The paper states only that noisier layers of
  a group get smaller rates; the normalisation is optzoo's choice. With 'min' the quietest layer
  runs at the base rate and the others at the ratio of noise standard deviations; equal ``H``
  in a group gives ``r = 1`` exactly. ``epsilon`` is relative to ``ref`` so that rescaling the
  loss leaves the rates unchanged.

  Args:
    noise: one float array per leaf (shape ``()`` for one layer, ``(L,)`` for a stack).
    groups: one hashable group label per leaf.
    normalize: the reference of a group: 'min' (default), 'mean' or 'max' (the group mean / max,
      rates clipped at ``r_max``), or 'none': ``r = clip(1/sqrt(H + tau), r_min, r_max)``
      (AdaGrad-norm like, not invariant to the loss scale).
    r_min: lower clip of the rates. Default 0.05.
    r_max: upper clip for 'mean', 'max' and 'none'. Default 1.0.
    rate_eps: relative guard ``epsilon``. Default 1e-8.

  Returns:
    One float32 array of rates per leaf, shaped like ``noise``.

  >>> import jax.numpy as jnp
  >>> [float(r) for r in layer_rates([jnp.array(1.0), jnp.array(4.0)], ["g", "g"])]
  [1.0, 0.5]
  """
  out: list[jax.Array | None] = [None] * len(noise)
  order: dict[Any, list[int]] = {}
  for i, g in enumerate(groups):
    order.setdefault(g, []).append(i)
  for members in order.values():
    hs = [noise[i].astype(jnp.float32) for i in members]
    if normalize == "none":
      for i, h in zip(members, hs):
        out[i] = jnp.clip(jax.lax.rsqrt(h + _TINY), r_min, r_max)
      continue
    flat = jnp.concatenate([h.reshape(-1) for h in hs])
    if normalize == "min":
      ref, upper = jnp.min(flat), 1.0
    elif normalize == "mean":
      ref, upper = jnp.mean(flat), r_max
    else:
      ref, upper = jnp.max(flat), r_max
    for i, h in zip(members, hs):
      r = jnp.sqrt((ref * (1.0 + rate_eps) + _TINY) / (h + rate_eps * ref + _TINY))
      out[i] = jnp.clip(r, r_min, upper)
  return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the rate machinery
@dataclasses.dataclass(frozen=True)
class _RateRule:
  """How both optimizers of this module turn gradient noise into layer rates."""

  b2: Any
  noise_estimator: str
  normalize: str
  r_min: Any
  r_max: Any
  rate_eps: Any
  warmup_steps: Any
  noise_every: int


def _rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps, noise_every,
               estimators) -> _RateRule:
  """Validates the arguments of the rate machinery (``estimators``: the allowed estimators)."""
  checks.check_beta("b2", b2)
  checks.check_choice("normalize", normalize, typing.get_args(Normalize))
  checks.check_choice("noise_estimator", noise_estimator, typing.get_args(estimators))
  checks.check_range("r_min", r_min, 0.0, 1.0, low_open=True)
  checks.check_range("r_max", r_max, 0.0, low_open=True)
  checks.check_range("rate_eps", rate_eps, 0.0)
  checks.check_range("warmup_steps", warmup_steps, 0.0)
  noise_every = checks.check_int("noise_every", noise_every, 1)
  return _RateRule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps,
                   noise_every)


def _init_rate_fields(rule: _RateRule, params, layer_shapes, buffer_dtype):
  """``count``, ``prev_grad``, ``noise`` (zeros) and ``rates`` (ones) of a fresh state."""
  treedef = jax.tree.structure(params)
  noise, rates = trees.unzip(
      treedef, [(jnp.zeros(s, jnp.float32), jnp.ones(s, jnp.float32)) for s in layer_shapes], 2)
  prev_grad = (optax.tree.zeros_like(params, dtype=buffer_dtype)
               if rule.noise_estimator == "prev_grad" else None)
  return jnp.zeros([], jnp.int32), prev_grad, noise, rates


def _noise_diffs(rule: _RateRule, g_leaves, treedef, prev_grad, mu_leaves, count, extra_args):
  """What the noise is measured on, per leaf, and whether this step has a sample.

  'prev_grad': ``G_t - G_{t-1}``; 'momentum': ``G_t - B_{t-1}`` (``mu_leaves``); both have no
  sample at the first step. 'split': the ``noise_grads`` extra argument, every step.
  """
  if rule.noise_estimator == "prev_grad":
    prev_old = treedef.flatten_up_to(prev_grad)
    return [g - p.astype(g.dtype) for g, p in zip(g_leaves, prev_old)], count > 0
  if rule.noise_estimator == "momentum":
    return [g - m.astype(g.dtype) for g, m in zip(g_leaves, mu_leaves)], count > 0
  noise_grads = extra_args.get("noise_grads")
  if noise_grads is None:
    raise ValueError("noise_estimator='split' needs update(..., noise_grads=G_a - G_b).")
  return treedef.flatten_up_to(noise_grads), jnp.asarray(True)


def _refresh_noise(rule: _RateRule, h_old, diffs, valid, count, samples):
  """The noise EMAs ``H <- b2 H + (1 - b2) n^2`` with ``n = samples(diffs)``, kept where the step
  has no sample; with ``noise_every > 1`` only every ``noise_every`` steps (``jax.lax.cond``
  skips the cost of ``samples`` at run time on the other steps)."""

  def refresh(diffs_):
    return [jnp.where(valid, rule.b2 * h + (1.0 - rule.b2) * jnp.square(n).astype(jnp.float32),
                      h).astype(jnp.float32) for h, n in zip(h_old, samples(diffs_))]

  if rule.noise_every == 1:
    return refresh(diffs)
  due = jnp.logical_and(valid, count % rule.noise_every == 0)
  return jax.lax.cond(due, refresh, lambda _: [h.astype(jnp.float32) for h in h_old], diffs)


def _warm_rates(rule: _RateRule, h_new, groups, count):
  """:func:`layer_rates` of the new EMAs, all 1 during the first ``warmup_steps`` updates."""
  rates = layer_rates(h_new, groups, normalize=rule.normalize, r_min=rule.r_min,
                      r_max=rule.r_max, rate_eps=rule.rate_eps)
  return [jnp.where(count < rule.warmup_steps, jnp.ones_like(r), r) for r in rates]


def _next_prev_grad(rule: _RateRule, updates, prev_grad):
  """This step's gradient in the buffer's dtype ('prev_grad' estimator), else None."""
  if rule.noise_estimator != "prev_grad":
    return None
  return optax.tree.cast_like(updates, prev_grad)


def _expand(r: jax.Array, ndim: int) -> jax.Array:
  return r.reshape(r.shape + (1,) * (ndim - r.ndim))


def _batch_shape(p) -> tuple[int, ...]:
  return tuple(p.shape[:-2]) if len(p.shape) >= 2 else ()


def _leaf_dual(name: str) -> Callable[[jax.Array], jax.Array]:
  """The dual norm ``name`` of :data:`optzoo.lmo.DUAL_NORMS` on a leaf: matrix norms reduce the
  last two axes; a leaf of rank < 2 takes the l1 norm ('l1') or the l2 norm (every other name)."""
  fn = _lmo.dual_norm(name)

  def leaf_dual(x):
    if x.ndim < 2:
      return _lmo.l1_norm(x) if name == "l1" else _lmo.l2_norm(x)
    return fn(x)

  return leaf_dual


# ----------------------------------------------------------------------------- scale_by_lanton
class ScaleByLantonState(NamedTuple):
  """State of :func:`scale_by_lanton`.

  Attributes:
    count: int32 step counter.
    mu: momentum ``B`` per param (dtype ``mu_dtype``).
    prev_grad: the previous gradient per param for ``noise_estimator='prev_grad'``, else None.
    noise: ``H``, the EMA of the squared dual-norm noise: float32, one entry per layer slice
      (shape ``()`` for a matrix, ``(L,)`` for a scanned ``(L, d_in, d_out)`` stack).
    rates: ``r``, the layer rates of the last update (same shapes as ``noise``).
  """

  count: jax.Array
  mu: optax.Updates
  prev_grad: optax.Updates | None
  noise: optax.Updates
  rates: optax.Updates


@dataclasses.dataclass(frozen=True)
class _Lanton:
  """The arguments of :func:`scale_by_lanton` after validation."""

  rule: _RateRule
  b1: Any
  nesterov: bool
  ns_steps: int
  ns_coeffs: tuple[float, ...]
  ns_eps: Any
  ns_dtype: Any
  hidden_scale: str
  dual_norm: str
  dual_shape_factor: bool
  sign_scale: Any
  weight_decay: Any
  weight_decay_mask: Any
  labels: Any
  norm_groups: Any
  mu_dtype: Any


def _check_lmo_args(ns_steps, hidden_scale, dual_norm, ns_eps, sign_scale, weight_decay) -> int:
  """Validates the arguments of the LMO part of :func:`scale_by_lanton`; returns ``ns_steps``."""
  ns_steps = checks.check_int("ns_steps", ns_steps, 0)
  checks.check_choice("hidden_scale", hidden_scale, typing.get_args(HiddenScale))
  checks.check_choice("dual_norm", dual_norm, typing.get_args(HiddenDualNorm))
  checks.check_range("ns_eps", ns_eps, 0.0)
  checks.check_range("sign_scale", sign_scale, 0.0)
  checks.check_range("weight_decay", weight_decay, 0.0)
  return ns_steps


def _hidden_scale(kind: str, d_in: int, d_out: int) -> float:
  if kind == "rms_match":
    return _UPDATE_RMS * math.sqrt(max(d_in, d_out))
  if kind == "spectral":
    return math.sqrt(d_out / d_in)
  if kind == "keller":
    return math.sqrt(max(1.0, d_out / d_in))
  return 1.0


def _lanton_groups(cfg: _Lanton, tree):
  """Per leaf: the LANTON label, and the normalisation group ``(label, norm group)``."""
  labs = trees.leaf_values(cfg.labels, tree, default_lanton_labels)
  leaves = jax.tree.leaves(tree)
  for lab, p in zip(labs, leaves):
    if lab not in _LABELS:
      raise ValueError(f"LANTON label {lab!r} is not one of {_LABELS}.")
    if lab == "hidden" and len(p.shape) < 2:
      raise ValueError(f"a 'hidden' leaf needs ndim >= 2, got shape {p.shape}.")
  if cfg.norm_groups == "shape":
    sub = [tuple(p.shape[-2:]) if len(p.shape) >= 2 else () for p in leaves]
  else:
    sub = trees.leaf_values(cfg.norm_groups, tree)
  return labs, [(lab, s) for lab, s in zip(labs, sub)]


def _lanton_init(cfg: _Lanton, params) -> ScaleByLantonState:
  _lanton_groups(cfg, params)  # label errors surface at init
  mu = optax.tree.zeros_like(params, dtype=cfg.mu_dtype)
  shapes = [_batch_shape(p) for p in jax.tree.leaves(params)]
  count, prev_grad, noise, rates = _init_rate_fields(cfg.rule, params, shapes, cfg.mu_dtype)
  return ScaleByLantonState(count, mu, prev_grad, noise, rates)


def _ns(cfg: _Lanton, xs):
  """Newton-Schulz of many arrays, batched per shape, as float32."""
  outs = _lmo.newton_schulz_many(xs, cfg.ns_steps, cfg.ns_coeffs, cfg.ns_eps, cfg.ns_dtype)
  return [r.astype(jnp.float32) for r in outs]


def _hidden_dual(cfg: _Lanton, d, nsd):
  """``sqrt(d_out/d_in) ||d||_*`` of a hidden leaf; 'ns' reads ``sum(d * NS(d))`` from ``nsd``."""
  m, n = d.shape[-2], d.shape[-1]
  d = d.astype(jnp.float32)
  if cfg.dual_norm == "ns":
    val = jnp.sum(d * nsd, axis=(-2, -1))
  else:
    val = _lmo.dual_norm(cfg.dual_norm)(d)
  return val * math.sqrt(n / m) if cfg.dual_shape_factor else val


def _lanton_samples(cfg: _Lanton, labs, diffs, ns_diffs):
  """Noise samples: the hidden dual norm of hidden leaves, entrywise l1 of the sign groups."""
  sign_dual = _leaf_dual("l1")
  out = []
  for i, d in enumerate(diffs):
    if labs[i] == "hidden":
      out.append(_hidden_dual(cfg, d, None if ns_diffs is None else ns_diffs[i]))
    else:
      out.append(sign_dual(d))
  return out


def _lanton_noise(cfg: _Lanton, labs, dirs_in, diffs, h_old, valid, count):
  """Newton-Schulz of the hidden LMO inputs, and the new noise EMAs.

  With the 'ns' dual norm refreshed every step, the Newton-Schulz of the hidden noise runs in
  the same batched call as the momentum's.
  """
  hidden = [i for i, lab in enumerate(labs) if lab == "hidden"]
  if cfg.dual_norm == "ns" and cfg.rule.noise_every == 1:
    res = _ns(cfg, [dirs_in[i] for i in hidden] + [diffs[i] for i in hidden])
    k = len(hidden)
    ns_dir = dict(zip(hidden, res[:k]))
    ns_diff = dict(zip(hidden, res[k:]))

    def samples(diffs_):
      return _lanton_samples(cfg, labs, diffs_, ns_diff)
  else:
    ns_dir = dict(zip(hidden, _ns(cfg, [dirs_in[i] for i in hidden])))

    def samples(diffs_):
      nsd = None
      if cfg.dual_norm == "ns":
        nsd = dict(zip(hidden, _ns(cfg, [diffs_[i] for i in hidden])))
      return _lanton_samples(cfg, labs, diffs_, nsd)

  return ns_dir, _refresh_noise(cfg.rule, h_old, diffs, valid, count, samples)


def _lanton_directions(cfg: _Lanton, labs, g_leaves, dirs_in, ns_dir, rates, decay, p_leaves):
  """Per leaf ``r * (s * dir + wd * X)``, in the gradient's dtype."""
  out = []
  for i, g in enumerate(g_leaves):
    if labs[i] == "hidden":
      s = _hidden_scale(cfg.hidden_scale, g.shape[-2], g.shape[-1])
      u = s * ns_dir[i]
    else:
      u = cfg.sign_scale * jnp.sign(dirs_in[i]).astype(jnp.float32)
    if decay[i] and checks.concrete_float(cfg.weight_decay) != 0.0:
      if p_leaves is None:
        raise ValueError("scale_by_lanton with weight_decay needs params in update().")
      u = u + cfg.weight_decay * p_leaves[i].astype(jnp.float32)
    out.append((_expand(rates[i], g.ndim) * u).astype(g.dtype))
  return out


def _lanton_update(cfg: _Lanton, updates, state: ScaleByLantonState, params, extra_args):
  checks.check_same_structure(updates, params)
  labs, groups = _lanton_groups(cfg, updates)
  g_leaves, treedef = jax.tree.flatten(updates)
  mu_old = treedef.flatten_up_to(state.mu)
  h_old = treedef.flatten_up_to(state.noise)
  count = state.count
  b1 = cfg.b1

  mu_new = [((1.0 - b1) * g + b1 * m).astype(m.dtype) for g, m in zip(g_leaves, mu_old)]
  if cfg.nesterov:
    dirs_in = [(1.0 - b1) * g + b1 * m.astype(g.dtype) for g, m in zip(g_leaves, mu_new)]
  else:
    dirs_in = mu_new
  diffs, valid = _noise_diffs(cfg.rule, g_leaves, treedef, state.prev_grad, mu_old, count,
                              extra_args)
  ns_dir, h_new = _lanton_noise(cfg, labs, dirs_in, diffs, h_old, valid, count)
  rates = _warm_rates(cfg.rule, h_new, groups, count)
  decay = trees.leaf_values(cfg.weight_decay_mask, updates, True)
  p_leaves = None if params is None else treedef.flatten_up_to(params)
  out = _lanton_directions(cfg, labs, g_leaves, dirs_in, ns_dir, rates, decay, p_leaves)
  new_state = ScaleByLantonState(
      count=optax.safe_increment(count),
      mu=treedef.unflatten(mu_new),
      prev_grad=_next_prev_grad(cfg.rule, updates, state.prev_grad),
      noise=treedef.unflatten(h_new),
      rates=treedef.unflatten(rates),
  )
  return treedef.unflatten(out), new_state


def scale_by_lanton(
    b1: float = 0.95,
    b2: float = 0.99,
    ns_steps: int = 5,
    *,
    noise_estimator: NoiseEstimator = "prev_grad",
    normalize: Normalize = "min",
    r_min: float = 0.05,
    warmup_steps: int = 10,
    hidden_scale: HiddenScale = "rms_match",
    dual_norm: HiddenDualNorm = "ns",
    labels: Any = None,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
    ns_coeffs: tuple[float, float, float] = _lmo.NS_COEFFS,
    ns_eps: float = 1e-7,
    ns_dtype: Any = jnp.float32,
    sign_scale: float = _UPDATE_RMS,
    r_max: float = 1.0,
    rate_eps: float = 1e-8,
    nesterov: bool = False,
    mu_dtype: Any | None = None,
    norm_groups: Any = None,
    noise_every: int = 1,
    dual_shape_factor: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""LANTON's learning-rate-free direction: an LMO of the momentum times a noise-adaptive layer rate.

  For every layer ``l`` (a matrix, or one slice of a stacked ``(..., d_in, d_out)`` leaf) in
  group ``g``:

  .. math::
    B_l &\leftarrow \beta_1 B_l + (1-\beta_1) G_l \\
    n_l &= \|G_l - G_l^{\mathrm{prev}}\|_{g,*},\qquad H_l \leftarrow \beta_2 H_l + (1-\beta_2) n_l^2 \\
    r_l &= \operatorname{clip}\bigl(\sqrt{\min_{j\in g} H_j / H_l},\ r_{\min},\ 1\bigr) \\
    u_l &= r_l\,\bigl(s_g\,\mathrm{dir}_g(B_l) + \lambda X_l\bigr)

  with ``dir = NS(B)`` (Newton-Schulz, about ``U V^T``) for 'hidden' leaves and ``sign(B)`` for
  'embed_head' and 'vector' leaves; ``-u`` is ``s_g`` times the LMO, and the caller scales by
  ``-eta_t`` (:func:`lanton` does). A leaf with ``ndim >= 3`` is a stack of layers over its
  leading axes, each slice with its own noise EMA and rate. The dual norms are the paper's:
  ``sqrt(d_out/d_in) ||.||_*`` (nuclear) for hidden matrices, entrywise l1 for sign groups.
  Where the paper does not give a detail, the argument says what optzoo chose and why.

  Args:
    b1: momentum EMA rate, in [0, 1). Default 0.95 (D-Muon's; the paper's is not known).
    b2: EMA rate of the squared noise ``H``, in [0, 1). Default 0.99 (near 1, as the theory asks).
    ns_steps: Newton-Schulz iterations (static). Default 5.
    noise_estimator: what the noise is measured on: 'prev_grad' (default; ``G_t - G_{t-1}``,
      one more buffer, no sample at the first step: the paper's practical option, whose form
      it does not give), 'momentum' (``G_t - B_{t-1}``, no extra memory; an optzoo extra) or
      'split' (the paper's theory version: ``update(..., noise_grads=G_a - G_b)``, ``G_a`` and
      ``G_b`` the gradients of two independent half-batches).
    normalize: reference of the rates in a group, not given by the paper: 'min' (default; the
      quietest layer runs at the base rate), 'mean', 'max' or 'none'; see :func:`layer_rates`.
    r_min: lower clip of the rates, in (0, 1]. Default 0.05, so a very noisy layer still learns.
    warmup_steps: ``r = 1`` for the first updates, while ``H`` has few samples. Default 10.
    hidden_scale: ``s_g`` of hidden matrices: 'rms_match' (default, ``0.2 sqrt(max(d_in,
      d_out))``, as D-Muon, the paper's baseline), 'spectral' (``sqrt(d_out/d_in)``, Scion),
      'keller' (``sqrt(max(1, d_out/d_in))``, Muon) or 'none' (1).
    dual_norm: nuclear-norm estimator of the hidden noise: 'ns' (default, ``sum(D * NS(D))``,
      batched with the momentum's Newton-Schulz; 6-15% low on random matrices), 'svd'
      (exact), 'gram' (lower bound ``||D||_F^3 / ||D D^T||_F``) or 'fro_bound' (upper bound).
    labels: None (:func:`default_lanton_labels`), or a pytree (or prefix, or a callable params
      -> pytree) of 'hidden' / 'embed_head' / 'vector'.
    weight_decay: decoupled decay ``lambda``, taken with the layer rate (Scion's view; the paper
      does not say). Default 0 here; :func:`lanton` passes its own.
    weight_decay_mask: pytree (or callable) of bools selecting decayed leaves; None: all.
    ns_coeffs: the quintic's coefficients. Default (3.4445, -4.7750, 2.0315).
    ns_eps: Frobenius-norm guard of Newton-Schulz. Default 1e-7.
    ns_dtype: Newton-Schulz compute dtype: float32 (default) or ``jnp.bfloat16`` (faster).
    sign_scale: radius of the sign groups (Signum times ``sign_scale``). Default 0.2: the RMS of
      the 'rms_match' hidden update, so both groups move like AdamW at one learning rate.
    r_max: upper clip for ``normalize`` in ('mean', 'max', 'none'). Default 1.0.
    rate_eps: relative guard in the rate formula. Default 1e-8.
    nesterov: use ``b1 B_t + (1-b1) G_t`` as the LMO input. Default False.
    mu_dtype: dtype of the momentum and of the previous-gradient buffer; None: the params'.
    norm_groups: second label splitting the groups for the normalisation: None (default),
      'shape' (one group per label and matrix shape), a pytree or a callable.
    noise_every: refresh ``H`` only every ``noise_every`` steps (static; an optzoo option that
      skips the dual-norm cost at run time on the other steps). Default 1.
    dual_shape_factor: multiply the hidden dual norm by ``sqrt(d_out/d_in)``. Default True.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; the layer rates are the state field ``rates``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = {"w1": jnp.ones((4, 8)), "w2": jnp.ones((8, 2))}
    >>> tx = optax.chain(optzoo.scale_by_lanton(), optax.scale(-1e-2))
    >>> state = tx.init(params)
    >>> grads = jax.tree.map(jnp.ones_like, params)
    >>> updates, state = tx.update(grads, state, params)
    >>> optax.tree.get(state, "rates")["w1"].shape
    ()

  References:
    Hao et al., `Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware
    Optimization for Deep Neural Network Training <https://arxiv.org/abs/2510.14009>`_, 2025
  """
  checks.check_beta("b1", b1)
  rule = _rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps,
                    noise_every, NoiseEstimator)
  ns_steps = _check_lmo_args(ns_steps, hidden_scale, dual_norm, ns_eps, sign_scale, weight_decay)
  cfg = _Lanton(
      rule=rule, b1=b1, nesterov=nesterov, ns_steps=ns_steps, ns_coeffs=tuple(ns_coeffs),
      ns_eps=ns_eps, ns_dtype=jnp.result_type(float) if ns_dtype is None else ns_dtype,
      hidden_scale=hidden_scale, dual_norm=dual_norm, dual_shape_factor=dual_shape_factor,
      sign_scale=sign_scale, weight_decay=weight_decay, weight_decay_mask=weight_decay_mask,
      labels=labels, norm_groups=norm_groups,
      mu_dtype=None if mu_dtype is None else jnp.dtype(mu_dtype))

  def init_fn(params):
    return _lanton_init(cfg, params)

  def update_fn(updates, state, params=None, **extra_args):
    return _lanton_update(cfg, updates, state, params, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _lanton_partition_labels(labels, params):
  """'vector' for LANTON's vector leaves, 'lanton' for the others (``optax.partition``)."""
  labs = trees.leaf_values(labels, params, default_lanton_labels)
  treedef = jax.tree.structure(params)
  return treedef.unflatten(["vector" if lab == "vector" else "lanton" for lab in labs])


@alias.static_args("ns_steps", "noise_every", "mu_dtype", "ns_dtype", "labels", "norm_groups",
                   "weight_decay_mask", "vector_optimizer")
def lanton(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.95,
    b2: float = 0.99,
    ns_steps: int = 5,
    weight_decay: float = 0.1,
    *,
    noise_estimator: NoiseEstimator = "prev_grad",
    normalize: Normalize = "min",
    r_min: float = 0.05,
    warmup_steps: int = 10,
    hidden_scale: HiddenScale = "rms_match",
    dual_norm: HiddenDualNorm = "ns",
    labels: Any = None,
    vector_optimizer: optax.GradientTransformation | Literal["sign"] | None = None,
    vector_b1: float = 0.9,
    vector_b2: float = 0.95,
    vector_weight_decay: float = 0.0,
    decay_with_rate: bool = True,
    weight_decay_mask: Any = None,
    ns_coeffs: tuple[float, float, float] = _lmo.NS_COEFFS,
    ns_eps: float = 1e-7,
    ns_dtype: Any = jnp.float32,
    sign_scale: float = _UPDATE_RMS,
    r_max: float = 1.0,
    rate_eps: float = 1e-8,
    nesterov: bool = False,
    mu_dtype: Any | None = None,
    norm_groups: Any = None,
    noise_every: int = 1,
    dual_shape_factor: bool = True,
) -> optax.GradientTransformationExtraArgs:
  r"""LANTON: Muon/Scion-style LMO updates with noise-adaptive layerwise learning rates.

  .. math::
    X_l \leftarrow X_l - \eta_t r_l \lambda X_l - \eta_t r_l\, s_g\,\mathrm{dir}_g(B_l)

  with the momentum ``B``, rates ``r`` and directions of :func:`scale_by_lanton`. Hidden
  matrices go through Newton-Schulz, embedding and head through sign (Signum), and vectors (norm
  gains, biases) through ``vector_optimizer``: the paper does not say how it treats vectors;
  optzoo follows its D-Muon baseline, AdamW without a layer rate, by default. The parts are
  joined with ``optax.partition``. The weight decay follows the layer rate
  (``decay_with_rate=True``, Scion's view; the paper does not say); with ``False`` it is
  D-Muon's ``X (1 - eta lambda)``.

  Args:
    learning_rate: base rate ``eta_t`` (float or schedule, >= 0).
    b1: momentum EMA rate. Default 0.95.
    b2: EMA rate of the squared noise. Default 0.99.
    ns_steps: Newton-Schulz iterations. Default 5.
    weight_decay: decoupled decay of the LANTON leaves (>= 0). Default 0.1 (D-Muon's).
    noise_estimator: 'prev_grad' (default), 'momentum' or 'split'.
    normalize: 'min' (default), 'mean', 'max' or 'none'.
    r_min: lower clip of the rates. Default 0.05.
    warmup_steps: updates with ``r = 1``. Default 10.
    hidden_scale: 'rms_match' (default), 'spectral', 'keller' or 'none'.
    dual_norm: 'ns' (default), 'svd', 'gram' or 'fro_bound'.
    labels: LANTON groups; None: :func:`default_lanton_labels`.
    vector_optimizer: optimizer of the 'vector' leaves (a GradientTransformation that includes
      its learning rate), None (default) for AdamW, or 'sign' to treat vectors as a LANTON sign
      group with the l1 dual norm.
    vector_b1: the default AdamW's ``b1``. Default 0.9.
    vector_b2: the default AdamW's ``b2``. Default 0.95.
    vector_weight_decay: the default AdamW's decay. Default 0.0.
    decay_with_rate: multiply the decay by ``r_l``. Default True.
    weight_decay_mask: pytree (or callable) of bools over the params selecting decayed leaves;
      None (default): all LANTON leaves.
    ns_coeffs: the quintic's coefficients. Default (3.4445, -4.7750, 2.0315).
    ns_eps: Frobenius-norm guard of Newton-Schulz. Default 1e-7.
    ns_dtype: Newton-Schulz compute dtype. Default float32.
    sign_scale: radius of the sign groups. Default 0.2.
    r_max: upper clip of the rates for 'mean', 'max', 'none'. Default 1.0.
    rate_eps: relative guard of the rate formula. Default 1e-8.
    nesterov: Nesterov momentum as the LMO input. Default False.
    mu_dtype: dtype of the momenta and the previous-gradient buffer; None (default): the params'.
    norm_groups: second label for the normalisation. Default None.
    noise_every: refresh the noise EMAs every ``noise_every`` steps. Default 1.
    dual_shape_factor: ``sqrt(d_out/d_in)`` in the hidden dual norm. Default True.

  Every argument after ``learning_rate`` is described in full at :func:`scale_by_lanton`.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    >>> tx = optzoo.lanton(learning_rate=1e-2)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum((p["w"] - 2.0) ** 2) + jnp.sum(p["b"] ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)

  References:
    Hao et al., `Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware
    Optimization for Deep Neural Network Training <https://arxiv.org/abs/2510.14009>`_, 2025
  """
  checks.check_learning_rate(learning_rate)
  checks.check_range("weight_decay", weight_decay, 0.0)
  checks.check_range("vector_weight_decay", vector_weight_decay, 0.0)
  if isinstance(vector_optimizer, str) and vector_optimizer != "sign":
    raise ValueError(f"vector_optimizer={vector_optimizer!r}: pass a GradientTransformation, "
                     "None (AdamW) or 'sign'.")
  core = scale_by_lanton(
      b1=b1, b2=b2, ns_steps=ns_steps, noise_estimator=noise_estimator, normalize=normalize,
      r_min=r_min, warmup_steps=warmup_steps, hidden_scale=hidden_scale, dual_norm=dual_norm,
      labels=labels, weight_decay=weight_decay if decay_with_rate else 0.0,
      weight_decay_mask=weight_decay_mask if decay_with_rate else None, ns_coeffs=ns_coeffs,
      ns_eps=ns_eps, ns_dtype=ns_dtype, sign_scale=sign_scale, r_max=r_max, rate_eps=rate_eps,
      nesterov=nesterov, mu_dtype=mu_dtype, norm_groups=norm_groups, noise_every=noise_every,
      dual_shape_factor=dual_shape_factor)
  parts = [core]
  if not decay_with_rate:
    parts.append(optax.add_decayed_weights(weight_decay, weight_decay_mask))
  parts.append(optax.scale_by_learning_rate(learning_rate))
  main = optax.chain(*parts)
  if vector_optimizer == "sign":
    return main
  if vector_optimizer is None:
    vector_optimizer = optax.adamw(learning_rate, b1=vector_b1, b2=vector_b2, eps=1e-8,
                                   weight_decay=vector_weight_decay, mu_dtype=mu_dtype)
  return optax.partition({"lanton": main, "vector": vector_optimizer},
                         functools.partial(_lanton_partition_labels, labels))


# ----------------------------------------------------------------------------- generic wrapper
class NoiseAdaptiveLayerwiseState(NamedTuple):
  """State of :func:`noise_adaptive_layerwise`.

  Attributes:
    count: int32 step counter.
    prev_grad: the previous raw gradient ('prev_grad' estimator), else None.
    noise: ``H`` per leaf (float32, the dual norm's output shape, e.g. ``()`` or ``(L,)``).
    rates: the layer rates of the last update (same shapes as ``noise``).
    inner_state: the wrapped optimizer's state.
  """

  count: jax.Array
  prev_grad: optax.Updates | None
  noise: optax.Updates
  rates: optax.Updates
  inner_state: Any


def _wrapper_update(rule: _RateRule, dual, inner, labels, updates, state, params, extra_args):
  checks.check_same_structure(updates, params)
  g_leaves, treedef = jax.tree.flatten(updates)
  groups = trees.leaf_values(labels, updates, 0)
  h_old = treedef.flatten_up_to(state.noise)
  count = state.count
  diffs, valid = _noise_diffs(rule, g_leaves, treedef, state.prev_grad, None, count, extra_args)
  h_new = _refresh_noise(rule, h_old, diffs, valid, count,
                         lambda ds: [dual(d).astype(jnp.float32) for d in ds])
  rates = _warm_rates(rule, h_new, groups, count)
  inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
  out = [(_expand(r, u.ndim) * u.astype(jnp.float32)).astype(u.dtype)
         for r, u in zip(rates, treedef.flatten_up_to(inner_updates))]
  return treedef.unflatten(out), NoiseAdaptiveLayerwiseState(
      count=optax.safe_increment(count), prev_grad=_next_prev_grad(rule, updates, state.prev_grad),
      noise=treedef.unflatten(h_new), rates=treedef.unflatten(rates), inner_state=inner_state)


@alias.static_args("inner", "dual_norm", "labels", "noise_every", "prev_dtype")
def noise_adaptive_layerwise(
    inner: optax.GradientTransformation,
    *,
    dual_norm: LeafDualNorm | Callable[[jax.Array], jax.Array] = "l1",
    labels: Any = None,
    b2: float = 0.99,
    noise_estimator: WrapperNoiseEstimator = "prev_grad",
    normalize: Normalize = "min",
    r_min: float = 0.05,
    r_max: float = 1.0,
    warmup_steps: int = 10,
    rate_eps: float = 1e-8,
    noise_every: int = 1,
    prev_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""Puts LANTON's noise-adaptive layer rates on any optimizer.

  .. math::
    n_l = \|G_l - G_l^{\mathrm{prev}}\|_*,\quad H_l \leftarrow \beta_2 H_l + (1-\beta_2) n_l^2,\quad
    u_l = r_l(H)\cdot \mathrm{inner}(G)_l

  with the rates ``r`` of :func:`layer_rates`. ``H`` is computed from the *raw* incoming
  gradients (before ``inner`` changes them); every output leaf of ``inner`` is multiplied by its
  rate (broadcast over the stacked-layer axes). The paper states the rule for its own LMO
  updates; this wrapper is optzoo's generalisation, and the noise should be measured in the dual
  of the norm the inner optimizer steps in: Muon with 'ns' or 'svd' (nuclear); Lion and signSGD
  with 'l1'; SGD with 'l2'; Adam with 'l1' (its steps are sign-like).

  Args:
    inner: any optax transformation, usually including its learning rate
      (``optax.lion(1e-3)``, ``optax.sgd(0.1)``, ``optax.contrib.muon(...)``).
    dual_norm: a name in ``optzoo.lmo.DUAL_NORMS``: 'l1' (default), 'l2', 'svd', 'ns', 'gram'
      or 'fro_bound' (matrix norms reduce the last two axes; leaves of rank < 2 take the l1
      norm for 'l1' and the l2 norm otherwise), or a callable ``leaf -> array`` whose output
      shape is the leaf's layer axes (``()`` for one layer).
    labels: the group of every leaf for the normalisation: None (default, one group), a pytree
      (or prefix) of hashable labels, or a callable params -> such a pytree.
    b2: EMA rate of ``H``, in [0, 1). Default 0.99.
    noise_estimator: 'prev_grad' (default; ``G_t - G_{t-1}``, no sample at the first step) or
      'split' (``update(..., noise_grads=G_a - G_b)`` from two independent half-batches).
    normalize: 'min' (default), 'mean', 'max' or 'none'; see :func:`layer_rates`.
    r_min: lower clip of the rates, in (0, 1]. Default 0.05.
    r_max: upper clip for 'mean', 'max' and 'none'. Default 1.0.
    warmup_steps: ``r = 1`` for the first ``warmup_steps`` updates. Default 10.
    rate_eps: relative guard of the rate formula. Default 1e-8.
    noise_every: refresh ``H`` every ``noise_every`` steps (static). Default 1.
    prev_dtype: dtype of the previous-gradient buffer; None (default): the params'.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; the layer rates are the state field ``rates``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = {"a": jnp.ones((3, 2)), "b": jnp.ones((3, 2))}
    >>> tx = optzoo.noise_adaptive_layerwise(optax.lion(1e-3), dual_norm="l1")
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)

  References:
    Hao et al., `Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware
    Optimization for Deep Neural Network Training <https://arxiv.org/abs/2510.14009>`_, 2025
  """
  rule = _rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps,
                    noise_every, WrapperNoiseEstimator)
  dual = _leaf_dual(dual_norm) if isinstance(dual_norm, str) else dual_norm
  inner = optax.with_extra_args_support(inner)
  prev_dtype = None if prev_dtype is None else jnp.dtype(prev_dtype)

  def init_fn(params):
    shapes = [jax.eval_shape(dual, jax.ShapeDtypeStruct(p.shape, p.dtype)).shape
              for p in jax.tree.leaves(params)]
    count, prev_grad, noise, rates = _init_rate_fields(rule, params, shapes, prev_dtype)
    return NoiseAdaptiveLayerwiseState(count=count, prev_grad=prev_grad, noise=noise,
                                       rates=rates, inner_state=inner.init(params))

  def update_fn(updates, state, params=None, **extra_args):
    return _wrapper_update(rule, dual, inner, labels, updates, state, params, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
