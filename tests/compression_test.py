"""Tests of optzoo.compression: block top-k, 4-bit bucket quantization, nibble packing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optzoo import compression as C

SETTINGS = settings(max_examples=15, deadline=None)
# A few sizes (odd, single element, partial blocks and buckets): every new shape compiles.
SIZES = st.sampled_from([1, 2, 7, 64, 129, 301])


def _distinct(seed: int, n: int, scale: float = 1.0) -> np.ndarray:
  """n float32 values with distinct magnitudes (no top-k ties), random signs and order."""
  rng = np.random.default_rng(seed)
  mags = (rng.permutation(n) + 1.0 + rng.uniform(0.0, 0.5, n)) * scale / n
  return (mags * rng.choice([-1.0, 1.0], n)).astype(np.float32)


# ----------------------------------------------------------------------------- layout
def test_layout_matches_the_spec_formulas():
  lay = C.block_layout(10_000, 4096, 0.01)
  assert (lay.block, lay.n_blocks, lay.k_block) == (4096, 2, 41)
  assert (lay.remainder, lay.k_remainder, lay.k) == (10_000 - 8192, 19, 2 * 41 + 19)
  assert C.block_layout(100, 4096, 0.07).k == 7  # 100 * 0.07 = 7.000000000000001 keeps 7
  tiny = C.block_layout(3, 4096, 0.01)  # a tiny bias: one block, k = 1
  assert (tiny.block, tiny.n_blocks, tiny.k, tiny.remainder) == (3, 1, 1, 0)
  assert C.block_layout(1, 4096, 0.01).k == 1
  assert C.block_layout(8192, 4096, 0.01).k_remainder == 0


@pytest.mark.parametrize("kwargs", [dict(block_size=0), dict(block_size=40_000),
                                    dict(density=0.0), dict(density=1.5)])
def test_layout_rejects_bad_arguments(kwargs):
  args = dict(size=100, block_size=16, density=0.1) | kwargs
  name = next(iter(kwargs))
  with pytest.raises(ValueError, match=name):
    C.block_layout(**args)


# ----------------------------------------------------------------------------- top-k
@SETTINGS
@given(n=SIZES, block=st.sampled_from([1, 5, 16, 64]), density=st.sampled_from([0.01, 0.1, 0.3, 1.0]),
       seed=st.integers(0, 2**16))
def test_topk_keeps_the_largest_magnitudes_of_each_block(n, block, density, seed):
  x = _distinct(seed, n)
  lay = C.block_layout(n, block, density)
  idx, vals = C.topk_blocks(jnp.asarray(x), lay, values_dtype=None)
  idx, vals = np.asarray(idx), np.asarray(vals)
  assert idx.dtype == np.int16 and idx.shape == vals.shape == (lay.k,)
  assert lay.k >= 1
  gidx = np.asarray(C.global_indices(jnp.asarray(idx), lay))
  np.testing.assert_array_equal(vals, x[gidx])  # signed values at the selected positions
  starts = [b * lay.block for b in range(lay.n_blocks)] + ([lay.n_blocks * lay.block]
                                                           if lay.remainder else [])
  ks = [lay.k_block] * lay.n_blocks + ([lay.k_remainder] if lay.remainder else [])
  off = 0
  for start, k in zip(starts, ks):
    end = min(start + lay.block, n)
    rel = idx[off:off + k]
    assert np.all((rel >= 0) & (rel < end - start))
    brute = np.argsort(-np.abs(x[start:end]))[:k]  # no ties: a unique answer
    assert set(rel.tolist()) == set(brute.tolist())
    off += k
  assert off == lay.k


def test_topk_values_dtype_defaults_to_bfloat16():
  x = jnp.asarray(_distinct(0, 50))
  lay = C.block_layout(50, 16, 0.25)
  _, vals = C.topk_blocks(x, lay)
  assert vals.dtype == jnp.bfloat16
  _, vals32 = C.topk_blocks(x, lay, values_dtype=jnp.float32)
  np.testing.assert_allclose(np.asarray(vals, np.float32), np.asarray(vals32), rtol=2**-8)


@SETTINGS
@given(n=SIZES, block=st.sampled_from([1, 5, 16, 64]), density=st.sampled_from([0.01, 0.1, 0.3, 1.0]),
       seed=st.integers(0, 2**16))
def test_selected_part_plus_residual_is_the_input_exactly(n, block, density, seed):
  x = jnp.asarray(np.random.default_rng(seed).normal(size=n).astype(np.float32))
  lay = C.block_layout(n, block, density)
  idx, vals = C.topk_blocks(x, lay, values_dtype=None)
  resid = x.at[C.global_indices(idx, lay)].set(0.0)
  dense = C.scatter_blocks(idx, vals, lay)
  np.testing.assert_array_equal(np.asarray(dense + resid), np.asarray(x))
  assert int(jnp.sum(dense != 0)) <= lay.k


# ----------------------------------------------------------------------------- quantization
def test_nibble_order_matches_the_reference():
  # element 2i in the high nibble of byte i; odd length: last element in a high nibble
  packed = C.pack_nibbles(jnp.array([1, 2, 3, 15, 7], jnp.uint8))
  assert packed.tolist() == [0x12, 0x3F, 0x70]
  assert C.unpack_nibbles(packed, 5).tolist() == [1, 2, 3, 15, 7]


@SETTINGS
@given(codes=st.lists(st.integers(0, 15), min_size=1, max_size=101))
def test_packing_is_lossless(codes):
  c = jnp.asarray(codes, jnp.uint8)
  packed = C.pack_nibbles(c)
  assert packed.dtype == jnp.uint8 and packed.shape == ((len(codes) + 1) // 2,)
  np.testing.assert_array_equal(np.asarray(C.unpack_nibbles(packed, len(codes))), codes)


@SETTINGS
@given(n=SIZES, q=st.sampled_from([2, 4, 64]), seed=st.integers(0, 2**16),
       scale=st.sampled_from([1e-6, 1.0, 1e4]), stats=st.sampled_from(["bfloat16", "float32"]))
def test_dequantization_error_is_within_half_a_step(n, q, seed, scale, stats):
  rng = np.random.default_rng(seed)
  x = (rng.normal(size=n) * scale).astype(np.float32)
  x[rng.uniform(size=n) < 0.2] = 0.0  # the residual has zeros where top-k took entries
  packed, lo, hi = C.quantize_4bit(jnp.asarray(x), q, stats_dtype=jnp.dtype(stats))
  assert packed.shape == ((n + 1) // 2,) and lo.shape == hi.shape == (C.num_buckets(n, q),)
  assert lo.dtype == jnp.dtype(stats)
  codes = np.asarray(C.unpack_nibbles(packed, n))
  assert codes.max() <= 15
  xhat = np.asarray(C.dequantize_4bit(packed, lo, hi, n, q))
  assert np.all(np.isfinite(xhat))
  lo32 = np.repeat(np.asarray(lo, np.float32), q)[:n]
  hi32 = np.repeat(np.asarray(hi, np.float32), q)[:n]
  assert np.all(lo32 <= x) and np.all(x <= hi32)  # stats rounded outward still bracket x
  bound = (hi32 - lo32) / 30.0 + 4 * np.finfo(np.float32).eps * np.maximum(np.abs(lo32),
                                                                           np.abs(hi32))
  assert np.all(np.abs(xhat - x) <= bound)


@pytest.mark.parametrize("value", [0.0, 2.5, -0.375])
def test_constant_bucket_has_no_nan_and_roundtrips(value):
  x = jnp.full((13,), value, jnp.float32)  # odd length, partial last bucket; max == min
  packed, lo, hi = C.quantize_4bit(x, 4)
  xhat = C.dequantize_4bit(packed, lo, hi, 13, 4)
  np.testing.assert_array_equal(np.asarray(xhat), np.full(13, value, np.float32))


def test_grid_values_roundtrip_exactly():
  lo, hi = jnp.array([-1.5, 0.0], jnp.float32), jnp.array([3.0, 0.75], jnp.float32)
  codes = jnp.array([0, 3, 15, 7, 1, 15, 0, 8], jnp.uint8)
  x = C.dequantize_codes(codes, lo, hi, 4)
  back = C.quantize_codes(x, lo, hi, 4)
  np.testing.assert_array_equal(np.asarray(back), np.asarray(codes))


def test_single_element_and_clamping():
  packed, lo, hi = C.quantize_4bit(jnp.array([0.3]), 64)
  assert packed.shape == (1,) and lo.shape == (1,)
  assert abs(float(C.dequantize_4bit(packed, lo, hi, 1, 64)[0]) - 0.3) <= float((hi - lo)[0]) / 30 + 1e-7
  # data outside the given stats is clamped to codes 0 and 15, never wraps around
  c = C.quantize_codes(jnp.array([-5.0, 5.0]), jnp.array([0.0]), jnp.array([1.0]), 2)
  assert c.tolist() == [0, 15]


def test_round_half_up():
  # step (hi - lo) / 15 = 1: x = 0.5 and 2.5 lie exactly halfway and round up
  c = C.quantize_codes(jnp.array([0.5, 2.5, 2.49, 15.0]), jnp.array([0.0]), jnp.array([15.0]), 4)
  assert c.tolist() == [1, 3, 2, 15]


def test_approx_topk_selects_k_distinct_entries_per_block():
  x = jnp.asarray(_distinct(7, 1000))
  lay = C.block_layout(1000, 256, 0.05)
  idx, vals = C.topk_blocks(x, lay, values_dtype=None, approx_recall=0.95)
  exact, _ = C.topk_blocks(x, lay, values_dtype=None)
  gidx = np.asarray(C.global_indices(idx, lay))
  assert len(set(gidx.tolist())) == lay.k and gidx.max() < 1000
  np.testing.assert_array_equal(np.asarray(vals), np.asarray(x)[gidx])
  if jax.default_backend() != "tpu":  # XLA falls back to the exact top_k off TPU
    exact_g = set(np.asarray(C.global_indices(exact, lay)).tolist())
    assert set(gidx.tolist()) == exact_g
