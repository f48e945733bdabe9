"""Tests of optzoo._src.base.trees: the per-leaf resolver and unzip."""

import jax
import jax.numpy as jnp
import optax
import pytest

from optzoo._src.base import trees


def test_leaf_values_prefix_callable_default_and_masked_nodes():
  tree = {"a": jnp.zeros(2), "b": {"c": jnp.zeros(3), "d": jnp.zeros(())}}
  assert trees.leaf_values({"a": 1, "b": 2}, tree) == [1, 2, 2]
  assert trees.leaf_values(lambda t: jax.tree.map(lambda x: x.ndim, t), tree) == [1, 1, 0]
  assert trees.leaf_values(None, tree) == [None, None, None]
  assert trees.leaf_values(None, tree, default=lambda t: {"a": "x", "b": "y"}) == ["x", "y", "y"]
  masked = {"a": optax.MaskedNode(), "b": {"c": jnp.zeros(3), "d": optax.MaskedNode()}}
  assert trees.leaf_values({"a": 1, "b": {"c": 2, "d": 3}}, masked) == [2]


def test_leaf_values_names_the_missing_leaf():
  with pytest.raises(ValueError, match=r"\['b'\]"):
    trees.leaf_values({"a": 1}, {"a": jnp.zeros(1), "b": jnp.zeros(1)})


def test_unzip_round_trip_and_empty_tree():
  tree = {"u": jnp.ones(2), "v": jnp.zeros(3)}
  leaves, treedef = jax.tree.flatten(tree)
  first, second = trees.unzip(treedef, [(x, 2 * x) for x in leaves], 2)
  assert jax.tree.structure(first) == treedef
  assert jnp.array_equal(second["u"], 2 * tree["u"])
  assert trees.unzip(jax.tree.structure({}), [], 3) == ({}, {}, {})
