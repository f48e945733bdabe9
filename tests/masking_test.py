"""optzoo._src.base.masking: the frozen objective and the helpers behind curvature optimizers inside
optax.masked / optax.partition."""

import jax
import jax.numpy as jnp
import optax
import pytest

import optzoo
from optzoo._src.base import masking

PARAMS = {"w": jnp.array([1.0, -2.0]), "frozen": jnp.array([3.0])}


def loss(p):
  return jnp.sum(p["w"] ** 2 * p["frozen"][0]) + jnp.sum(p["frozen"] ** 2)


def test_frozen_objective_holds_the_unowned_leaves_at_their_values():
  owned = {"w": jnp.array([0.5, 0.5]), "frozen": optax.MaskedNode()}
  obj = optzoo.frozen_objective(loss, PARAMS)
  want = loss({"w": owned["w"], "frozen": PARAMS["frozen"]})
  assert float(obj(owned)) == float(want)
  # its gradient covers the owned leaf only, and equals the full loss's gradient there
  g = jax.grad(obj)(owned)
  assert isinstance(g["frozen"], optax.MaskedNode)
  full = jax.grad(loss)({"w": owned["w"], "frozen": PARAMS["frozen"]})
  assert jnp.array_equal(g["w"], full["w"])


def test_a_plain_objective_on_masked_params_is_a_clear_error():
  masked = {"w": PARAMS["w"], "frozen": optax.MaskedNode()}
  with pytest.raises(ValueError, match="frozen_objective"):
    masking.check_objective("adahessian", loss, masked)
  masking.check_objective("adahessian", loss, PARAMS)  # nothing masked: any objective
  masking.check_objective("adahessian", optzoo.frozen_objective(loss, PARAMS), masked)


def test_select_like_cuts_a_full_tree_to_the_masked_one():
  masked = {"w": jnp.zeros(2), "frozen": optax.MaskedNode()}
  full = {"w": jnp.ones(2), "frozen": jnp.full(1, 7.0)}
  cut = masking.select_like(masked, full)
  assert isinstance(cut["frozen"], optax.MaskedNode)
  assert jnp.array_equal(cut["w"], full["w"])
  assert masking.has_masked_nodes(masked) and not masking.has_masked_nodes(full)
  filled = masking.fill_masked(masked, full)
  assert jnp.array_equal(filled["frozen"], full["frozen"])
