"""LANTON: noise-adaptive layerwise learning rates over LMO (Muon/Scion-style) updates.

Every layer keeps an EMA ``H`` of its squared gradient noise, measured in the *dual* norm of its
group's geometry (nuclear norm for hidden matrices, entrywise l1 for embedding and head), and
runs at the group's learning rate times ``r_l = sqrt(H_ref / H_l)`` clipped to ``[r_min, 1]``:
the quietest layer of a group keeps the base rate, noisier layers take smaller steps.

:func:`scale_by_lanton` (and its alias :func:`lanton`) puts these rates on Newton-Schulz and
sign updates. The rate machinery (the noise sample, its EMA with an optional sparse refresh,
the normalisation inside a group, the warmup and the previous-gradient buffer) is shared with
:func:`optzoo.noise_adaptive_layerwise`, which puts the same rates on any optax optimizer.

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

import functools
import inspect
import math
import typing
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optzoo import layouts as _layouts
from optzoo import lmo as _lmo
from optzoo._src import alias, layer_rates
from optzoo._src.base import checks, trees
from optzoo._src.layer_rates import Normalize

__all__ = [
    "ScaleByLantonState",
    "default_lanton_labels",
    "lanton",
    "scale_by_lanton",
]

NoiseEstimator = Literal["prev_grad", "momentum", "split"]
HiddenScale = Literal["rms_match", "spectral", "keller", "none"]
HiddenDualNorm = Literal["ns", "svd", "gram", "fro_bound"]

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


class _Config(NamedTuple):
  """The arguments of :func:`scale_by_lanton` after validation."""

  rule: layer_rates.RateRule
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
  ns_mesh: Any


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
  d_in = max(d_in, 1)  # a zero-size matrix: its (empty) update has no scale to match
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
                   prev_dtype, ns_mesh) -> _Config:
  """Validates the arguments of :func:`scale_by_lanton`."""
  checks.check_beta("b1", b1)
  rule = layer_rates.rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps,
                               warmup_steps, noise_every, noise_floor, prev_dtype, NoiseEstimator)
  ns_steps = _check_lmo_args(ns_steps, hidden_scale, dual_norm, ns_eps, sign_scale, weight_decay)
  if ns_mesh is not None and not isinstance(ns_mesh, jax.sharding.Mesh):
    raise TypeError(f"ns_mesh must be a jax.sharding.Mesh or None, got {type(ns_mesh).__name__}.")
  return _Config(
      rule=rule, b1=b1, nesterov=nesterov, ns_steps=ns_steps, ns_coeffs=tuple(ns_coeffs),
      ns_eps=ns_eps, ns_dtype=jnp.result_type(float) if ns_dtype is None else ns_dtype,
      hidden_scale=hidden_scale, dual_norm=dual_norm, dual_shape_factor=dual_shape_factor,
      sign_scale=sign_scale, weight_decay=weight_decay, weight_decay_mask=weight_decay_mask,
      labels=labels, norm_groups=norm_groups,
      mu_dtype=None if mu_dtype is None else jnp.dtype(mu_dtype), layouts=layouts,
      stack_axes=stack_axes, ns_mesh=ns_mesh)


def _group_labels(labels, layouts, stack_axes, tree, views=None) -> list[str]:
  """LANTON's label of every leaf: ``labels`` when given, else from the layout kinds."""
  if labels is not None:
    return trees.leaf_values(labels, tree)
  if views is None:
    views = layer_rates.views(tree, layouts, stack_axes)
  return [_KIND_GROUP[v.lay.kind] for v in views]


def _lanton_groups(cfg: _Config, tree):
  """Per leaf: the LANTON label, the view, and the normalisation group ``(label, norm group)``.

  A 'hidden' leaf is Newton-Schulz'd on its layout's matrix view; one labelled 'hidden' against
  a vector layout (an override by ``labels``) is viewed as a stack of its last two axes.
  """
  views = layer_rates.views(tree, cfg.layouts, cfg.stack_axes)
  labs = _group_labels(cfg.labels, None, None, tree, views)
  for i, (lab, v, name) in enumerate(zip(labs, views, layer_rates.leaf_names(tree))):
    if lab not in _LABELS:
      raise ValueError(f"LANTON label {lab!r} of the leaf {name} is not one of {_LABELS}.")
    if lab == "hidden" and v.lay.kind == "vector":
      if len(v.shape) < 2:
        raise ValueError(f"the leaf {name} is labelled 'hidden' but has shape {v.shape}: a "
                         "'hidden' leaf needs ndim >= 2.")
      views[i] = layer_rates.View(layer_rates.stacked_matrix(len(v.shape)), v.shape)
  if cfg.norm_groups == "shape":
    sub = [v.dims if lab == "hidden" or v.lay.kind != "vector" else ()
           for lab, v in zip(labs, views)]
  else:
    sub = trees.leaf_values(cfg.norm_groups, tree)
  return labs, views, [(lab, s) for lab, s in zip(labs, sub)]


def _lanton_init(cfg: _Config, params) -> ScaleByLantonState:
  checks.check_float_leaves("scale_by_lanton", params,
                            complex_reason=layer_rates.COMPLEX_REASON)
  _, views, _ = _lanton_groups(cfg, params)  # label and layout errors surface at init
  mu = optax.tree.zeros_like(params, dtype=cfg.mu_dtype)
  count, prev_grad, noise, rates = layer_rates.init_rate_fields(
      cfg.rule, params, [v.layer_shape for v in views])
  return ScaleByLantonState(count, mu, prev_grad, noise, rates)


def _ns(cfg: _Config, xs):
  """Newton-Schulz of many arrays, batched per shape, as float32."""
  outs = _lmo.newton_schulz_many(xs, cfg.ns_steps, cfg.ns_coeffs, cfg.ns_eps, cfg.ns_dtype,
                                 whole_on=cfg.ns_mesh)
  return [r.astype(jnp.float32) for r in outs]


def _hidden_dual(cfg: _Config, view: layer_rates.View, d, nsd):
  """``sqrt(cols/rows) ||d||_*`` of every layer of a hidden leaf (``d`` and ``nsd`` are matrix
  views); 'ns' reads ``sum(d * NS(d))`` from ``nsd``."""
  m, n = view.dims
  d = d.astype(jnp.float32)
  if cfg.dual_norm == "ns":
    val = jnp.sum(d * nsd, axis=(-2, -1))
  else:
    val = _lmo.dual_norm(cfg.dual_norm)(d)
  # a zero-size matrix has norm 0 whatever the factor (max: no division by zero rows)
  val = val * math.sqrt(n / max(m, 1)) if cfg.dual_shape_factor else val
  return view.per_layer(val)


def _lanton_samples(cfg: _Config, labs, views, mats, ns_diffs):
  """Noise samples: the hidden dual norm of hidden leaves (``mats``: their matrix views),
  entrywise l1 of every layer of the sign groups."""
  sign_dual = layer_rates.layer_dual("l1", per_entry=False)
  out = []
  for i, d in enumerate(mats):
    if labs[i] == "hidden":
      out.append(_hidden_dual(cfg, views[i], d, None if ns_diffs is None else ns_diffs[i]))
    else:
      out.append(sign_dual(views[i], d))
  return out


def _lanton_noise(cfg: _Config, labs, views, dirs_in, diffs, h_old, valid, count):
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

  return ns_dir, layer_rates.refresh_noise(cfg.rule, h_old, diffs, valid, count, samples)


def _lanton_directions(cfg: _Config, labs, views, g_leaves, dirs_in, ns_dir, rates, decay,
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


def _lanton_update(cfg: _Config, updates, state: ScaleByLantonState, params, extra_args):
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
  diffs, valid = layer_rates.noise_diffs(cfg.rule, updates, treedef, state.prev_grad, mu_old,
                                         count, extra_args)
  ns_dir, h_new = _lanton_noise(cfg, labs, views, dirs_in, diffs, h_old, valid, count)
  rates = layer_rates.warm_rates(cfg.rule, h_new, groups, count)
  decay = trees.leaf_values(cfg.weight_decay_mask, updates, True)
  p_leaves = None if params is None else treedef.flatten_up_to(params)
  out = _lanton_directions(cfg, labs, views, g_leaves, dirs_in, ns_dir, rates, decay, p_leaves)
  new_state = ScaleByLantonState(
      count=optax.safe_increment(count),
      mu=treedef.unflatten(mu_new),
      prev_grad=layer_rates.next_prev_grad(cfg.rule, updates, state.prev_grad),
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
    ns_mesh: jax.sharding.Mesh | None = None,
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
  :func:`optzoo.layer_rates`). The dual norms are the paper's: ``sqrt(d_out/d_in) ||.||_*`` (nuclear)
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
      quietest layer runs at the base rate), 'mean', 'max' or 'none'; see :func:`optzoo.layer_rates`.
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
      unused, constant gradient) leave the reference; see :func:`optzoo.layer_rates`. Default 1e-6.
    prev_dtype: previous-gradient buffer dtype; None (default): the params', at least float32
      (a bfloat16 buffer's rounding would become the quiet layers' noise).
    ns_mesh: None (default), or the ``jax.sharding.Mesh`` the params are sharded over (static).
      With a mesh, every Newton-Schulz (the momentum's and the noise's) runs on whole matrices:
      each hidden matrix that FSDP splits is all-gathered once onto every device, the iterations
      run there with no collective, and each device keeps its own slice of the result; a
      scanned stack sharded along its layer axis stays where it is, each device orthogonalizing
      its own layers (:func:`optzoo.lmo.newton_schulz_many`'s ``whole_on``). What it costs: one
      gather of each split matrix per Newton-Schulz (two per step with the default
      ``dual_norm='ns'``), about 2x the params' bytes per device, and every device does those
      matrices' iterations. Without
      a mesh, on matrices that FSDP splits, XLA gathers the split matrices or all-reduces
      partial products at every iteration, a cost that grows with the matrix width (on a
      1.3M-parameter MLP of 512- and 1024-wide matrices over a 2 x 4 mesh, an order of magnitude
      more than with a mesh). It pays when FSDP (or tensor parallelism)
      splits the matrices; with every matrix whole on every device (data parallelism) leave it
      None. Pin the training step's ``out_shardings`` to the params' and state's shardings (the
      production recipe): unpinned, XLA may propagate the gathered layout into the momentum.

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


def _lanton_partition_labels(labels, layouts, stack_axes, params):
  """'vector' for LANTON's vector leaves, 'lanton' for the others (``optax.partition``)."""
  labs = _group_labels(labels, layouts, stack_axes, params)
  treedef = jax.tree.structure(params)
  return treedef.unflatten(["vector" if lab == "vector" else "lanton" for lab in labs])


def _float16_in_float32(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """``tx`` run on float32 copies of float16 leaves (state, gradients, params), its updates cast
  back. optax's AdamW is not finite on float16 params: a squared gradient below about 6e-8 is 0
  in float16, and so is its ``eps=1e-8``, so the update divides by zero. Vectors are small, so
  their float32 state costs little. Other dtypes pass through unchanged."""

  def up(tree):
    return jax.tree.map(lambda x: x.astype(jnp.float32) if x.dtype == jnp.float16 else x, tree)

  def init_fn(params):
    return tx.init(up(params))

  def update_fn(updates, state, params=None):
    new, state = tx.update(up(updates), state, None if params is None else up(params))
    return jax.tree.map(lambda u, g: u.astype(g.dtype), new, updates), state

  return optax.GradientTransformation(init_fn, update_fn)


def _checked(who: str, tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  """``tx`` with LANTON's leaf checks over every leaf: float leaves at init, and at update the
  gradient shapes against the params (when given)."""
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    checks.check_float_leaves(who, params,
                              complex_reason=layer_rates.COMPLEX_REASON)
    return tx.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    if params is not None:
      checks.check_leaf_shapes(who, updates, params)
    return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@alias.static_args("ns_steps", "noise_every", "mu_dtype", "ns_dtype", "labels", "norm_groups",
                   "weight_decay_mask", "vector_optimizer", "layouts", "stack_axes", "prev_dtype",
                   "ns_mesh")
def lanton(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.95,
    b2: float = 0.99,
    ns_steps: int = 5,
    weight_decay: float = 0.1,
    *,
    vector_optimizer: optax.GradientTransformation | Literal["sign"] | None = None,
    vector_b1: float = 0.9,
    vector_b2: float = 0.95,
    vector_weight_decay: float = 0.0,
    decay_with_rate: bool = True,
    **options: Any,
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
      its learning rate), None (default) for AdamW (on float16 vector leaves in float32, state
      included: float16 cannot hold AdamW's squared gradients or its eps), or 'sign' to treat
      vectors as a LANTON sign group with the l1 dual norm.
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
    ns_mesh: the mesh to run Newton-Schulz on whole matrices over (FSDP). Default None.

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
  unknown = sorted(set(options) - set(_FORWARDED))
  if unknown:
    raise TypeError(f"lanton() got unexpected keyword argument(s) {unknown}; it takes "
                    f"scale_by_lanton's keywords {sorted(_FORWARDED)} besides its own.")
  mask = options.pop("weight_decay_mask", None)
  core = scale_by_lanton(b1, b2, ns_steps, **options,
                         weight_decay=weight_decay if decay_with_rate else 0.0,
                         weight_decay_mask=mask if decay_with_rate else None)
  parts = [core]
  if not decay_with_rate:
    parts.append(optax.add_decayed_weights(weight_decay, mask))
  parts.append(optax.scale_by_learning_rate(learning_rate))
  main = optax.chain(*parts)
  if vector_optimizer == "sign":
    return _checked("lanton", main)
  if vector_optimizer is None:
    vector_optimizer = _float16_in_float32(optax.adamw(
        learning_rate, b1=vector_b1, b2=vector_b2, eps=1e-8, weight_decay=vector_weight_decay,
        mu_dtype=options.get("mu_dtype")))
  views = (options.get("labels"), options.get("layouts"), options.get("stack_axes"))
  return _checked("lanton", optax.partition(
      {"lanton": main, "vector": vector_optimizer},
      functools.partial(_lanton_partition_labels, *views)))


#: scale_by_lanton's keywords that :func:`lanton` forwards as they are (``weight_decay`` is its
#: own; ``weight_decay_mask`` goes with the decay).
_FORWARDED = tuple(k for k, p in inspect.signature(scale_by_lanton).parameters.items()
                   if p.kind is p.KEYWORD_ONLY and k != "weight_decay")
lanton.__signature__ = alias.forwarding_signature(lanton, scale_by_lanton, _FORWARDED)
