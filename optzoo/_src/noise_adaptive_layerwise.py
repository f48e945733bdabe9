"""Noise-adaptive layerwise learning rates on any optax optimizer.

:func:`noise_adaptive_layerwise` puts LANTON's layer rates (:mod:`optzoo._src.layer_rates`'s
machinery: the noise EMA per layer in a dual norm and the rate rule) on the updates of any
optax transformation: Lion, SGD, Adam, Muon.

References:
  Hao et al., `Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware Optimization
  for Deep Neural Network Training <https://arxiv.org/abs/2510.14009>`_, 2025
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from optzoo import lmo as _lmo
from optzoo._src import alias, layer_rates
from optzoo._src.base import checks, trees
from optzoo._src.layer_rates import Normalize

__all__ = ["NoiseAdaptiveLayerwiseState", "noise_adaptive_layerwise"]

WrapperNoiseEstimator = Literal["prev_grad", "split"]
LeafDualNorm = Literal["l1", "l2", "svd", "ns", "gram", "fro_bound"]


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


class _Config(NamedTuple):
  """The arguments of :func:`noise_adaptive_layerwise` after validation."""

  rule: layer_rates.RateRule
  dual_norm: Any
  dual_per_entry: bool
  labels: Any
  layouts: Any
  stack_axes: Any


def _wrapper_leaves(w: _Config, tree):
  """Per leaf: the noise sample of a difference (per layer, float32), and how a per-layer array
  broadcasts against the leaf. A callable dual norm takes the raw leaf, and its output's axes
  are the leaf's leading axes; a named one follows the layouts."""
  leaves = jax.tree.leaves(tree)
  if callable(w.dual_norm):
    sample = lambda d: w.dual_norm(d).astype(jnp.float32)  # noqa: E731
    expands = [functools.partial(lambda n, r: layer_rates.expand(r, n), p.ndim) for p in leaves]
    return [sample] * len(leaves), expands
  dual = layer_rates.layer_dual(w.dual_norm, w.dual_per_entry)
  views = layer_rates.views(tree, w.layouts, w.stack_axes)
  return ([functools.partial(lambda v, d: dual(v, d).astype(jnp.float32), v) for v in views],
          [v.expand for v in views])


def _wrapper_init(w: _Config, inner, params) -> NoiseAdaptiveLayerwiseState:
  checks.check_float_leaves("noise_adaptive_layerwise", params,
                            complex_reason=layer_rates.COMPLEX_REASON)
  samples, _ = _wrapper_leaves(w, params)
  shapes = [jax.eval_shape(f, jax.ShapeDtypeStruct(p.shape, p.dtype)).shape
            for f, p in zip(samples, jax.tree.leaves(params))]
  count, prev_grad, noise, rates = layer_rates.init_rate_fields(w.rule, params, shapes)
  return NoiseAdaptiveLayerwiseState(count=count, prev_grad=prev_grad, noise=noise, rates=rates,
                                     inner_state=inner.init(params))


def _wrapper_update(w: _Config, inner, updates, state, params, extra_args):
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
  diffs, valid = layer_rates.noise_diffs(rule, updates, treedef, state.prev_grad, None, count,
                                         extra_args)
  h_new = layer_rates.refresh_noise(rule, h_old, diffs, valid, count,
                                    lambda ds: [f(d) for f, d in zip(samples, ds)])
  rates = layer_rates.warm_rates(rule, h_new, groups, count)
  inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
  out = [(expand(r) * u.astype(jnp.float32)).astype(u.dtype)
         for expand, r, u in zip(expands, rates, treedef.flatten_up_to(inner_updates))]
  return treedef.unflatten(out), NoiseAdaptiveLayerwiseState(
      count=optax.safe_increment(count),
      prev_grad=layer_rates.next_prev_grad(rule, updates, state.prev_grad),
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

  with the rates ``r`` of :func:`optzoo.layer_rates` and ``c_l`` the size of layer ``l`` in the dual
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
    normalize: 'min' (default), 'mean', 'max' or 'none'; see :func:`optzoo.layer_rates`.
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
      :func:`optzoo.layer_rates`. Default 1e-6.

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
  rule = layer_rates.rate_rule(b2, noise_estimator, normalize, r_min, r_max, rate_eps,
                               warmup_steps, noise_every, noise_floor, prev_dtype,
                               WrapperNoiseEstimator)
  if isinstance(dual_norm, str):
    _lmo.dual_norm(dual_norm)  # validates the name
  elif not callable(dual_norm):
    raise TypeError(f"dual_norm must be a name in optzoo.lmo.DUAL_NORMS or a callable, got "
                    f"{dual_norm!r}.")
  w = _Config(rule, dual_norm, bool(dual_per_entry), labels, layouts, stack_axes)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return _wrapper_init(w, inner, params)

  def update_fn(updates, state, params=None, **extra_args):
    return _wrapper_update(w, inner, updates, state, params, extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
