"""MicroAdam: Adam-quality steps with under one byte of optimizer state per parameter.

Block-wise top-k of the gradient with a 4-bit quantized error feedback, a ring buffer of the
last ``m`` sparse gradients, Adam moments rebuilt from that window with the global-step bias
correction, and a sparse update, as in the authors' code. Unlike the CUDA reference it runs
on any backend, for any float dtype and any density.

References:
  Modoranu et al., `MicroAdam: Accurate Adaptive Optimization with Low Space Overhead and
  Provable Convergence <https://arxiv.org/abs/2405.15593>`_, 2024
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


from optzoo import compression as _compression
from optzoo._src import alias
from optzoo._src.base import checks, trees


class ScaleByMicroAdamState(NamedTuple):
  """State of :func:`scale_by_microadam`. Every per-leaf field is a pytree like the params.

  Attributes:
    count: int32 step counter t (shared by all leaves; the ring slot is ``count mod m``).
    idx: per leaf, ``(m, k)`` int16 block-relative indices of the window's sparse gradients.
    val: per leaf, ``(m, k)`` values of the window's sparse gradients (``values_dtype``).
    ef: per leaf, the error feedback: ``ceil(d/2)`` uint8 (two 4-bit codes per byte), or a
      ``(d,)`` float32 array when ``quantize_ef=False``.
    qmin: per leaf, the per-bucket minimum of the error feedback (``stats_dtype``,
      ``ceil(d/q)``), or None when ``quantize_ef=False``.
    qmax: per leaf, the per-bucket maximum, like ``qmin``.

  Every leaf is a non-empty array (or None), so the state saves through orbax; the
  parameters' shapes are not stored: ``update`` reads them from the gradients (and checks
  them against ``params`` when given).
  """

  count: jax.Array
  idx: optax.Updates
  val: optax.Updates
  ef: optax.Updates
  qmin: optax.Updates | None
  qmax: optax.Updates | None


class _Config(NamedTuple):
  """The validated, static arguments of :func:`scale_by_microadam`."""

  b1: float
  b2: float
  eps: float
  num_grads: int
  density: float
  bucket: int
  block_size: int
  quantize_ef: bool
  values_dtype: Any
  stats_dtype: Any
  error_feedback: bool
  approx_topk_recall: float | None
  chunk_size: int


class _Window(NamedTuple):
  """Per-step scalars shared by every leaf: the ring slot, the row weights ``b^age`` (0 for
  rows not yet written), and the bias corrections ``(1 - b) / (1 - b^t)``."""

  slot: jax.Array
  w1: jax.Array
  w2: jax.Array
  bc1: jax.Array
  bc2: jax.Array
  eps: jax.Array


def _config(b1, b2, eps, num_grads, density, quant_bucket_size, block_size, quantize_ef,
            values_dtype, stats_dtype, error_feedback, approx_topk_recall,
            chunk_size) -> _Config:
  """Validates the arguments of :func:`scale_by_microadam` (errors name the argument)."""
  checks.check_beta("b1", b1)
  checks.check_beta("b2", b2)
  checks.check_range("eps", eps, 0.0)
  m = checks.check_int("num_grads", num_grads, 1)
  checks.check_range("density", density, 0.0, 1.0, low_open=True)
  if checks.concrete_float(density) is None:
    raise TypeError(f"density must be a Python number (it fixes the top-k size), got {density!r}.")
  q = checks.check_int("quant_bucket_size", quant_bucket_size, 2)
  if q % 2:
    raise ValueError(f"quant_bucket_size={q} must be even (codes are packed in pairs).")
  bsz = checks.check_int("block_size", block_size, 1, _compression.MAX_BLOCK_SIZE)
  chunk = checks.check_int("chunk_size", chunk_size, 1)
  if approx_topk_recall is not None:
    checks.check_range("approx_topk_recall", approx_topk_recall, 0.0, 1.0, low_open=True)
    approx_topk_recall = float(approx_topk_recall)
  return _Config(
      b1=b1, b2=b2, eps=eps, num_grads=m, density=float(density), bucket=q, block_size=bsz,
      quantize_ef=bool(quantize_ef), values_dtype=jnp.dtype(values_dtype),
      stats_dtype=jnp.dtype(stats_dtype), error_feedback=bool(error_feedback),
      approx_topk_recall=approx_topk_recall, chunk_size=chunk)


def _layout(cfg: _Config, p) -> _compression.BlockLayout:
  return _compression.block_layout(int(np.prod(p.shape)), cfg.block_size, cfg.density)


def _init_leaf(cfg: _Config, p):
  """``(idx, val, ef, qmin, qmax)`` of one leaf, all zero (qmin, qmax None unquantized)."""
  lay = _layout(cfg, p)
  d = lay.size
  # Flattened (not param-shaped) state: created from scratch, so use jnp.zeros with a
  # shape computed from the (possibly abstract) leaf.
  idx = jnp.zeros((cfg.num_grads, lay.k), jnp.int16)
  val = jnp.zeros((cfg.num_grads, lay.k), cfg.values_dtype)
  if not cfg.quantize_ef:
    return idx, val, jnp.zeros((d,), jnp.float32), None, None
  n_q = _compression.num_buckets(d, cfg.bucket)
  ef = jnp.zeros(((d + 1) // 2,), jnp.uint8)
  lo = jnp.zeros((n_q,), cfg.stats_dtype)
  hi = jnp.zeros((n_q,), cfg.stats_dtype)
  return idx, val, ef, lo, hi


_COMPLEX_REASON = (
    "MicroAdam does not support complex parameters: its top-k selects by real magnitude and its "
    "error feedback is quantized to 4-bit codes of real values. Optimize the real and imaginary "
    "parts as two real leaves instead.")


def _init(cfg: _Config, params) -> ScaleByMicroAdamState:
  checks.check_float_leaves("microadam", params, complex_reason=_COMPLEX_REASON)
  treedef = jax.tree.structure(params)
  fields = trees.unzip(treedef, [_init_leaf(cfg, p) for p in jax.tree.leaves(params)], 5)
  idx, val, ef, qmin, qmax = fields
  if not cfg.quantize_ef:
    qmin = qmax = None
  return ScaleByMicroAdamState(jnp.zeros([], jnp.int32), idx, val, ef, qmin, qmax)


def _window(cfg: _Config, state_count: jax.Array, count: jax.Array) -> _Window:
  m = cfg.num_grads
  t = count.astype(jnp.float32)
  rows = jnp.arange(m, dtype=jnp.int32)
  age = (count - 1 - rows) % m
  live = rows < jnp.minimum(count, m)
  b1_ = jnp.asarray(cfg.b1, jnp.float32)
  b2_ = jnp.asarray(cfg.b2, jnp.float32)
  return _Window(
      slot=state_count % m,
      w1=jnp.where(live, b1_ ** age.astype(jnp.float32), 0.0),
      w2=jnp.where(live, b2_ ** age.astype(jnp.float32), 0.0),
      bc1=(1.0 - b1_) / (1.0 - b1_ ** t),
      bc2=(1.0 - b2_) / (1.0 - b2_ ** t),
      eps=jnp.asarray(cfg.eps, jnp.float32))


def _compress(cfg: _Config, g, lay: _compression.BlockLayout, ef, lo, hi):
  """Error feedback add, block top-k, and the new error feedback (the residual, quantized):
  ``(relative indices, values, ef, lo, hi)``."""
  d = lay.size
  acc = jnp.reshape(g, (-1,)).astype(jnp.float32)
  if cfg.error_feedback:
    acc = acc + (_compression.dequantize_4bit(ef, lo, hi, d, cfg.bucket) if cfg.quantize_ef
                 else ef)
  # the residual is the accumulator with the selected entries zeroed
  rel, v = _compression.topk_blocks(acc, lay, values_dtype=None,
                                    approx_recall=cfg.approx_topk_recall)
  resid = acc.at[_compression.global_indices(rel, lay)].set(0.0)
  if not cfg.error_feedback:
    pass  # the residual is dropped; ef stays 0
  elif cfg.quantize_ef:
    ef, lo, hi = _compression.quantize_4bit(resid, cfg.bucket, cfg.stats_dtype)
  else:
    ef = resid
  return rel, v, ef, lo, hi


def _span_update(cfg: _Config, win: _Window, lay: _compression.BlockLayout, g, idx, val, ef, lo,
                 hi):
  """One span of a leaf: whole top-k blocks that start on a block, bucket and byte boundary,
  with ``idx``/``val`` the window's ``(m, k)`` columns of those blocks and ``ef``/``lo``/``hi``
  the span's error feedback. Returns ``(u, idx, val, ef, lo, hi)`` of the span."""
  rel, v, ef, lo, hi = _compress(cfg, g, lay, ef, lo, hi)
  rel = rel.astype(idx.dtype)
  v = v.astype(val.dtype)
  # ring buffer write at slot (t - 1) mod m
  idx = jax.lax.dynamic_update_index_in_dim(idx, rel, win.slot, 0)
  val = jax.lax.dynamic_update_index_in_dim(val, v, win.slot, 0)
  # both moments from the window in one scatter-add (rows in order, so sums are exact repeats)
  vw = val.astype(jnp.float32)
  contrib = jnp.stack([win.w1[:, None] * vw, win.w2[:, None] * vw * vw], axis=-1)
  gidx = _compression.global_indices(idx, lay).reshape(-1)
  z = jnp.zeros((lay.size, 2), jnp.float32).at[gidx].add(contrib.reshape(-1, 2))
  mhat = win.bc1 * z[:, 0]
  vhat = win.bc2 * z[:, 1]
  u = jnp.where(vhat > 0, mhat / (jnp.sqrt(vhat) + win.eps), 0.0)
  return u.astype(g.dtype), idx, val, ef, lo, hi


class _Chunks(NamedTuple):
  """How a leaf is streamed: ``n`` chunks of layout ``chunk`` (whole blocks, whole buckets),
  then the ``tail`` (the blocks left over and the remainder block; size 0 if none)."""

  n: int
  chunk: _compression.BlockLayout
  tail: _compression.BlockLayout


def _chunks(cfg: _Config, lay: _compression.BlockLayout) -> _Chunks:
  # a chunk is a multiple of `unit` blocks, so that it also holds whole quantization buckets
  unit = cfg.bucket // math.gcd(lay.block, cfg.bucket)
  per = max(unit, cfg.chunk_size // lay.block // unit * unit)
  n = lay.n_blocks // per
  chunk = _compression.block_layout(per * lay.block, lay.block, cfg.density)
  tail = _compression.block_layout(lay.size - n * chunk.size, lay.block, cfg.density)
  return _Chunks(n, chunk, tail)


def _ef_len(cfg: _Config, size: int) -> int:
  return (size + 1) // 2 if cfg.quantize_ef else size


def _stream_span(cfg: _Config, win: _Window, lay: _compression.BlockLayout, starts, carry):
  """Reads one span of a leaf's buffers at ``starts`` = (element, column, ef, bucket) offsets,
  updates it, and writes it back in place: the gradient's elements take the update."""
  grad, idx, val, ef, lo, hi = carry
  flat = jnp.reshape(grad, (-1,))
  e0, c0, f0, s0 = starts
  sl = jax.lax.dynamic_slice_in_dim
  put = jax.lax.dynamic_update_slice_in_dim
  quant = cfg.quantize_ef
  n_q = _compression.num_buckets(lay.size, cfg.bucket)
  u, idx_s, val_s, ef_s, lo_s, hi_s = _span_update(
      cfg, win, lay, sl(flat, e0, lay.size), sl(idx, c0, lay.k, 1), sl(val, c0, lay.k, 1),
      sl(ef, f0, _ef_len(cfg, lay.size)), sl(lo, s0, n_q) if quant else None,
      sl(hi, s0, n_q) if quant else None)
  # every write depends on what was read, so XLA updates the buffers in place (writing back
  # only the new row would let it read the window after the write, and copy it to be safe)
  grad = put(flat, u, e0, 0).reshape(grad.shape)
  idx = put(idx, idx_s, c0, 1)
  val = put(val, val_s, c0, 1)
  if cfg.error_feedback:
    ef = put(ef, ef_s, f0, 0)
    if quant:
      lo, hi = put(lo, lo_s, s0, 0), put(hi, hi_s, s0, 0)
  return grad, idx, val, ef, lo, hi


def _leaf_update(cfg: _Config, win: _Window, once, g, idx, val, ef, lo, hi):
  """One leaf: ``(u, idx, val, ef, lo, hi)``, streamed over chunks of blocks so that the
  temporaries (accumulator, magnitudes, residual, window moments) are one chunk wide.

  The whole-leaf arrays are the inputs and outputs only, each updated in place: the gradient's
  flat buffer takes the update chunk by chunk (a donated gradient then holds the result), and
  the state's buffers take their new columns, codes and stats. The gradient keeps its shape
  through the loops (so no reshape sits between a loop and the ops after it, which would make
  XLA copy the leaf), and the tail runs in a loop of its own for the same reason: ``once`` is
  a traced 1, so that XLA cannot unroll that loop. A leaf of at most one chunk is one span,
  computed without a loop (a copy of it is at most a chunk)."""
  lay = _layout(cfg, g)
  if lay.size == 0:
    return jnp.zeros_like(g), idx, val, ef, lo, hi
  plan = _chunks(cfg, lay)
  ch = plan.chunk
  per = (ch.size, ch.k, _ef_len(cfg, ch.size), _compression.num_buckets(ch.size, cfg.bucket))
  carry = (g, idx, val, ef, lo, hi)
  if plan.n:
    carry = jax.lax.fori_loop(
        0, plan.n, lambda j, c: _stream_span(cfg, win, ch, tuple(j * p for p in per), c), carry)
  if plan.tail.size and not plan.n:  # a leaf of at most a chunk: one span, as one program
    carry = _stream_span(cfg, win, plan.tail, (0, 0, 0, 0), carry)
  elif plan.tail.size:
    start = tuple(plan.n * p for p in per)
    carry = jax.lax.fori_loop(
        0, once, lambda _, c: _stream_span(cfg, win, plan.tail, start, c), carry)
  return carry


def _check_sizes(cfg: _Config, updates, state: ScaleByMicroAdamState) -> None:
  """A ``ValueError`` naming the first leaf whose gradient has another size than the one the
  (flat) state was initialized for. Trace time only."""
  checks.check_same_structure(updates, state.idx)
  for (path, g), idx, ef in zip(jax.tree_util.tree_flatten_with_path(updates)[0],
                                jax.tree.leaves(state.idx), jax.tree.leaves(state.ef)):
    d = int(np.prod(np.shape(g)))
    if (_layout(cfg, g).k, _ef_len(cfg, d)) != (idx.shape[1], ef.shape[0]):
      raise ValueError(
          f"microadam: the gradient of leaf {jax.tree_util.keystr(path)} has shape "
          f"{np.shape(g)} ({d} elements), but the state was initialized for a leaf of another "
          "size. Pass gradients of exactly the params given to init.")


def _update(cfg: _Config, updates, state: ScaleByMicroAdamState, params=None, **extra_args):
  del extra_args
  if params is not None:  # the state is flat: a parameter's shape comes from params
    checks.check_leaf_shapes("microadam", updates, params)
  _check_sizes(cfg, updates, state)
  count = optax.safe_increment(state.count)
  win = _window(cfg, state.count, count)
  leaves, treedef = jax.tree.flatten(updates)

  def fields(tree):
    return [None] * len(leaves) if tree is None else treedef.flatten_up_to(tree)

  once = jnp.minimum(count, 1)  # 1 (count >= 1), but only known at run time
  outs = [_leaf_update(cfg, win, once, g, *fs) for g, *fs in zip(
      leaves, *map(fields, (state.idx, state.val, state.ef, state.qmin, state.qmax)))]
  u, idx, val, ef, qmin, qmax = trees.unzip(treedef, outs, 6)
  if not cfg.quantize_ef:
    qmin = qmax = None
  return u, ScaleByMicroAdamState(count, idx, val, ef, qmin, qmax)


def scale_by_microadam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    num_grads: int = 10,
    density: float = 0.01,
    quant_bucket_size: int = 128,
    block_size: int = 4096,
    quantize_ef: bool = True,
    values_dtype: Any = jnp.bfloat16,
    stats_dtype: Any = jnp.bfloat16,
    error_feedback: bool = True,
    approx_topk_recall: float | None = None,
    chunk_size: int = 65536,
) -> optax.GradientTransformationExtraArgs:
  r"""MicroAdam's learning-rate-free direction from a window of compressed gradients.

  Per leaf (flattened to length d), at step t (from 1), with ``s = (t - 1) mod m``:

  .. math::
    a_t = g_t + Q^{-1}(E_{t-1}),\qquad (I_s, V_s) = \operatorname{TopK}_\text{block}(a_t),\qquad
    E_t = Q\bigl(a_t - \operatorname{scatter}(I_s, V_s)\bigr)

  .. math::
    z_1 = \sum_{r < \min(t,m)} \beta_1^{(t-1-r) \bmod m}\operatorname{scatter}(I_r, V_r),\qquad
    z_2 = \sum_{r < \min(t,m)} \beta_2^{(t-1-r) \bmod m}\operatorname{scatter}(I_r, V_r^2)

  .. math::
    u_t = \frac{\hat m}{\sqrt{\hat v} + \epsilon},\qquad
    \hat m = \frac{1-\beta_1}{1-\beta_1^t} z_1,\qquad \hat v = \frac{1-\beta_2}{1-\beta_2^t} z_2

  The bias correction uses the global t even once the window is full ("windowed Adam": with
  a constant gradient ``|u|`` grows past 1 after m steps, as in the authors' code). u is exactly
  0 at coordinates absent from the window, so at most ``min(t, m) * k`` entries are non-zero.
  Top-k keeps ``ceil(B * density)`` entries of each block of B = ``block_size`` consecutive
  elements (and ``ceil(r * density)`` of the remainder r); a leaf smaller than a block is one
  block with k >= 1, so tiny biases and scalars work. Q is 4-bit asymmetric quantization with
  per-bucket min and max (see :mod:`optzoo.compression`). Computation is float32; updates have
  the gradients' dtype.

  Parameters must be real floating point: complex leaves are rejected at ``init`` (top-k
  selects by real magnitude and the error feedback is quantized to codes of real values;
  optimize real and imaginary parts as two real leaves), and so are integer leaves. The state
  is flat and holds no shapes (every leaf is a non-empty array, so it saves through orbax):
  ``update`` checks each gradient's shape against ``params`` when they are given (a
  transposed kernel is named), and its size against the state always. An empty pytree gives
  empty updates. Where a window value's square overflows
  (float32 gradients above about ``1.8e19``) the step is 0, never NaN.

  Args:
    b1: decay of the first moment, in [0, 1). Default 0.9 (paper).
    b2: decay of the second moment, in [0, 1). Default 0.999 (paper).
    eps: added to the root of the second moment, >= 0. Default 1e-8 (paper).
    num_grads: m, window length (static). Default 10 (paper).
    density: fraction of each block kept by top-k, in (0, 1] (static). Default 0.01 (paper).
    quant_bucket_size: q, elements per quantization bucket, even (static). Default 128 so
      that the state stays below 0.95 bytes/param (4 m density + 0.5 + 4/q); the paper's runs
      use 100000 (GLUE), 64 (Llama-2) or 32 (CIFAR-10).
    block_size: B, top-k block size, 1 to 32767 so relative indices fit int16 (static).
      Default 4096, optzoo's choice: the authors' code derives it from the GPU's shared
      memory (20864 on A100, 29056 on H100).
    quantize_ef: store the error feedback as 4-bit codes (default True, as the paper); False
      keeps it as dense float32 (4 bytes/param), an optzoo option.
    values_dtype: dtype of the stored top-k values (default bfloat16, as the reference;
      float32 makes density 1 with a full window exactly Adam).
    stats_dtype: dtype of the per-bucket min and max (default bfloat16, as the reference);
      they are rounded outward so they still bracket the float32 residual.
    error_feedback: keep the top-k residual and add it to the next gradient (default True,
      the paper); False drops it ("TopK-Adam", the paper's Fig. 1 ablation), an optzoo
      option.
    approx_topk_recall: None (default) selects with the exact ``jax.lax.top_k``; a recall
      target such as 0.95 uses ``jax.lax.approx_max_k`` (fast on TPU, exact on CPU/GPU);
      missed entries stay in the error feedback (static). An optzoo option.
    chunk_size: elements per streamed chunk (static), at least 1. Default 65536. Each leaf is
      updated chunk by chunk (``jax.lax.fori_loop``), a chunk being whole top-k blocks and
      whole quantization buckets (rounded to a multiple of ``lcm(block_size,
      quant_bucket_size)``), so the update's temporaries are a few chunks wide and its
      memory is the state plus about 0.2 bytes/param at 10M parameters (donated gradients and
      state; without streaming it would be about 17). The result is the same bit for bit
      for every chunk size. An optzoo option, as the authors' CUDA kernel streams blocks.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax.numpy as jnp, optax, optzoo
    >>> tx = optax.chain(optzoo.scale_by_microadam(density=0.5, num_grads=4), optax.scale(-1e-2))
    >>> params = {"w": jnp.zeros(4)}
    >>> state = tx.init(params)
    >>> updates, state = tx.update({"w": jnp.array([0.1, -2.0, 0.3, 1.0])}, state, params)
    >>> (updates["w"] != 0).tolist()     # the 2 largest of 4 (density 0.5): a sparse step
    [False, True, False, True]
    >>> [round(float(u), 4) for u in updates["w"][1::2]]
    [0.01, -0.01]

  References:
    Modoranu et al., `MicroAdam: Accurate Adaptive Optimization with Low Space Overhead and
    Provable Convergence <https://arxiv.org/abs/2405.15593>`_, 2024
  """
  cfg = _config(b1, b2, eps, num_grads, density, quant_bucket_size, block_size, quantize_ef,
                values_dtype, stats_dtype, error_feedback, approx_topk_recall, chunk_size)
  return optax.GradientTransformationExtraArgs(
      functools.partial(_init, cfg), functools.partial(_update, cfg))


@alias.static_args("num_grads", "density", "quant_bucket_size", "block_size", "quantize_ef",
                   "values_dtype", "stats_dtype", "error_feedback", "approx_topk_recall",
                   "chunk_size", "mask")
def microadam(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    num_grads: int = 10,
    density: float = 0.01,
    quant_bucket_size: int = 128,
    block_size: int = 4096,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
    quantize_ef: bool = True,
    values_dtype: Any = jnp.bfloat16,
    stats_dtype: Any = jnp.bfloat16,
    error_feedback: bool = True,
    approx_topk_recall: float | None = None,
    chunk_size: int = 65536,
) -> optax.GradientTransformationExtraArgs:
  r"""MicroAdam with decoupled weight decay: under one byte of state per parameter.

  .. math::
    \theta_t = \theta_{t-1} - \eta_t\,\bigl(u_t + \lambda\,\theta_{t-1}\bigr)

  with u_t from :func:`scale_by_microadam`. Built as ``optax.chain(scale_by_microadam(...),
  optax.add_decayed_weights(weight_decay, mask), optax.scale_by_learning_rate(learning_rate))``,
  which is the reference's decay-then-update ``θ ← θ(1 - ηλ) - ηu``. State bytes per parameter
  ≈ ``4 * num_grads * density + 0.5 + 4 / quant_bucket_size`` (0.93 at the defaults; Adam: 8).

  Args:
    learning_rate: step size or schedule (>= 0). Paper: 4e-5 (GLUE, Llama-2 7B), 1e-3 (CIFAR).
    b1: first-moment decay, in [0, 1). Default 0.9 (paper).
    b2: second-moment decay, in [0, 1). Default 0.999 (paper).
    eps: stability constant (>= 0). Default 1e-8 (paper).
    num_grads: window length m (static). Default 10 (paper).
    density: top-k density per block, in (0, 1] (static). Default 0.01 (paper).
    quant_bucket_size: error-feedback quantization bucket, even (static). Default 128 (paper:
      100000 / 64 / 32 by experiment; 64 would cost 0.963 bytes/param).
    block_size: top-k block size, <= 32767 (static). Default 4096 (optzoo's choice; the
      authors' code sizes it to the GPU).
    weight_decay: decoupled decay (>= 0), multiplied by the learning rate. Default 0 (paper).
    mask: pytree of bools (or a callable returning one) selecting the params to decay.
      Default None: decay every param.
    quantize_ef: 4-bit error feedback (default True); False stores it in float32 (an optzoo
      option).
    values_dtype: stored top-k values (default bfloat16, as the reference).
    stats_dtype: stored quantization min/max (default bfloat16, as the reference).
    error_feedback: feed the top-k residual back (default True); False is TopK-Adam (an
      optzoo option).
    approx_topk_recall: None = exact top-k (default); a recall target uses
      ``jax.lax.approx_max_k`` (for TPU; an optzoo option).
    chunk_size: elements per streamed chunk (static). Default 65536; see
      :func:`scale_by_microadam`. It changes memory and speed, never the result.

  Returns:
    An ``optax.GradientTransformationExtraArgs``.

  Example:
    >>> import jax, jax.numpy as jnp, optax, optzoo
    >>> params = {"w": jnp.ones((64, 64)), "b": jnp.zeros(64)}
    >>> tx = optzoo.microadam(learning_rate=1e-3)
    >>> state = tx.init(params)
    >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2) + jnp.sum((p["b"] - 1) ** 2))(params)
    >>> updates, state = tx.update(grads, state, params)
    >>> params = optax.apply_updates(params, updates)
    >>> round(optzoo.bytes_per_param(tx, params), 3)   # optax.adam: 8.0
    0.937

  References:
    Modoranu et al., `MicroAdam: Accurate Adaptive Optimization with Low Space Overhead and
    Provable Convergence <https://arxiv.org/abs/2405.15593>`_, 2024
  """
  return alias.decoupled_alias(
      scale_by_microadam(b1=b1, b2=b2, eps=eps, num_grads=num_grads, density=density,
                         quant_bucket_size=quant_bucket_size, block_size=block_size,
                         quantize_ef=quantize_ef, values_dtype=values_dtype,
                         stats_dtype=stats_dtype, error_feedback=error_feedback,
                         approx_topk_recall=approx_topk_recall, chunk_size=chunk_size),
      learning_rate, weight_decay, mask)
