"""Curvature building blocks: HVPs against dense jax.hessian, Rademacher probes, Hutchinson."""

from __future__ import annotations

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from optzoo import curvature


def _problem():
  """A non-quadratic loss on a small pytree (couples all leaves), and a point."""
  rng = np.random.default_rng(0)
  params = {
      "w": jnp.asarray(rng.normal(size=(3, 4)) * 0.5, jnp.float32),
      "b": jnp.asarray(rng.normal(size=(4,)) * 0.5, jnp.float32),
      "s": jnp.asarray(rng.normal(size=()) * 0.5 + 1.0, jnp.float32),
  }
  x = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)

  def loss(p):
    h = jnp.tanh(x @ p["w"] + p["b"]) * p["s"]
    return jnp.sum(jnp.log1p(h**2)) + 0.1 * jnp.sum(p["w"] ** 4)

  return params, loss


def _dense_hessian(loss, params):
  flat, unravel = ravel_pytree(params)
  return jax.hessian(lambda f: loss(unravel(f)))(flat), flat, unravel


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvp_matches_dense_hessian(seed):
  params, loss = _problem()
  hess, flat, unravel = _dense_hessian(loss, params)
  v = unravel(jax.random.normal(jax.random.PRNGKey(seed), flat.shape))
  want = hess @ ravel_pytree(v)[0]
  scale = float(jnp.max(jnp.abs(want)))
  for got in (curvature.hvp(loss, params, v),
              curvature.grad_and_hvp(loss, params, v)[1],
              curvature.value_grad_and_hvp(loss, params, v)[2]):
    np.testing.assert_allclose(ravel_pytree(got)[0], want, rtol=1e-5, atol=1e-5 * scale)
  g, _ = curvature.grad_and_hvp(loss, params, v)
  val, g2, _ = curvature.value_grad_and_hvp(loss, params, v)
  np.testing.assert_allclose(ravel_pytree(g)[0], ravel_pytree(jax.grad(loss)(params))[0], rtol=1e-6)
  np.testing.assert_allclose(ravel_pytree(g2)[0], ravel_pytree(g)[0], rtol=1e-6)
  np.testing.assert_allclose(val, loss(params), rtol=1e-6)


def test_rademacher_probes_are_signs_with_leaf_dtype_and_independent_per_leaf():
  tree = {"a": jnp.zeros((64,)), "b": jnp.zeros((64,)), "c": jnp.zeros((8, 8), jnp.bfloat16)}
  z = curvature.rademacher_like(jax.random.PRNGKey(3), tree)
  for name, leaf in z.items():
    assert leaf.dtype == tree[name].dtype and leaf.shape == tree[name].shape
    assert set(np.unique(np.asarray(leaf, np.float32)).tolist()) == {-1.0, 1.0}
  # same shape, different leaf: independent draws (a shared key would make them identical)
  assert not np.array_equal(z["a"], z["b"])
  assert not np.array_equal(np.asarray(z["a"]), np.asarray(z["c"], np.float32).ravel())
  # deterministic in the key, different across keys
  z2 = curvature.rademacher_like(jax.random.PRNGKey(3), tree)
  z3 = curvature.rademacher_like(jax.random.PRNGKey(4), tree)
  assert np.array_equal(z["a"], z2["a"]) and not np.array_equal(z["a"], z3["a"])


def test_rademacher_probes_are_balanced():
  z = curvature.rademacher_like(jax.random.PRNGKey(0), jnp.zeros(100_000))
  assert abs(float(jnp.mean(z))) < 0.02  # 5 sigma for a fair coin


_SEP_C = {"u": jnp.linspace(0.1, 3.0, 7), "v": jnp.linspace(-2.0, 2.0, 6).reshape(2, 3)}


def _separable_loss(p):
  """Separable: the Hessian is diagonal, diag = c cosh(p) + 1.2 p^2."""
  return sum(jnp.sum(ci * jnp.cosh(p[k]) + 0.1 * p[k] ** 4) for k, ci in _SEP_C.items())


@functools.cache
def _separable_reference():
  params = {"u": jnp.linspace(-1.0, 1.0, 7), "v": jnp.linspace(0.5, -0.5, 6).reshape(2, 3)}
  hess, _, unravel = _dense_hessian(_separable_loss, params)
  return _separable_loss, params, unravel(jnp.diag(hess)), jax.grad(_separable_loss)(params)


_jit_hutchinson = jax.jit(curvature.hutchinson_diagonal, static_argnums=(0, 3))
_jit_grad_hutchinson = jax.jit(curvature.grad_and_hutchinson, static_argnums=(0, 3))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n_samples=st.sampled_from([1, 3]))
def test_hutchinson_is_exact_on_diagonal_hessians(seed, n_samples):
  loss, params, want, grad = _separable_reference()
  key = jax.random.PRNGKey(seed)
  got = _jit_hutchinson(loss, params, key, n_samples)
  for k in params:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6)
  g, got2 = _jit_grad_hutchinson(loss, params, key, n_samples)
  for k in params:
    np.testing.assert_array_equal(got2[k], got[k])
    np.testing.assert_allclose(g[k], grad[k], rtol=1e-6)


def test_coupled_same_shape_leaves_get_independent_probes():
  """f = a|x|^2/2 + a|y|^2/2 + c x.y: the x-estimate is a + c z_x z_y, so it takes both
  values a + c and a - c; with one probe shared by x and y it would be a + c everywhere."""
  a, c = 2.0, 0.5

  def loss(p):
    return 0.5 * a * jnp.sum(p["x"] ** 2) + 0.5 * a * jnp.sum(p["y"] ** 2) + c * jnp.sum(p["x"] * p["y"])

  params = {"x": jnp.ones(64), "y": jnp.ones(64)}
  est = curvature.hutchinson_diagonal(loss, params, jax.random.PRNGKey(0))
  for leaf in est.values():
    assert set(np.unique(np.asarray(leaf)).tolist()) == {a - c, a + c}


def test_hutchinson_is_unbiased_and_hz_squared_tracks_h_squared():
  rng = np.random.default_rng(1)
  m = rng.normal(size=(6, 6))
  hmat = jnp.asarray(m @ m.T / 6 + np.eye(6), jnp.float32)

  def loss(x):
    return 0.5 * x @ (hmat @ x)

  x0 = jnp.zeros(6)
  keys = jax.random.split(jax.random.PRNGKey(0), 4000)
  zhz = jax.vmap(lambda k: curvature.hutchinson_diagonal(loss, x0, k))(keys)
  hz = jax.vmap(lambda k: curvature.hvp(loss, x0, curvature.rademacher_like(k, x0)))(keys)
  # std of z_i (Hz)_i is sqrt(sum_{j != i} H_ij^2): allow 5 standard errors
  off = jnp.sqrt(jnp.sum(hmat**2, axis=1) - jnp.diag(hmat) ** 2)
  assert bool(jnp.all(jnp.abs(zhz.mean(0) - jnp.diag(hmat)) < 5 * off / np.sqrt(4000)))
  np.testing.assert_allclose(jnp.mean(hz**2, axis=0), jnp.diag(hmat @ hmat), rtol=0.08)
  # and it is really an estimate: single draws differ from the diagonal
  assert float(jnp.max(jnp.abs(zhz[0] - jnp.diag(hmat)))) > 1e-2


def test_value_grad_and_hutchinson_puts_tangents_on_params_only():
  """A loss with a params x data cross term: tangents on the data would add d2f/dw dx z_x."""
  x = jnp.array([1.0, -2.0, 0.5])

  def loss(w, data):
    return jnp.sum(jnp.sin(w * data)) + jnp.sum(w**2 * data**2)

  w = jnp.array([0.3, -0.1, 0.7])
  key = jax.random.PRNGKey(5)
  val, g, d = curvature.value_grad_and_hutchinson(loss, w, key, x)
  closure = lambda p: loss(p, x)  # noqa: E731
  np.testing.assert_allclose(val, closure(w), rtol=1e-6)
  np.testing.assert_allclose(g, jax.grad(closure)(w), rtol=1e-6)
  np.testing.assert_allclose(d, jnp.diag(jax.hessian(closure)(w)), rtol=1e-5)  # separable in w
  np.testing.assert_allclose(d, curvature.hutchinson_diagonal(closure, w, key), rtol=1e-6)
