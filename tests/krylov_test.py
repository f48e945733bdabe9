"""Krylov cubic regularized Newton: reductions to full cubic Newton and Newton, monotone
descent, rejection, pytrees, weight decay, errors, solver. (The cubic subproblem and the
backtracking on M are tested with the building blocks in curvature_test.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from optzoo import objectives
from optzoo import krylov_cubic_newton, krylov_cubic_newton_minimize, scale_by_krylov_cubic_newton
from optzoo.curvature import solve_cubic_subproblem
from optzoo.training import CompileCounter

from helpers import run


def _one_step(tx, loss, params):
  """(updates, state) of one step: the shared run, for one step, unpacked."""
  out = run(tx, params, 1, loss=loss, obj_fn=True)
  return out.updates[0], out.states[-1]


def test_one_dimensional_subspace_closed_form():
  """m = 1: step = -t g/|g| with t = (-a + sqrt(a^2 + 2 M |g|)) / M, a = g^T H g / |g|^2."""
  loss = objectives.get("logistic").loss
  x = jnp.linspace(-0.5, 0.5, 20).astype(jnp.float32)
  M = 3.0
  tx = scale_by_krylov_cubic_newton(subspace_dim=1, init_M=M, adaptive=False)
  u, _ = _one_step(tx, loss, x)
  g = np.asarray(jax.grad(loss)(x), np.float64)
  hg = np.asarray(jax.jvp(jax.grad(loss), (x,), (jnp.asarray(g, jnp.float32),))[1], np.float64)
  gn = np.linalg.norm(g)
  a = g @ hg / gn**2
  t = (-a + np.sqrt(a * a + 2 * M * gn)) / M
  np.testing.assert_allclose(np.asarray(u), -t * g / gn, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("m", [20, 25])
def test_full_subspace_equals_full_cubic_newton(m):
  """With m >= d the Krylov step is the full cubic-regularized Newton step (dense Hessian)."""
  obj = objectives.get("logistic")  # d = 20
  x = (0.3 * jnp.cos(jnp.arange(20.0))).astype(jnp.float32)
  M = 0.5
  tx = scale_by_krylov_cubic_newton(subspace_dim=m, init_M=M, adaptive=False)
  u, state = _one_step(tx, obj.loss, x)
  g = jax.grad(obj.loss)(x)
  h = jax.hessian(obj.loss)(x)
  ref = solve_cubic_subproblem(g, h, M)
  np.testing.assert_allclose(np.asarray(u), np.asarray(ref.z), rtol=1e-4,
                             atol=1e-5 * float(jnp.linalg.norm(ref.z)))
  assert float(state.lam) == pytest.approx(float(ref.lam), rel=1e-4)
  assert int(state.hvp_count) == m


def _quadratic(d=200, seed=0):
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(d, d)))
  eigs = rng.choice([0.5, 1.0, 3.0, 10.0, 40.0], size=d)
  h = (q * eigs) @ q.T
  x_star = rng.normal(size=d)
  return h, x_star


def test_newton_limit_and_equivalence_on_quadratic_float64():
  """5 distinct eigenvalues: m >= 5 gives the Newton step (M -> 0) / the full CRN step (M = 5),
  also past breakdown (m = 8) and m = d; m = 3 does not."""
  with jax.enable_x64(True):
    h, x_star = _quadratic()
    hj, xs = jnp.asarray(h), jnp.asarray(x_star)

    def loss(x):
      return 0.5 * (x - xs) @ (hj @ (x - xs))

    x0 = jnp.zeros(200)
    g = jax.grad(loss)(x0)
    crn = np.asarray(solve_cubic_subproblem(g, hj, 5.0).z)
    for m in (3, 8):  # m = 8 > 5: Lanczos breaks down after 5 steps
      u, _ = _one_step(scale_by_krylov_cubic_newton(m, init_M=1e-10, adaptive=False), loss, x0)
      err = np.linalg.norm(np.asarray(u) - x_star) / np.linalg.norm(x_star)
      if m >= 5:
        assert err <= 1e-6, (m, err)
      else:
        assert err >= 1e-2, (m, err)
    u, _ = _one_step(scale_by_krylov_cubic_newton(5, init_M=5.0, adaptive=False), loss, x0)
    np.testing.assert_allclose(np.asarray(u), crn, atol=1e-10 * np.linalg.norm(crn))


def test_model_decrease_nests_in_m_float64():
  """At fixed (x, M) the model minimum is nonincreasing and |z| nondecreasing in m."""
  with jax.enable_x64(True):
    loss = objectives.logistic_loss_fn(*objectives.logistic_data(n=200, d=30, seed=1), 1e-3)
    x = jnp.zeros(30)
    prev_dec, prev_norm = -1.0, -1.0
    for m in (1, 3, 9):
      u, st = _one_step(scale_by_krylov_cubic_newton(m, init_M=1.0, adaptive=False), loss, x)
      dec, nz = float(st.model_decrease), float(jnp.linalg.norm(u))
      assert dec >= prev_dec - 1e-14 and nz >= prev_norm - 1e-12
      prev_dec, prev_norm = dec, nz


def test_monotone_descent_on_logistic_with_backtracking():
  """From M_0 = 1e-12 the first trials fail (backtracking > 0); f never increases; converges."""
  obj = objectives.get("logistic")
  tx = krylov_cubic_newton(subspace_dim=10, init_M=1e-12)
  params = obj.init()
  state = tx.init(params)

  @jax.jit
  def step(p, s):
    u, s = tx.update(jax.grad(obj.loss)(p), s, p, obj_fn=obj.loss)
    return optax.apply_updates(p, u), s

  values, backtracks = [float(obj.loss(params))], 0
  for _ in range(12):
    params, state = step(params, state)
    values.append(float(obj.loss(params)))
    backtracks += int(state.num_backtracks)
    assert float(state.M) > 0
  # nonincreasing (up to one float32 ulp: this loss is evaluated outside the jitted step)
  assert all(b <= a + np.spacing(np.float32(a)) for a, b in zip(values, values[1:])), values
  assert values[4] < values[0] - 0.25
  assert backtracks > 0
  assert values[-1] - obj.min_loss <= 1e-5
  assert float(obj.distance(params)) <= 1e-3
  assert int(state.hvp_count) == 120


def test_rejected_step_keeps_params_and_grows_m():
  """No trial passes within max_backtracks: zero update, accepted False, M grown, same dtypes."""
  def loss(x):  # pseudo-Huber: the Newton step from x = 2 overshoots to about -8
    return jnp.sum(jnp.sqrt(1.0 + x**2))

  x = jnp.full((4,), 2.0)
  tx = scale_by_krylov_cubic_newton(subspace_dim=2, init_M=1e-8, shrink=1.0, max_backtracks=2)
  state0 = tx.init(x)
  u, state = jax.jit(lambda g, s, p: tx.update(g, s, p, obj_fn=loss))(jax.grad(loss)(x), state0, x)
  assert not bool(state.accepted)
  assert np.all(np.asarray(u) == 0.0)
  assert float(state.M) == pytest.approx(4e-8, rel=1e-6)
  assert int(state.num_backtracks) == 2
  assert jax.tree.map(lambda a: a.dtype, state) == jax.tree.map(lambda a: a.dtype, state0)
  # with enough trials the same step is accepted and decreases f
  tx = scale_by_krylov_cubic_newton(subspace_dim=2, init_M=1e-3, shrink=1.0)
  u, state = _one_step(tx, loss, x)
  assert bool(state.accepted) and int(state.num_backtracks) > 0
  assert float(loss(x + u)) < float(loss(x))


def test_pytree_equals_flat():
  rng = np.random.default_rng(0)
  params = {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=5), jnp.float32)}
  flat, unravel = ravel_pytree(params)
  A = jnp.asarray(rng.normal(size=(30, 17)), jnp.float32)

  def loss_flat(x):
    return jnp.mean(jnp.logaddexp(0.0, A @ x)) + 0.05 * jnp.sum(x**2) + 0.01 * jnp.sum(x**4)

  def loss_tree(p):
    return loss_flat(ravel_pytree(p)[0])

  tx = krylov_cubic_newton(subspace_dim=6)
  u_tree, s_tree = _one_step(tx, loss_tree, params)
  u_flat, s_flat = _one_step(tx, loss_flat, flat)
  np.testing.assert_allclose(np.asarray(ravel_pytree(u_tree)[0]), np.asarray(u_flat),
                             rtol=1e-5, atol=1e-6)
  assert float(s_tree.M) == float(s_flat.M)


def test_zero_gradient_gives_zero_update():
  def loss(x):
    return jnp.sum((x - 1.0) ** 2)

  x = jnp.ones(6)
  u, state = _one_step(krylov_cubic_newton(subspace_dim=4), loss, x)
  assert np.all(np.asarray(u) == 0.0)
  assert all(np.all(np.isfinite(np.asarray(leaf))) for leaf in jax.tree.leaves(state))


def test_weight_decay_is_coupled_l2():
  obj = objectives.get("logistic")
  x = obj.init() + 0.1
  wd = 0.3

  def reg_loss(p):
    return obj.loss(p) + 0.5 * wd * jnp.sum(p**2)

  u1, s1 = _one_step(krylov_cubic_newton(subspace_dim=5, weight_decay=wd), obj.loss, x)
  u2, s2 = _one_step(scale_by_krylov_cubic_newton(subspace_dim=5), reg_loss, x)
  np.testing.assert_allclose(np.asarray(u1), np.asarray(u2), rtol=1e-5, atol=1e-7)
  # a mask that excludes the only leaf gives the unregularized step
  u3, _ = _one_step(krylov_cubic_newton(subspace_dim=5, weight_decay=wd, mask=False), obj.loss, x)
  u4, _ = _one_step(scale_by_krylov_cubic_newton(subspace_dim=5), obj.loss, x)
  np.testing.assert_allclose(np.asarray(u3), np.asarray(u4), rtol=1e-6, atol=1e-8)


def test_weight_decay_mask_callable_on_a_pytree():
  """mask as a callable params -> pytree of bools: only the selected leaves are decayed."""
  def loss(p):
    return jnp.sum(jnp.logaddexp(0.0, p["w"] - 1.0)) + jnp.sum((p["b"] - 0.5) ** 2)

  params = {"w": jnp.linspace(-1.0, 1.0, 4), "b": jnp.ones(2)}
  wd = 0.2

  def reg_loss(p):
    return loss(p) + 0.5 * wd * jnp.sum(p["w"] ** 2)

  tx = krylov_cubic_newton(subspace_dim=4, weight_decay=wd,
                           mask=lambda p: {"w": True, "b": False})
  u1, _ = _one_step(tx, loss, params)
  u2, _ = _one_step(scale_by_krylov_cubic_newton(subspace_dim=4), reg_loss, params)
  for k in params:
    np.testing.assert_allclose(np.asarray(u1[k]), np.asarray(u2[k]), rtol=1e-5, atol=1e-7)


def test_errors():
  tx = krylov_cubic_newton()
  x = jnp.ones(3)
  with pytest.raises(ValueError, match="krylov_cubic_newton.update needs obj_fn"):
    tx.update(x, tx.init(x), x)
  with pytest.raises(ValueError, match="needs params"):
    tx.update(x, tx.init(x), None, obj_fn=jnp.sum)
  core = scale_by_krylov_cubic_newton()
  with pytest.raises(ValueError, match="scale_by_krylov_cubic_newton.update needs obj_fn"):
    core.update(x, core.init(x), x)
  with pytest.raises(TypeError):  # the mode argument reortho is keyword-only
    scale_by_krylov_cubic_newton(10, 2e-3, 0.5, 2.0, 20, 1e-12, 1e12, "none")
  with pytest.raises(TypeError, match="subspace_dim"):
    krylov_cubic_newton(subspace_dim=2.5)
  with pytest.raises(ValueError, match="subspace_dim"):
    krylov_cubic_newton(subspace_dim=0)
  for name, value in (("init_M", -1.0), ("shrink", 0.0), ("grow", 0.5), ("min_M", 0.0),
                      ("weight_decay", -0.1)):
    with pytest.raises(ValueError, match=name):
      krylov_cubic_newton(**{name: value})
  with pytest.raises(ValueError, match="reortho"):
    krylov_cubic_newton(reortho="partial")


def test_minimize_logistic():
  obj = objectives.get("logistic")
  x, info = krylov_cubic_newton_minimize(obj.loss, obj.init(), subspace_dim=10, max_iters=30, tol=1e-4)
  assert info.converged
  assert info.hvps == 10 * info.iterations
  assert len(info.values) == info.iterations + 1 == len(info.grad_norms)
  assert np.all(np.diff(info.values) <= 0.0)
  assert info.grad_norms[-1] <= 1e-4 < info.grad_norms[0]
  assert float(obj.distance(x)) <= 1e-3
  assert np.all(np.diff(info.times) >= 0.0) and np.all(info.M > 0)
  with pytest.raises(TypeError, match="bogus"):
    krylov_cubic_newton_minimize(obj.loss, obj.init(), bogus=1)


# ----------------------------------------------------------------------------- eager calls
def _batches(n):
  rng = np.random.default_rng(0)
  return [(jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
           jnp.asarray(rng.integers(0, 2, size=16) * 2.0 - 1.0, jnp.float32)) for _ in range(n)]


def _logistic(w, batch):
  a, y = batch
  return jnp.mean(jnp.logaddexp(0.0, -y * (a @ w["w"] + w["b"]))) + 0.05 * jnp.sum(w["w"] ** 2)


@pytest.mark.parametrize("factory", [krylov_cubic_newton, scale_by_krylov_cubic_newton])
def test_eager_calls_with_a_fresh_closure_do_not_recompile(factory):
  """5 eager steps, each with a new obj_fn closure over another batch: after the first step
  nothing compiles (the alias, which wraps obj_fn in its own closure, included)."""
  tx = factory(subspace_dim=3)
  params = {"w": jnp.zeros(3), "b": jnp.zeros([])}
  state = tx.init(params)
  grad_fn = jax.jit(jax.grad(_logistic))
  per_step = []
  for batch in _batches(5):
    g = grad_fn(params, batch)
    with CompileCounter() as counter:
      updates, state = tx.update(g, state, params, obj_fn=lambda p, batch=batch: _logistic(p, batch))
      params = optax.apply_updates(params, updates)
      jax.block_until_ready(params)
    per_step.append(counter.count)
  assert per_step[0] >= 1 and per_step[1:] == [0, 0, 0, 0], per_step


def test_eager_and_jitted_runs_agree():
  tx = krylov_cubic_newton(subspace_dim=3, weight_decay=0.01)
  p0 = {"w": jnp.zeros(3), "b": jnp.zeros([])}

  @jax.jit
  def jstep(p, s, batch):
    u, s = tx.update(jax.grad(_logistic)(p, batch), s, p, obj_fn=lambda q: _logistic(q, batch))
    return optax.apply_updates(p, u), s

  pe, se, pj, sj = p0, tx.init(p0), p0, tx.init(p0)
  for batch in _batches(5):
    u, se = tx.update(jax.grad(_logistic)(pe, batch), se, pe,
                      obj_fn=lambda q, batch=batch: _logistic(q, batch))
    pe = optax.apply_updates(pe, u)
    pj, sj = jstep(pj, sj, batch)
  for k in p0:
    np.testing.assert_allclose(pe[k], pj[k], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(se.accepted, sj.accepted)
  np.testing.assert_allclose(se.M, sj.M, rtol=1e-5)


def test_another_program_compiles_and_gives_its_own_result():
  """A different objective (another program) is not confused with a cached one."""
  tx = scale_by_krylov_cubic_newton(subspace_dim=2)
  x = jnp.ones(2)
  f1 = lambda p: jnp.sum((p - 2.0) ** 2)  # noqa: E731
  f2 = lambda p: jnp.sum((p + 3.0) ** 4)  # noqa: E731
  for f in (f1, f2, f1):
    u_eager, _ = tx.update(jax.grad(f)(x), tx.init(x), x, obj_fn=f)
    u_jit, _ = _one_step(tx, f, x)
    np.testing.assert_allclose(u_eager, u_jit, rtol=1e-5, atol=1e-7)


# ----------------------------------------------------------------------------- inputs
def test_masked_params_need_a_frozen_objective():
  params = {"w": jnp.ones(3), "frozen": jnp.full(2, 5.0)}
  loss = lambda p: jnp.sum((p["w"] - 2.0) ** 2) + jnp.sum(p["frozen"] ** 2)  # noqa: E731
  for inner in (krylov_cubic_newton(subspace_dim=2), scale_by_krylov_cubic_newton(subspace_dim=2)):
    tx = optax.partition({"train": inner, "freeze": optax.set_to_zero()},
                         {"w": "train", "frozen": "freeze"})
    state = tx.init(params)
    g = jax.grad(loss)(params)
    with pytest.raises(ValueError, match="optzoo.frozen_objective"):
      tx.update(g, state, params, obj_fn=loss)
    import optzoo  # noqa: PLC0415

    u, _ = tx.update(g, state, params, obj_fn=optzoo.frozen_objective(loss, params))
    np.testing.assert_array_equal(u["frozen"], jnp.zeros(2))
    assert float(loss(optax.apply_updates(params, u))) < float(loss(params))


def test_integer_and_complex_leaves_are_refused_at_init_naming_the_leaf():
  tx = krylov_cubic_newton()
  with pytest.raises(TypeError, match=r"\['layer'\]\['n'\]"):
    tx.init({"layer": {"w": jnp.ones(2), "n": jnp.arange(3)}})
  with pytest.raises(TypeError, match=r"\['layer'\]\['z'\].*complex"):
    tx.init({"layer": {"w": jnp.ones(2), "z": jnp.ones(2, jnp.complex64)}})


def test_gradient_shapes_are_checked_and_empty_trees_pass_through():
  tx = krylov_cubic_newton(subspace_dim=2)
  params = {"layer": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["layer"]["w"] ** 2) + jnp.sum(p["layer"]["b"] ** 2)  # noqa: E731
  for bad in (jnp.ones((2, 3)), jnp.ones((1, 2))):
    grads = {"layer": {"w": bad, "b": jnp.ones(2)}}
    with pytest.raises(ValueError, match=r"\['layer'\]\['w'\]"):
      tx.update(grads, state, params, obj_fn=loss)
  u, st = tx.update({}, tx.init({}), {}, obj_fn=lambda p: 0.0)
  assert u == {} and int(st.count) == 1


def _mlp_regression(dtype):
  """A tanh MLP (8-32-1) fitting a smooth target, params in ``dtype`` (data cast to the
  params' dtype, as strict promotion asks)."""
  rng = np.random.default_rng(0)
  x = rng.normal(size=(256, 8)).astype(np.float32)
  y = np.sin(x @ rng.normal(size=(8, 1)).astype(np.float32))
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  params = {"w1": jax.random.normal(k1, (8, 32)) / np.sqrt(8.0), "b1": jnp.zeros((1, 32)),
            "w2": jax.random.normal(k2, (32, 1)) / np.sqrt(32.0), "b2": jnp.zeros((1, 1))}

  def loss(p):
    dt = p["w1"].dtype
    h = jnp.tanh(x.astype(dt) @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] + p["b2"] - y.astype(dt)) ** 2)

  return jax.tree.map(lambda a: a.astype(dtype), params), loss


def _train_mlp(dtype, steps):
  params, loss = _mlp_regression(dtype)
  tx = krylov_cubic_newton()
  state = tx.init(params)

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p, obj_fn=loss)
    return (optax.apply_updates(p, u), s), (s.accepted, s.M)

  (params, _), (accepted, Ms) = jax.jit(
      lambda p, s: jax.lax.scan(body, (p, s), None, length=steps))(params, state)
  wide = jax.tree.map(lambda a: a.astype(jnp.float32), params)
  return float(loss(wide)), np.asarray(accepted), np.asarray(Ms)


def test_bfloat16_params_keep_descending():
  """bfloat16 params: the model and the acceptance test are evaluated in float32 at the
  bfloat16 point, so steps keep being accepted and the loss keeps pace with float32 (compared
  in bfloat16, the test could not see the small decreases: M climbed to max_M, every step was
  rejected and the loss froze at 40x float32's)."""
  steps = 80
  loss32, _, _ = _train_mlp(jnp.float32, steps)
  loss16, accepted, Ms = _train_mlp(jnp.bfloat16, steps)
  assert accepted[-40:].mean() >= 0.9, accepted
  assert Ms.max() < 1e6, Ms.max()
  assert loss16 < 2.0 * loss32, (loss16, loss32)
