"""Gradient compression building blocks: block-wise top-k, 4-bit bucket quantization, packing.

Pure functions on flat arrays (no optax), used by :func:`optzoo.microadam` and usable on their own.
Every size is static: the layouts are Python objects computed from shapes, so everything jits.

>>> import jax.numpy as jnp
>>> from optzoo import compression as C
>>> x = jnp.array([0.1, -3.0, 0.2, 0.0, 5.0, -0.5, 0.4])
>>> layout = C.block_layout(x.size, block_size=4, density=0.25)   # blocks [0:4], [4:7]
>>> idx, vals = C.topk_blocks(x, layout, values_dtype=None)
>>> C.global_indices(idx, layout).tolist(), vals.tolist()
([1, 4], [-3.0, 5.0])
>>> packed, lo, hi = C.quantize_4bit(x, bucket_size=4)
>>> packed.shape, lo.shape
((4,), (2,))

References:
  Modoranu et al., `MicroAdam: Accurate Adaptive Optimization with Low Space Overhead and
  Provable Convergence <https://arxiv.org/abs/2405.15593>`_, 2024 (its block top-k and 4-bit
  bucket quantizer).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BlockLayout",
    "block_layout",
    "topk_blocks",
    "global_indices",
    "scatter_blocks",
    "num_buckets",
    "bucket_stats",
    "quantize_codes",
    "dequantize_codes",
    "pack_nibbles",
    "unpack_nibbles",
    "quantize_4bit",
    "dequantize_4bit",
]

#: Largest block size whose relative indices fit in int16.
MAX_BLOCK_SIZE = 32767


# ----------------------------------------------------------------------------- top-k
@dataclasses.dataclass(frozen=True)
class BlockLayout:
  """Static block structure of a flat array of ``size`` elements.

  Attributes:
    size: d, the number of elements.
    block: B, the size of a full block (``min(block_size, d)``).
    n_blocks: number of full blocks, ``d // B``.
    k_block: entries kept per full block, ``ceil(B * density)`` (at least 1).
    remainder: r, elements after the full blocks, ``d - n_blocks * B``.
    k_remainder: entries kept in the remainder block (``ceil(r * density)``, 0 when r = 0).
  """

  size: int
  block: int
  n_blocks: int
  k_block: int
  remainder: int
  k_remainder: int

  @property
  def k(self) -> int:
    """Total entries kept: ``n_blocks * k_block + k_remainder``."""
    return self.n_blocks * self.k_block + self.k_remainder


def _ceil_density(n: int, density: float) -> int:
  # round first so that e.g. 100 * 0.07 = 7.000000000000001 keeps 7, not 8
  return min(n, max(1, math.ceil(round(n * density, 9))))


def block_layout(size: int, block_size: int, density: float) -> BlockLayout:
  """The block layout of MicroAdam's top-k (its "Top-K blocks").

  A flat array of ``size`` elements is cut into ``size // B`` consecutive blocks of
  ``B = min(block_size, size)`` elements plus a remainder block; each block keeps
  ``ceil(len * density)`` entries, at least one. A tensor smaller than ``block_size`` is one
  block, so a scalar or a tiny bias always keeps k >= 1 entries.

  Args:
    size: number of elements d (>= 0).
    block_size: full block size (1 to 32767, so block-relative indices fit in int16).
    density: fraction of each block kept, in (0, 1].
  """
  size = int(size)
  if size < 0:
    raise ValueError(f"size={size} must be >= 0")
  if not 1 <= int(block_size) <= MAX_BLOCK_SIZE:
    raise ValueError(f"block_size={block_size} must be in [1, {MAX_BLOCK_SIZE}]")
  if not 0.0 < float(density) <= 1.0:
    raise ValueError(f"density={density} must be in (0, 1]")
  if size == 0:
    return BlockLayout(0, 0, 0, 0, 0, 0)
  b = min(int(block_size), size)
  n_b = size // b
  r = size - n_b * b
  return BlockLayout(size, b, n_b, _ceil_density(b, density), r,
                     _ceil_density(r, density) if r else 0)


def topk_blocks(x: jax.Array, layout: BlockLayout, values_dtype: Any = jnp.bfloat16,
                index_dtype: Any = jnp.int16,
                approx_recall: float | None = None) -> tuple[jax.Array, jax.Array]:
  """The largest-magnitude entries of every block of a flat array.

  Full blocks are one ``jax.lax.top_k`` over the ``(n_blocks, B)`` view; the remainder block is
  a second ``top_k`` with its own k. Within a block the order is by decreasing magnitude; ties
  are broken by position (``top_k``'s rule).

  Args:
    x: flat array of ``layout.size`` elements.
    layout: from :func:`block_layout`.
    values_dtype: dtype of the returned values (default bfloat16); None keeps ``x.dtype``.
    index_dtype: dtype of the block-relative indices (default int16).
    approx_recall: None (default) for the exact ``top_k``; a recall target in (0, 1] uses
      ``jax.lax.approx_max_k`` instead, which is faster on TPU and exact elsewhere (XLA falls
      back to ``top_k``). Approximate selection may miss entries; MicroAdam's error feedback
      carries them to the next step.

  Returns:
    ``(idx, values)``, both of shape ``(layout.k,)``: per-block segments in block order;
    ``idx`` is relative to the start of its block, ``values`` are the signed entries.
  """
  x = jnp.reshape(x, (-1,))
  lay = layout
  vdt = x.dtype if values_dtype is None else values_dtype
  idx_parts, val_parts = [], []

  def select(a, k):
    if approx_recall is None:
      return jax.lax.top_k(a, k)[1]
    return jax.lax.approx_max_k(a, k, recall_target=float(approx_recall))[1]

  if lay.n_blocks:
    full = x[: lay.n_blocks * lay.block].reshape(lay.n_blocks, lay.block)
    i = select(jnp.abs(full), lay.k_block)
    idx_parts.append(i.reshape(-1))
    val_parts.append(jnp.take_along_axis(full, i, axis=1).reshape(-1))
  if lay.k_remainder:
    rem = x[lay.n_blocks * lay.block:]
    i = select(jnp.abs(rem), lay.k_remainder)
    idx_parts.append(i)
    val_parts.append(rem[i])
  if not idx_parts:
    return jnp.zeros((0,), index_dtype), jnp.zeros((0,), vdt)
  idx = jnp.concatenate(idx_parts) if len(idx_parts) > 1 else idx_parts[0]
  val = jnp.concatenate(val_parts) if len(val_parts) > 1 else val_parts[0]
  return idx.astype(index_dtype), val.astype(vdt)


def global_indices(idx: jax.Array, layout: BlockLayout) -> jax.Array:
  """Block-relative indices (shape ``(..., k)``) to int32 positions in the flat array."""
  lay = layout
  pos = jnp.arange(lay.k, dtype=jnp.int32)
  if lay.n_blocks:
    offset = jnp.where(pos < lay.n_blocks * lay.k_block,
                       (pos // max(lay.k_block, 1)) * lay.block,
                       lay.n_blocks * lay.block)
  else:
    offset = jnp.zeros_like(pos)
  return idx.astype(jnp.int32) + jnp.broadcast_to(offset, idx.shape)


def scatter_blocks(idx: jax.Array, values: jax.Array, layout: BlockLayout,
                   dtype: Any = jnp.float32) -> jax.Array:
  """The dense flat array (``dtype``) that is ``values`` at the selected positions, 0 elsewhere."""
  out = jnp.zeros((layout.size,), dtype)
  return out.at[global_indices(idx, layout)].set(values.astype(dtype))


# ----------------------------------------------------------------------------- quantization
def num_buckets(size: int, bucket_size: int) -> int:
  """Buckets of ``bucket_size`` consecutive elements covering ``size`` (the last may be partial)."""
  return -(-int(size) // int(bucket_size))


def _buckets(x: jax.Array, bucket_size: int) -> jax.Array:
  """``x`` flat, padded with its last element to whole buckets, as (n_buckets, bucket_size)."""
  x = jnp.reshape(x, (-1,))
  n_q = num_buckets(x.size, bucket_size)
  pad = n_q * bucket_size - x.size
  if pad:
    x = jnp.pad(x, (0, pad), mode="edge")  # edge values never change a bucket's min or max
  return x.reshape(n_q, bucket_size)


def _round_out(lo: jax.Array, hi: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
  """``lo`` rounded down and ``hi`` rounded up to ``dtype``, so the stored pair bounds the data."""
  lo_s = lo.astype(dtype)
  hi_s = hi.astype(dtype)
  if jnp.dtype(dtype) == lo.dtype:
    return lo_s, hi_s
  lo_s = jnp.where(lo_s.astype(lo.dtype) > lo, jnp.nextafter(lo_s, jnp.asarray(-jnp.inf, dtype)),
                   lo_s)
  hi_s = jnp.where(hi_s.astype(hi.dtype) < hi, jnp.nextafter(hi_s, jnp.asarray(jnp.inf, dtype)),
                   hi_s)
  return lo_s, hi_s


def bucket_stats(x: jax.Array, bucket_size: int,
                 stats_dtype: Any = jnp.bfloat16) -> tuple[jax.Array, jax.Array]:
  """Per-bucket ``(min, max)`` of a flat array, rounded outward to ``stats_dtype``.

  Rounding the min down and the max up means the stored pair still brackets every element,
  so codes never need clamping for in-range data (they are clamped anyway).
  """
  b = _buckets(x, bucket_size)
  return _round_out(jnp.min(b, axis=1), jnp.max(b, axis=1), stats_dtype)


def _grid(lo: jax.Array, hi: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  lo = lo.astype(jnp.float32)
  hi = hi.astype(jnp.float32)
  delta = (hi - lo) / 15.0
  return lo, delta, jnp.where(delta > 0, delta, 1.0)


def quantize_codes(x: jax.Array, lo: jax.Array, hi: jax.Array, bucket_size: int) -> jax.Array:
  r"""4-bit asymmetric codes of a flat array given per-bucket stats (uint8 in [0, 15]).

  .. math::
    \Delta_j = (hi_j - lo_j)/15,\qquad c_i = \operatorname{clip}(\lfloor (x_i - lo_j)/\Delta_j + 1/2
      \rfloor, 0, 15)

  (round half up). A bucket with ``hi == lo`` (e.g. all zeros) gets code 0 and no NaN.
  """
  size = int(np.prod(jnp.shape(x)))
  b = _buckets(x.astype(jnp.float32), bucket_size)
  lo32, _, safe = _grid(lo, hi)
  c = jnp.floor((b - lo32[:, None]) / safe[:, None] + 0.5)
  c = jnp.clip(c, 0.0, 15.0).astype(jnp.uint8)
  return c.reshape(-1)[:size]


def dequantize_codes(codes: jax.Array, lo: jax.Array, hi: jax.Array,
                     bucket_size: int) -> jax.Array:
  """Inverse of :func:`quantize_codes`: ``lo_j + c_i * (hi_j - lo_j) / 15`` in float32."""
  size = codes.shape[0]
  c = _buckets(codes, bucket_size).astype(jnp.float32)
  lo32, delta, _ = _grid(lo, hi)
  return (lo32[:, None] + c * delta[:, None]).reshape(-1)[:size]


def pack_nibbles(codes: jax.Array) -> jax.Array:
  """Packs 4-bit codes two per byte: element 2i in the high nibble of byte i, 2i+1 in the low.

  An odd-length input leaves the low nibble of the last byte 0. Output length ``ceil(d / 2)``.
  """
  c = jnp.reshape(codes, (-1,)).astype(jnp.uint8)
  if c.size % 2:
    c = jnp.concatenate([c, jnp.zeros((1,), jnp.uint8)])
  pairs = c.reshape(-1, 2)
  return (pairs[:, 0] << 4) | (pairs[:, 1] & 15)


def unpack_nibbles(packed: jax.Array, size: int) -> jax.Array:
  """Inverse of :func:`pack_nibbles`: the first ``size`` codes (uint8)."""
  p = jnp.reshape(packed, (-1,)).astype(jnp.uint8)
  return jnp.stack([p >> 4, p & 15], axis=-1).reshape(-1)[:size]


def quantize_4bit(x: jax.Array, bucket_size: int,
                  stats_dtype: Any = jnp.bfloat16) -> tuple[jax.Array, jax.Array, jax.Array]:
  """MicroAdam's error-feedback quantizer Q: stats, codes and packing in one call.

  Equal to ``pack_nibbles(quantize_codes(x, *bucket_stats(x, q, stats_dtype), q))``, computed
  in the ``(buckets, q/2, 2)`` layout (q is even, so a byte never straddles two buckets).

  Args:
    x: flat array (any float dtype; computed in float32).
    bucket_size: q, elements per bucket (even). Buckets restart at every array.
    stats_dtype: dtype of the stored per-bucket min and max (default bfloat16, as the reference).

  Returns:
    ``(packed, lo, hi)``: uint8 of length ``ceil(d/2)``, and the per-bucket min and max
    (``ceil(d/q)`` each). The error of :func:`dequantize_4bit` is at most ``(hi - lo) / 30``
    per element of a bucket, plus float32 rounding.
  """
  if bucket_size % 2:
    raise ValueError(f"bucket_size={bucket_size} must be even (codes are packed in pairs)")
  x = jnp.reshape(x, (-1,)).astype(jnp.float32)
  size = x.size
  b = _buckets(x, bucket_size)
  lo, hi = _round_out(jnp.min(b, axis=1), jnp.max(b, axis=1), stats_dtype)
  lo32, _, safe = _grid(lo, hi)
  pairs = b.reshape(b.shape[0], bucket_size // 2, 2)

  def code(v):
    c = jnp.floor((v - lo32[:, None]) / safe[:, None] + 0.5)
    return jnp.clip(c, 0.0, 15.0).astype(jnp.uint8)

  packed = ((code(pairs[..., 0]) << 4) | code(pairs[..., 1])).reshape(-1)[: (size + 1) // 2]
  if size % 2:  # the low nibble of the last byte holds no element: keep it 0
    packed = packed.at[-1].set(packed[-1] & 0xF0)
  return packed, lo, hi


def dequantize_4bit(packed: jax.Array, lo: jax.Array, hi: jax.Array, size: int,
                    bucket_size: int) -> jax.Array:
  """Q^-1: the float32 flat array of ``size`` elements encoded by :func:`quantize_4bit`."""
  return dequantize_codes(unpack_nibbles(packed, size), lo, hi, bucket_size)
