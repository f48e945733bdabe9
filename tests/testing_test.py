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
  # 'models' (two flax models, one compiled training loop each) passes the nine registry
  # entries in conformance_test.py; it is left out here for the suite's time
  report = testing.check_optimizer(
      optax.adam, {"learning_rate": 1e-2},
      checks=[c for c in testing.CHECKS
              if c not in ("validation", "convergence", "bad_input", "models")])
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


# ----------------------------------------------------------------------------- bad inputs
def _subject(factory, **kwargs):
  return testing.Subject(factory=factory, kwargs={"learning_rate": 1e-2, **kwargs},
                         name=getattr(factory, "__name__", "optimizer"))


def test_bad_input_cases_are_documented_in_the_module_docstring():
  assert list(testing.BAD_INPUT_CASES) == [
      "complex_parabola", "int_leaf", "empty_tree", "mismatched_shapes", "huge_gradients",
      "tiny_gradients", "nan_gradients", "inf_gradients", "nan_apply_if_finite",
      "inf_apply_if_finite"]
  for case in testing.BAD_INPUT_CASES:
    assert f"``{case}``" in testing.__doc__, case
  assert "18. ``bad_input``" in testing.__doc__ and "bad_input" in testing.CHECKS


@pytest.mark.standard_promotion(
    'runs the kit on optax.adam (float ** int32)')
def test_optax_adam_bad_inputs_all_correct_but_its_shape_errors_are_not_clear():
  """optax.adam: right results everywhere, but a transposed gradient fails with a broadcasting
  error that names no leaf, and a broadcastable one is accepted silently."""
  out = testing.bad_input_outcomes(_subject(optax.adam))
  assert out["complex_parabola"].startswith("ok: converged")
  assert out["int_leaf"].startswith("ok: int leaf unchanged")
  assert out["empty_tree"] == "ok: empty updates"
  for case in ("huge_gradients", "tiny_gradients"):
    assert out[case] == "ok: finite updates"
  assert out["nan_gradients"] == out["inf_gradients"] == "ok: propagates to the updates"
  assert out["nan_apply_if_finite"].startswith("ok")
  assert out["mismatched_shapes"].startswith("FAIL: (2, 3): TypeError does not name the leaf")
  assert "(1, 2) gradient" in out["mismatched_shapes"] and "accepted" in out["mismatched_shapes"]
  with pytest.raises(testing.ConformanceError, match="bad_input.*mismatched_shapes"):
    testing.check_optimizer(optax.adam, {"learning_rate": 1e-2}, checks=["bad_input"])


def _shape_checked_sgd(learning_rate, swallow_nan=False, overflow=False):
  """SGD that names the leaf of a mismatched gradient; optionally broken."""

  def init(params):
    for path, p in jax.tree_util.tree_flatten_with_path(params)[0]:
      if not jnp.issubdtype(p.dtype, jnp.inexact):
        raise TypeError(f"leaf {jax.tree_util.keystr(path)} is not float")
    return {"shapes": jax.tree.map(jnp.zeros_like, params)}

  def update(updates, state, params=None):
    for (path, g), s in zip(jax.tree_util.tree_flatten_with_path(updates)[0],
                            jax.tree.leaves(state["shapes"])):
      if g.shape != s.shape:
        raise ValueError(f"gradient of {jax.tree_util.keystr(path)} has shape {g.shape}")
    if swallow_nan:
      updates = jax.tree.map(jnp.nan_to_num, updates)
    if overflow:
      updates = jax.tree.map(lambda g: g * g / jnp.sqrt(g * g * g * g), updates)
    return jax.tree.map(lambda g: -learning_rate * g, updates), state

  return optax.GradientTransformation(init, update)


def test_a_careful_optimizer_passes_and_broken_ones_fail_their_cases():
  out = testing.bad_input_outcomes(_subject(_shape_checked_sgd))
  assert all(v.startswith("ok") for v in out.values()), out
  assert out["int_leaf"] == "ok: clear TypeError naming ['layer']['n']"
  assert out["mismatched_shapes"] == "ok: clear ValueError naming ['layer']['w']"
  # nan_to_num silently turns a NaN or Inf gradient into a finite step: a silent wrong result
  out = testing.bad_input_outcomes(_subject(_shape_checked_sgd, swallow_nan=True),
                                   cases=["nan_gradients", "inf_gradients"])
  assert all("silently absorbed" in v for v in out.values()), out
  # g^2 / sqrt(g^4) overflows for 1e20 and underflows to 0/0 for 1e-30
  out = testing.bad_input_outcomes(_subject(_shape_checked_sgd, overflow=True),
                                   cases=["huge_gradients", "tiny_gradients"])
  assert all(v.startswith("FAIL: non-finite updates") for v in out.values()), out


def test_an_error_that_names_no_leaf_is_not_clear():
  def vague(learning_rate):
    def init(params):
      if any(not jnp.issubdtype(p.dtype, jnp.floating) for p in jax.tree.leaves(params)):
        raise TypeError("bad dtype")
      return optax.EmptyState()

    return optax.GradientTransformation(init, optax.sgd(learning_rate).update)

  out = testing.bad_input_outcomes(_subject(vague), cases=["int_leaf", "complex_parabola"])
  assert out["int_leaf"] == "FAIL: TypeError does not name the leaf ['layer']['n']: bad dtype"
  assert out["complex_parabola"].startswith("FAIL: TypeError does not name the leaf")
