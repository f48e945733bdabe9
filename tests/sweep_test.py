"""optzoo.sweep: one compilation per sweep, and every grid point is its own plain run."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optzoo
from optzoo import registry, sweep
from optzoo.training import CompileCounter

# every test here runs optax code that strict promotion refuses
pytestmark = pytest.mark.standard_promotion(
    "the sweeps run optax.adam and optax's schedules (float ** int32, int32 counts mixed with "
    "floats)")

STEPS = 24
X = jax.random.normal(jax.random.PRNGKey(42), (64, 5))
Y = X @ jnp.arange(1.0, 6.0) + 0.1 * jax.random.normal(jax.random.PRNGKey(43), (64,))
SCHED = optax.warmup_cosine_decay_schedule(0.0, 1.0, 4, STEPS)


def init(key):
  return {"w": 0.1 * jax.random.normal(key, (5,)), "b": jnp.zeros(())}


def loss(params, batch):
  x, y = batch
  return jnp.mean((x @ params["w"] + params["b"] - y) ** 2)


def full_loss(params):
  return loss(params, (X, Y))


def batch_fn(key, _step):
  i = jax.random.randint(key, (8,), 0, X.shape[0])
  return X[i], Y[i]


def plain_run(tx, seed, extra_args=(), steps=STEPS, minibatch=True):
  """The documented recipe of one sweep run, as an ordinary loop (no vmap)."""
  init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
  params = init(init_key)
  state = tx.init(params)

  @jax.jit
  def step(params, state, t):
    if minibatch:
      batch = batch_fn(jax.random.fold_in(data_key, t), t)
      obj = lambda p: loss(p, batch)  # noqa: E731
    else:
      obj = full_loss
    value, grads = jax.value_and_grad(obj)(params)
    extra = {"obj_fn": obj} if "obj_fn" in extra_args else {}
    updates, state = tx.update(grads, state, params, **extra)
    return optax.apply_updates(params, updates), state, value

  losses = []
  for t in range(steps):
    params, state, value = step(params, state, jnp.asarray(t))
    losses.append(float(value))
  return np.asarray(losses), params


def test_a_whole_grid_and_its_seeds_is_one_compilation():
  grid = {"learning_rate": [1e-3, 1e-2, 1e-1], "b1": [0.8, 0.9]}
  with CompileCounter() as c:
    res = sweep.sweep(optax.adam, loss, init, STEPS, grid=grid, seeds=3, schedule=SCHED,
                      batch_fn=batch_fn, eval_fn=full_loss, eval_every=8)
  assert c.count == 1 and res.compilations == 1
  assert res.losses.shape == (6, 3, STEPS)
  assert res.evals["loss"].shape == (6, 3, STEPS // 8 + 1)
  assert res.eval_steps.tolist() == [0, 8, 16, 24]
  assert res.points["learning_rate"].tolist() == pytest.approx([1e-3] * 2 + [1e-2] * 2 + [1e-1] * 2)
  assert res.points["b1"].tolist() == pytest.approx([0.8, 0.9] * 3)
  assert res.seeds.tolist() == [[0, 1, 2]] * 6
  # a sweep over new values of the same shape reuses nothing of the old closure: one more
  with CompileCounter() as c:
    sweep.sweep(optax.adam, loss, init, STEPS, grid={"learning_rate": [3e-3, 3e-2]}, seeds=2,
                batch_fn=batch_fn)
  assert c.count == 1


def test_a_compiled_sweep_runs_new_values_without_compiling():
  prog = sweep.compile_sweep(optax.adam, loss, init, STEPS, names=("learning_rate",),
                             shape=(3, 1), batch_fn=batch_fn, eval_fn=full_loss)
  assert prog.compilations == 1
  first = prog.run({"learning_rate": [1e-3, 1e-2, 1e-1]}, [[0], [0], [0]])
  with CompileCounter() as c:
    again = prog.run({"learning_rate": [1e-2] * 3}, [[1], [2], [3]])
  assert c.count == 0 and again.compilations == 0
  # the best point, re-run on fresh seeds: point 1 with seed 0 is the first run's point 1
  same = prog.run({"learning_rate": [1e-2] * 3}, [[0], [1], [2]])
  np.testing.assert_array_equal(same.losses[0], first.losses[1])
  assert len({float(v) for v in again.final["loss"][:, 0]}) == 3  # three different seeds


@pytest.mark.parametrize("b1", [0.8, 0.9])
def test_every_grid_point_equals_its_own_plain_run_with_a_schedule(b1):
  lrs = [1e-2, 1e-1]
  res = sweep.sweep(optax.adam, loss, init, STEPS, grid={"learning_rate": lrs, "b1": [b1]},
                    seeds=[0, 5], schedule=SCHED, batch_fn=batch_fn, return_params=True)
  for g, lr in enumerate(lrs):
    for s, seed in enumerate([0, 5]):
      tx = optax.adam(lambda t, lr=lr: lr * SCHED(t), b1=b1)
      want, params = plain_run(tx, seed)
      np.testing.assert_allclose(res.losses[g, s], want, rtol=2e-5, atol=1e-6)
      np.testing.assert_allclose(res.params["w"][g, s], params["w"], rtol=2e-5, atol=1e-6)


def test_an_obj_fn_optimizer_gets_each_steps_batch_loss():
  entry = registry.get("adahessian")  # a registry entry stands in for the factory
  lrs = [0.05, 0.2]
  res = sweep.sweep(entry, loss, init, STEPS, grid={"learning_rate": lrs}, seeds=2,
                    schedule=SCHED, batch_fn=batch_fn)
  assert res.compilations == 1
  for g, lr in enumerate(lrs):
    for seed in range(2):
      tx = optzoo.adahessian(lambda t, lr=lr: lr * SCHED(t))
      want, _ = plain_run(tx, seed, extra_args=("obj_fn",))
      np.testing.assert_allclose(res.losses[g, seed], want, rtol=2e-5, atol=1e-6)


def test_a_hyperparameter_that_sets_the_initial_state_is_swept_from_init():
  # metaoptimize's initial step size lives in its state from init on
  base = optax.scale_by_adam()
  rates = [1e-3, 1e-2]
  res = sweep.sweep(optzoo.metaoptimize, full_loss, init, STEPS, hparams={"base": base},
                    grid={"initial_learning_rate": rates}, seeds=1)
  for g, lr in enumerate(rates):
    want, _ = plain_run(optzoo.metaoptimize(base, lr), 0, minibatch=False)
    np.testing.assert_allclose(res.losses[g, 0], want, rtol=2e-5, atol=1e-6)


def test_no_learning_rate_and_a_nested_learning_rate():
  krylov = registry.get("krylov_cubic_newton")
  res = sweep.sweep(krylov, full_loss, init, 5, seeds=2, eval_fn=full_loss)
  assert res.points == {} and res.losses.shape == (1, 2, 5)
  assert np.all(res.final["loss"] < res.evals["loss"][..., 0])
  with pytest.raises(ValueError, match="no learning-rate argument"):
    sweep.sweep(krylov, full_loss, init, 5, schedule=SCHED)
  # the learning rate of noise_adaptive_layerwise's inner optimizer, through a factory
  def inner_lr(learning_rate):
    return optzoo.noise_adaptive_layerwise(optax.adam(learning_rate))

  res = sweep.sweep(inner_lr, loss, init, STEPS, grid={"learning_rate": [1e-3, 1e-1]},
                    schedule=SCHED, batch_fn=batch_fn)
  want, _ = plain_run(optzoo.noise_adaptive_layerwise(optax.adam(lambda t: 0.1 * SCHED(t))), 0)
  np.testing.assert_allclose(res.losses[1, 0], want, rtol=2e-5, atol=1e-6)


def test_state_fn_records_what_the_optimizer_learns():
  res = sweep.sweep(optzoo.metaoptimize, full_loss, init, STEPS, seeds=1, eval_every=8,
                    hparams={"base": optax.scale_by_adam(), "initial_learning_rate": 1e-3},
                    state_fn=lambda s: {"lr": jnp.exp(optax.tree.get(s, "log_learning_rate"))})
  lr = res.evals["lr"][0, 0]
  assert lr.shape == (STEPS // 8 + 1,) and lr[0] == pytest.approx(1e-3)
  assert not np.allclose(lr[-1], 1e-3)  # learned


def test_best_and_point():
  res = sweep.sweep(optax.sgd, full_loss, init, 30, grid={"learning_rate": [1e-4, 0.1, 10.0]},
                    seeds=2, eval_fn=full_loss)
  assert res.point(res.best()) == {"learning_rate": pytest.approx(0.1)}
  assert np.isnan(res.final["loss"][2]).all() or (res.final["loss"][2] > 1e3).all()  # diverged


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="static"):
    sweep.sweep(optax.adam, full_loss, init, 4, grid={"b1": [0.9]}, static_args=("b1",))
  with pytest.raises(ValueError, match="not an argument"):
    sweep.sweep(optax.adam, full_loss, init, 4, grid={"beta_one": [0.9]})
  with pytest.raises(ValueError, match="must divide"):
    sweep.sweep(optax.adam, full_loss, init, 10, hparams={"learning_rate": 0.1}, eval_every=3)
  with pytest.raises(ValueError, match="neither swept nor in hparams"):
    sweep.sweep(optax.adam, full_loss, init, 4, schedule=SCHED)
  with pytest.raises(ValueError, match="extra update argument"):
    sweep.sweep(optax.adam, full_loss, init, 4, hparams={"learning_rate": 0.1},
                extra_args=("hessian",))


def mlp_init(key):
  k1, k2 = jax.random.split(key)
  return {"hidden": {"kernel": 0.3 * jax.random.normal(k1, (5, 6)), "bias": jnp.zeros(6)},
          "out": {"kernel": 0.3 * jax.random.normal(k2, (6, 1)), "bias": jnp.zeros(1)}}


def mlp_loss(params, batch):
  x, y = batch
  h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"][None])
  out = h @ params["out"]["kernel"] + params["out"]["bias"][None]
  return jnp.mean((out - y[:, None]) ** 2)


@pytest.mark.parametrize("name", registry.names())
def test_every_registry_optimizer_sweeps_in_one_compilation(name):
  """Counted by JAX's compile events over the whole call: nothing an optimizer does at init
  (MetaOptimize's probe of its base, for one) compiles a program of its own."""
  entry = registry.get(name)
  hparams = {k: v for k, v in entry.toy_kwargs.items() if k != entry.lr_arg}
  grid = {entry.lr_arg: [1e-3, 1e-2, 1e-1]} if entry.lr_arg else None
  full_batch = entry.full_batch_only
  with CompileCounter() as c:
    res = sweep.sweep(entry, mlp_loss if not full_batch else lambda p: mlp_loss(p, (X, Y)),
                      mlp_init, 6, grid=grid, hparams=hparams, seeds=2,
                      batch_fn=None if full_batch else batch_fn)
  assert c.count == 1 and res.compilations == 1, (name, c.count)
  assert np.all(np.isfinite(res.losses)), name
