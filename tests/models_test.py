"""optzoo.models: every model of the suite builds, has a finite loss with a gradient on every
leaf, and layouts that cover every leaf."""

import jax
import jax.numpy as jnp
import pytest

from optzoo import layouts, models


@pytest.mark.parametrize("name", models.MODEL_SUITE)
def test_model_loss_and_gradient_are_finite_on_every_leaf(name):
  prob = models.get(name)
  params = prob.init()
  value, grads = jax.value_and_grad(prob.loss)(params)
  assert jnp.isfinite(value) and float(value) > 0.0
  assert jax.tree.structure(grads) == jax.tree.structure(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  described = {row["leaf"] for row in layouts.describe(params, prob.layouts)}
  leaves = {"/".join(layouts.path_names(path))
            for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
  assert described == leaves


def test_get_caches_and_names_the_choices():
  assert models.get("mlp") is models.get("mlp")
  with pytest.raises(ValueError, match="choose from"):
    models.get("resnet")
