"""Lanczos (optzoo.curvature.lanczos): orthonormality, T = V H V^T, Krylov span, breakdown."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optzoo.curvature import hvp, lanczos


def _sym(eigs, seed):
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(len(eigs), len(eigs))))
  return (q * np.asarray(eigs)) @ q.T


def _spectrum(kind, d, seed):
  rng = np.random.default_rng(seed)
  if kind == "logspace":  # condition number 1e4
    return np.logspace(0.0, 4.0, d)
  if kind == "outliers":  # a bulk near 1 and three large outliers (plain Lanczos fails here)
    return np.concatenate([rng.uniform(0.5, 1.5, d - 3), [3e3, 1e4, 3e4]])
  if kind == "indefinite":
    return rng.uniform(-2.0, 3.0, d)
  raise ValueError(kind)


@functools.partial(jax.jit, static_argnums=(2,), static_argnames=("reortho",))
def _dense_lanczos(h, v0, m, reortho="full"):
  return lanczos(lambda v: h @ v, v0, m, reortho=reortho)


def _lanczos_float32(h, v0, m, **kw):
  """Lanczos on the dense h in float32; the basis and T back as float64 NumPy arrays."""
  basis, t = _dense_lanczos(jnp.asarray(h, jnp.float32), jnp.asarray(v0, jnp.float32), m, **kw)
  return np.asarray(basis, np.float64), np.asarray(t, np.float64)


@pytest.mark.parametrize("kind", ["logspace", "outliers", "indefinite"])
@pytest.mark.parametrize("m", [5, 20, 50])
def test_orthonormal_and_projection_float32(kind, m):
  d = 200
  eigs = _spectrum(kind, d, seed=m)
  h = _sym(eigs, seed=1)
  v0 = np.random.default_rng(2).normal(size=d)
  v, t = _lanczos_float32(h, v0, m)
  assert v.shape == (m, d) and t.shape == (m, m)
  assert np.abs(v @ v.T - np.eye(m)).max() <= 1e-5
  # T is the projection V H V^T (relative to |H|), tridiagonal and symmetric
  assert np.abs(v @ h @ v.T - t).max() <= 1e-5 * np.abs(eigs).max()
  assert np.array_equal(t, t.T)
  assert np.all(np.triu(t, 2) == 0)
  # the first basis vector is the normalized start
  np.testing.assert_allclose(v[0], v0 / np.linalg.norm(v0), atol=1e-6)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), log_cond=st.floats(0.0, 6.0), n_out=st.integers(0, 4))
def test_orthonormal_random_spectra(seed, log_cond, n_out):
  d, m = 120, 30
  rng = np.random.default_rng(seed)
  eigs = np.exp(rng.uniform(0.0, log_cond * np.log(10.0), d))
  eigs[:n_out] *= 1e3  # a few large outliers
  h = _sym(eigs, seed)
  v, t = _lanczos_float32(h, rng.normal(size=d), m)
  # Clustered spectra (log_cond ~ 0) span an invariant subspace early: the basis then has k < m
  # orthonormal rows followed by exact zeros.
  k = int((np.abs(v).sum(axis=1) > 0).sum())
  assert np.all(v[k:] == 0.0)
  if log_cond >= 1.0:
    assert k == m
  assert np.abs(v[:k] @ v[:k].T - np.eye(k)).max() <= 1e-5
  assert np.abs(v @ h @ v.T - t).max() <= 1e-5 * eigs.max()


def test_float64_tight_and_krylov_span():
  with jax.enable_x64(True):
    d, m = 200, 20
    h = _sym(np.logspace(0.0, 3.0, d), seed=3)
    g = np.random.default_rng(4).normal(size=d)
    basis, t = lanczos(lambda v: jnp.asarray(h) @ v, jnp.asarray(g), m)
    v, t = np.asarray(basis), np.asarray(t)
    assert v.dtype == np.float64
    assert np.abs(v @ v.T - np.eye(m)).max() <= 1e-12
    assert np.abs(v @ h @ v.T - t).max() <= 1e-10 * 1e3
    # span(V[:k]) = K_k(H, g): normalized H^j g (j < k) lie in it
    k = 6
    vk = v[:k]
    w = g.copy()
    for _ in range(k):
      u = w / np.linalg.norm(w)
      assert np.linalg.norm(u - vk.T @ (vk @ u)) <= 1e-8
      w = h @ w


def test_breakdown_gives_zeros_not_nan():
  # 3 distinct eigenvalues: K_m(H, v0) is 3-dimensional.
  h = np.diag([1.0, 2.0, 4.0, 1.0, 2.0, 4.0, 2.0, 1.0])
  v, t = _lanczos_float32(h, np.ones(8), 6)
  assert np.all(np.isfinite(v)) and np.all(np.isfinite(t))
  assert np.abs(v[:3] @ v[:3].T - np.eye(3)).max() <= 1e-6
  assert np.all(v[3:] == 0.0)
  assert np.all(t[3:, :] == 0.0) and np.all(t[:, 3:] == 0.0)
  np.testing.assert_allclose(np.linalg.eigvalsh(t[:3, :3]), [1.0, 2.0, 4.0], rtol=1e-5)
  # m larger than the dimension: the basis fills R^d, the rest is zero
  v, t = _lanczos_float32(np.diag(np.arange(1.0, 5.0)), np.ones(4), 7)
  assert np.abs(v[:4] @ v[:4].T - np.eye(4)).max() <= 1e-5 and np.all(v[4:] == 0.0)
  assert np.all(np.isfinite(t))


def test_zero_start_and_zero_operator():
  v, t = _lanczos_float32(np.eye(5), np.zeros(5), 3)
  assert np.all(v == 0.0) and np.all(t == 0.0)
  v, t = _lanczos_float32(np.zeros((5, 5)), np.ones(5), 3)
  assert np.all(np.isfinite(v)) and np.all(t == 0.0)
  np.testing.assert_allclose(v[0], np.ones(5) / np.sqrt(5.0), rtol=1e-6)
  assert np.all(v[1:] == 0.0)


def test_pytree_matches_flat_and_hessian():
  """On a pytree start with HVPs of a loss, the basis is the flat one reshaped, T = V H V^T."""
  params = {"w": jnp.array([[0.3, -0.2], [0.1, 0.5]]), "b": jnp.array([0.2, -0.4, 0.7])}

  def loss(p):
    return jnp.sum(jnp.cosh(p["w"])) + jnp.sum(p["b"] ** 4) + jnp.sum(p["w"]) * jnp.sum(p["b"])

  start = jax.tree.map(lambda x: jnp.sin(3.0 * x) + 0.1, params)
  basis, t = lanczos(lambda v: hvp(loss, params, v), start, 5)
  assert basis["w"].shape == (5, 2, 2) and basis["b"].shape == (5, 3)
  flat_v = np.concatenate([np.asarray(basis["b"]).reshape(5, -1),
                           np.asarray(basis["w"]).reshape(5, -1)], axis=1)
  x, unravel = jax.flatten_util.ravel_pytree(params)
  h = np.asarray(jax.hessian(lambda z: loss(unravel(z)))(x), np.float64)
  assert np.abs(flat_v @ flat_v.T - np.eye(5)).max() <= 1e-5
  assert np.abs(flat_v @ h @ flat_v.T - np.asarray(t)).max() <= 1e-5 * np.abs(h).max()


def test_no_reortho_option_and_validation():
  h = _sym(_spectrum("logspace", 50, 0), seed=5)
  v, t = _lanczos_float32(h, np.ones(50), 4, reortho="none")
  assert np.abs(v @ v.T - np.eye(4)).max() <= 1e-4  # short runs stay orthonormal
  assert np.abs(v @ h @ v.T - t).max() <= 1e-4 * 1e4
  with pytest.raises(ValueError, match="num_steps"):
    lanczos(lambda v: v, jnp.ones(3), 0)
  with pytest.raises(ValueError, match="reortho"):
    lanczos(lambda v: v, jnp.ones(3), 2, reortho="partial")
