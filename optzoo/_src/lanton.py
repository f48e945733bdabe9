"""LANTON: noise-adaptive layerwise learning rates over LMO (Muon/Scion-style) updates.

Every layer keeps an EMA ``H`` of its squared gradient noise, measured in the *dual* norm of its
group's geometry (nuclear norm for hidden matrices, entrywise l1 for embedding and head), and
runs at the group's learning rate times ``r_l = sqrt(H_ref / H_l)`` clipped to ``[r_min, 1]``:
the quietest layer of a group keeps the base rate, noisier layers take smaller steps.

:func:`scale_by_lanton` (and its alias :func:`lanton`) puts these rates on Newton-Schulz and
sign updates; :func:`noise_adaptive_layerwise` puts the same rates on any optax optimizer. Both
use the one layer-rate machinery of this module: the noise sample, its EMA with an optional
sparse refresh, the normalisation inside a group, the warmup and the previous-gradient buffer.

Layers and groups come from :mod:`optzoo.layouts` (see :func:`default_lanton_labels`).

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
import inspect
import math
import typing
from typing import Any, Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optzoo import layouts as _layouts
from optzoo import lmo as _lmo
from optzoo._src import alias, checks, masking, trees

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
_LABELS = ("hidden", "embed_head", "vector")
#: LANTON's group of each layout kind.
_KIND_GROUP = {"matrix": "hidden", "embedding": "embed_head", "vector": "vector"}
#: RMS of an AdamW-like update (D-Muon's 0.2): the 'rms_match' hidden scale gives hidden
#: updates this RMS, and it is the default radius of the sign groups, so that both groups move
#: alike at one learning rate. The two uses must agree.
_UPDATE_RMS = 0.2


# ----------------------------------------------------------------------------- labels
def default_lanton_labels(params: Any, layouts: Any = None, stack_axes: Any = None) -> Any:
  """LANTON's default groups, from the layout of every leaf (:func:`optzoo.layouts.infer`).

  A 'matrix' leaf (a Dense, attention or convolution kernel) -> 'hidden'; an 'embedding' leaf (a
  path containing 'embed', 'wte' or 'lm_head', any case) -> 'embed_head'; a 'vector' leaf
  (biases, norm scales, anything of rank < 2, e.g. an attention bias ``(heads, head_dim)``) ->
  'vector'.

  The layouts also say what a layer is, for :func:`scale_by_lanton`, :func:`lanton` and
  :func:`noise_adaptive_layerwise` (their ``layouts`` and ``stack_axes`` arguments): a hidden
  leaf is Newton-Schulz'd as its ``(d_in, d_out)`` matrix view, ``d_in`` and ``d_out`` the
  products of the layout's reduction and output axes (an attention query kernel ``(in, heads,
  head_dim)`` is one ``(in, heads*head_dim)`` matrix, a convolution kernel ``(*window, in,
  out)`` one ``(window*in, out)`` matrix), and the hidden scale and dual norms use those dims.
  Each index of the layout's batch axes (a scanned stack of blocks) is its own layer with its
  own noise EMA and rate. A leaf of rank >= 3 that no rule identifies (a stack of Dense kernels
  looks like a 1-D convolution) raises :class:`optzoo.layouts.AmbiguousLayoutError` naming the
  leaf: pass ``stack_axes`` (e.g. ``{"blocks": 1}``) or, for a Flax ``nnx`` model,
  ``layouts=optzoo.layouts.from_nnx(model)``.

  Args:
    params: the parameter pytree.
    layouts: as for :func:`optzoo.layouts.infer` (e.g. ``optzoo.layouts.from_nnx(model)``).
    stack_axes: as for :func:`optzoo.layouts.infer` (e.g. ``{"blocks": 1}``).

  >>> import jax.numpy as jnp
  >>> default_lanton_labels({"wte": jnp.zeros((5, 2)), "mlp": jnp.zeros((2, 2)), "b": jnp.zeros(2)})
  {'b': 'vector', 'mlp': 'hidden', 'wte': 'embed_head'}
  """
  lays = _layouts.infer(params, layouts, stack_axes)
  return jax.tree.unflatten(jax.tree.structure(params), [_KIND_GROUP[lay.kind] for lay in lays])


# ----------------------------------------------------------------------------- layer views
def _stacked_matrix(ndim: int) -> _layouts.LeafLayout:
  """The last two axes as ``(rows, cols)``, the leading ones as layers (a leaf labelled 'hidden'
  whose layout is a vector)."""
  return _layouts.LeafLayout("matrix", (ndim - 2,), (ndim - 1,), tuple(range(ndim - 2)))


@dataclasses.dataclass(frozen=True)
class _View:
  """One leaf as the layer-rate machinery sees it: its layout and shape. A layer is one index of
  the layout's batch axes (one layer when there are none)."""

  lay: _layouts.LeafLayout
  shape: tuple[int, ...]

  @property
  def layer_shape(self) -> tuple[int, ...]:
    """Shape of the per-layer arrays (noise, rates): the batch axes' sizes."""
    return tuple(self.shape[a] for a in self.lay.batch_axes)

  @property
  def dims(self) -> tuple[int, int]:
    """(rows, cols) of one layer's matrix (matrix and embedding layouts)."""
    return self.lay.matrix_shape(self.shape)  # type: ignore[return-value]

  @property
  def layer_size(self) -> int:
    """Entries of one layer."""
    return math.prod(self.shape) // max(1, math.prod(self.layer_shape))

  def to_mat(self, x: jax.Array) -> jax.Array:
    """``(rows, cols)`` for one layer, ``(layers, rows, cols)`` for a stack (the identity for
    a Dense kernel)."""
    if self.lay.batch_axes:
      return _layouts.to_matrices(x, self.lay)
    rows, cols = self.dims
    return jnp.transpose(x, self.lay.reduction_axes + self.lay.output_axes).reshape(rows, cols)

  def from_mat(self, m: jax.Array) -> jax.Array:
    """Inverse of :meth:`to_mat`."""
    return _layouts.from_matrices(m, self.lay, self.shape)

  def per_layer(self, v: jax.Array) -> jax.Array:
    """A per-matrix result (``()`` or ``(layers,)``) in :attr:`layer_shape`."""
    return v.reshape(self.layer_shape)

  def reduce(self, fn: Callable[..., jax.Array], x: jax.Array) -> jax.Array:
    """``fn(x, axis)`` over every axis but the batch axes, in :attr:`layer_shape`."""
    batch = self.lay.batch_axes
    if not batch:
      return fn(x, None)
    out = fn(x, tuple(a for a in range(len(self.shape)) if a not in batch))
    order = sorted(batch)
    if list(batch) != order:
      out = jnp.transpose(out, tuple(order.index(a) for a in batch))
    return out

  def expand(self, r: jax.Array) -> jax.Array:
    """Per-layer values broadcast against the leaf."""
    batch = self.lay.batch_axes
    order = sorted(batch)
    if list(batch) != order:
      r = jnp.transpose(r, tuple(batch.index(a) for a in order))
    return r.reshape(tuple(self.shape[a] if a in batch else 1 for a in range(len(self.shape))))


def _views(tree, layouts, stack_axes) -> list[_View]:
  return [_View(lay, tuple(p.shape)) for lay, p in
          zip(_layouts.infer(tree, layouts, stack_axes), jax.tree.leaves(tree))]


def _leaf_names(tree) -> list[str]:
  return ["/".join(_layouts.path_names(path)) or "<root>"
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _check_leaves(who: str, params) -> None:
  """A ``TypeError`` naming the first complex or non-float leaf (at init)."""
  for name, p in zip(_leaf_names(params), jax.tree.leaves(params)):
    dtype = p.dtype if hasattr(p, "dtype") else np.asarray(p).dtype
    if jnp.issubdtype(dtype, jnp.complexfloating):
      raise TypeError(
          f"{who}: the leaf {name} is complex ({dtype}); the layer rates measure noise in real "
          "norms and Newton-Schulz and sign updates are defined for real matrices. Keep its "
          "real and imaginary parts as two real leaves, or keep it out of the optimizer with "
          "optax.partition.")
  checks.check_float_leaves(who, params, allow_complex=False)


# ----------------------------------------------------------------------------- rates
def layer_rates(
    noise: Sequence[jax.Array],
    groups: Sequence[Any],
    *,
    normalize: Normalize = "min",
    r_min: float = 0.05,
    r_max: float = 1.0,
    rate_eps: float = 1e-8,
    noise_floor: float = 1e-6,
) -> list[jax.Array]:
  r"""Layer rates from the noise EMAs ``H`` (one array of layer slices per leaf).

  Within each group ``g`` (the leaves with equal ``groups`` entries; every slice is a layer):

  .. math::
    A_g = \{j \in g : H_j > \varphi\,\operatorname{median}_{k \in g} H_k\},\qquad
    \mathrm{ref}_g = \min_{j \in A_g} H_j,\qquad
    r_l = \operatorname{clip}\Bigl(\sqrt{\tfrac{\mathrm{ref}_g (1 + \epsilon) + \tau}
          {H_l + \epsilon\,\mathrm{ref}_g + \tau}},\ r_{\min},\ 1\Bigr)

  with ``phi = noise_floor``, ``epsilon = rate_eps``, ``tau = 1e-30`` and ``ref = 0`` when
  ``A_g`` is empty (then every rate is 1). The paper states only that noisier layers of a group
  get smaller rates; the normalisation is optzoo's choice. With 'min' the quietest layer runs at
  the base rate and the others at the ratio of noise standard deviations; equal ``H`` in a
  group gives ``r = 1`` exactly. ``epsilon`` is relative to ``ref`` so that rescaling the loss
  leaves the rates unchanged.

  A layer with no measured noise (frozen or unused, or a constant gradient) would make the
  minimum 0 and pin every other member of its group at ``r_min``; such layers (``H`` at most
  ``noise_floor`` times the group's median, exact zeros always) are left out of the reference
  (and of the mean for 'mean') and run at the upper clip, and the others keep their ratios.

  Args:
    noise: one float array per leaf (shape ``()`` for one layer, ``(L,)`` for a stack).
    groups: one hashable group label per leaf.
    normalize: the reference of a group: 'min' (default), 'mean' or 'max' (the group mean / max,
      rates clipped at ``r_max``), or 'none': ``r = clip(1/sqrt(H + tau), r_min, r_max)``
      (AdaGrad-norm like, not invariant to the loss scale).
    r_min: lower clip of the rates. Default 0.05.
    r_max: upper clip for 'mean', 'max' and 'none'. Default 1.0.
    rate_eps: relative guard ``epsilon``. Default 1e-8.
    noise_floor: ``phi``, relative to the group's median ``H``: quieter layers are left out of
      the reference of 'min' and 'mean'. Default 1e-6 (a noise standard deviation 1000 times
      below the median's).

  Returns:
    One float32 array of rates per leaf, shaped like ``noise``.

  >>> import jax.numpy as jnp
  >>> [float(r) for r in layer_rates([jnp.array(1.0), jnp.array(4.0)], ["g", "g"])]
  [1.0, 0.5]
  >>> [float(r) for r in layer_rates([jnp.array(0.0), jnp.array(1.0), jnp.array(4.0)], "ggg")]
  [1.0, 1.0, 0.5]
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
    if normalize == "max":
      ref, upper = jnp.max(flat), r_max
    else:
      active = flat > noise_floor * jnp.median(flat)
      if normalize == "min":
        ref, upper = jnp.min(jnp.where(active, flat, jnp.inf)), 1.0
      else:
        masked = (jnp.sum(jnp.where(active, flat, 0.0))
                  / jnp.maximum(jnp.sum(active, dtype=flat.dtype), 1.0))
        ref, upper = jnp.where(jnp.all(active), jnp.mean(flat), masked), r_max
      ref = jnp.where(jnp.any(active), ref, 0.0)
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
  noise_floor: Any
  prev_dtype: Any


def _rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps, noise_every,
               noise_floor, prev_dtype, estimators) -> _RateRule:
  """Validates the arguments of the rate machinery (``estimators``: the allowed estimators)."""
  checks.check_beta("b2", b2)
  checks.check_choice("normalize", normalize, typing.get_args(Normalize))
  checks.check_choice("noise_estimator", noise_estimator, typing.get_args(estimators))
  checks.check_range("r_min", r_min, 0.0, 1.0, low_open=True)
  checks.check_range("r_max", r_max, 0.0, low_open=True)
  checks.check_range("rate_eps", rate_eps, 0.0)
  checks.check_range("warmup_steps", warmup_steps, 0.0)
  checks.check_range("noise_floor", noise_floor, 0.0)
  noise_every = checks.check_int("noise_every", noise_every, 1)
  prev_dtype = None if prev_dtype is None else jnp.dtype(prev_dtype)
  return _RateRule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps,
                   noise_every, noise_floor, prev_dtype)


def _at_least_f32(dtype) -> Any:
  return trees.promote(dtype, jnp.float32)


def _init_rate_fields(rule: _RateRule, params, layer_shapes):
  """``count``, ``prev_grad``, ``noise`` (zeros) and ``rates`` (ones) of a fresh state.

  The previous-gradient buffer is ``rule.prev_dtype``, by default the params' dtype promoted to
  at least float32 (a bfloat16 buffer would round the quiet layers' noise away).
  """
  treedef = jax.tree.structure(params)
  noise, rates = trees.unzip(
      treedef, [(jnp.zeros(s, jnp.float32), jnp.ones(s, jnp.float32)) for s in layer_shapes], 2)
  prev_grad = None
  if rule.noise_estimator == "prev_grad":
    prev_grad = jax.tree.map(
        lambda p: jnp.zeros_like(p, dtype=rule.prev_dtype or _at_least_f32(p.dtype)), params)
  return jnp.zeros([], jnp.int32), prev_grad, noise, rates


def _diff(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a - b`` in at least float32."""
  dt = _at_least_f32(trees.promote(a.dtype, b.dtype))
  return a.astype(dt) - b.astype(dt)


def _noise_diffs(rule: _RateRule, updates, treedef, prev_grad, mu_leaves, count, extra_args):
  """What the noise is measured on, per leaf, and whether this step has a sample.

  'prev_grad': ``G_t - G_{t-1}``; 'momentum': ``G_t - B_{t-1}`` (``mu_leaves``); both have no
  sample at the first step. 'split': the ``noise_grads`` extra argument, every step, cut to the
  gradient's leaves (inside ``optax.masked`` / ``optax.partition`` it arrives unmasked).
  """
  g_leaves = treedef.flatten_up_to(updates)
  if rule.noise_estimator == "prev_grad":
    prev_old = treedef.flatten_up_to(prev_grad)
    return [_diff(g, p) for g, p in zip(g_leaves, prev_old)], count > 0
  if rule.noise_estimator == "momentum":
    return [_diff(g, m) for g, m in zip(g_leaves, mu_leaves)], count > 0
  noise_grads = extra_args.get("noise_grads")
  if noise_grads is None:
    raise ValueError("noise_estimator='split' needs update(..., noise_grads=G_a - G_b).")
  return treedef.flatten_up_to(masking.select_like(updates, noise_grads)), jnp.asarray(True)


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
                      r_max=rule.r_max, rate_eps=rule.rate_eps, noise_floor=rule.noise_floor)
  return [jnp.where(count < rule.warmup_steps, jnp.ones_like(r), r) for r in rates]


def _next_prev_grad(rule: _RateRule, updates, prev_grad):
  """This step's gradient in the buffer's dtype ('prev_grad' estimator), else None."""
  if rule.noise_estimator != "prev_grad":
    return None
  return optax.tree.cast_like(updates, prev_grad)


def _expand(r: jax.Array, ndim: int) -> jax.Array:
  return r.reshape(r.shape + (1,) * (ndim - r.ndim))


def _layer_dual(name: str, per_entry: bool) -> Callable[[_View, jax.Array], jax.Array]:
  """The dual norm ``name`` of :data:`optzoo.lmo.DUAL_NORMS` of every layer of a leaf.

  'l1' and 'l2' reduce each layer's entries; the matrix norms ('svd', 'ns', 'gram',
  'fro_bound') take each layer's matrix view, and the l2 norm of a vector leaf. With
  ``per_entry``, each value is divided by its size for unit-variance i.i.d. noise: the number
  of entries ``N`` (l1), ``sqrt(N)`` (l2) or ``sqrt(min(m, n) m n)`` (matrix norms), so a group
  compares noise per entry rather than leaf sizes.
  """
  _lmo.dual_norm(name)  # validates the name
  l1 = lambda x, axis: _lmo.l1_norm(x, axis)  # noqa: E731
  l2 = lambda x, axis: _lmo.l2_norm(x, axis)  # noqa: E731

  def dual(view: _View, x: jax.Array) -> jax.Array:
    if name == "l1":
      val, size = view.reduce(l1, x), float(view.layer_size)
    elif name == "l2" or view.lay.kind == "vector":
      val, size = view.reduce(l2, x), math.sqrt(view.layer_size)
    else:
      m, n = view.dims
      val, size = view.per_layer(_lmo.dual_norm(name)(view.to_mat(x))), math.sqrt(min(m, n) * m * n)
    return val / size if per_entry else val

  return dual


# ----------------------------------------------------------------------------- scale_by_lanton
class ScaleByLantonState(NamedTuple):
  """State of :func:`scale_by_lanton`.

  Attributes:
    count: int32 step counter.
    mu: momentum ``B`` per param (dtype ``mu_dtype``).
    prev_grad: the previous gradient per param for ``noise_estimator='prev_grad'`` (dtype
      ``prev_dtype``), else None.
    noise: ``H``, the EMA of the squared dual-norm noise: float32, one entry per layer (shape
      ``()`` for one layer, the sizes of the layout's batch axes for a stack, e.g. ``(L,)`` for
      a scanned ``(L, d_in, d_out)`` stack).
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
  layouts: Any
  stack_axes: Any


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


def _lanton_config(*, b1, b2, ns_steps, noise_estimator, normalize, r_min, warmup_steps,
                   hidden_scale, dual_norm, labels, weight_decay, weight_decay_mask, ns_coeffs,
                   ns_eps, ns_dtype, sign_scale, r_max, rate_eps, nesterov, mu_dtype,
                   norm_groups, noise_every, dual_shape_factor, layouts, stack_axes, noise_floor,
                   prev_dtype) -> _Lanton:
  """Validates the arguments of :func:`scale_by_lanton`."""
  checks.check_beta("b1", b1)
  rule = _rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps,
                    noise_every, noise_floor, prev_dtype, NoiseEstimator)
  ns_steps = _check_lmo_args(ns_steps, hidden_scale, dual_norm, ns_eps, sign_scale, weight_decay)
  return _Lanton(
      rule=rule, b1=b1, nesterov=nesterov, ns_steps=ns_steps, ns_coeffs=tuple(ns_coeffs),
      ns_eps=ns_eps, ns_dtype=jnp.result_type(float) if ns_dtype is None else ns_dtype,
      hidden_scale=hidden_scale, dual_norm=dual_norm, dual_shape_factor=dual_shape_factor,
      sign_scale=sign_scale, weight_decay=weight_decay, weight_decay_mask=weight_decay_mask,
      labels=labels, norm_groups=norm_groups,
      mu_dtype=None if mu_dtype is None else jnp.dtype(mu_dtype), layouts=layouts,
      stack_axes=stack_axes)


def _group_labels(labels, layouts, stack_axes, tree, views=None) -> list[str]:
  """LANTON's label of every leaf: ``labels`` when given, else from the layout kinds."""
  if labels is not None:
    return trees.leaf_values(labels, tree)
  if views is None:
    views = _views(tree, layouts, stack_axes)
  return [_KIND_GROUP[v.lay.kind] for v in views]


def _lanton_groups(cfg: _Lanton, tree):
  """Per leaf: the LANTON label, the view, and the normalisation group ``(label, norm group)``.

  A 'hidden' leaf is Newton-Schulz'd on its layout's matrix view; one labelled 'hidden' against
  a vector layout (an override by ``labels``) is viewed as a stack of its last two axes.
  """
  views = _views(tree, cfg.layouts, cfg.stack_axes)
  labs = _group_labels(cfg.labels, None, None, tree, views)
  for i, (lab, v, name) in enumerate(zip(labs, views, _leaf_names(tree))):
    if lab not in _LABELS:
      raise ValueError(f"LANTON label {lab!r} of the leaf {name} is not one of {_LABELS}.")
    if lab == "hidden" and v.lay.kind == "vector":
      if len(v.shape) < 2:
        raise ValueError(f"the leaf {name} is labelled 'hidden' but has shape {v.shape}: a "
                         "'hidden' leaf needs ndim >= 2.")
      views[i] = _View(_stacked_matrix(len(v.shape)), v.shape)
  if cfg.norm_groups == "shape":
    sub = [v.dims if lab == "hidden" or v.lay.kind != "vector" else ()
           for lab, v in zip(labs, views)]
  else:
    sub = trees.leaf_values(cfg.norm_groups, tree)
  return labs, views, [(lab, s) for lab, s in zip(labs, sub)]


def _lanton_init(cfg: _Lanton, params) -> ScaleByLantonState:
  _check_leaves("scale_by_lanton", params)
  _, views, _ = _lanton_groups(cfg, params)  # label and layout errors surface at init
  mu = optax.tree.zeros_like(params, dtype=cfg.mu_dtype)
  count, prev_grad, noise, rates = _init_rate_fields(cfg.rule, params,
                                                     [v.layer_shape for v in views])
  return ScaleByLantonState(count, mu, prev_grad, noise, rates)


def _ns(cfg: _Lanton, xs):
  """Newton-Schulz of many arrays, batched per shape, as float32."""
  outs = _lmo.newton_schulz_many(xs, cfg.ns_steps, cfg.ns_coeffs, cfg.ns_eps, cfg.ns_dtype)
  return [r.astype(jnp.float32) for r in outs]


def _hidden_dual(cfg: _Lanton, view: _View, d, nsd):
  """``sqrt(cols/rows) ||d||_*`` of every layer of a hidden leaf (``d`` and ``nsd`` are matrix
  views); 'ns' reads ``sum(d * NS(d))`` from ``nsd``."""
  m, n = view.dims
  d = d.astype(jnp.float32)
  if cfg.dual_norm == "ns":
    val = jnp.sum(d * nsd, axis=(-2, -1))
  else:
    val = _lmo.dual_norm(cfg.dual_norm)(d)
  val = val * math.sqrt(n / m) if cfg.dual_shape_factor else val
  return view.per_layer(val)


def _lanton_samples(cfg: _Lanton, labs, views, mats, ns_diffs):
  """Noise samples: the hidden dual norm of hidden leaves (``mats``: their matrix views),
  entrywise l1 of every layer of the sign groups."""
  sign_dual = _layer_dual("l1", per_entry=False)
  out = []
  for i, d in enumerate(mats):
    if labs[i] == "hidden":
      out.append(_hidden_dual(cfg, views[i], d, None if ns_diffs is None else ns_diffs[i]))
    else:
      out.append(sign_dual(views[i], d))
  return out


def _lanton_noise(cfg: _Lanton, labs, views, dirs_in, diffs, h_old, valid, count):
  """Newton-Schulz of the hidden LMO inputs (matrix views), and the new noise EMAs.

  With the 'ns' dual norm refreshed every step, the Newton-Schulz of the hidden noise runs in
  the same batched call as the momentum's.
  """
  hidden = [i for i, lab in enumerate(labs) if lab == "hidden"]
  mats_in = [views[i].to_mat(dirs_in[i]) for i in hidden]

  def as_mats(diffs_):
    out = list(diffs_)
    for i in hidden:
      out[i] = views[i].to_mat(diffs_[i])
    return out

  if cfg.dual_norm == "ns" and cfg.rule.noise_every == 1:
    mats = as_mats(diffs)
    res = _ns(cfg, mats_in + [mats[i] for i in hidden])
    k = len(hidden)
    ns_dir = dict(zip(hidden, res[:k]))
    ns_diff = dict(zip(hidden, res[k:]))

    def samples(_):
      return _lanton_samples(cfg, labs, views, mats, ns_diff)
  else:
    ns_dir = dict(zip(hidden, _ns(cfg, mats_in)))

    def samples(diffs_):
      mats_ = as_mats(diffs_)
      nsd = None
      if cfg.dual_norm == "ns":
        nsd = dict(zip(hidden, _ns(cfg, [mats_[i] for i in hidden])))
      return _lanton_samples(cfg, labs, views, mats_, nsd)

  return ns_dir, _refresh_noise(cfg.rule, h_old, diffs, valid, count, samples)


def _lanton_directions(cfg: _Lanton, labs, views, g_leaves, dirs_in, ns_dir, rates, decay,
                       p_leaves):
  """Per leaf ``r * (s * dir + wd * X)``, in the gradient's dtype."""
  out = []
  for i, g in enumerate(g_leaves):
    if labs[i] == "hidden":
      s = _hidden_scale(cfg.hidden_scale, *views[i].dims)
      u = views[i].from_mat(s * ns_dir[i])
    else:
      u = cfg.sign_scale * jnp.sign(dirs_in[i]).astype(jnp.float32)
    if decay[i] and checks.concrete_float(cfg.weight_decay) != 0.0:
      if p_leaves is None:
        raise ValueError("scale_by_lanton with weight_decay needs params in update().")
      u = u + cfg.weight_decay * p_leaves[i].astype(jnp.float32)
    out.append((views[i].expand(rates[i]) * u).astype(g.dtype))
  return out


def _lanton_update(cfg: _Lanton, updates, state: ScaleByLantonState, params, extra_args):
  checks.check_same_structure(updates, params)
  checks.check_leaf_shapes("scale_by_lanton", updates, state.mu)
  labs, views, groups = _lanton_groups(cfg, updates)
  g_leaves, treedef = jax.tree.flatten(updates)
  mu_old = treedef.flatten_up_to(state.mu)
  h_old = treedef.flatten_up_to(state.noise)
  count = state.count
  b1 = cfg.b1

  mu_new = [((1.0 - b1) * g.astype(ct) + b1 * m.astype(ct)).astype(m.dtype)
            for g, m in zip(g_leaves, mu_old) for ct in [trees.promote(g.dtype, m.dtype)]]
  if cfg.nesterov:
    dirs_in = [(1.0 - b1) * g + b1 * m.astype(g.dtype) for g, m in zip(g_leaves, mu_new)]
  else:
    dirs_in = mu_new
  diffs, valid = _noise_diffs(cfg.rule, updates, treedef, state.prev_grad, mu_old, count,
                              extra_args)
  ns_dir, h_new = _lanton_noise(cfg, labs, views, dirs_in, diffs, h_old, valid, count)
  rates = _warm_rates(cfg.rule, h_new, groups, count)
  decay = trees.leaf_values(cfg.weight_decay_mask, updates, True)
  p_leaves = None if params is None else treedef.flatten_up_to(params)
  out = _lanton_directions(cfg, labs, views, g_leaves, dirs_in, ns_dir, rates, decay, p_leaves)
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
    layouts: Any = None,
    stack_axes: Any = None,
    noise_floor: float = 1e-6,
    prev_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""LANTON's learning-rate-free direction: an LMO of the momentum times a noise-adaptive layer rate.

  For every layer ``l`` in group ``g``:

  .. math::
    B_l &\leftarrow \beta_1 B_l + (1-\beta_1) G_l \\
    n_l &= \|G_l - G_l^{\mathrm{prev}}\|_{g,*},\qquad H_l \leftarrow \beta_2 H_l + (1-\beta_2) n_l^2 \\
    r_l &= \operatorname{clip}\bigl(\sqrt{\min_{j\in g} H_j / H_l},\ r_{\min},\ 1\bigr) \\
    u_l &= r_l\,\bigl(s_g\,\mathrm{dir}_g(B_l) + \lambda X_l\bigr)

  with ``dir = NS(B)`` (Newton-Schulz, about ``U V^T``) for 'hidden' leaves and ``sign(B)`` for
  'embed_head' and 'vector' leaves; ``-u`` is ``s_g`` times the LMO, and the caller scales by
  ``-eta_t`` (:func:`lanton` does). The minimum leaves out layers without measured noise (see
  :func:`layer_rates`). The dual norms are the paper's: ``sqrt(d_out/d_in) ||.||_*`` (nuclear)
  for hidden matrices, entrywise l1 for sign groups. Where the paper does not give a detail,
  the argument says what optzoo chose and why. A layer is a leaf's matrix view, or one index of
  a stack, from :mod:`optzoo.layouts` (see :func:`default_lanton_labels`).

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
      'ns' doubles the Newton-Schulz work of the update, yet stays the default: the rates are
      ratios of noises, and on real gradient noise 'ns' reads every layer alike while 'gram'
      (one Gram product, far cheaper) reads layers unevenly, which biases the rates.
      ``noise_every`` spreads the cost over several steps instead.
    labels: None (the layout kinds, :func:`default_lanton_labels`), or a pytree (or prefix, or
      a callable params -> pytree) of 'hidden' / 'embed_head' / 'vector' overriding the group
      (a 'hidden' leaf with a vector layout is a stack over its last two axes).
    weight_decay: decoupled decay ``lambda``, taken with the layer rate (Scion's view; the paper
      does not say). Default 0 here; :func:`lanton` passes its own.
    weight_decay_mask: pytree (or callable) of bools selecting decayed leaves; None: all.
    ns_coeffs: the quintic's coefficients. Default (3.4445, -4.7750, 2.0315).
    ns_eps: Newton-Schulz's normalisation guard, relative below Frobenius norm 1 so the updates
      do not depend on the loss scale (:func:`optzoo.lmo.newton_schulz`). Default 1e-7.
    ns_dtype: Newton-Schulz compute dtype: float32 (default) or ``jnp.bfloat16`` (faster).
    sign_scale: radius of the sign groups (Signum times ``sign_scale``). Default 0.2: the RMS of
      the 'rms_match' hidden update, so both groups move like AdamW at one learning rate.
    r_max: upper clip for ``normalize`` in ('mean', 'max', 'none'). Default 1.0.
    rate_eps: relative guard in the rate formula. Default 1e-8.
    nesterov: use ``b1 B_t + (1-b1) G_t`` as the LMO input. Default False.
    mu_dtype: dtype of the momentum; None (default): the params'.
    norm_groups: second label splitting the groups for the normalisation: None (default),
      'shape' (one group per label and matrix view shape), a pytree or a callable.
    noise_every: refresh ``H`` only every ``noise_every`` steps (static; an optzoo option that
      skips the dual-norm cost at run time on the other steps). Default 1.
    dual_shape_factor: multiply the hidden dual norm by ``sqrt(d_out/d_in)``. Default True.
    layouts: how each leaf is viewed (:func:`optzoo.layouts.infer`): None (default, the rules
      for Flax layers), a pytree of ``LeafLayout``, or ``optzoo.layouts.from_nnx(model)``.
    stack_axes: leading stack (layer) axes (:func:`optzoo.layouts.infer`), e.g. ``{"blocks":
      1}``. Default None.
    noise_floor: layers with ``H`` at most this fraction of their group's median (frozen,
      unused, constant gradient) leave the reference; see :func:`layer_rates`. Default 1e-6.
    prev_dtype: previous-gradient buffer dtype; None (default): the params', at least float32
      (a bfloat16 buffer's rounding would become the quiet layers' noise).

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
  cfg = _lanton_config(**locals())

  def init_fn(params):
    return _lanton_init(cfg, params)

  def update_fn(updates, state, params=None, **extra_args):
    return _lanton_update(cfg, updates, state, params, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


#: The arguments :func:`lanton` passes to :func:`scale_by_lanton` as they are.
_CORE_SHARED = tuple(k for k in inspect.signature(scale_by_lanton).parameters
                     if k not in ("weight_decay", "weight_decay_mask"))


def _lanton_partition_labels(labels, layouts, stack_axes, params):
  """'vector' for LANTON's vector leaves, 'lanton' for the others (``optax.partition``)."""
  labs = _group_labels(labels, layouts, stack_axes, params)
  treedef = jax.tree.structure(params)
  return treedef.unflatten(["vector" if lab == "vector" else "lanton" for lab in labs])


def _checked(who: str, tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``tx`` with LANTON's leaf checks over every leaf: float leaves at init, and at update the
  gradient shapes against the params (when given)."""
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    _check_leaves(who, params)
    return tx.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    if params is not None:
      checks.check_leaf_shapes(who, updates, params)
    return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@alias.static_args("ns_steps", "noise_every", "mu_dtype", "ns_dtype", "labels", "norm_groups",
                   "weight_decay_mask", "vector_optimizer", "layouts", "stack_axes", "prev_dtype")
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
    layouts: Any = None,
    stack_axes: Any = None,
    noise_floor: float = 1e-6,
    prev_dtype: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""LANTON: Muon/Scion-style LMO updates with noise-adaptive layerwise learning rates.

  .. math::
    X_l \leftarrow X_l - \eta_t r_l \lambda X_l - \eta_t r_l\, s_g\,\mathrm{dir}_g(B_l)

  with the momentum ``B``, rates ``r`` and directions of :func:`scale_by_lanton`. Hidden
  matrices go through Newton-Schulz, embedding and head through sign (Signum), and vectors (norm
  gains, biases, 2-D attention biases) through ``vector_optimizer``: the paper does not say how
  it treats vectors; optzoo follows its D-Muon baseline, AdamW without a layer rate, by default.
  The parts are joined with ``optax.partition``. The weight decay follows the layer rate
  (``decay_with_rate=True``, Scion's view; the paper does not say); with ``False`` it is
  D-Muon's ``X (1 - eta lambda)``.
  Groups and layers come from :mod:`optzoo.layouts`: for an ``nnx`` model pass
  ``layouts=optzoo.layouts.from_nnx(model)``, for stacks ``stack_axes``.

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
    labels: LANTON groups; None: :func:`default_lanton_labels` (from the layouts).
    vector_optimizer: optimizer of the 'vector' leaves (a GradientTransformation that includes
      its learning rate), None (default) for AdamW, or 'sign' to treat vectors as a LANTON sign
      group with the l1 dual norm.
    vector_b1, vector_b2: the default AdamW's ``b1`` and ``b2``. Defaults 0.9, 0.95.
    vector_weight_decay: the default AdamW's decay. Default 0.0.
    decay_with_rate: multiply the decay by ``r_l``. Default True.
    weight_decay_mask: pytree (or callable) of bools over the params selecting decayed leaves;
      None (default): all LANTON leaves.
    ns_coeffs: the quintic's coefficients. Default (3.4445, -4.7750, 2.0315).
    ns_eps: Newton-Schulz's normalisation guard (relative below norm 1). Default 1e-7.
    ns_dtype: Newton-Schulz compute dtype. Default float32.
    sign_scale: radius of the sign groups. Default 0.2.
    r_max: upper clip of the rates for 'mean', 'max', 'none'. Default 1.0.
    rate_eps: relative guard of the rate formula. Default 1e-8.
    nesterov: Nesterov momentum as the LMO input. Default False.
    mu_dtype: dtype of the momenta (LANTON's and AdamW's); None (default): the params'.
    norm_groups: second label for the normalisation. Default None.
    noise_every: refresh the noise EMAs every ``noise_every`` steps. Default 1.
    dual_shape_factor: ``sqrt(d_out/d_in)`` in the hidden dual norm. Default True.
    layouts, stack_axes: how leaves are layers (:func:`optzoo.layouts.infer`). Default None.
    noise_floor: relative floor of layers kept in a group's reference. Default 1e-6.
    prev_dtype: previous-gradient buffer dtype; None: the params', at least float32.

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
  args = dict(locals())
  checks.check_learning_rate(learning_rate)
  checks.check_range("weight_decay", weight_decay, 0.0)
  checks.check_range("vector_weight_decay", vector_weight_decay, 0.0)
  if isinstance(vector_optimizer, str) and vector_optimizer != "sign":
    raise ValueError(f"vector_optimizer={vector_optimizer!r}: pass a GradientTransformation, "
                     "None (AdamW) or 'sign'.")
  core = scale_by_lanton(**{k: args[k] for k in _CORE_SHARED},
                         weight_decay=weight_decay if decay_with_rate else 0.0,
                         weight_decay_mask=weight_decay_mask if decay_with_rate else None)
  parts = [core]
  if not decay_with_rate:
    parts.append(optax.add_decayed_weights(weight_decay, weight_decay_mask))
  parts.append(optax.scale_by_learning_rate(learning_rate))
  main = optax.chain(*parts)
  if vector_optimizer == "sign":
    return _checked("lanton", main)
  if vector_optimizer is None:
    vector_optimizer = optax.adamw(learning_rate, b1=vector_b1, b2=vector_b2, eps=1e-8,
                                   weight_decay=vector_weight_decay, mu_dtype=mu_dtype)
  return _checked("lanton", optax.partition(
      {"lanton": main, "vector": vector_optimizer},
      functools.partial(_lanton_partition_labels, labels, layouts, stack_axes)))


# ----------------------------------------------------------------------------- generic wrapper
class NoiseAdaptiveLayerwiseState(NamedTuple):
  """State of :func:`noise_adaptive_layerwise`.

  Attributes:
    count: int32 step counter.
    prev_grad: the previous raw gradient ('prev_grad' estimator), else None.
    noise: ``H`` per leaf, float32, one entry per layer (``()`` for one layer, the sizes of the
      layout's batch axes for a stack; a callable dual norm's output shape).
    rates: the layer rates of the last update (same shapes as ``noise``).
    inner_state: the wrapped optimizer's state.
  """

  count: jax.Array
  prev_grad: optax.Updates | None
  noise: optax.Updates
  rates: optax.Updates
  inner_state: Any


@dataclasses.dataclass(frozen=True)
class _Wrapper:
  """The arguments of :func:`noise_adaptive_layerwise` after validation."""

  rule: _RateRule
  dual_norm: Any
  dual_per_entry: bool
  labels: Any
  layouts: Any
  stack_axes: Any


def _wrapper_leaves(w: _Wrapper, tree):
  """Per leaf: the noise sample of a difference (per layer, float32), and how a per-layer array
  broadcasts against the leaf. A callable dual norm takes the raw leaf, and its output's axes
  are the leaf's leading axes; a named one follows the layouts."""
  leaves = jax.tree.leaves(tree)
  if callable(w.dual_norm):
    sample = lambda d: w.dual_norm(d).astype(jnp.float32)  # noqa: E731
    return [sample] * len(leaves), [functools.partial(lambda n, r: _expand(r, n), p.ndim)
                                    for p in leaves]
  dual = _layer_dual(w.dual_norm, w.dual_per_entry)
  views = _views(tree, w.layouts, w.stack_axes)
  return ([functools.partial(lambda v, d: dual(v, d).astype(jnp.float32), v) for v in views],
          [v.expand for v in views])


def _wrapper_init(w: _Wrapper, inner, params) -> NoiseAdaptiveLayerwiseState:
  _check_leaves("noise_adaptive_layerwise", params)
  samples, _ = _wrapper_leaves(w, params)
  shapes = [jax.eval_shape(f, jax.ShapeDtypeStruct(p.shape, p.dtype)).shape
            for f, p in zip(samples, jax.tree.leaves(params))]
  count, prev_grad, noise, rates = _init_rate_fields(w.rule, params, shapes)
  return NoiseAdaptiveLayerwiseState(count=count, prev_grad=prev_grad, noise=noise, rates=rates,
                                     inner_state=inner.init(params))


def _wrapper_update(w: _Wrapper, inner, updates, state, params, extra_args):
  rule = w.rule
  checks.check_same_structure(updates, params)
  reference = state.prev_grad if state.prev_grad is not None else params
  if reference is not None:
    checks.check_leaf_shapes("noise_adaptive_layerwise", updates, reference)
  treedef = jax.tree.structure(updates)
  groups = trees.leaf_values(w.labels, updates, 0)
  samples, expands = _wrapper_leaves(w, updates)
  h_old = treedef.flatten_up_to(state.noise)
  count = state.count
  diffs, valid = _noise_diffs(rule, updates, treedef, state.prev_grad, None, count, extra_args)
  h_new = _refresh_noise(rule, h_old, diffs, valid, count,
                         lambda ds: [f(d) for f, d in zip(samples, ds)])
  rates = _warm_rates(rule, h_new, groups, count)
  inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
  out = [(expand(r) * u.astype(jnp.float32)).astype(u.dtype)
         for expand, r, u in zip(expands, rates, treedef.flatten_up_to(inner_updates))]
  return treedef.unflatten(out), NoiseAdaptiveLayerwiseState(
      count=optax.safe_increment(count), prev_grad=_next_prev_grad(rule, updates, state.prev_grad),
      noise=treedef.unflatten(h_new), rates=treedef.unflatten(rates), inner_state=inner_state)


@alias.static_args("inner", "dual_norm", "labels", "noise_every", "prev_dtype", "layouts",
                   "stack_axes", "dual_per_entry")
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
    layouts: Any = None,
    stack_axes: Any = None,
    dual_per_entry: bool = True,
    noise_floor: float = 1e-6,
) -> optax.GradientTransformationExtraArgs:
  r"""Puts LANTON's noise-adaptive layer rates on any optimizer.

  .. math::
    n_l = \|G_l - G_l^{\mathrm{prev}}\|_* / c_l,\quad H_l \leftarrow \beta_2 H_l + (1-\beta_2) n_l^2,\quad
    u_l = r_l(H)\cdot \mathrm{inner}(G)_l

  with the rates ``r`` of :func:`layer_rates` and ``c_l`` the size of layer ``l`` in the dual
  norm (``dual_per_entry``). ``H`` is computed from the *raw* incoming gradients (before
  ``inner`` changes them); every output leaf of ``inner`` is multiplied by its layers' rates.
  The paper states the rule for its own LMO updates; this wrapper is optzoo's generalisation,
  and the noise should be measured in the dual of the norm the inner optimizer steps in: Muon
  with 'ns' or 'svd' (nuclear); Lion and signSGD with 'l1'; SGD with 'l2'; Adam with 'l1' (its
  steps are sign-like).

  The layers come from :mod:`optzoo.layouts` (``layouts``, ``stack_axes``), as in
  :func:`scale_by_lanton`: each index of a layout's batch axes is a layer with its own rate,
  and a matrix norm is taken on the layer's ``(d_in, d_out)`` matrix view (an attention query
  kernel ``(in, heads, head_dim)`` is one ``(in, heads*head_dim)`` matrix).

  Args:
    inner: any optax transformation, usually including its learning rate
      (``optax.lion(1e-3)``, ``optax.sgd(0.1)``, ``optax.contrib.muon(...)``).
    dual_norm: a name in ``optzoo.lmo.DUAL_NORMS``: 'l1' (default), 'l2', 'svd', 'ns', 'gram'
      or 'fro_bound' ('l1' and 'l2' reduce each layer's entries; the matrix norms take each
      layer's matrix view, and the l2 norm of a vector leaf), or a callable ``leaf -> array``
      applied to the raw leaf, whose output axes are the leaf's leading layer axes (``()`` for
      one layer; ``layouts``, ``stack_axes`` and ``dual_per_entry`` do not apply to it).
    labels: the group of every leaf for the normalisation: None (default, one group), a pytree
      (or prefix) of hashable labels, or a callable params -> such a pytree.
    b2: EMA rate of ``H``, in [0, 1). Default 0.99.
    noise_estimator: 'prev_grad' (default; ``G_t - G_{t-1}``, no sample at the first step) or
      'split' (``update(..., noise_grads=G_a - G_b)`` from two independent half-batches; the
      full tree also works inside ``optax.masked`` / ``optax.partition``).
    normalize: 'min' (default), 'mean', 'max' or 'none'; see :func:`layer_rates`.
    r_min: lower clip of the rates, in (0, 1]. Default 0.05.
    r_max: upper clip for 'mean', 'max' and 'none'. Default 1.0.
    warmup_steps: ``r = 1`` for the first ``warmup_steps`` updates. Default 10.
    rate_eps: relative guard of the rate formula. Default 1e-8.
    noise_every: refresh ``H`` every ``noise_every`` steps (static). Default 1.
    prev_dtype: dtype of the previous-gradient buffer; None (default): the params' dtype, at
      least float32.
    layouts: how each leaf is viewed, as for :func:`optzoo.layouts.infer` (e.g.
      ``optzoo.layouts.from_nnx(model)``). Default None (the rules for Flax layers).
    stack_axes: leading stack (layer) axes, as for :func:`optzoo.layouts.infer` (e.g.
      ``{"blocks": 1}``). Default None.
    dual_per_entry: divide each layer's dual norm by its value's scale for unit-variance noise,
      ``c_l``: the number of entries ``N`` ('l1', a mean absolute value), ``sqrt(N)`` ('l2', an
      RMS) or ``sqrt(min(m, n) m n)`` (matrix norms of an ``m x n`` view), so that a group
      compares noise per entry rather than layer sizes (with the raw l1 norm, a layer 8 times
      larger reads 8 times noisier at the same per-entry noise). Default True; False: the raw
      dual norm, as the paper's LMO groups.
    noise_floor: layers whose ``H`` is at most ``noise_floor`` times their group's median (a
      frozen or unused layer, a constant gradient) are left out of the reference; see
      :func:`layer_rates`. Default 1e-6.

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
                    noise_every, noise_floor, prev_dtype, WrapperNoiseEstimator)
  if isinstance(dual_norm, str):
    _lmo.dual_norm(dual_norm)  # validates the name
  elif not callable(dual_norm):
    raise TypeError(f"dual_norm must be a name in optzoo.lmo.DUAL_NORMS or a callable, got "
                    f"{dual_norm!r}.")
  w = _Wrapper(rule, dual_norm, bool(dual_per_entry), labels, layouts, stack_axes)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return _wrapper_init(w, inner, params)

  def update_fn(updates, state, params=None, **extra_args):
    return _wrapper_update(w, inner, updates, state, params, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
