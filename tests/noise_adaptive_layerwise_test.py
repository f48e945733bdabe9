"""Tests of noise_adaptive_layerwise: the rate equals the inner optimizer at zero noise, noisy
layers slow down, stacks, callable dual norms and split noise, and the machinery it shares with
LANTON."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optzoo
from optzoo import noise_adaptive_layerwise, scale_by_lanton

from helpers import assert_trees_equal, noisy_grads, run, three_layers, with_standard_promotion


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {"wte": jnp.asarray(rng.normal(size=(10, 4)), jnp.float32),
          "block": {"q": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
                    "mlp": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
                    "scale": jnp.ones(4, jnp.float32)}}


def test_wrapper_with_zero_noise_equals_the_inner_optimizer_bit_for_bit():
  params = _params()
  c = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)), params)
  for inner_fn in (lambda: optax.lion(1e-3), lambda: optax.sgd(0.1),
                   lambda: with_standard_promotion(optax.adam(1e-2))):
    wrapped = noise_adaptive_layerwise(inner_fn(), dual_norm="l1", warmup_steps=0)
    inner = inner_fn()
    sw, si = wrapped.init(params), inner.init(params)
    for _ in range(3):
      uw, sw = wrapped.update(c, sw, params)
      ui, si = inner.update(c, si, params)
      assert_trees_equal(uw, ui)


@pytest.mark.parametrize("dual,seed", [("l1", 0), ("l2", 1), ("ns", 2), ("svd", 3)])
def test_wrapper_lowers_the_rate_of_the_noisy_layer(dual, seed):
  params = three_layers()
  stds = {"l0": 0.05, "l1": 0.05, "l2": 2.0}
  tx = noise_adaptive_layerwise(optax.lion(1e-3, weight_decay=0.0), dual_norm=dual, warmup_steps=0)
  out = run(tx, params, 12,
            grads=lambda p, t: noisy_grads(p, jax.random.PRNGKey(seed + t), stds))
  s, ups = out.states[-1], out.updates
  r = s.rates
  assert float(r["l2"]) < 0.5 and max(float(v) for v in r.values()) == 1.0
  # lion's update magnitudes are lr * rate
  np.testing.assert_allclose(jnp.max(jnp.abs(ups[-1]["l2"])), 1e-3 * r["l2"], rtol=1e-5)


def test_wrapper_stacks_callable_dual_and_split():
  stack = jnp.ones((3, 4, 5))
  tx = noise_adaptive_layerwise(optax.sgd(0.1), dual_norm=lambda x: jnp.sum(x**2, axis=(-2, -1)),
                                noise_estimator="split", warmup_steps=0)
  s = tx.init({"w": stack})
  assert s.noise["w"].shape == (3,)
  nd = {"w": jnp.stack([jnp.ones((4, 5)), 2 * jnp.ones((4, 5)), 4 * jnp.ones((4, 5))])}
  u, s = tx.update({"w": stack}, s, {"w": stack}, noise_grads=nd)
  # H = (1-b2) n^2 with n = 20, 80, 320 -> r = n_min / n
  np.testing.assert_allclose(s.rates["w"], [1.0, 0.25, 0.0625], rtol=1e-5)
  np.testing.assert_allclose(u["w"][:, 0, 0], -0.1 * np.array([1.0, 0.25, 0.0625]), rtol=1e-5)
  with pytest.raises(ValueError, match="noise_grads"):
    tx.update({"w": stack}, s, {"w": stack})


def test_lanton_and_the_wrapper_share_the_rate_machinery():
  """All leaves in one sign group: scale_by_lanton's noise EMAs and rates are the wrapper's with
  the l1 dual norm, bit for bit, for every estimator, normalisation and refresh period."""
  params = three_layers()
  stds = {"l0": 0.1, "l1": 0.5, "l2": 2.0}
  kw = dict(b2=0.9, r_min=0.1, warmup_steps=2)
  for extra in ({}, {"normalize": "mean", "r_max": 3.0}, {"noise_every": 2},
                {"noise_estimator": "split"}):
    ours = scale_by_lanton(labels="embed_head", **kw, **extra)
    theirs = noise_adaptive_layerwise(optax.sgd(0.1), dual_norm="l1", dual_per_entry=False,
                                      **kw, **extra)
    so, st = ours.init(params), theirs.init(params)
    assert (so.prev_grad is None) == (st.prev_grad is None)
    for t in range(6):
      g = noisy_grads(params, jax.random.PRNGKey(t), stds)
      nd = {"noise_grads": noisy_grads(params, jax.random.PRNGKey(100 + t), stds)}
      _, so = ours.update(g, so, params, **nd)
      _, st = theirs.update(g, st, params, **nd)
      for field in ("noise", "rates"):
        assert_trees_equal(getattr(so, field), getattr(st, field))
    assert float(jnp.min(jnp.stack(jax.tree.leaves(so.rates)))) < 1.0


def test_mode_arguments_are_keyword_only_and_exported():
  with pytest.raises(TypeError):
    noise_adaptive_layerwise(optax.sgd(0.1), "l2")  # pylint: disable=too-many-function-args
  assert optzoo.noise_adaptive_layerwise is noise_adaptive_layerwise
