"""Tests of optzoo.lmo: Newton-Schulz band and symmetry, batched Newton-Schulz, LMO optimality, dual norms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optzoo import lmo


def _gauss(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


@settings(max_examples=12, deadline=None)
@given(m=st.integers(4, 48), ratio=st.integers(3, 6), tall=st.booleans(), seed=st.integers(0, 10**6))
def test_ns5_singular_values_in_band_on_rectangular_inputs(m, ratio, tall, seed):
  shape = (m * ratio, m) if tall else (m, m * ratio)
  s = np.linalg.svd(np.asarray(lmo.newton_schulz(_gauss(shape, seed))), compute_uv=False)
  assert s.min() >= 0.68 and s.max() <= 1.14, (shape, s.min(), s.max())


@pytest.mark.parametrize("shape", [(64, 256), (256, 64), (512, 1408)])
def test_ns5_band_on_rectangular_gaussians(shape):
  s = np.linalg.svd(np.asarray(lmo.newton_schulz(_gauss(shape, 0))), compute_uv=False)
  assert 0.68 <= s.min() and s.max() <= 1.14 and s.max() <= 1.21


def test_quintic_scalar_map_stays_below_1_2024():
  a, b, c = lmo.NS_COEFFS
  x = np.linspace(0.0, 1.0, 200_001)
  for _ in range(5):
    x = a * x + b * x**3 + c * x**5
  assert x.max() < 1.2024 and x.max() > 1.19


@settings(max_examples=10, deadline=None)
@given(m=st.integers(2, 24), n=st.integers(2, 24), seed=st.integers(0, 10**6))
def test_ns_of_transpose_is_transpose_of_ns(m, n, seed):
  g = _gauss((m, n), seed)
  # bitwise when m != n (both orientations run the same wide computation)
  np.testing.assert_allclose(np.asarray(lmo.newton_schulz(g.T)), np.asarray(lmo.newton_schulz(g)).T,
                             rtol=0 if m != n else 1e-5, atol=0 if m != n else 1e-6)


def test_ns_is_batched_over_leading_axes():
  g = _gauss((2, 3, 8, 20), 1)
  out = lmo.newton_schulz(g)
  assert out.shape == g.shape
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(out[i, j], lmo.newton_schulz(g[i, j]), rtol=1e-5, atol=1e-6)


def test_newton_schulz_many_matches_one_call_per_array():
  xs = [_gauss((6, 10), 10), _gauss((3, 10, 6), 11), _gauss((6, 10), 12), _gauss((4, 4), 13),
        _gauss((2, 2, 5, 7), 14)]
  outs = lmo.newton_schulz_many(xs)
  assert [o.shape for o in outs] == [x.shape for x in xs]
  for x, o in zip(xs, outs):
    assert o.dtype == jnp.float32
    np.testing.assert_allclose(o, lmo.newton_schulz(x), rtol=1e-5, atol=1e-6)
  # compute dtype: the given one, or each input's with None
  bf = lmo.newton_schulz_many([xs[0], xs[1].astype(jnp.bfloat16)], dtype=jnp.bfloat16)
  assert [o.dtype for o in bf] == [jnp.bfloat16, jnp.bfloat16]
  own = lmo.newton_schulz_many([xs[0], xs[2].astype(jnp.bfloat16)], dtype=None)
  assert [o.dtype for o in own] == [jnp.float32, jnp.bfloat16]
  np.testing.assert_array_equal(own[0], lmo.newton_schulz(xs[0], dtype=None))
  assert lmo.newton_schulz_many([]) == []
  with pytest.raises(ValueError, match="rank"):
    lmo.newton_schulz_many([jnp.ones(3)])


def test_ns_bfloat16_option_is_close_and_keeps_the_input_dtype():
  g = _gauss((32, 96), 2)
  f32 = lmo.newton_schulz(g)
  bf = lmo.newton_schulz(g, dtype=jnp.bfloat16)
  assert bf.dtype == jnp.float32 and lmo.newton_schulz(g.astype(jnp.bfloat16)).dtype == jnp.bfloat16
  rel = float(jnp.linalg.norm(bf - f32) / jnp.linalg.norm(f32))
  assert 0.0 < rel < 0.15
  with pytest.raises(ValueError, match="rank"):
    lmo.newton_schulz(jnp.ones(3))


@settings(max_examples=10, deadline=None)
@given(m=st.integers(2, 20), n=st.integers(2, 20), seed=st.integers(0, 10**6))
def test_lmo_attains_minus_the_dual_norm(m, n, seed):
  b = _gauss((m, n), seed)
  # sign: <B, -sign B> = -||B||_1 exactly (same elementwise values, same reduction)
  assert float(jnp.sum(b * lmo.sign_lmo(b))) == -float(jnp.sum(jnp.abs(b)))
  np.testing.assert_allclose(float(jnp.sum(b * lmo.sign_lmo(b))), -float(lmo.l1_norm(b)), rtol=1e-6)
  assert float(jnp.max(jnp.abs(lmo.sign_lmo(b)))) == 1.0
  # spectral: <B, -U V^T> = -||B||_*, and ||U V^T||_2 = 1
  a = lmo.spectral_lmo_svd(b)
  np.testing.assert_allclose(float(jnp.sum(b * a)), -float(lmo.nuclear_norm(b)), rtol=2e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(a), 2), 1.0, rtol=1e-5)
  # the Newton-Schulz LMO is a descent direction with norm in the NS band
  assert float(jnp.sum(b * lmo.spectral_lmo(b))) < 0.0


def test_nuclear_norms_agree_with_numpy_and_bracket_each_other():
  for shape, seed in [((40, 90), 3), ((90, 40), 4), ((3, 30, 50), 5)]:
    x = _gauss(shape, seed)
    exact = np.linalg.svd(np.asarray(x, np.float64), compute_uv=False).sum(-1)
    np.testing.assert_allclose(lmo.nuclear_norm(x), exact, rtol=1e-5)
    # the NS estimate reads low (0.8-0.95 of the truth on Gaussians)
    np.testing.assert_allclose(lmo.nuclear_norm_ns(x), exact, rtol=0.2)
    assert np.all(np.asarray(lmo.nuclear_norm_gram(x)) <= exact * (1 + 1e-5))
    assert np.all(np.asarray(lmo.nuclear_norm_gram(x)) >= 0.8 * exact)
    assert np.all(np.asarray(lmo.nuclear_norm_fro_bound(x)) >= exact * (1 - 1e-5))
  # flat spectrum: the Gram and Frobenius bounds are exact
  q = jnp.asarray(np.linalg.qr(np.random.default_rng(6).normal(size=(30, 10)))[0].T, jnp.float32)
  np.testing.assert_allclose(lmo.nuclear_norm_gram(3 * q), 30.0, rtol=1e-5)
  np.testing.assert_allclose(lmo.nuclear_norm_fro_bound(3 * q), 30.0, rtol=1e-5)
  np.testing.assert_allclose(lmo.l1_norm(jnp.array([[1.0, -2.0], [0.5, 0.0]])), 3.5)
  np.testing.assert_allclose(lmo.l2_norm(jnp.array([3.0, -4.0])), 5.0)


@settings(max_examples=12, deadline=None)
@given(c=st.floats(-1e3, 1e3).filter(lambda c: abs(c) > 1e-3), seed=st.integers(0, 10**6),
       name=st.sampled_from(sorted(lmo.DUAL_NORMS)))
def test_dual_norms_are_absolutely_homogeneous(c, seed, name):
  b = _gauss((6, 14), seed)
  fn = lmo.dual_norm(name)
  np.testing.assert_allclose(float(fn(c * b)), abs(c) * float(fn(b)), rtol=2e-5)


def test_dual_norm_lookup_rejects_unknown_names():
  with pytest.raises(ValueError, match="dual_norm"):
    lmo.dual_norm("spectral")


def test_ns_is_jittable_and_traced_coefficients_work():
  g = _gauss((8, 12), 7)
  out = jax.jit(lambda x: lmo.newton_schulz(x))(g)
  np.testing.assert_allclose(out, lmo.newton_schulz(g), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(8, 20), (20, 8), (3, 6, 10)])
def test_ns_is_invariant_to_the_input_scale_from_1e_minus_6_to_1e6(shape):
  g = _gauss(shape, 8)
  g = g / jnp.sqrt(jnp.sum(g**2, axis=(-2, -1), keepdims=True))  # ||g||_F = 1 per slice
  ref = np.asarray(lmo.newton_schulz(g))
  for c in (1e-6, 1e-5, 1e-3, 0.3, 7.0, 1e3, 1e6):
    out = np.asarray(lmo.newton_schulz(c * g))
    assert np.max(np.abs(out - ref)) <= 2e-5 * np.max(np.abs(ref)), c
  # the nuclear-norm estimate through Newton-Schulz is absolutely homogeneous at every scale
  for c in (1e-6, 1e6):
    np.testing.assert_allclose(lmo.nuclear_norm_ns(c * g), c * lmo.nuclear_norm_ns(g), rtol=1e-5)


def test_ns_guard_is_the_usual_one_above_norm_one_and_a_zero_matrix_stays_zero():
  g = 3.0 * _gauss((6, 9), 9)
  norm = jnp.sqrt(jnp.sum(g**2))
  assert float(norm) > 1.0
  x = g / (norm + 1e-7)  # the usual normalisation, bit for bit
  a, b, c = lmo.NS_COEFFS
  for _ in range(5):
    gram = x @ x.T
    x = a * x + (b * gram + c * (gram @ gram)) @ x
  np.testing.assert_array_equal(lmo.newton_schulz(g), x)
  np.testing.assert_array_equal(lmo.newton_schulz(jnp.zeros((4, 5))), jnp.zeros((4, 5)))
  assert not np.any(np.isnan(np.asarray(lmo.newton_schulz_many([jnp.zeros((2, 3, 3))])[0])))


def test_newton_schulz_many_takes_zero_size_matrices():
  """Regression (found by the registry fuzz suite): a zero-size leaf such as (2, 0) made the
  batched reshape divide by zero (LANTON crashed on it)."""
  xs = [jnp.zeros((2, 0)), jnp.zeros((3, 0, 4)), jnp.ones((2, 3))]
  out = lmo.newton_schulz_many(xs)
  assert [o.shape for o in out] == [(2, 0), (3, 0, 4), (2, 3)]
  np.testing.assert_allclose(np.asarray(out[2]), np.asarray(lmo.newton_schulz(xs[2])), rtol=1e-5,
                             atol=1e-6)
