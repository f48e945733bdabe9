"""The toy objectives: their minimizers really are stationary points with the stated loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optzoo import objectives


@pytest.mark.parametrize("name", [n for n in objectives.TOY_SUITE if n != "mlp"])
def test_minimizer_is_stationary_with_stated_loss(name):
  obj = objectives.get(name)
  g = jax.grad(obj.loss)(obj.minimizer)
  gnorm = float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(g))))
  assert gnorm < 1e-4, gnorm
  np.testing.assert_allclose(float(obj.loss(obj.minimizer)), obj.min_loss, atol=1e-5)
  # the start is not the answer
  assert float(obj.distance(obj.init())) > 0.5
  assert float(obj.loss(obj.init())) > obj.min_loss + 1e-3


def test_ill_conditioned_has_condition_number_1e4():
  obj = objectives.get("ill_conditioned")
  h = jax.hessian(obj.loss)(obj.init())
  eig = np.linalg.eigvalsh(np.asarray(h, np.float64))
  np.testing.assert_allclose(eig.max() / eig.min(), 1e4, rtol=1e-2)


def test_logistic_data_is_not_separable():
  x, y = objectives.logistic_data()
  w = objectives._newton_logistic(x, y, 0.0 + 1e-8)
  assert np.mean((x @ w > 0) == (y > 0.5)) < 1.0


def test_mlp_objective_is_deterministic_and_trainable():
  obj = objectives.get("mlp")
  p = obj.init()
  assert float(obj.loss(p)) == float(obj.loss(obj.init()))
  g = jax.grad(obj.loss)(p)
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(g))


@pytest.mark.parametrize("n", [1, 17, 1000, 1_000_000, 2_500_123])
def test_synthetic_params_has_exactly_n_params(n):
  params = objectives.synthetic_params(n)
  assert sum(int(np.prod(p.shape)) for p in params.values()) == n
