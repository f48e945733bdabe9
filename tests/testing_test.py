"""The conformance kit itself: it passes optax's own optimizers and catches broken ones."""

import jax
import jax.numpy as jnp
import optax
import pytest

import optzoo
from optzoo import testing


def test_state_bytes_counts_every_leaf():
  params = {"a": jnp.zeros((10, 10)), "b": jnp.zeros(5, jnp.bfloat16)}
  st = optax.adam(1e-3).init(params)
  # mu and nu in the params' dtypes + the int32 count
  assert optzoo.state_bytes(st) == 2 * (100 * 4 + 5 * 2) + 4
  assert optzoo.bytes_per_param(optax.sgd(1e-3), params) == 0.0


@pytest.mark.standard_promotion("the kit runs optax.adam, whose bias correction computes "
                                 "float ** int32")
def test_optax_adam_passes_the_kit_except_validation():
  report = testing.check_optimizer(
      optax.adam, {"learning_rate": 1e-2},
      checks=[c for c in testing.CHECKS if c not in ("validation", "convergence")])
  assert report["jit"] == "ok"
  # this process sees one CPU device (the multi-device run is tests/sharding_child.py)
  assert jax.device_count() == 1 and report["sharding"].startswith("skipped: needs >= 2 devices")
  with pytest.raises(testing.ConformanceError, match="validation"):
    testing.check_optimizer(optax.adam, {"learning_rate": 1e-2}, checks=["validation"])


def test_kit_catches_state_that_ignores_nan_protection():
  """An optimizer whose update leaks a NaN into params fails apply_if_finite? No: the wrapper
  protects it. But one that mutates state on every call with different shapes fails dtypes."""

  def shape_drift(learning_rate):
    def init(params):
      return {"count": jnp.zeros([], jnp.int32)}

    def update(updates, state, params=None):
      # the drift, explicit: the int32 count comes back as float32
      return (optax.tree.scale(-learning_rate, updates),
              {"count": state["count"].astype(jnp.float32) + 1.0})

    return optax.GradientTransformation(init, update)

  with pytest.raises(testing.ConformanceError, match="dtypes"):
    testing.check_optimizer(shape_drift, {"learning_rate": 0.1}, checks=["dtypes"])


def test_kit_catches_an_optimizer_that_does_not_converge():
  with pytest.raises(testing.ConformanceError, match="convergence"):
    testing.check_optimizer(optax.sgd, {"learning_rate": 1e-6}, checks=["convergence"],
                            convergence_steps=100)


def test_kit_catches_ignored_schedules():
  def fixed_lr(learning_rate):
    lr = 0.01 if callable(learning_rate) else learning_rate  # silently drops schedules
    return optax.sgd(lr)

  with pytest.raises(testing.ConformanceError, match="constant_schedule"):
    testing.check_optimizer(fixed_lr, {"learning_rate": 0.1}, checks=["constant_schedule"])


def test_kit_catches_state_buffers_shared_across_inits():
  def shared_buffer(learning_rate):
    captured = jnp.zeros([], jnp.int32)  # built once, handed out by every init

    def init(params):
      del params
      return {"count": captured}

    def update(updates, state, params=None):
      return optax.tree.scale(-learning_rate, updates), {"count": state["count"] + 1}

    return optax.GradientTransformation(init, update)

  with pytest.raises(testing.ConformanceError, match="donation"):
    testing.check_optimizer(shared_buffer, {"learning_rate": 0.1}, checks=["donation"])
  assert testing.check_optimizer(optax.sgd, {"learning_rate": 0.1},
                                 checks=["donation"]) == {"donation": "ok"}
