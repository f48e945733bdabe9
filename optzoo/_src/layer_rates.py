"""The layer-rate machinery LANTON and its generic wrapper share.

Every layer keeps an EMA ``H`` of its squared gradient noise, measured in a dual norm, and runs
at its group's learning rate times ``r_l = sqrt(H_ref / H_l)`` clipped to ``[r_min, 1]``. This
module holds the pieces both :func:`optzoo.scale_by_lanton` and
:func:`optzoo.noise_adaptive_layerwise` use: how a leaf is seen as layers (its layout), the rate
rule (:func:`layer_rates`), the noise sample and its EMA with an optional sparse refresh, the
warmup and the previous-gradient buffer.

References:
  Hao et al., `Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware Optimization
  for Deep Neural Network Training <https://arxiv.org/abs/2510.14009>`_, 2025
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Callable, Literal, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from optzoo import layouts as _layouts
from optzoo import lmo as _lmo
from optzoo._src.base import checks, masking, trees

__all__ = ["layer_rates"]

Normalize = Literal["min", "mean", "max", "none"]

_TINY = 1e-30


# ----------------------------------------------------------------------------- layer views
def stacked_matrix(ndim: int) -> _layouts.LeafLayout:
  """The last two axes as ``(rows, cols)``, the leading ones as layers (a leaf labelled 'hidden'
  whose layout is a vector)."""
  return _layouts.LeafLayout("matrix", (ndim - 2,), (ndim - 1,), tuple(range(ndim - 2)))


@dataclasses.dataclass(frozen=True)
class View:
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


def views(tree, layouts, stack_axes) -> list[View]:
  return [View(lay, tuple(p.shape)) for lay, p in
          zip(_layouts.infer(tree, layouts, stack_axes), jax.tree.leaves(tree))]


def leaf_names(tree) -> list[str]:
  return ["/".join(_layouts.path_names(path)) or "<root>"
          for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


#: Why the layer rates refuse complex leaves.
COMPLEX_REASON = ("The layer rates measure noise in real norms, and Newton-Schulz and sign "
                  "updates are defined for real matrices. Keep its real and imaginary parts as "
                  "two real leaves, or keep it out of the optimizer with optax.partition.")


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
class RateRule(NamedTuple):
  """How LANTON and the noise-adaptive wrapper turn gradient noise into layer rates."""

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


def rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps, noise_every,
               noise_floor, prev_dtype, estimators) -> RateRule:
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
  return RateRule(b2, noise_estimator, normalize, r_min, r_max, rate_eps, warmup_steps,
                   noise_every, noise_floor, prev_dtype)


def at_least_f32(dtype) -> Any:
  return trees.promote(dtype, jnp.float32)


def init_rate_fields(rule: RateRule, params, layer_shapes):
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
        lambda p: jnp.zeros_like(p, dtype=rule.prev_dtype or at_least_f32(p.dtype)), params)
  return jnp.zeros([], jnp.int32), prev_grad, noise, rates


def diff(a: jax.Array, b: jax.Array) -> jax.Array:
  """``a - b`` in at least float32."""
  dt = at_least_f32(trees.promote(a.dtype, b.dtype))
  return a.astype(dt) - b.astype(dt)


def noise_diffs(rule: RateRule, updates, treedef, prev_grad, mu_leaves, count, extra_args):
  """What the noise is measured on, per leaf, and whether this step has a sample.

  'prev_grad': ``G_t - G_{t-1}``; 'momentum': ``G_t - B_{t-1}`` (``mu_leaves``); both have no
  sample at the first step. 'split': the ``noise_grads`` extra argument, every step, cut to the
  gradient's leaves (inside ``optax.masked`` / ``optax.partition`` it arrives unmasked).
  """
  g_leaves = treedef.flatten_up_to(updates)
  if rule.noise_estimator == "prev_grad":
    prev_old = treedef.flatten_up_to(prev_grad)
    return [diff(g, p) for g, p in zip(g_leaves, prev_old)], count > 0
  if rule.noise_estimator == "momentum":
    return [diff(g, m) for g, m in zip(g_leaves, mu_leaves)], count > 0
  noise_grads = extra_args.get("noise_grads")
  if noise_grads is None:
    raise ValueError("noise_estimator='split' needs update(..., noise_grads=G_a - G_b).")
  return treedef.flatten_up_to(masking.select_like(updates, noise_grads)), jnp.asarray(True)


def refresh_noise(rule: RateRule, h_old, diffs, valid, count, samples):
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


def warm_rates(rule: RateRule, h_new, groups, count):
  """:func:`layer_rates` of the new EMAs, all 1 during the first ``warmup_steps`` updates."""
  rates = layer_rates(h_new, groups, normalize=rule.normalize, r_min=rule.r_min,
                      r_max=rule.r_max, rate_eps=rule.rate_eps, noise_floor=rule.noise_floor)
  return [jnp.where(count < rule.warmup_steps, jnp.ones_like(r), r) for r in rates]


def next_prev_grad(rule: RateRule, updates, prev_grad):
  """This step's gradient in the buffer's dtype ('prev_grad' estimator), else None."""
  if rule.noise_estimator != "prev_grad":
    return None
  return optax.tree.cast_like(updates, prev_grad)


def expand(r: jax.Array, ndim: int) -> jax.Array:
  return r.reshape(r.shape + (1,) * (ndim - r.ndim))


def layer_dual(name: str, per_entry: bool) -> Callable[[View, jax.Array], jax.Array]:
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

  def dual(view: View, x: jax.Array) -> jax.Array:
    if name == "l1":
      val, size = view.reduce(l1, x), float(view.layer_size)
    elif name == "l2" or view.lay.kind == "vector":
      val, size = view.reduce(l2, x), math.sqrt(view.layer_size)
    else:
      m, n = view.dims
      val, size = view.per_layer(_lmo.dual_norm(name)(view.to_mat(x))), math.sqrt(min(m, n) * m * n)
    return val / size if per_entry else val

  return dual
