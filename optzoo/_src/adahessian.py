"""AdaHessian: Adam with a Hutchinson Hessian-diagonal second moment (Yao et al., arXiv 2006.00719).

The curvature comes from a Hessian-vector product of the objective, which ``update`` takes as
the ``obj_fn`` keyword (params -> scalar loss), exactly like ``optax.contrib.sophia``:

    updates, state = tx.update(grads, state, params, obj_fn=lambda p: loss(p, batch))

The update follows the authors' official code: the Hessian-diagonal moment is built from
``|H z|`` (spatially averaged), eps sits outside the power, weight decay is decoupled, and the
Hessian can be refreshed every ``update_every`` steps (skipped steps do not compute the HVP:
``lax.cond``). The probes and the estimate are ``optzoo.curvature``'s.

Practical notes:

* The HVP must use the same stochastic loss as the gradients (same batch, dropout mask, BN
  mode); clipping the gradients does not clip the curvature. With gradient accumulation, sum
  per-micro-batch HVPs rather than differentiating accumulated gradients.
* Cost: an exact HVP costs several gradients' worth of arithmetic; ``update_every > 1``
  amortizes it.
* Multi-device: under ``jit`` with sharded params one key gives the same probes everywhere
  (threefry is partitionable). Under ``pmap``/``shard_map`` keep the key replicated (do not
  fold in the axis index) and ``pmean`` the gradients and the ``hessian_diag`` you pass.
* Scale: with ``hessian_power=1`` and ``eps=0`` the trajectory does not change when the loss
  is multiplied by a positive constant; eps is in curvature units, so it matters for losses
  with tiny curvature.
* Zero curvature: where the second moment ``v`` is exactly 0 (every estimate of that
  coordinate so far was 0) the step is 0, not ``m_hat / eps``. That happens for a coordinate
  the loss is linear in, and when a probe cancels: with a Hessian of equal-magnitude entries (a
  loss of ``sum(params)``, rank one) ``(H z)_i = 0`` for 3 probes in 8 on a 4-parameter
  problem, where ``m_hat / eps`` would be a step of ``1e4 * lr`` times the gradient. Such a
  coordinate moves from the first refresh whose estimate is nonzero (its momentum kept
  meanwhile). With ``hessian_power=0`` the curvature is ignored, and so is this rule.
* Inputs: real floating-point leaves; integer and complex leaves are a ``TypeError`` at
  ``init`` naming the leaf (keep integer leaves out with ``optax.partition`` and pass
  ``obj_fn=optzoo.frozen_objective(loss_fn, params)``). A gradient whose shape differs from
  the state's is a ``ValueError`` naming the leaf; an empty pytree gives an empty update.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Literal, NamedTuple, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax

from optzoo import curvature as _curvature
from optzoo import layouts as _layouts
from optzoo._src import alias
from optzoo._src.base import checks, masking

AveragingMode = Literal["official", "none", "fan_in"]
ADAHESSIAN_AVERAGING_MODES = get_args(AveragingMode)


class ScaleByAdaHessianState(NamedTuple):
  """State of :func:`scale_by_adahessian`.

  Attributes:
    count: int32 step counter (``optax.safe_increment``); bias corrections use it.
    mu: EMA of the gradients (dtype ``mu_dtype``, default the params').
    nu: EMA of the squared averaged curvature ``D * D`` (dtype ``nu_dtype``).
    hessian_diag: the last averaged ``|diag H|`` estimate ``D``, reused between refreshes;
      ``None`` when ``update_every == 1`` (nothing to cache).
    key: raw ``uint32[2]`` PRNG key of the Hutchinson probes, split at every refresh.
  """

  count: jax.Array
  mu: optax.Updates
  nu: optax.Updates
  hessian_diag: optax.Updates | None
  key: jax.Array


def _as_raw_key(key: Any) -> jax.Array:
  """An int seed or a raw ``uint32[2]`` key (a typed key is converted to its raw data)."""
  if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
    return jax.random.PRNGKey(int(key))
  arr = key
  if hasattr(arr, "dtype") and jax.dtypes.issubdtype(arr.dtype, jax.dtypes.prng_key):
    arr = jax.random.key_data(arr)
  arr = jnp.asarray(arr)
  if arr.shape == ():
    return jax.random.PRNGKey(arr)
  if arr.shape != (2,) or arr.dtype != jnp.uint32:
    raise TypeError(
        f"key must be an int seed or a raw jax.random.PRNGKey (uint32[2]); got shape "
        f"{arr.shape} dtype {arr.dtype}.")
  return arr


def block_mean(x: jax.Array, block_size: int, axis: int = 0) -> jax.Array:
  """Mean over contiguous blocks of ``block_size`` along ``axis``, broadcast back to ``x.shape``.

  Args:
    x: the array.
    block_size: block length; must divide ``x.shape[axis]`` (else a ``ValueError``).
    axis: the axis cut into blocks. Default 0.

  >>> import jax.numpy as jnp
  >>> block_mean(jnp.array([[1.0], [3.0], [5.0], [7.0]]), 2).ravel().tolist()
  [2.0, 2.0, 6.0, 6.0]
  """
  axis = axis % x.ndim
  n = x.shape[axis]
  if n % block_size:
    raise ValueError(
        f"averaging block size {block_size} does not divide axis {axis} of length {n} "
        f"(leaf shape {tuple(x.shape)}); pick a divisor or pass a callable averaging.")
  shape = x.shape[:axis] + (n // block_size, block_size) + x.shape[axis + 1:]
  m = jnp.mean(x.reshape(shape), axis=axis + 1, keepdims=True)
  return jnp.broadcast_to(m, shape).reshape(x.shape)


def average_curvature(
    d: jax.Array,
    averaging: AveragingMode | int | Callable[[Any, jax.Array], jax.Array],
    path: Any = (),
    layout: _layouts.LeafLayout | None = None,
) -> jax.Array:
  """Spatial averaging of one leaf's ``|H z|`` (AdaHessian), broadcast to the leaf's shape.

  Args:
    d: one leaf of ``|H z|``.
    averaging: one of the modes below (no default here; AdaHessian's default is
      ``"official"``).
    path: the leaf's key path, passed to a callable ``averaging`` and read by the default
      layout rule. Default ``()``.
    layout: how the leaf is viewed (:class:`optzoo.layouts.LeafLayout`). Default None:
      :func:`optzoo.layouts.default_layout` of ``path`` and ``d.shape``, which raises
      :class:`optzoo.layouts.AmbiguousLayoutError` naming the leaf for a leaf of three or more
      axes that no rule identifies (``"none"`` and a callable need no layout).

  ``averaging`` (no mode ever averages across a stack's layer axes, ``layout.batch_axes``):
    * ``"official"`` (AdaHessian's default): only a convolution kernel is averaged, over its
      window axes (``layout.window_axes``, e.g. ``(kh, kw)`` of a Flax/Haiku
      ``(kh, kw, in, out)`` kernel); dense kernels, attention kernels, embeddings, biases and
      stacks of dense layers are not. This is the authors' CIFAR code.
    * ``"none"``: no averaging.
    * ``"fan_in"``: as official, and every other matrix leaf (dense, attention, embedding,
      per layer of a stack) is averaged over its reduction (fan-in) axes: one value per
      output unit.
    * an int ``b``: as official, and a matrix leaf with one reduction axis and no window
      (a dense kernel, an attention query/key/value kernel, an embedding, a stacked dense
      kernel) is averaged over contiguous blocks of ``b`` along that axis (fairseq's IWSLT
      setting is ``b = 32``); the length must divide.
    * a callable ``(path, leaf) -> averaged leaf`` for anything else (per-leaf overrides).

  >>> import jax.numpy as jnp
  >>> from optzoo import layouts
  >>> d = jnp.arange(8.0).reshape(2, 2, 1, 2)                  # a 2x2 conv, 1 in, 2 out
  >>> average_curvature(d, "official", layout=layouts.conv(4))[..., 0].ravel().tolist()
  [3.0, 3.0, 3.0, 3.0]
  >>> stack = jnp.arange(8.0).reshape(2, 2, 2)                 # 2 stacked (2, 2) dense kernels
  >>> bool((average_curvature(stack, "official", layout=layouts.dense().shifted(1)) == stack).all())
  True
  """
  if callable(averaging):
    return averaging(path, d)
  if averaging == "none" or d.ndim == 0:
    return d
  lay = layout if layout is not None else _layouts.default_layout(_layouts.path_names(path),
                                                                  d.shape)
  axes = lay.window_axes
  if not axes and lay.kind != "vector":
    if averaging == "fan_in":
      axes = lay.reduction_axes
    elif isinstance(averaging, (int, np.integer)) and len(lay.reduction_axes) == 1:
      return block_mean(d, int(averaging), axis=lay.reduction_axes[0])
  if not axes:
    return d
  return jnp.broadcast_to(jnp.mean(d, axis=axes, keepdims=True), d.shape)


def _leaf_layouts(tree, averaging, layouts, stack_axes) -> list[_layouts.LeafLayout | None]:
  """One layout per leaf of ``tree`` for the averaging (None where no layout is needed)."""
  leaves = jax.tree.leaves(tree)
  if callable(averaging) or averaging == "none":
    return [None] * len(leaves)
  try:
    return _layouts.infer(tree, layouts, stack_axes)
  except _layouts.AmbiguousLayoutError as e:
    raise _layouts.AmbiguousLayoutError(
        f"scale_by_adahessian: {e} AdaHessian takes layouts= and stack_axes= (passed to "
        "optzoo.layouts.infer) to say which axes are a convolution's window; "
        "averaging='none' averages nothing.") from None


def _check_averaging(averaging: Any) -> None:
  if callable(averaging):
    return
  if isinstance(averaging, (int, np.integer)) and not isinstance(averaging, bool):
    checks.check_int("averaging", int(averaging), 1)
    return
  if averaging not in ADAHESSIAN_AVERAGING_MODES:
    raise ValueError(
        f"averaging={averaging!r} is not one of {ADAHESSIAN_AVERAGING_MODES}, a positive int "
        "block size, "
        "or a callable (path, leaf) -> averaged leaf.")


def _default_nu_dtype(dtype) -> jnp.dtype:
  dtype = jnp.dtype(dtype)
  # D * D underflows in 16-bit floats: keep the curvature moment in float32 for them.
  return jnp.dtype(jnp.float32) if dtype.itemsize < 4 else dtype


class _Config(NamedTuple):
  b1: float
  b2: float
  eps: float
  hessian_power: float
  update_every: int
  averaging: Any
  n_samples: int
  linearize: bool
  layouts: Any
  stack_axes: Any


def _init_state(params, *, averaging, layouts, stack_axes, update_every, mu_dtype, nu_dtype,
                raw_key):
  checks.check_float_leaves("scale_by_adahessian", params,
                           complex_reason=masking.REAL_HVP_REASON,
                           remedy=masking.FROZEN_REMEDY)
  lays = _leaf_layouts(params, averaging, layouts, stack_axes)  # raises for ambiguous leaves
  if isinstance(averaging, (int, np.integer)):
    for p, lay in zip(jax.tree.leaves(params), lays):  # raises if the block does not divide
      jax.eval_shape(lambda x, lay=lay: average_curvature(x, averaging, layout=lay), p)

  def nu_dtype_for(p):
    return nu_dtype if nu_dtype is not None else _default_nu_dtype(p.dtype)

  mu = optax.tree.zeros_like(params, dtype=mu_dtype)
  nu = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=nu_dtype_for(p)), params)
  cache = None
  if update_every > 1:
    cache = jax.tree.map(lambda p: jnp.zeros_like(p, dtype=nu_dtype_for(p)), params)
  # a fresh key buffer per init: a state donated to a jitted step must not delete the key
  # that later inits of this transform start from
  return ScaleByAdaHessianState(
      count=jnp.zeros([], jnp.int32), mu=mu, nu=nu, hessian_diag=cache, key=jnp.array(raw_key))


def _curvature_matvec(cfg, params, obj_fn, hvp_fn, hessian_diag):
  """``z -> H z`` for a refresh (None when ``hessian_diag`` is given)."""
  if hessian_diag is not None:
    return None
  if hvp_fn is not None:
    return hvp_fn
  if cfg.linearize and cfg.update_every > 1:
    # Primal pass (forward + backward) outside the refresh cond: XLA merges it with the
    # caller's own gradient computation, so a refresh pays only for the tangent pass and a
    # skipped step pays nothing.
    return jax.linearize(jax.grad(obj_fn), params)[1]
  return lambda z: _curvature.hvp(obj_fn, params, z)


def _refresh(key, *, cfg, nu, like, matvec, hessian_diag, lays):
  """(new key, averaged |diag H| estimate D in nu's dtypes)."""
  key, sub = jax.random.split(key)
  if hessian_diag is not None:
    est = hessian_diag
  else:
    est = _curvature.hutchinson_estimate(matvec, like, sub, cfg.n_samples)
  paths = [p for p, _ in jax.tree_util.tree_flatten_with_path(est)[0]]
  treedef = jax.tree.structure(est)
  d = [average_curvature(jnp.abs(e).astype(v.dtype), cfg.averaging, path, lay)
       for path, e, v, lay in zip(paths, jax.tree.leaves(est), treedef.flatten_up_to(nu), lays)]
  return key, jax.tree.unflatten(treedef, d)


def _direction(g, m, v, *, cfg, count, power_is_one):
  """One leaf of ``m_hat / (v_hat^(k/2) + eps)`` in at least float32, cast to ``g``'s dtype."""
  ct = v.dtype  # at least float32: promote_types(., float32) spelled out
  if not (jnp.issubdtype(ct, jnp.inexact) and ct.itemsize >= 4):
    ct = jnp.dtype(jnp.float32)
  t = count.astype(ct)
  bc1 = 1.0 - jnp.asarray(cfg.b1, ct) ** t
  bc2 = 1.0 - jnp.asarray(cfg.b2, ct) ** t
  rms = jnp.sqrt(v.astype(ct) / bc2)
  # exact for k = 1 (keeps loss-scale invariance bitwise); pow otherwise. A concrete k = 1
  # (the default) needs no per-element pow at all; a traced k picks at run time.
  if power_is_one:
    denom = rms + jnp.asarray(cfg.eps, ct)
    no_curvature = v == 0
  else:
    k = jnp.asarray(cfg.hessian_power, ct)
    denom = jnp.where(k == 1.0, rms, rms**k) + jnp.asarray(cfg.eps, ct)
    no_curvature = (v == 0) & (k > 0)  # k = 0 ignores the curvature
  # Zero curvature seen so far (v == 0): a zero step, not m / eps (see scale_by_adahessian);
  # an infinite denominator keeps a NaN momentum NaN.
  denom = jnp.where(no_curvature, jnp.asarray(jnp.inf, ct), denom)
  return ((m.astype(ct) / bc1) / denom).astype(g.dtype)


def _update(cfg, updates, state, params, obj_fn, hvp_fn, hessian_diag):
  who = "scale_by_adahessian"
  checks.check_same_structure(updates, params)
  checks.check_leaf_shapes(who, updates, state.nu)
  if hessian_diag is None and hvp_fn is None:
    checks.require_obj_fn(who, obj_fn, params)
    masking.check_objective(who, obj_fn, params)
  like = params if params is not None else updates
  lays = _leaf_layouts(like, cfg.averaging, cfg.layouts, cfg.stack_axes)
  matvec = _curvature_matvec(cfg, params, obj_fn, hvp_fn, hessian_diag)
  refresh = functools.partial(
      _refresh, cfg=cfg, nu=state.nu, like=like, matvec=matvec, hessian_diag=hessian_diag,
      lays=lays)
  if cfg.update_every == 1:
    key, d = refresh(state.key)
    cache = None
  else:
    refresh_now = state.count % cfg.update_every == 0
    key, d = jax.lax.cond(refresh_now, refresh, lambda k: (k, state.hessian_diag), state.key)
    cache = d

  count = optax.safe_increment(state.count)
  mu = optax.tree.update_moment(updates, state.mu, cfg.b1, 1)
  mu = optax.tree.cast_like(mu, state.mu)
  b2 = cfg.b2
  nu = jax.tree.map(lambda v, dd: (b2 * v + (1.0 - b2) * (dd * dd)).astype(v.dtype), state.nu, d)
  power_is_one = checks.concrete_float(cfg.hessian_power) == 1.0
  direction = functools.partial(_direction, cfg=cfg, count=count, power_is_one=power_is_one)
  new_updates = jax.tree.map(direction, updates, mu, nu)
  return new_updates, ScaleByAdaHessianState(
      count=count, mu=mu, nu=nu, hessian_diag=cache, key=key)


def scale_by_adahessian(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    hessian_power: float = 1.0,
    update_every: int = 1,
    *,
    averaging: AveragingMode | int | Callable[[Any, jax.Array], jax.Array] = "official",
    key: Any = 0,
    n_samples: int = 1,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
    linearize: bool = True,
    layouts: Any = None,
    stack_axes: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaHessian's learning-rate-free direction: momentum over a Hessian-diagonal RMS.

  With :math:`t` the 1-based step, :math:`z` a Rademacher probe (independent per leaf) and
  :math:`A` the per-leaf spatial average (``averaging``):

  .. math::
    D_t = A(|H_t z|) \text{ on refresh steps } (t-1 \equiv 0 \bmod \text{update\_every}),
      \text{ else } D_{t-1},\\
    m_t = b_1 m_{t-1} + (1-b_1) g_t,\qquad v_t = b_2 v_{t-1} + (1-b_2) D_t^2,\\
    u_t = \frac{m_t / (1-b_1^t)}{\bigl(v_t / (1-b_2^t)\bigr)^{k/2} + \epsilon}.

  ``|H z|`` equals ``|z * H z|`` (Hutchinson's diagonal estimate,
  :func:`optzoo.curvature.hutchinson_estimate`) because ``z = +-1``. The bias corrections count
  optimizer steps, not refreshes. On skipped steps the cached :math:`D` is reused and still
  enters :math:`v` and no HVP is computed (``lax.cond``). eps is outside the power, as in the
  authors' code (the paper's algorithm has no eps).

  Averaging reads :mod:`optzoo.layouts` (only conv windows by default, never a stack's layer
  axes); a leaf no layout rule identifies is an :class:`optzoo.layouts.AmbiguousLayoutError`
  naming it, at ``init`` (pass ``layouts=`` or ``stack_axes=``).

  Where :math:`v_t = 0` (no nonzero curvature estimate yet) the step is 0, not
  :math:`\hat m_t/\epsilon`; inputs are real float leaves (see the notes above).

  ``update(updates, state, params, *, obj_fn=None, hvp_fn=None, hessian_diag=None)``: one of
  ``obj_fn`` (params -> scalar loss, the same minibatch loss as the gradients; the HVP is
  ``jax.jvp(jax.grad(obj_fn), (params,), (z,))``), ``hvp_fn`` (z -> H z at params) or
  ``hessian_diag`` (a precomputed ``z * H z``, e.g. from
  :func:`optzoo.curvature.value_grad_and_hutchinson` with your own key) is required; with
  none of them, or ``obj_fn`` without ``params``, ``update`` raises a ``ValueError`` that shows
  how to pass ``obj_fn``. Inside ``optax.masked`` / ``optax.partition`` pass
  ``obj_fn=optzoo.frozen_objective(loss_fn, params)`` (a plain ``obj_fn`` would see
  ``optax.MaskedNode`` leaves: a ``ValueError`` says so). Other keywords are ignored.

  Args:
    b1: EMA rate of the gradients, in [0, 1). Default 0.9 (paper).
    b2: EMA rate of the squared curvature, in [0, 1). Default 0.999 (paper).
    eps: added to the denominator, >= 0, in curvature units. Default 1e-4 (authors' code; the
      paper's algorithm has none).
    hessian_power: k in [0, 1]. Default 1.0 (paper); 0.5 in torch_optimizer. Changing it
      needs a new learning rate.
    update_every: refresh the Hessian estimate every this many steps (static int >= 1).
      Default 1 (paper).
    averaging: ``"official"`` (default), ``"none"``, ``"fan_in"``, an int block size, or a
      callable ``(path, leaf) -> leaf``; see :func:`optzoo.average_curvature`.
    key: int seed or raw ``jax.random.PRNGKey`` of the probes (kept in the state; same key,
      same trajectory). Default 0.
    n_samples: Hutchinson probes per refresh (static int >= 1); the signed ``z * H z`` are
      averaged before the absolute value. Default 1 (authors' code).
    mu_dtype: dtype of ``m``. Default None: the params' dtype.
    nu_dtype: dtype of ``v`` and the cached ``D``. Default None: float32 for 16-bit params
      (``D * D`` underflows in fp16) and the params' dtype otherwise.
    linearize: how the ``obj_fn`` HVP is split around the refresh ``lax.cond`` (static; only
      matters for ``update_every > 1``). Default True: the primal pass (forward and backward,
      ``jax.linearize``) runs every step outside the cond, where XLA merges it with the
      caller's own ``value_and_grad`` of the same loss in the same jitted step, and only the
      tangent pass (the HVP proper) runs inside the cond; a refresh then costs what an
      ``update_every=1`` step costs and a skipped step costs an Adam step. False puts the whole
      forward-over-reverse pass inside the cond: use it when the gradient is computed outside
      the jitted function that calls ``update`` (nothing to merge with, so True would pay a
      gradient on every skipped step). Both give identical results.
    layouts: leaf layouts for the averaging, passed to :func:`optzoo.layouts.infer` (a pytree
      of :class:`optzoo.layouts.LeafLayout`, or a callable such as
      ``optzoo.layouts.from_nnx(model)``). Default None: the default rules.
    stack_axes: leading stack axes for :func:`optzoo.layouts.infer`, an int or a pytree of ints
      (e.g. ``{"blocks": 1}`` for an ``nnx.scan`` stack). Default None: none.

  Returns:
    An ``optax.GradientTransformationExtraArgs``; updates have the gradients' dtype.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> loss = lambda p: jnp.sum(jnp.array([1.0, 100.0]) * p ** 2)
    >>> tx = optax.chain(optzoo.scale_by_adahessian(b1=0.0, b2=0.0, eps=0.0), optax.scale(-1.0))
    >>> params = jnp.array([1.0, 1.0])
    >>> state = tx.init(params)
    >>> updates, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
    >>> optax.apply_updates(params, updates).tolist()   # a Newton step on a separable quadratic
    [0.0, 0.0]

  References:
    Yao et al., `ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning
    <https://arxiv.org/abs/2006.00719>`_, 2021
  """
  checks.check_beta("b1", b1)
  checks.check_beta("b2", b2)
  checks.check_range("eps", eps, 0.0)
  checks.check_range("hessian_power", hessian_power, 0.0, 1.0)
  update_every = checks.check_int("update_every", update_every, 1)
  n_samples = checks.check_int("n_samples", n_samples, 1)
  _check_averaging(averaging)
  raw_key = _as_raw_key(key)
  mu_dtype = None if mu_dtype is None else jnp.dtype(mu_dtype)
  nu_dtype = None if nu_dtype is None else jnp.dtype(nu_dtype)
  cfg = _Config(b1, b2, eps, hessian_power, update_every, averaging, n_samples, linearize,
                layouts, stack_axes)

  def init_fn(params):
    return _init_state(params, averaging=averaging, layouts=layouts, stack_axes=stack_axes,
                       update_every=update_every, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
                       raw_key=raw_key)

  def update_fn(updates, state, params=None, *, obj_fn=None, hvp_fn=None, hessian_diag=None,
                **extra_args):
    del extra_args
    return _update(cfg, updates, state, params, obj_fn, hvp_fn, hessian_diag)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@alias.static_args("update_every", "averaging", "key", "mask", "n_samples", "mu_dtype",
                   "nu_dtype", "linearize", "layouts", "stack_axes")
def adahessian(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-4,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    hessian_power: float = 1.0,
    update_every: int = 1,
    *,
    averaging: AveragingMode | int | Callable[[Any, jax.Array], jax.Array] = "official",
    key: Any = 0,
    mask: Any | Callable[[optax.Params], Any] | None = None,
    n_samples: int = 1,
    mu_dtype: Any | None = None,
    nu_dtype: Any | None = None,
    linearize: bool = True,
    layouts: Any = None,
    stack_axes: Any = None,
) -> optax.GradientTransformationExtraArgs:
  r"""AdaHessian with decoupled weight decay; ``update`` needs ``obj_fn=`` (params -> loss).

  .. math::
    \theta_t = \theta_{t-1} - \eta_t\Bigl(\frac{\hat m_t}{\hat v_t^{k/2} + \epsilon}
      + \lambda\,\theta_{t-1}\Bigr)

  with :math:`\hat m_t, \hat v_t` from :func:`scale_by_adahessian`. Built as
  ``optax.chain(scale_by_adahessian(...), optax.add_decayed_weights(weight_decay, mask),
  optax.scale_by_learning_rate(learning_rate))``: every reference implementation decays
  outside the preconditioner with the current learning rate. (The authors' CIFAR script passes
  ``wd / lr0``: to reproduce it use ``weight_decay = 5e-4 / 0.15``.)
  ``update(updates, state, params, *, obj_fn=None, hvp_fn=None, hessian_diag=None)`` as in
  :func:`scale_by_adahessian`.

  Args:
    learning_rate: step size or schedule (>= 0). Paper (CIFAR): 0.15 with step decay.
    b1: gradient EMA rate, in [0, 1). Default 0.9 (paper).
    b2: curvature EMA rate, in [0, 1). Default 0.999 (paper).
    eps: denominator offset (>= 0). Default 1e-4 (authors' code).
    weight_decay: decoupled decay (>= 0). Default 0.0; the paper's CIFAR runs use 5e-4 / 0.15.
    hessian_power: k in [0, 1]. Default 1.0 (paper).
    update_every: Hessian refresh period (static int >= 1). Default 1 (paper refreshes every
      step).
    averaging: spatial averaging of ``|H z|``: ``"official"`` (default; conv windows only, read
      from :mod:`optzoo.layouts`),
      ``"none"``, ``"fan_in"``, an int block size or a callable; see
      :func:`optzoo.average_curvature`.
    key: probe seed (int or raw PRNG key). Default 0.
    mask: which params are decayed: a pytree of bools or a callable params -> such a pytree.
      Default None: all.
    n_samples: probes per refresh (static int >= 1). Default 1 (authors' code).
    mu_dtype: dtype of the gradient EMA. Default None: the params'.
    nu_dtype: dtype of the curvature EMA. Default None: float32 for 16-bit params, else the
      params'.
    linearize: primal pass of the HVP outside the refresh cond. Default True; see
      :func:`scale_by_adahessian`.
    layouts: leaf layouts for the averaging (:func:`optzoo.layouts.infer`), e.g.
      ``optzoo.layouts.from_nnx(model)``. Default None: the default rules.
    stack_axes: leading stack axes for :func:`optzoo.layouts.infer`, e.g. ``{"blocks": 1}``.
      Default None.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> loss = lambda p: jnp.sum((p - 1.0) ** 2) + jnp.sum(p[0] * p[1])
    >>> params = jnp.zeros(2)
    >>> tx = optzoo.adahessian(learning_rate=0.15)
    >>> state = tx.init(params)
    >>> for _ in range(3):
    ...   updates, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
    ...   params = optax.apply_updates(params, updates)

  References:
    Yao et al., `ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning
    <https://arxiv.org/abs/2006.00719>`_, 2021
  """
  return alias.decoupled_alias(
      scale_by_adahessian(b1=b1, b2=b2, eps=eps, hessian_power=hessian_power,
                          update_every=update_every, averaging=averaging, key=key,
                          n_samples=n_samples, mu_dtype=mu_dtype, nu_dtype=nu_dtype,
                          linearize=linearize, layouts=layouts, stack_axes=stack_axes),
      learning_rate, weight_decay, mask)
