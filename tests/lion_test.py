"""Lion against its exact oracle, optax.lion, plus the spec's invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optzoo

from helpers import run


def _mlp_params(dtype, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  params = {
      "dense1": {"kernel": jax.random.normal(keys[0], (8, 16)), "bias": jnp.zeros(16)},
      "dense2": {"kernel": jax.random.normal(keys[1], (16, 4)), "bias": jnp.zeros(4)},
      "scale": jax.random.uniform(keys[2], (4,)),
  }
  return jax.tree.map(lambda x: x.astype(dtype), params)


def _mlp_loss(params, x, y):
  h = jnp.tanh(x @ params["dense1"]["kernel"] + params["dense1"]["bias"][None, :])
  out = ((h @ params["dense2"]["kernel"] + params["dense2"]["bias"][None, :])
         * params["scale"][None, :])
  return jnp.mean((out.astype(jnp.float32) - y) ** 2)


def _minibatch_grads(params, steps, seed=1):
  """grads(params, t) of the MLP loss on minibatch t of a fixed random stream (for run)."""
  rng = np.random.default_rng(seed)
  xs = jnp.asarray(rng.normal(size=(steps, 32, 8)), jnp.float32).astype(
      jax.tree.leaves(params)[0].dtype)
  ys = jnp.asarray(rng.normal(size=(steps, 32, 4)), jnp.float32)
  return lambda p, t: jax.grad(_mlp_loss)(p, xs[t], ys[t])


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_equals_optax_lion_for_100_steps(dtype, weight_decay):
  params = _mlp_params(dtype)
  mask = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
  ours = optzoo.lion(3e-3, b1=0.9, b2=0.99, weight_decay=weight_decay, mask=mask)
  ref = optax.lion(3e-3, b1=0.9, b2=0.99, weight_decay=weight_decay, mask=mask)
  t_ours = run(ours, params, 100, grads=_minibatch_grads(params, 100)).params
  t_ref = run(ref, params, 100, grads=_minibatch_grads(params, 100)).params
  for a, b in zip(jax.tree.leaves(t_ours), jax.tree.leaves(t_ref)):
    assert a.dtype == dtype
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=1e-6, atol=0)


@pytest.mark.standard_promotion(
    "mu_dtype=bfloat16 with float32 gradients: the momentum update (optax.tree.update_moment, "
    "in optzoo.lion and optax.lion alike) and the direction add bfloat16 to float32")
def test_schedule_and_mu_dtype_match_optax():
  params = _mlp_params(jnp.float32)
  sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 100)
  ours = optzoo.lion(sched, mu_dtype=jnp.bfloat16)
  ref = optax.lion(sched, mu_dtype=jnp.bfloat16)
  grads = _minibatch_grads(params, 50)
  for a, b in zip(jax.tree.leaves(run(ours, params, 50, grads=grads).params),
                  jax.tree.leaves(run(ref, params, 50, grads=grads).params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  state = ours.init(params)
  assert all(m.dtype == jnp.bfloat16 for m in jax.tree.leaves(state[0].mu))


def test_lr_free_update_is_a_sign():
  tx = optzoo.scale_by_lion()
  params = _mlp_params(jnp.float32)
  state = tx.init(params)
  rng = np.random.default_rng(0)
  seen = set()
  for i in range(10):
    g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
    if i == 3:  # exact zeros stay zero when the momentum is zero too
      g = jax.tree.map(jnp.zeros_like, g)
    u, state = tx.update(g, state)
    for leaf in jax.tree.leaves(u):
      vals = set(np.unique(np.asarray(leaf)).tolist())
      assert vals <= {-1.0, 0.0, 1.0}, vals
      seen |= vals
  assert seen >= {-1.0, 1.0}


def test_first_step_closed_form():
  """Spec 6: theta_1 = theta_0 (1 - lr wd) - lr sign(g_1); mu_1 = (1 - b2) g_1."""
  theta = jnp.array([1.0, -2.0, 0.5, 3.0])
  g = jnp.array([0.3, -1e-30, 0.0, -4.0])
  lr, wd, b2 = 0.1, 0.01, 0.99
  tx = optzoo.lion(lr, b2=b2, weight_decay=wd)
  state = tx.init(theta)
  u, state = tx.update(g, state, theta)
  np.testing.assert_allclose(theta + u, theta * (1 - lr * wd) - lr * jnp.sign(g), rtol=1e-6)
  np.testing.assert_allclose(state[0].mu, (1 - b2) * g, rtol=1e-6)


@settings(max_examples=15, deadline=None)
@given(exponent=st.integers(-20, 20), seed=st.integers(0, 2**16))
def test_power_of_two_gradient_scaling_is_bitwise_invariant(exponent, seed):
  params = _mlp_params(jnp.float32, seed=seed % 7)
  scale = 2.0**exponent
  tx = optzoo.lion(1e-2, weight_decay=1e-3)

  def run(s):
    p, st_ = params, tx.init(params)
    key = jax.random.PRNGKey(seed)
    for _ in range(6):
      key, sub = jax.random.split(key)
      g = jax.tree.map(lambda x: jax.random.normal(sub, x.shape) * s, p)
      u, st_ = tx.update(g, st_, p)
      p = optax.apply_updates(p, u)
    return p

  for a, b in zip(jax.tree.leaves(run(1.0)), jax.tree.leaves(run(scale))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_step_is_bounded_by_lr():
  """Spec 6: ||dtheta||_inf <= lr (1 + wd ||theta||_inf) on f = 0.5||theta||^2."""
  lr, wd = 0.05, 0.1
  tx = optzoo.lion(lr, weight_decay=wd)
  theta = jnp.linspace(-3.0, 3.0, 11)
  state = tx.init(theta)
  for _ in range(200):
    u, state = tx.update(theta, state, theta)
    assert float(jnp.max(jnp.abs(u))) <= lr * (1 + wd * float(jnp.max(jnp.abs(theta)))) + 1e-7
    theta = theta + u
  assert float(jnp.max(jnp.abs(theta))) <= 2 * lr


@pytest.mark.parametrize("kwargs, arg", [
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": 1e-3, "b1": 1.0}, "b1"),
    ({"learning_rate": 1e-3, "b2": -0.1}, "b2"),
    ({"learning_rate": 1e-3, "weight_decay": -1.0}, "weight_decay"),
])
def test_bad_hyperparameters_are_named(kwargs, arg):
  with pytest.raises(ValueError, match=arg):
    optzoo.lion(**kwargs)


def test_traced_hyperparameters_are_not_validated():
  params = jnp.ones(3)
  tx = optax.inject_hyperparams(optzoo.lion)(learning_rate=1e-2, b1=0.9)

  @jax.jit
  def step(p, s):
    u, s = tx.update(p, s, p)
    return optax.apply_updates(p, u), s

  p, s = step(params, tx.init(params))
  assert s.hyperparams["b1"].dtype == jnp.float32
  np.testing.assert_allclose(p, params - 1e-2 * (1 + 1e-3), rtol=1e-6)


def test_structure_mismatch_names_both_structures():
  tx = optzoo.lion(1e-3)
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  state = tx.init(params)
  with pytest.raises(ValueError, match="different structures") as err:
    tx.update({"a": jnp.ones(2), "c": jnp.ones(3)}, state, params)
  assert "'c'" in str(err.value) and "'b'" in str(err.value)


def test_watchable_state_field():
  tx = optzoo.lion(1e-3)
  state = tx.init({"w": jnp.ones(2)})
  mu = optax.tree.get(state, "mu")
  assert mu["w"].shape == (2,)
