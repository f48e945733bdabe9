"""optzoo.workloads: the comparison's real-data problems and their pieces (the patch convolution,
the one-draw nnx initialisation, the Workload checks). The protocol that trains them is tested in
compare_test.py and leaderboard_test.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from optzoo import workloads


@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (2, 1)])
@pytest.mark.parametrize("hw, window", [((8, 8), (3, 3)), ((7, 5), (3, 2))])
def test_conv_via_patches_equals_xlas_convolution(strides, hw, window):
  k1, k2 = jax.random.split(jax.random.PRNGKey(0))
  x = jax.random.normal(k1, (2, *hw, 3))
  w = jax.random.normal(k2, (*window, 3, 5))
  want = jax.lax.conv_general_dilated(x, w, strides, "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))
  got = jax.jit(lambda x, w: workloads.conv_via_patches(x, w, strides, "SAME"))(x, w)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_via_patches_refuses_what_it_does_not_compute():
  x, w = jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1))
  with pytest.raises(NotImplementedError, match="SAME"):
    workloads.conv_via_patches(x, w, (1, 1), "VALID")
  with pytest.raises(NotImplementedError, match="dilation"):
    workloads.conv_via_patches(x, w, (1, 1), "SAME", rhs_dilation=(2, 2))


def test_one_draw_init_keeps_the_models_shapes_constants_and_scales():
  build = lambda rngs: nnx.Sequential(nnx.Linear(256, 128, rngs=rngs),  # noqa: E731
                                      nnx.LayerNorm(128, rngs=rngs))
  _, template = nnx.split(build(nnx.Rngs(0)), nnx.Param)
  _, init = workloads._nnx_init(build)
  a, b = init(jax.random.PRNGKey(1)), init(jax.random.PRNGKey(2))
  for t, x, y in zip(jax.tree.leaves(template), jax.tree.leaves(a), jax.tree.leaves(b)):
    assert x.shape == t.shape and x.dtype == t.dtype
    if np.std(np.asarray(t)) == 0:  # biases, LayerNorm scale: kept
      np.testing.assert_array_equal(x, t)
      np.testing.assert_array_equal(y, t)
    else:  # redrawn with the template's spread, differently per key
      assert np.std(np.asarray(x)) == pytest.approx(np.std(np.asarray(t)), rel=0.05)
      assert not np.array_equal(x, y)


def test_digits_is_a_fixed_disjoint_split_and_starts_at_chance():
  w = workloads.digits(steps=10, batch=32, eval_every=5)
  assert (w.info["train"], w.info["validation"]) == (1437, 360)
  params = jax.jit(w.init)(jax.random.PRNGKey(0))
  xb, yb = w.batch_fn(jax.random.PRNGKey(3), 0)
  assert xb.shape == (32, 8, 8, 1) and yb.shape == (32,)
  np.testing.assert_array_equal(w.batch_fn(jax.random.PRNGKey(3), 0)[0], xb)  # per key
  ev = jax.jit(w.eval_fn)(params)
  assert abs(float(ev["loss"]) - np.log(10)) < 0.5 and 0.0 <= float(ev["accuracy"]) <= 0.3
  assert w.metric == "validation loss" and not w.full_batch


def test_charlm_reads_the_same_corpus_every_time_and_starts_near_uniform():
  a = workloads.charlm(steps=10, eval_every=5, width=16, budget=50_000)
  text, files = workloads.corpus(50_000)
  assert a.info["bytes"] == len(text) == 50_000 and a.info["files"] == files
  assert workloads.corpus(50_000)[0] == text
  params = jax.jit(a.init)(jax.random.PRNGKey(0))
  assert sum(x.size for x in jax.tree.leaves(params)) == a.info["params"]
  batch = a.batch_fn(jax.random.PRNGKey(0), 0)
  assert batch.shape == (16, 33) and int(batch.max()) < 128
  assert abs(float(jax.jit(a.eval_fn)(params)["loss"]) - np.log(128)) < 1.0


def test_logistic_reports_the_suboptimality_of_the_exact_optimum():
  """L-BFGS drives ``f - f*`` to 0, never below: f* is the exact minimum."""
  w = workloads.logistic(steps=10)
  params = w.init(jax.random.PRNGKey(0))
  assert float(w.loss(params)) > 0.01
  opt = optax.lbfgs()
  state = opt.init(params)
  step = jax.jit(lambda p, s: _lbfgs_step(opt, w.loss, p, s))
  for _ in range(200):
    params, state = step(params, state)
  assert -1e-6 < float(w.loss(params)) < 1e-5


def _lbfgs_step(opt, loss, params, state):
  value, grad = jax.value_and_grad(loss)(params)
  updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=loss)
  return optax.apply_updates(params, updates), state


def test_rosenbrock_is_zero_at_its_minimizer_and_records_coordinates():
  w = workloads.rosenbrock(steps=10)
  x0 = w.init(jax.random.PRNGKey(0))
  np.testing.assert_array_equal(x0, np.float32([-1.2, 1.0]))
  assert float(w.loss(jnp.ones(2))) == 0.0 and float(w.loss(x0)) == pytest.approx(24.2)
  ev = w.eval_fn(x0)
  assert (float(ev["x"]), float(ev["y"])) == (pytest.approx(-1.2), 1.0) and w.full_batch


def test_a_workload_checks_its_fields_by_name():
  ok = dict(name="w", init=lambda k: jnp.zeros(2), loss=lambda p: jnp.sum(p ** 2), steps=10)
  with pytest.raises(ValueError, match="eval_every=3 must divide steps=10"):
    workloads.Workload(**ok, eval_every=3)
  with pytest.raises(ValueError, match="steps must be a positive int"):
    workloads.Workload(**{**ok, "steps": 0})
  with pytest.raises(TypeError, match="loss must be callable"):
    workloads.Workload(**{**ok, "loss": 1.0})
  with pytest.raises(ValueError, match="name"):
    workloads.Workload(**{**ok, "name": ""})


def test_defaults_with_steps_and_the_default_evaluation():
  w = workloads.Workload("w", lambda k: jnp.zeros(2), lambda p: jnp.sum((p - 1.0) ** 2), 100)
  assert w.eval_every == 10 and w.metric == "loss" and w.full_batch
  assert w.with_steps(50).eval_every == 10 and w.with_steps(7).eval_every == 1
  assert float(w.evaluate()(jnp.zeros(2))) == 2.0
  mb = workloads.Workload("mb", lambda k: jnp.zeros(()), lambda p, b: (p - b) ** 2, 20,
                          batch_fn=lambda key, step: jax.random.normal(key, ()))
  fixed = mb.batch_fn(jax.random.PRNGKey(0), 0)  # the default evaluation's one fixed batch
  assert float(mb.evaluate()(jnp.zeros(()))) == pytest.approx(float(fixed) ** 2)
  assert mb.metric == "loss on a fixed batch"
