"""AdaHessian: closed forms, Newton step, invariances, probes, delayed refresh, averaging, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optzoo
from optzoo import curvature, layouts, models, objectives
from optzoo import average_curvature
from optzoo._src.adahessian import block_mean

from helpers import assert_trees_close, assert_trees_equal, run


def _coupled_loss(p):
  """Two same-shape leaves coupled through an off-diagonal Hessian block (non-separable)."""
  x, y = p["x"], p["y"]
  return (0.5 * jnp.sum(2.0 * x**2) + 0.5 * jnp.sum(3.0 * y**2) + 0.8 * jnp.sum(x * y)
          + 0.1 * jnp.sum(jnp.cos(x)) + jnp.sum(x[:2] * y[2:]))


# ----------------------------------------------------------------------------- closed forms
def test_separable_quadratic_matches_closed_form_and_ignores_the_key():
  """k=1, eps=0: v_hat = a^2 exactly, so theta_t / theta_0 is one sequence for every
  curvature a_i: mu_t = b1 mu + (1-b1) r_{t-1}, r_t = r_{t-1} - lr mu_t / (1 - b1^t)."""
  b1, b2, lr, steps = 0.9, 0.999, 0.1, 40
  with jax.enable_x64(True):
    a = jnp.asarray(np.logspace(-3, 3, 7))
    loss = lambda th: 0.5 * jnp.sum(a * th**2)  # noqa: E731
    th0 = jnp.asarray(np.linspace(-2.0, 3.0, 7))
    trajs = {}
    for key in (0, 7, 12345):
      tx = optzoo.adahessian(lr, b1=b1, b2=b2, eps=0.0, key=key)
      traj = run(tx, th0, steps, loss=loss, obj_fn=True).params
      trajs[key] = np.stack([np.asarray(t) for t in traj])
    np.testing.assert_array_equal(trajs[0], trajs[7])  # bitwise: |z a z| = a for any z
    np.testing.assert_array_equal(trajs[0], trajs[12345])
    mu, r, want = 0.0, 1.0, []
    for t in range(1, steps + 1):
      mu = b1 * mu + (1 - b1) * r
      r = r - lr * mu / (1 - b1**t)
      want.append(r)
    np.testing.assert_allclose(trajs[0] / np.asarray(th0), np.array(want)[:, None] * np.ones(7),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype,rtol", [(jnp.float32, 1e-6), (jnp.float64, 1e-14)])
def test_betas_zero_lr_one_is_a_newton_step_on_separable_quadratics(dtype, rtol):
  with jax.enable_x64(dtype == jnp.float64):
    curv = {"w": jnp.asarray([[0.01, 1.0, 30.0], [2.0, 500.0, 0.3]], dtype),
            "b": jnp.asarray([4.0, 0.02], dtype)}
    center = {"w": jnp.asarray([[1.0, -2.0, 0.5], [3.0, 0.1, -1.0]], dtype),
              "b": jnp.asarray([-0.7, 2.0], dtype)}

    def loss(p):
      return sum(jnp.sum(0.5 * c * (x - m) ** 2) for c, x, m in
                 zip(jax.tree.leaves(curv), jax.tree.leaves(p), jax.tree.leaves(center)))

    tx = optzoo.adahessian(1.0, b1=0.0, b2=0.0, eps=0.0, hessian_power=1.0)
    p1 = run(tx, jax.tree.map(jnp.zeros_like, center), 1, loss=loss, obj_fn=True).params[0]
    for k in center:
      np.testing.assert_allclose(p1[k], center[k], rtol=rtol)


def test_concave_direction_moves_downhill():
  loss = lambda th: -0.5 * jnp.sum(th**2) + jnp.sum(th**4)  # noqa: E731
  p1 = run(optzoo.adahessian(0.1, eps=0.0), jnp.array([0.1, -0.05]), 1, loss=loss,
           obj_fn=True).params[0]
  assert float(loss(p1)) < float(loss(jnp.array([0.1, -0.05])))
  assert bool(jnp.all(jnp.abs(p1) > jnp.array([0.1, 0.05])))


# ----------------------------------------------------------------------------- invariances
def _plain_and_scaled_by_2_pow_10(loss, p0, lr):
  """30 steps on loss and on 2^10 loss: (params per step, params per step)."""
  scaled = lambda p: 2.0**10 * loss(p)  # noqa: E731
  tx = optzoo.adahessian(lr, eps=0.0, key=3)
  return (run(tx, p0, 30, loss=loss, obj_fn=True).params,
          run(tx, p0, 30, loss=scaled, obj_fn=True).params)


def test_scaling_a_polynomial_loss_by_2_pow_10_leaves_the_trajectory_bitwise_unchanged():
  """Rosenbrock is a polynomial: every operation scales exactly, so bitwise."""
  obj = objectives.get("rosenbrock")
  ta, tb = _plain_and_scaled_by_2_pow_10(obj.loss, obj.init(), 0.5)
  for a, b in zip(ta, tb):
    assert_trees_equal(a, b)


def test_scaling_a_loss_with_cos_by_2_pow_10_leaves_the_trajectory_unchanged_to_an_ulp():
  """cos() and fused reductions may round one ulp differently."""
  p0 = {"x": jnp.linspace(-1.0, 1.0, 4), "y": jnp.linspace(2.0, 0.5, 4)}
  ta, tb = _plain_and_scaled_by_2_pow_10(_coupled_loss, p0, 0.3)
  for a, b in zip(ta, tb):
    assert_trees_close(a, b, rtol=1e-6, atol=1e-7)


def test_same_key_same_trajectory_other_key_other_trajectory():
  obj = objectives.get("rosenbrock")
  a, b, c = (run(tx, obj.init(), 10, loss=obj.loss, obj_fn=True).params
             for tx in (optzoo.adahessian(0.5, key=1), optzoo.adahessian(0.5, key=1),
                        optzoo.adahessian(0.5, key=jax.random.PRNGKey(2))))
  np.testing.assert_array_equal(a[-1], b[-1])
  assert not np.array_equal(a[-1], c[-1])


def test_donating_a_state_leaves_later_inits_usable():
  """init hands out its own key buffer: donating one state to a jitted step must not delete
  the key that the next init of the same transform returns."""
  loss = lambda p: jnp.sum(p**2)  # noqa: E731
  tx = optzoo.adahessian(0.1, key=3)
  params = jnp.ones(4)

  def step(p, s):
    u, s = tx.update(jax.grad(loss)(p), s, p, obj_fn=loss)
    return optax.apply_updates(p, u), s

  donating = jax.jit(step, donate_argnums=1)
  _, first = donating(params, tx.init(params))
  _, second = donating(params, tx.init(params))  # raised "Array has been deleted" before
  np.testing.assert_array_equal(optax.tree.get(first, "nu"), optax.tree.get(second, "nu"))


def test_same_shape_coupled_leaves_get_independent_probes():
  """nu after one step with b2 = 0 is D^2 = (H z)^2. For x: (2 z_x + 0.8 z_y - ...)^2 takes
  several values across entries; a probe shared by x and y would give z_x = z_y and a
  single value on the entries without the extra cross term."""
  n = 64
  loss = lambda p: (0.5 * jnp.sum(2.0 * p["x"] ** 2) + 0.5 * jnp.sum(3.0 * p["y"] ** 2)  # noqa: E731
                    + 0.8 * jnp.sum(p["x"] * p["y"]))
  params = {"x": jnp.zeros(n), "y": jnp.zeros(n)}
  state = run(optzoo.adahessian(0.1, b2=0.0), params, 1, loss=loss, obj_fn=True).states[-1]
  nu = optax.tree.get(state, "nu")
  np.testing.assert_allclose(sorted(set(np.round(np.asarray(nu["x"]), 5).tolist())),
                             [1.2**2, 2.8**2], rtol=1e-5)
  np.testing.assert_allclose(sorted(set(np.round(np.asarray(nu["y"]), 5).tolist())),
                             [2.2**2, 3.8**2], rtol=1e-5)


# ----------------------------------------------------------------------------- reference
def _reference(loss, params, steps, *, lr, b1, b2, eps, k, wd, every, key):
  """Spec section 2 written out in NumPy-style JAX (eager, float64), one leaf at a time."""
  key = jax.random.PRNGKey(key)
  m = jax.tree.map(jnp.zeros_like, params)
  v = jax.tree.map(jnp.zeros_like, params)
  d = None
  out = []
  for count in range(steps):
    t = count + 1
    g = jax.grad(loss)(params)
    if count % every == 0:
      key, sub = jax.random.split(key)
      z = curvature.rademacher_like(sub, params)
      d = jax.tree.map(jnp.abs, curvature.hvp(loss, params, z))
    m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
    v = jax.tree.map(lambda v, d: b2 * v + (1 - b2) * d * d, v, d)
    params = jax.tree.map(
        lambda p, m, v: p - lr * ((m / (1 - b1**t)) / ((v / (1 - b2**t)) ** (k / 2) + eps) + wd * p),
        params, m, v)
    out.append(params)
  return out


@pytest.mark.parametrize("every,k", [(1, 1.0), (3, 0.5)])
def test_matches_the_spec_reference_step_by_step(every, k):
  """Bias corrections over steps (not refreshes), eps outside the power, decoupled decay on the
  pre-update params, cached D reused (and still fed to v) between refreshes."""
  with jax.enable_x64(True):
    p0 = {"x": jnp.linspace(-1.0, 1.0, 4), "y": jnp.linspace(2.0, 0.5, 4)}
    hp = dict(lr=0.05, b1=0.8, b2=0.95, eps=1e-3, k=k, wd=0.1, every=every, key=4)
    want = _reference(_coupled_loss, p0, 8, **hp)
    tx = optzoo.adahessian(hp["lr"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"], hessian_power=k,
                           weight_decay=hp["wd"], update_every=every, key=hp["key"])
    got = run(tx, p0, 8, loss=_coupled_loss, obj_fn=True).params
    for g, w in zip(got, want):
      for name in p0:
        np.testing.assert_allclose(g[name], w[name], rtol=1e-12, atol=1e-14)


# ----------------------------------------------------------------------------- delayed refresh
def test_skipped_steps_compute_no_hvp():
  calls = []
  loss = _coupled_loss
  p0 = {"x": jnp.linspace(-1.0, 1.0, 4), "y": jnp.linspace(2.0, 0.5, 4)}

  def extras(p):
    def hvp_fn(z):
      jax.debug.callback(lambda: calls.append(1))
      return curvature.hvp(loss, p, z)
    return {"hvp_fn": hvp_fn}

  with_hvp = run(optzoo.adahessian(0.1, update_every=3), p0, 7, loss=loss, extra_args=extras)
  jax.effects_barrier()
  assert len(calls) == 3  # steps 1, 4, 7 refresh
  # hvp_fn gives the same trajectory as obj_fn
  with_obj = run(optzoo.adahessian(0.1, update_every=3), p0, 7, loss=loss, obj_fn=True)
  np.testing.assert_array_equal(with_hvp.params[-1]["x"], with_obj.params[-1]["x"])
  assert int(optax.tree.get(with_hvp.states[-1], "count")) == 7


def test_cache_holds_between_refreshes_and_refresh_every_one_equals_default():
  loss = _coupled_loss
  p0 = {"x": jnp.linspace(-1.0, 1.0, 4), "y": jnp.linspace(2.0, 0.5, 4)}
  tx = optzoo.adahessian(0.1, update_every=4)
  state = tx.init(p0)
  caches = []
  params = p0
  for _ in range(5):
    u, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
    params = optax.apply_updates(params, u)
    caches.append(optax.tree.get(state, "hessian_diag")["x"])
  for i in (1, 2, 3):
    np.testing.assert_array_equal(caches[i], caches[0])
  assert not np.array_equal(caches[4], caches[0])
  assert optax.tree.get(optzoo.adahessian(0.1).init(p0), "hessian_diag") is None
  # On a separable quadratic D is the same at every point, so any refresh period agrees.
  a = jnp.array([0.5, 2.0, 10.0])
  sep = lambda th: 0.5 * jnp.sum(a * th**2)  # noqa: E731
  t1 = run(optzoo.adahessian(0.1), jnp.ones(3), 12, loss=sep, obj_fn=True).params
  t5 = run(optzoo.adahessian(0.1, update_every=5), jnp.ones(3), 12, loss=sep, obj_fn=True).params
  np.testing.assert_array_equal(t1[-1], t5[-1])


def test_linearize_gives_the_same_trajectory_and_shares_the_primal_pass():
  loss = _coupled_loss
  p0 = {"x": jnp.linspace(-1.0, 1.0, 4), "y": jnp.linspace(2.0, 0.5, 4)}
  ta, tb = (run(optzoo.adahessian(0.1, update_every=3, linearize=lin), p0, 7, loss=loss,
                obj_fn=True).params for lin in (True, False))
  for name in p0:
    np.testing.assert_allclose(ta[-1][name], tb[-1][name], rtol=1e-6)

  # XLA flops of a whole step (value_and_grad + update; both cond branches counted): with
  # linearize the lazy step is no costlier than the every-step one, i.e. its primal pass is
  # merged with the caller's gradient and only the tangent pass sits in the cond.
  rng = np.random.default_rng(0)
  xs = jnp.asarray(rng.normal(size=(64, 32)), jnp.float32)
  w = {"a": jnp.asarray(rng.normal(size=(32, 64)) * 0.2, jnp.float32),
       "b": jnp.asarray(rng.normal(size=(64, 64)) * 0.2, jnp.float32)}
  mlp = lambda p: jnp.mean(jnp.tanh(jnp.tanh(xs @ p["a"]) @ p["b"]) ** 2)  # noqa: E731

  def flops(**kw):
    tx = optzoo.adahessian(0.1, **kw)

    def step(p, s):
      _, g = jax.value_and_grad(mlp)(p)
      return tx.update(g, s, p, obj_fn=mlp)

    cost = jax.jit(step).lower(w, tx.init(w)).compile().cost_analysis()
    return (cost[0] if isinstance(cost, list) else cost)["flops"]

  every = flops(update_every=1)
  assert flops(update_every=10, linearize=True) <= 1.02 * every
  assert flops(update_every=10, linearize=False) > 1.1 * every


# ----------------------------------------------------------------------------- averaging
def test_default_averaging_is_over_conv_windows_only():
  rng = np.random.default_rng(0)
  curv = {"conv": jnp.asarray(rng.uniform(0.5, 2.0, (3, 3, 2, 4)), jnp.float32),
          "dense": jnp.asarray(rng.uniform(0.5, 2.0, (4, 5)), jnp.float32),
          "bias": jnp.asarray(rng.uniform(0.5, 2.0, (5,)), jnp.float32)}
  loss = lambda p: sum(jnp.sum(0.5 * curv[k] * p[k] ** 2) for k in p)  # noqa: E731
  params = jax.tree.map(jnp.ones_like, curv)
  state = run(optzoo.adahessian(0.1, b2=0.0), params, 1, loss=loss, obj_fn=True).states[-1]
  d = jax.tree.map(jnp.sqrt, optax.tree.get(state, "nu"))
  np.testing.assert_allclose(d["conv"], jnp.broadcast_to(curv["conv"].mean((0, 1)), (3, 3, 2, 4)),
                             rtol=1e-6)
  np.testing.assert_allclose(d["dense"], curv["dense"], rtol=1e-6)
  np.testing.assert_allclose(d["bias"], curv["bias"], rtol=1e-6)
  # "none" keeps the conv kernel elementwise; "fan_in" averages the dense kernel over axis 0
  state = run(optzoo.adahessian(0.1, b2=0.0, averaging="none"), params, 1, loss=loss,
              obj_fn=True).states[-1]
  np.testing.assert_allclose(jnp.sqrt(optax.tree.get(state, "nu")["conv"]), curv["conv"], rtol=1e-6)
  state = run(optzoo.adahessian(0.1, b2=0.0, averaging="fan_in"), params, 1, loss=loss,
              obj_fn=True).states[-1]
  np.testing.assert_allclose(jnp.sqrt(optax.tree.get(state, "nu")["dense"]),
                             jnp.broadcast_to(curv["dense"].mean(0), (4, 5)), rtol=1e-6)


def test_block_and_callable_averaging():
  x = jnp.arange(12.0).reshape(6, 2)
  np.testing.assert_array_equal(average_curvature(x, 3), block_mean(x, 3, axis=0))
  np.testing.assert_array_equal(block_mean(x, 3)[:, 0], [2.0, 2.0, 2.0, 8.0, 8.0, 8.0])
  np.testing.assert_array_equal(average_curvature(x[:, 0], 3), x[:, 0])  # vectors: untouched
  with pytest.raises(ValueError, match="does not divide"):
    block_mean(x, 4)
  with pytest.raises(ValueError, match="does not divide"):
    optzoo.adahessian(0.1, averaging=4).init({"w": jnp.zeros((6, 2))})
  seen = []

  def custom(path, leaf):
    seen.append(jax.tree_util.keystr(path))
    return jnp.full_like(leaf, 2.0) if "w" in jax.tree_util.keystr(path) else leaf

  loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["b"] ** 2)  # noqa: E731
  state = run(optzoo.adahessian(0.1, b2=0.0, averaging=custom),
              {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}, 1, loss=loss, obj_fn=True).states[-1]
  assert sorted(set(seen)) == ["['b']", "['w']"]
  np.testing.assert_array_equal(optax.tree.get(state, "nu")["w"], jnp.full((2, 2), 4.0))


# ----------------------------------------------------------------------------- API and errors
def test_missing_obj_fn_is_a_clear_error():
  """The one missing-objective error of the zoo (a ValueError, as optax.contrib.sophia)."""
  tx = optzoo.adahessian(0.1)
  params = jnp.ones(3)
  with pytest.raises(ValueError) as err:
    tx.update(params, tx.init(params), params)
  msg = str(err.value)
  assert "scale_by_adahessian" in msg and "obj_fn=loss_fn" in msg and "tx.update(" in msg
  with pytest.raises(ValueError, match="needs params"):  # obj_fn alone is not enough
    tx.update(params, tx.init(params), None, obj_fn=lambda p: jnp.sum(p**2))
  # hvp_fn or hessian_diag stand in for obj_fn, without params
  core = optzoo.scale_by_adahessian()
  for extra in ({"hessian_diag": jnp.ones(3)}, {"hvp_fn": lambda z: 2.0 * z}):
    u, _ = core.update(params, core.init(params), None, **extra)
    assert u.shape == (3,)


def test_hessian_diag_keyword_uses_the_given_estimate():
  a = jnp.array([0.5, 2.0, 10.0])
  loss = lambda th: 0.5 * jnp.sum(a * th**2)  # noqa: E731
  t_obj = run(optzoo.adahessian(0.1), jnp.ones(3), 5, loss=loss, obj_fn=True).params
  t_diag = run(optzoo.adahessian(0.1), jnp.ones(3), 5, loss=loss,
               extra_args=lambda p: {"hessian_diag": -a}).params  # sign is irrelevant: |.| is used
  np.testing.assert_array_equal(t_obj[-1], t_diag[-1])


def test_bf16_params_keep_float32_curvature_moment():
  params = {"w": jnp.ones((3, 2), jnp.bfloat16)}
  loss = lambda p: jnp.sum(p["w"].astype(jnp.float32) ** 2)  # noqa: E731
  tx = optzoo.adahessian(0.1)
  state = tx.init(params)
  u, state = tx.update(jax.grad(loss)(params), state, params, obj_fn=loss)
  assert u["w"].dtype == jnp.bfloat16
  assert optax.tree.get(state, "nu")["w"].dtype == jnp.float32
  assert optax.tree.get(state, "mu")["w"].dtype == jnp.bfloat16
  with pytest.raises(TypeError, match=r"\['i'\].*floating-point leaves.*frozen_objective"):
    tx.init({"i": jnp.zeros(3, jnp.int32)})


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"hessian_power": 1.5}, ValueError, "hessian_power"),
    ({"hessian_power": -0.1}, ValueError, "hessian_power"),
    ({"b1": 1.0}, ValueError, "b1"),
    ({"b2": -0.1}, ValueError, "b2"),
    ({"eps": -1e-4}, ValueError, "eps"),
    ({"weight_decay": -1.0}, ValueError, "weight_decay"),
    ({"update_every": 0}, ValueError, "update_every"),
    ({"update_every": 2.0}, TypeError, "update_every"),
    ({"n_samples": 0}, ValueError, "n_samples"),
    ({"averaging": "bogus"}, ValueError, "averaging"),
    ({"key": jnp.zeros(3)}, TypeError, "key"),
])
def test_validation(kwargs, exc, name):
  with pytest.raises(exc, match=name):
    optzoo.adahessian(0.1, **kwargs)


@settings(max_examples=6, deadline=None)
@given(n_samples=st.integers(1, 3), key=st.integers(0, 1000))
def test_n_samples_averages_signed_estimates(n_samples, key):
  """With b2 = 0, nu = (mean_s z_s * H z_s)^2, averaged before the absolute value."""
  loss = _coupled_loss
  p0 = {"x": jnp.linspace(-1.0, 1.0, 4), "y": jnp.linspace(2.0, 0.5, 4)}
  state = run(optzoo.adahessian(0.1, b2=0.0, n_samples=n_samples, key=key), p0, 1, loss=loss,
              obj_fn=True).states[-1]
  _, sub = jax.random.split(jax.random.PRNGKey(key))
  est = curvature.hutchinson_diagonal(loss, p0, sub, n_samples=n_samples)
  for name in p0:
    np.testing.assert_allclose(optax.tree.get(state, "nu")[name], est[name] ** 2, rtol=1e-5)


# ----------------------------------------------------------------------------- zero curvature
def _rank_one_loss(p):
  """A 4-parameter loss with a rank-one Hessian (all ones): H z = 0 whenever sum(z) = 0."""
  return 0.5 * (jnp.sum(p) - 5.9) ** 2


def _run(tx, loss, p0, steps):
  """(params after each step, final state) of ``steps`` steps with ``obj_fn=loss``."""
  r = run(tx, p0, steps, loss=loss, obj_fn=True)
  return r.params, r.states[-1]


def test_a_probe_that_cancels_gives_a_zero_step_not_m_over_eps():
  """About 3 probes in 8 give H z = 0 here; the first step is then 0 (v = 0), not lr * g / eps
  (-7e4 per coordinate at these settings, loss 17.4 -> 1.8e9), and training goes on."""
  p0 = jnp.zeros(4)
  cancelling = []
  for key in range(16):
    tx = optzoo.adahessian(0.15, key=key)
    traj, state = _run(tx, _rank_one_loss, p0, 1)
    if float(optax.tree.get(state, "nu").max()) == 0.0:
      cancelling.append(key)
      np.testing.assert_array_equal(traj[0], p0)  # no curvature seen: no step
      assert float(jnp.abs(optax.tree.get(state, "mu")).min()) > 0  # the momentum is kept
    else:
      assert float(_rank_one_loss(traj[0])) < float(_rank_one_loss(p0))
  assert 2 <= len(cancelling) <= 12, cancelling
  traj, _ = _run(optzoo.adahessian(0.15, key=cancelling[0]), _rank_one_loss, p0, 40)
  losses = [float(_rank_one_loss(p)) for p in traj]
  assert all(np.isfinite(losses)) and max(losses) <= float(_rank_one_loss(p0))
  assert losses[-1] < 1e-2 * float(_rank_one_loss(p0))


def test_zero_curvature_coordinates_do_not_move_but_the_others_do():
  """A coordinate the loss is linear in has v = 0: step 0 (documented), the rest train."""
  loss = lambda p: jnp.sum((p[:2] - 1.0) ** 2) + 3.0 * p[2]  # noqa: E731
  traj, state = _run(optzoo.adahessian(0.1), loss, jnp.zeros(3), 5)
  assert float(traj[-1][2]) == 0.0 and bool(jnp.all(traj[-1][:2] > 0.2))
  assert float(optax.tree.get(state, "nu")[2]) == 0.0
  # hessian_power = 0 ignores the curvature, so the zero-curvature rule does not apply
  traj, _ = _run(optzoo.adahessian(0.1, hessian_power=0.0), loss, jnp.zeros(3), 1)
  assert float(traj[0][2]) < 0.0


# ----------------------------------------------------------------------------- layouts
def _nu_after_one_step(prob, *variants):
  """AdaHessian's ``nu`` after one step from ``prob``'s init, for each dict of arguments in
  ``variants`` (in that order), as ``{leaf path: nu}``. All variants run in one jitted function:
  their gradients and Hessian-vector products (same params, same key) are one computation for
  XLA, so the model's HVP compiles once."""
  params = prob.init()
  txs = [optzoo.adahessian(0.1, b2=0.0, **kwargs) for kwargs in variants]

  @jax.jit
  def steps(p, states):
    g = jax.grad(prob.loss)(p)
    return [tx.update(g, s, p, obj_fn=prob.loss)[1] for tx, s in zip(txs, states)]

  out = steps(params, [tx.init(params) for tx in txs])
  return [{"/".join(layouts.path_names(k)): v for k, v in
           jax.tree_util.tree_flatten_with_path(optax.tree.get(state, "nu"))[0]}
          for state in out]


def test_transformer_attention_kernels_are_not_averaged():
  prob = models.get("transformer")
  default, none = _nu_after_one_step(prob, {}, {"averaging": "none"})
  assert "block/attn/query/kernel" in default and default["block/attn/query/kernel"].ndim == 3
  for name in default:
    np.testing.assert_array_equal(default[name], none[name], err_msg=name)


def test_cnn_conv_kernels_are_averaged_over_their_window_only():
  prob = models.get("cnn")
  default, none = _nu_after_one_step(prob, {}, {"averaging": "none"})
  for name in default:
    if name.endswith("conv1/kernel") or name.endswith("conv2/kernel"):
      want = jnp.broadcast_to(jnp.sqrt(none[name]).mean((0, 1), keepdims=True), none[name].shape)
      np.testing.assert_allclose(jnp.sqrt(default[name]), want, rtol=1e-5)
      assert not np.allclose(default[name], none[name])
    else:
      np.testing.assert_array_equal(default[name], none[name], err_msg=name)


def test_scanned_stack_is_an_error_naming_the_leaf_and_never_averaged_across_layers():
  prob = models.get("scanned")
  with pytest.raises(layouts.AmbiguousLayoutError, match="blocks/.*kernel.*stack_axes"):
    optzoo.adahessian(0.1).init(prob.init())
  none, *defaults, fan_in = _nu_after_one_step(
      prob, {"averaging": "none"}, {"layouts": prob.layouts}, {"stack_axes": {"blocks": 1}},
      {"averaging": "fan_in", "stack_axes": {"blocks": 1}})
  for default in defaults:
    for name in default:
      np.testing.assert_array_equal(default[name], none[name], err_msg=name)
  # the two layers' curvature really differs (averaging over the layer axis would mix it)
  k = none["blocks/up/kernel"]
  assert k.shape[0] == 2 and not np.allclose(k[0], k[1])
  # fan_in on the stack: per layer, over the fan-in axis only
  want = jnp.broadcast_to(jnp.sqrt(k).mean(1, keepdims=True), k.shape)
  np.testing.assert_allclose(jnp.sqrt(fan_in["blocks/up/kernel"]), want, rtol=1e-5)


def test_average_curvature_reads_the_layout():
  d = jnp.arange(24.0).reshape(2, 3, 4)
  # a 1-D conv kernel (width, in, out): over the window only
  np.testing.assert_allclose(average_curvature(d, "official", layout=layouts.conv(3)),
                             jnp.broadcast_to(d.mean(0, keepdims=True), d.shape))
  # a stack of 2 dense kernels: official leaves it, fan_in averages axis 1, blocks along axis 1
  stack = layouts.dense().shifted(1)
  np.testing.assert_array_equal(average_curvature(d, "official", layout=stack), d)
  np.testing.assert_allclose(average_curvature(d, "fan_in", layout=stack),
                             jnp.broadcast_to(d.mean(1, keepdims=True), d.shape))
  np.testing.assert_array_equal(average_curvature(d, 3, layout=stack), block_mean(d, 3, axis=1))
  # without a layout, the default rule: a 3-D leaf named nothing is ambiguous
  with pytest.raises(layouts.AmbiguousLayoutError):
    average_curvature(d, "official")
  assert average_curvature(d, "none") is d


# ----------------------------------------------------------------------------- masking, inputs
def test_inside_partition_a_plain_obj_fn_is_a_clear_error():
  params = {"w": jnp.ones(3), "frozen": jnp.full(2, 5.0)}
  loss = lambda p: jnp.sum((p["w"] - 2.0) ** 2) + jnp.sum(p["frozen"] ** 2)  # noqa: E731
  for wrap in (lambda tx: optax.partition({"train": tx, "freeze": optax.set_to_zero()},
                                          {"w": "train", "frozen": "freeze"}),
               lambda tx: optax.masked(tx, {"w": True, "frozen": False})):
    tx = wrap(optzoo.adahessian(0.1))
    state = tx.init(params)
    g = jax.grad(loss)(params)
    with pytest.raises(ValueError, match=r"optzoo\.frozen_objective\(loss_fn, params\)"):
      tx.update(g, state, params, obj_fn=loss)
    u, _ = tx.update(g, state, params, obj_fn=optzoo.frozen_objective(loss, params))
    assert float(jnp.max(jnp.abs(u["w"]))) > 0


def test_complex_int_shape_and_empty_inputs():
  tx = optzoo.adahessian(0.1)
  with pytest.raises(TypeError, match=r"\['layer'\]\['z'\].*complex"):
    tx.init({"layer": {"z": jnp.ones(2, jnp.complex64)}})
  with pytest.raises(TypeError, match=r"\['layer'\]\['n'\]"):
    tx.init({"layer": {"w": jnp.ones(2), "n": jnp.arange(2)}})
  params = {"layer": {"w": jnp.ones((3, 2)), "b": jnp.ones(2)}}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p["layer"]["w"] ** 2)  # noqa: E731
  for bad in (jnp.ones((2, 3)), jnp.ones((1, 2))):
    with pytest.raises(ValueError, match=r"\['layer'\]\['w'\]"):
      tx.update({"layer": {"w": bad, "b": jnp.ones(2)}}, state, params, obj_fn=loss)
  u, _ = tx.update({}, tx.init({}), {}, obj_fn=lambda p: 0.0)
  assert u == {}
