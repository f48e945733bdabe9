"""Curvature building blocks: HVPs against dense jax.hessian, Rademacher probes, Hutchinson,
the cubic subproblem and the backtracking on its regularization."""

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
    h = jnp.tanh(x @ p["w"] + p["b"][None, :]) * p["s"]
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


@pytest.mark.parametrize("n_samples", [1, 3])
def test_hutchinson_estimate_is_the_probe_loop_of_hutchinson_diagonal(n_samples):
  """Any matvec: same keys, same probes, bitwise the estimate of the HVP-based helpers."""
  params, loss = _problem()
  key = jax.random.PRNGKey(11)
  want = curvature.hutchinson_diagonal(loss, params, key, n_samples)
  got = curvature.hutchinson_estimate(lambda z: curvature.hvp(loss, params, z), params, key,
                                      n_samples)
  for k in params:
    np.testing.assert_array_equal(got[k], want[k])
  # a diagonal map is recovered for any key (exactly with one probe; a mean of 3 rounds)
  a = jnp.linspace(-2.0, 3.0, 7)
  est = curvature.hutchinson_estimate(lambda z: a * z, jnp.zeros(7), key, n_samples)
  np.testing.assert_allclose(est, a, rtol=0 if n_samples == 1 else 1e-6)


# ----------------------------------------------------------------------------- cubic model
def _model(b, B, M, z):
  return b @ z + 0.5 * z @ B @ z + M / 6.0 * np.linalg.norm(z) ** 3


_solve = jax.jit(curvature.solve_cubic_subproblem)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), log_m=st.floats(-3.0, 3.0), shift=st.floats(-1.0, 2.0),
       tridiagonal=st.booleans())
def test_subproblem_optimality_float32(seed, log_m, shift, tridiagonal):
  """(B + lam I) z = -b, lam = M |z| / 2, B + lam I PSD, to 1e-5 in float32; global minimum."""
  m = 8
  rng = np.random.default_rng(seed)
  if tridiagonal:  # a Lanczos-like T (unreduced tridiagonal)
    a, c = rng.uniform(0.0, 3.0, m) + shift, rng.uniform(0.1, 1.0, m - 1)
    B = np.diag(a) + np.diag(c, 1) + np.diag(c, -1)
    b = np.zeros(m)
    b[0] = rng.uniform(0.1, 3.0)
  else:
    A = rng.normal(size=(m, m))
    B = (A + A.T) / 2 + shift * np.eye(m)
    b = rng.normal(size=m)
  M = 10.0**log_m
  B32, b32 = B.astype(np.float32), b.astype(np.float32)
  sol = _solve(jnp.asarray(b32), jnp.asarray(B32), jnp.float32(M))
  z, lam = np.asarray(sol.z, np.float64), float(sol.lam)
  B, b = B32.astype(np.float64), b32.astype(np.float64)
  scale = np.linalg.norm(B, 2) + lam
  assert np.linalg.norm((B + lam * np.eye(m)) @ z + b) <= 1e-5 * scale * max(np.linalg.norm(z), 1.0)
  assert abs(lam - M * np.linalg.norm(z) / 2.0) <= 1e-5 * lam
  assert np.linalg.eigvalsh(B).min() + lam >= -1e-5 * scale
  # reported model value, and global optimality against perturbations
  f0 = _model(b, B, M, z)
  assert float(sol.model) == pytest.approx(f0, rel=1e-4, abs=1e-6)
  assert f0 <= 0.0
  for _ in range(20):
    dz = rng.normal(size=m) * (1e-2 + np.linalg.norm(z)) * rng.uniform(0.01, 1.0)
    assert f0 <= _model(b, B, M, z + dz) + 1e-6 * max(abs(f0), 1.0)


def test_subproblem_matches_brute_force_float64():
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    for M in (0.1, 1.0, 10.0):
      A = rng.normal(size=(3, 3))
      B = (A + A.T) / 2
      b = rng.normal(size=3)
      sol = curvature.solve_cubic_subproblem(jnp.asarray(b), jnp.asarray(B), M)
      z = np.asarray(sol.z)
      # brute force: many random starts of a local minimizer of the 3-d model
      from scipy.optimize import minimize as sp_min  # noqa: PLC0415

      best = min((sp_min(lambda x: _model(b, B, M, x), rng.normal(size=3) * 3, tol=1e-14)
                  for _ in range(20)), key=lambda r: r.fun)
      assert _model(b, B, M, z) <= best.fun + 1e-10
      np.testing.assert_allclose(z, best.x, atol=1e-5)



def _check_global_optimality(b, B, M, sol, tol=1e-5):
  """(B + lam I) z = -b, lam = M |z| / 2, B + lam I PSD, and no perturbation does better."""
  z, lam = np.asarray(sol.z, np.float64), float(sol.lam)
  scale = np.linalg.norm(B, 2) + lam
  assert np.linalg.norm((B + lam * np.eye(len(b))) @ z + b) <= tol * scale * max(np.linalg.norm(z), 1)
  assert abs(lam - M * np.linalg.norm(z) / 2.0) <= tol * max(lam, 1.0)
  assert np.linalg.eigvalsh(B).min() + lam >= -tol * scale
  f0 = _model(b, B, M, z)
  assert float(sol.model) == pytest.approx(f0, rel=1e-4, abs=1e-6)
  rng = np.random.default_rng(0)
  for _ in range(50):
    dz = rng.normal(size=len(b)) * rng.uniform(0.01, 2.0) * max(np.linalg.norm(z), 1.0)
    assert f0 <= _model(b, B, M, z + dz) + 1e-6 * max(abs(f0), 1.0)


@pytest.mark.parametrize("M", [0.3, 1.0, 7.0])
def test_hard_case_b_zero_indefinite_goes_along_the_lowest_eigenvector(M):
  """b = 0, B indefinite: z = (-2 theta_min / M) q_min (not 0), model (2/3) theta_min^3 / M^2."""
  rng = np.random.default_rng(4)
  Q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
  theta = np.array([-1.5, -0.2, 0.5, 3.0])
  B = (Q * theta) @ Q.T
  sol = _solve(jnp.zeros(4, jnp.float32), jnp.asarray(B, jnp.float32), jnp.float32(M))
  z = np.asarray(sol.z, np.float64)
  assert float(sol.lam) == pytest.approx(1.5, rel=1e-5)
  assert np.linalg.norm(z) == pytest.approx(2 * 1.5 / M, rel=1e-5)
  assert abs(z @ Q[:, 0]) == pytest.approx(np.linalg.norm(z), rel=1e-5)  # along q_min
  assert float(sol.model) == pytest.approx(2.0 / 3.0 * (-1.5) ** 3 / M**2, rel=1e-5)
  _check_global_optimality(np.zeros(4), B.astype(np.float32).astype(np.float64), M, sol)
  # the diagonal form: the length goes on the first index of theta_min
  diag = curvature.solve_cubic_subproblem_diagonal(jnp.array([2.0, -1.0, -1.0]), jnp.zeros(3), M)
  np.testing.assert_allclose(diag.z, [0.0, 2.0 / M, 0.0], rtol=1e-6)


def test_hard_case_with_b_orthogonal_to_the_lowest_eigenvector():
  """gamma_min = 0 and |y(-theta_min)| < -2 theta_min / M: lam = -theta_min, the rest of the
  length along e_min; a gamma with a large other component is an ordinary case."""
  theta = jnp.array([-1.0, 2.0, 4.0])
  for gamma, hard in (([0.0, 0.3, -0.2], True), ([0.0, 10.0, 0.0], False),
                      ([1e-3, 0.3, 0.0], False)):
    sol = curvature.solve_cubic_subproblem_diagonal(theta, jnp.array(gamma), 1.0)
    _check_global_optimality(np.array(gamma), np.diag(np.asarray(theta, np.float64)), 1.0, sol)
    assert (float(sol.lam) == 1.0) == hard
  # PSD with b = 0: the minimizer is 0 (no negative curvature to follow)
  sol = curvature.solve_cubic_subproblem(jnp.zeros(2), jnp.diag(jnp.array([0.0, 2.0])), 1.0)
  np.testing.assert_array_equal(sol.z, [0.0, 0.0])
  assert float(sol.model) == 0.0


def test_hard_case_float64_matches_brute_force():
  with jax.enable_x64(True):
    from scipy.optimize import minimize as sp_min  # noqa: PLC0415

    rng = np.random.default_rng(5)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    B = (Q * np.array([-2.0, 1.0, 3.0])) @ Q.T
    for b in (np.zeros(3), 0.1 * Q[:, 1] - 0.2 * Q[:, 2]):
      sol = curvature.solve_cubic_subproblem(jnp.asarray(b), jnp.asarray(B), 0.5)
      best = min((sp_min(lambda x: _model(b, B, 0.5, x), rng.normal(size=3) * 5, tol=1e-14)
                  for _ in range(20)), key=lambda r: r.fun)
      assert _model(b, B, 0.5, np.asarray(sol.z)) <= best.fun + 1e-10
      assert np.linalg.norm(sol.z) == pytest.approx(np.linalg.norm(best.x), rel=1e-6)


def test_diagonal_solver_is_the_eigenbasis_form():
  """solve_cubic_subproblem = eigh + solve_cubic_subproblem_diagonal + rotation back."""
  rng = np.random.default_rng(3)
  A = rng.normal(size=(5, 5))
  B = jnp.asarray((A + A.T) / 2, jnp.float32)
  b = jnp.asarray(rng.normal(size=5), jnp.float32)
  theta, Q = jnp.linalg.eigh(B)
  diag = curvature.solve_cubic_subproblem_diagonal(theta, Q.T @ b, 0.7)
  full = curvature.solve_cubic_subproblem(b, B, 0.7)
  np.testing.assert_allclose(Q @ diag.z, full.z, rtol=1e-6, atol=1e-7)
  assert float(diag.lam) == float(full.lam) and float(diag.model) == float(full.model)
  assert float(diag.lam) >= -float(theta[0])  # theta + lam > 0 (indefinite here)


def _pseudo_huber_model(x):
  """f = sum sqrt(1 + x^2) (separable; Newton overshoots from |x| > 1): (f, theta, gamma)."""
  f = lambda v: jnp.sum(jnp.sqrt(1.0 + v**2))  # noqa: E731
  return f, (1.0 + x**2) ** -1.5, x / jnp.sqrt(1.0 + x**2)


def test_backtracking_accepts_the_first_descending_trial():
  x = jnp.full((3,), 2.0)
  f, theta, gamma = _pseudo_huber_model(x)
  out = jax.jit(lambda m: curvature.backtrack_cubic_step(
      theta, gamma, f(x), m, lambda y: (y, f(x + y)), shrink=0.5, grow=2.0,
      max_backtracks=40, min_M=1e-12, max_M=1e12))(jnp.float32(1e-6))
  assert bool(out.accepted) and int(out.num_backtracks) > 0
  M = float(out.M)
  # the accepted M passes the test, M / grow (the trial before) does not
  for m, passes in ((M, True), (M / 2.0, False)):
    sol = curvature.solve_cubic_subproblem_diagonal(theta, gamma, m)
    assert bool(f(x + sol.z) <= f(x) + sol.model) == passes
  np.testing.assert_allclose(out.step, curvature.solve_cubic_subproblem_diagonal(theta, gamma, M).z)
  assert float(f(x + out.step)) < float(f(x))
  # first M = clip(shrink * M_prev, min_M, max_M); M_prev large enough: accepted at once
  out = curvature.backtrack_cubic_step(theta, gamma, f(x), jnp.float32(100.0),
                                       lambda y: (y, f(x + y)), shrink=0.5, grow=2.0,
                                       max_backtracks=5, min_M=1e-12, max_M=1e12)
  assert bool(out.accepted) and int(out.num_backtracks) == 0 and float(out.M) == 50.0


def test_backtracking_rejects_after_max_backtracks_and_caps_m():
  x = jnp.full((3,), 2.0)
  f, theta, gamma = _pseudo_huber_model(x)
  step_tree = lambda y: ({"s": y}, f(x + y))  # noqa: E731 - any pytree step
  out = curvature.backtrack_cubic_step(theta, gamma, f(x), jnp.float32(1e-8), step_tree,
                                       shrink=1.0, grow=2.0, max_backtracks=2, min_M=1e-12,
                                       max_M=1e12)
  assert not bool(out.accepted) and int(out.num_backtracks) == 2
  assert float(out.M) == pytest.approx(4e-8, rel=1e-6) and set(out.step) == {"s"}
  out = curvature.backtrack_cubic_step(theta, gamma, f(x), jnp.float32(1e-8), step_tree,
                                       shrink=1.0, grow=10.0, max_backtracks=5, min_M=1e-12,
                                       max_M=2e-7)
  assert float(out.M) == pytest.approx(2e-7, rel=1e-6)  # grown, then capped at max_M
