"""Tests of LANTON: reductions, rate properties, plumbing, options."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optzoo
from optzoo import lmo
from optzoo import default_lanton_labels, lanton, layer_rates, noise_adaptive_layerwise, \
  scale_by_lanton

from helpers import assert_trees_equal, noisy_grads, run, three_layers

# lanton's default vector optimizer is optax.adamw, whose bias correction computes a Python
# float ** int32 count (in every update, even with no vector leaves): strict promotion rejects it
OPTAX_ADAMW = pytest.mark.standard_promotion(
    "lanton's default vector optimizer is optax.adamw (bias correction: float ** int32)")


def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {
      "wte": jnp.asarray(rng.normal(size=(10, 4)), jnp.float32),
      "block": {"q": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
                "mlp": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
                "scale": jnp.ones(4, jnp.float32)},
  }


def test_default_labels_by_shape_and_path():
  labels = default_lanton_labels(_params())
  assert labels == {"wte": "embed_head", "block": {"q": "hidden", "mlp": "hidden",
                                                   "scale": "vector"}}


# ----------------------------------------------------------------------------- reductions
@OPTAX_ADAMW
def test_zero_noise_linear_loss_equals_the_base_lmo_update_bit_for_bit():
  """Linear loss <C, X>: the gradient is constant, n = 0, r = 1; updates = Scion/D-Muon's."""
  params = _params()
  c = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)), params)
  lr, wd, b1 = 1e-2, 0.1, 0.95
  tx = lanton(lr, b1=b1, weight_decay=wd, warmup_steps=0)
  vec = optax.adamw(lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0)
  state, vstate = tx.init(params), vec.init(params["block"]["scale"])
  mu = jax.tree.map(jnp.zeros_like, params)
  p = params
  for _ in range(4):
    u, state = tx.update(c, state, p)
    mu = jax.tree.map(lambda m, g: (1.0 - b1) * g + b1 * m, mu, c)
    want = {
        "wte": -lr * (0.2 * jnp.sign(mu["wte"]) + wd * p["wte"]),
        "block": {
            k: -lr * (0.2 * math.sqrt(6) * lmo.newton_schulz(mu["block"][k]) + wd * p["block"][k])
            for k in ("q", "mlp")},
    }
    want["block"]["scale"], vstate = vec.update(c["block"]["scale"], vstate, p["block"]["scale"])
    assert_trees_equal(u, want)
    assert all(float(jnp.min(r)) == 1.0 for r in jax.tree.leaves(optax.tree.get(state, "rates")))
    p = optax.apply_updates(p, u)


@OPTAX_ADAMW  # and optax.contrib.muon's own bias correction
def test_zero_noise_matches_optax_contrib_muon_on_hidden_matrices():
  params = {"a": jnp.ones((5, 9)) * 0.3, "b": jnp.ones((9, 3)) * -0.2}
  c = jax.tree.map(lambda p: jnp.sin(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)), params)
  ours = lanton(1e-2, weight_decay=0.0, ns_eps=1e-8, warmup_steps=0)
  muon = optax.contrib.muon(1e-2, beta=0.95, nesterov=False, consistent_rms=0.2)
  so, sm = ours.init(params), muon.init(params)
  for _ in range(3):
    uo, so = ours.update(c, so, params)
    um, sm = muon.update(c, sm, params)
    for x, y in zip(jax.tree.leaves(uo), jax.tree.leaves(um)):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-7)  # NS amplifies rounding


def test_equal_noise_across_a_group_gives_rate_one():
  h = [jnp.asarray(2.5), jnp.full((3,), 2.5)]
  for norm in ("min", "mean", "max"):
    for r in layer_rates(h, ["g", "g"], normalize=norm):
      np.testing.assert_array_equal(r, 1.0)


# ----------------------------------------------------------------------------- rates
def test_a_noisier_layer_gets_a_lower_rate_and_rates_are_normalised():
  params = three_layers()
  stds = {"l0": 0.1, "l1": 0.1, "l2": 2.0}
  tx = scale_by_lanton(warmup_steps=5)
  state = run(optax.chain(tx, optax.scale(-1e-2)), params, 40,
              grads=lambda p, t: noisy_grads(p, jax.random.PRNGKey(t), stds)).states[-1]
  r = optax.tree.get(state, "rates")
  assert float(r["l2"]) < 0.5 * min(float(r["l0"]), float(r["l1"]))
  assert max(float(v) for v in r.values()) == 1.0
  assert all(0.05 <= float(v) <= 1.0 for v in r.values())


def test_scaling_the_loss_leaves_updates_unchanged():
  """Exact up to rounding with ns_eps=0 (the default ns_eps=1e-7 is an absolute guard)."""
  params = _params(2)
  stds = {"wte": 0.5, "block": {"q": 0.1, "mlp": 1.0, "scale": 0.3}}

  def scaled(c):
    tx = lanton(1e-2, vector_optimizer="sign", warmup_steps=2, ns_eps=0.0)
    out = run(tx, params, 8, grads=lambda p, t: jax.tree.map(
        lambda g: c * g, noisy_grads(p, jax.random.PRNGKey(t), stds)))
    return out.params[-1], out.states[-1], out.updates

  p1, s1, u1 = scaled(1.0)
  for c in (1e-3, 37.0):
    p2, s2, u2 = scaled(c)
    for a, b in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.max(jnp.abs(a))))
    for a, b in zip(jax.tree.leaves(optax.tree.get(s1, "rates")),
                    jax.tree.leaves(optax.tree.get(s2, "rates"))):
      np.testing.assert_allclose(a, b, rtol=1e-4)


def test_permuting_layers_inside_a_group_permutes_the_rates():
  rng = np.random.default_rng(3)
  stack = jnp.asarray(rng.normal(size=(4, 5, 7)), jnp.float32)
  stds = jnp.array([0.2, 1.0, 0.05, 3.0])
  perm = np.array([2, 0, 3, 1])

  def rates_for(x, s):
    tx = optax.chain(scale_by_lanton(warmup_steps=0, stack_axes=1), optax.scale(-1e-2))
    grad = lambda p, t: p + s[:, None, None] * jax.random.normal(jax.random.PRNGKey(t), p.shape)
    return optax.tree.get(run(tx, {"w": x}, 12, grads=lambda p, t: {"w": grad(p["w"], t)})
                          .states[-1], "rates")["w"]

  r = rates_for(stack, stds)
  assert r.shape == (4,) and float(r[2]) == 1.0 and float(r[3]) == float(jnp.min(r))
  # same noise realisation per permuted slice: permute the noise draws too
  r_perm = rates_for(stack[perm], stds[perm])
  assert list(np.argsort(np.asarray(r_perm))) == list(np.argsort(np.asarray(r)[perm]))
  np.testing.assert_allclose(r_perm, np.asarray(r)[perm], rtol=0.25)


def test_permutation_of_noise_levels_is_exactly_equivariant_in_layer_rates():
  h = jnp.array([0.3, 2.0, 0.7, 5.0])
  perm = np.array([3, 1, 0, 2])
  r = layer_rates([h], ["g"])[0]
  np.testing.assert_array_equal(layer_rates([h[perm]], ["g"])[0], r[perm])


# ----------------------------------------------------------------------------- plumbing
@OPTAX_ADAMW
def test_scanned_stack_gets_one_rate_per_layer_and_matches_separate_leaves():
  rng = np.random.default_rng(4)
  stack = jnp.asarray(rng.normal(size=(3, 6, 10)), jnp.float32)
  stds = jnp.array([0.1, 0.5, 2.0])
  grads = lambda t: stack + stds[:, None, None] * jax.random.normal(jax.random.PRNGKey(t), stack.shape)
  tx_s = lanton(1e-2, warmup_steps=0, dual_norm="svd", stack_axes={"w": 1})
  tx_l = lanton(1e-2, warmup_steps=0, dual_norm="svd")
  s_s = tx_s.init({"w": stack})
  sep = {f"w{i}": stack[i] for i in range(3)}
  s_l = tx_l.init(sep)
  assert optax.tree.get(s_s, "noise")["w"].shape == (3,)
  for t in range(6):
    g = grads(t)
    u_s, s_s = tx_s.update({"w": g}, s_s, {"w": stack})
    u_l, s_l = tx_l.update({f"w{i}": g[i] for i in range(3)}, s_l, sep)
    for i in range(3):
      np.testing.assert_allclose(u_s["w"][i], u_l[f"w{i}"], rtol=1e-4, atol=1e-7)
  rs = optax.tree.get(s_s, "rates")["w"]
  rl = optax.tree.get(s_l, "rates")
  np.testing.assert_allclose(rs, [rl[f"w{i}"] for i in range(3)], rtol=1e-5)
  assert float(rs[2]) < float(rs[0])


class _TiedLM(nn.Module):
  @nn.compact
  def __call__(self, tokens):
    emb = nn.Embed(12, 8, name="embed")
    h = emb(tokens)
    h = nn.Dense(8, name="mlp")(jnp.tanh(h))
    return emb.attend(h)


@OPTAX_ADAMW
def test_tied_embeddings_share_one_noise_entry_and_train():
  model = _TiedLM()
  tokens = jnp.asarray(np.random.default_rng(5).integers(0, 12, (16, 5)))
  params = model.init(jax.random.PRNGKey(0), tokens)

  def loss(p):
    logits = model.apply(p, tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean()

  labels = default_lanton_labels(params)
  assert labels["params"]["embed"]["embedding"] == "embed_head"
  tx = lanton(3e-2, warmup_steps=2)
  state = tx.init(params)
  assert optax.tree.get(state, "noise")["params"]["embed"]["embedding"].shape == ()
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  l0 = float(loss(params))
  for _ in range(30):
    u, state = step(params, state)
    params = optax.apply_updates(params, u)
  assert float(loss(params)) < l0 - 0.3


@OPTAX_ADAMW
def test_bfloat16_params_and_mu_dtype():
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
  tx = lanton(1e-2, mu_dtype=jnp.bfloat16)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for t in range(3):
    g = noisy_grads(params, jax.random.PRNGKey(t), jax.tree.map(lambda _: 0.5, params))
    u, state = step(g, state, params)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(u))
    params = optax.apply_updates(params, u)
  core_state = state.inner_states["lanton"].inner_state[0]  # 'mu' is also AdamW's field name
  assert core_state.mu["block"]["q"].dtype == jnp.bfloat16
  # the previous-gradient buffer keeps float32 unless asked otherwise
  assert core_state.prev_grad["wte"].dtype == jnp.float32
  assert optax.tree.get(state, "noise")["block"]["q"].dtype == jnp.float32
  f32 = lanton(1e-2, mu_dtype=jnp.bfloat16).init(_params())
  assert f32.inner_states["lanton"].inner_state[0].mu["block"]["mlp"].dtype == jnp.bfloat16
  assert f32.inner_states["lanton"].inner_state[0].prev_grad["block"]["mlp"].dtype == jnp.float32
  asked = lanton(1e-2, prev_dtype=jnp.bfloat16).init(_params())
  assert asked.inner_states["lanton"].inner_state[0].prev_grad["wte"].dtype == jnp.bfloat16


@OPTAX_ADAMW
def test_inside_optax_partition_with_masked_nodes():
  params = _params()
  tx = optax.partition({"a": lanton(1e-2), "b": optax.set_to_zero()},
                       {"wte": "b", "block": {"q": "a", "mlp": "a", "scale": "a"}})
  state = tx.init(params)
  u, state = jax.jit(tx.update)(params, state, params)
  assert float(jnp.max(jnp.abs(u["wte"]))) == 0.0 and float(jnp.max(jnp.abs(u["block"]["q"]))) > 0


# ----------------------------------------------------------------------------- options
def test_warmup_keeps_rates_at_one_then_releases_them():
  params = three_layers()
  stds = {"l0": 0.1, "l1": 0.1, "l2": 3.0}
  tx = optax.chain(scale_by_lanton(warmup_steps=6), optax.scale(-1e-2))
  state = tx.init(params)
  for t in range(8):
    _, state = tx.update(noisy_grads(params, jax.random.PRNGKey(t), stds), state, params)
    r = optax.tree.get(state, "rates")["l2"]
    assert (float(r) == 1.0) == (t < 6), (t, float(r))


def test_layer_rate_formulas_for_every_normalisation_and_the_clip():
  h = [jnp.asarray(1.0), jnp.asarray(4.0), jnp.asarray(1e4), jnp.asarray(9.0)]
  groups = ["a", "a", "a", "b"]
  r = layer_rates(h, groups, normalize="min", r_min=0.05, rate_eps=0.0)
  np.testing.assert_allclose([float(x) for x in r], [1.0, 0.5, 0.05, 1.0], rtol=1e-6)
  mean = (1 + 4 + 1e4) / 3
  r = layer_rates(h, groups, normalize="mean", r_min=0.01, r_max=100.0, rate_eps=0.0)
  np.testing.assert_allclose([float(x) for x in r[:3]],
                             [math.sqrt(mean), math.sqrt(mean / 4), math.sqrt(mean / 1e4)], rtol=1e-5)
  r = layer_rates(h, groups, normalize="max", r_min=0.01, r_max=20.0, rate_eps=0.0)
  np.testing.assert_allclose([float(x) for x in r[:3]], [20.0, 20.0, 1.0], rtol=1e-6)
  r = layer_rates(h, groups, normalize="none", r_min=0.001, r_max=10.0)
  np.testing.assert_allclose([float(x) for x in r], [1.0, 0.5, 0.01, 1 / 3], rtol=1e-5)
  # a member without noise is left out of the reference: it runs at 1, the others keep ratios
  r = layer_rates([jnp.asarray(0.0), jnp.asarray(1.0)], ["a", "a"], normalize="min", r_min=1e-9,
                  rate_eps=1e-2)
  assert [float(x) for x in r] == [1.0, 1.0]


def test_noise_estimators_prev_grad_momentum_and_split():
  w = jnp.asarray(np.random.default_rng(6).normal(size=(4, 6)), jnp.float32)
  g1, g2 = w, 2.0 * w + 1.0
  b1, b2 = 0.9, 0.8
  dn = lambda d: float(lmo.nuclear_norm(d)) * math.sqrt(6 / 4)

  def noise_after(est, **extra):
    tx = scale_by_lanton(b1=b1, b2=b2, noise_estimator=est, dual_norm="svd")
    s = tx.init({"w": w})
    _, s = tx.update({"w": g1}, s, {"w": w}, **extra)
    _, s = tx.update({"w": g2}, s, {"w": w}, **extra)
    return float(s.noise["w"])

  np.testing.assert_allclose(noise_after("prev_grad"), (1 - b2) * dn(g2 - g1) ** 2, rtol=1e-5)
  np.testing.assert_allclose(noise_after("momentum"), (1 - b2) * dn(g2 - (1 - b1) * g1) ** 2,
                             rtol=1e-5)
  d = jnp.ones_like(w).at[0, 0].set(3.0)
  np.testing.assert_allclose(noise_after("split", noise_grads={"w": d}),
                             ((1 - b2) * b2 + (1 - b2)) * dn(d) ** 2, rtol=1e-5)
  with pytest.raises(ValueError, match="noise_grads"):
    noise_after("split")
  assert scale_by_lanton(noise_estimator="momentum").init({"w": w}).prev_grad is None


@pytest.mark.parametrize("name,scale", [("rms_match", 0.2 * math.sqrt(9)), ("spectral", math.sqrt(9 / 5)),
                                        ("keller", math.sqrt(9 / 5)), ("none", 1.0)])
def test_hidden_scales(name, scale):
  w = jnp.asarray(np.random.default_rng(7).normal(size=(5, 9)), jnp.float32)
  tx = scale_by_lanton(hidden_scale=name, b1=0.0)
  u, _ = tx.update({"w": w}, tx.init({"w": w}), {"w": w})
  np.testing.assert_allclose(u["w"], scale * lmo.newton_schulz(w), rtol=1e-6)


def test_sign_scale_and_vectors_as_a_sign_group():
  p = {"b": jnp.array([1.0, -2.0, 0.5]), "w": jnp.ones((3, 3))}
  tx = lanton(0.1, vector_optimizer="sign", sign_scale=0.5, weight_decay=0.0)
  u, s = tx.update({"b": jnp.array([1.0, -1.0, 0.0]), "w": jnp.ones((3, 3))}, tx.init(p), p)
  np.testing.assert_allclose(u["b"], [-0.05, 0.05, 0.0])
  assert optax.tree.get(s, "noise")["b"].shape == ()


@pytest.mark.parametrize("dual", ["ns", "svd", "gram", "fro_bound"])
def test_dual_norm_options_measure_the_hidden_noise(dual):
  w = jnp.asarray(np.random.default_rng(8).normal(size=(4, 10)), jnp.float32)
  d = jnp.asarray(np.random.default_rng(9).normal(size=(4, 10)), jnp.float32)
  tx = scale_by_lanton(b2=0.5, dual_norm=dual)
  s = tx.init({"w": w})
  _, s = tx.update({"w": w}, s, {"w": w})
  _, s = tx.update({"w": w + d}, s, {"w": w})
  want = {"ns": lmo.nuclear_norm_ns, "svd": lmo.nuclear_norm, "gram": lmo.nuclear_norm_gram,
          "fro_bound": lmo.nuclear_norm_fro_bound}[dual](d)
  np.testing.assert_allclose(float(s.noise["w"]), 0.5 * (float(want) * math.sqrt(10 / 4)) ** 2,
                             rtol=1e-5)
  s2 = scale_by_lanton(b2=0.5, dual_norm=dual, dual_shape_factor=False).init({"w": w})
  assert s2.noise["w"].shape == ()


@OPTAX_ADAMW
def test_decay_with_rate_flag():
  params = three_layers()
  stds = {"l0": 0.01, "l1": 0.01, "l2": 3.0}
  grads = [noisy_grads(params, jax.random.PRNGKey(t), stds) for t in range(5)]

  def last(decay_with_rate, wd):
    tx = lanton(1e-2, weight_decay=wd, warmup_steps=0, decay_with_rate=decay_with_rate)
    s = tx.init(params)
    for g in grads:
      u, s = tx.update(g, s, params)
    return u, float(optax.tree.get(s, "rates")["l2"])

  u0, r = last(True, 0.0)
  u_with, _ = last(True, 0.5)
  u_without, _ = last(False, 0.5)
  assert r < 0.5
  np.testing.assert_allclose(u_with["l2"] - u0["l2"], -1e-2 * 0.5 * r * params["l2"], rtol=1e-4,
                             atol=1e-7)
  np.testing.assert_allclose(u_without["l2"] - u0["l2"], -1e-2 * 0.5 * params["l2"], rtol=1e-4,
                             atol=1e-7)


def test_noise_every_refreshes_h_only_on_due_steps():
  params = three_layers()
  stds = {"l0": 0.1, "l1": 0.5, "l2": 2.0}
  tx = scale_by_lanton(noise_every=3, dual_norm="ns")
  s = tx.init(params)
  hist = []
  for t in range(7):
    _, s = tx.update(noisy_grads(params, jax.random.PRNGKey(t), stds), s, params)
    hist.append(float(s.noise["l2"]))
  # samples at counts 3 and 6 only (count 0 has no sample)
  assert hist[:3] == [0.0, 0.0, 0.0] and hist[3] > 0 and hist[3] == hist[4] == hist[5] < hist[6]


def test_norm_groups_by_shape_split_the_normalisation():
  rng = np.random.default_rng(10)
  params = {"a": jnp.asarray(rng.normal(size=(4, 8)), jnp.float32),
            "b": jnp.asarray(rng.normal(size=(8, 8)), jnp.float32)}
  stds = {"a": 0.1, "b": 3.0}
  for groups, b_is_one in ((None, False), ("shape", True)):
    tx = optax.chain(scale_by_lanton(warmup_steps=0, norm_groups=groups), optax.scale(-1e-2))
    s = run(tx, params, 6,
            grads=lambda p, t: noisy_grads(p, jax.random.PRNGKey(t), stds)).states[-1]
    assert (float(optax.tree.get(s, "rates")["b"]) == 1.0) == b_is_one


def test_nesterov_option_changes_the_direction():
  w = jnp.asarray(np.random.default_rng(11).normal(size=(4, 6)), jnp.float32)
  out = []
  for nest in (False, True):
    tx = scale_by_lanton(nesterov=nest)
    s = tx.init({"w": w})
    _, s = tx.update({"w": w}, s, {"w": w})
    u, _ = tx.update({"w": -w + 0.3}, s, {"w": w})
    out.append(u["w"])
  assert float(jnp.max(jnp.abs(out[0] - out[1]))) > 1e-3


@OPTAX_ADAMW
def test_labels_as_pytree_and_callable_and_validation():
  params = _params()
  labels = {"wte": "hidden", "block": "embed_head"}
  tx = lanton(1e-2, labels=labels, vector_optimizer="sign")
  u, _ = tx.update(params, tx.init(params), params)
  np.testing.assert_allclose(jnp.abs(u["block"]["q"]), 1e-2 * jnp.abs(
      0.2 * jnp.sign(params["block"]["q"]) + 0.1 * params["block"]["q"]), rtol=1e-6)
  tx = lanton(1e-2, labels=lambda p: jax.tree.map(lambda _: "embed_head", p))
  tx.update(params, tx.init(params), params)
  with pytest.raises(ValueError, match="label"):
    lanton(1e-2, labels={"wte": "hidden", "block": "nope"}).init(params)
  for kw, name in [({"b1": 1.0}, "b1"), ({"b2": -0.1}, "b2"), ({"r_min": 0.0}, "r_min"),
                   ({"normalize": "median"}, "normalize"), ({"noise_estimator": "x"}, "noise_estimator"),
                   ({"hidden_scale": "x"}, "hidden_scale"), ({"dual_norm": "x"}, "dual_norm"),
                   ({"weight_decay": -1.0}, "weight_decay"), ({"learning_rate": -1.0}, "learning_rate")]:
    with pytest.raises(ValueError, match=name):
      lanton(**{"learning_rate": 1e-2, **kw})


# ----------------------------------------------------------------------------- convergence
@OPTAX_ADAMW
def test_noisy_layers_reach_a_lower_loss_than_the_uniform_rate():
  """K layers with noise stds 1x..30x at one base lr, large enough that the uniform
  run sits on its noise floor: LANTON's smaller rates on the noisy layers give a lower loss."""
  rng = np.random.default_rng(12)
  targets = {f"l{k}": jnp.asarray(rng.normal(size=(6, 8)), jnp.float32) for k in range(4)}
  stds = {"l0": 0.1, "l1": 0.5, "l2": 1.5, "l3": 3.0}
  init = jax.tree.map(lambda t: t + 0.3, targets)
  loss = lambda p: sum(0.5 * jnp.sum((p[k] - targets[k]) ** 2) for k in p)

  def final_loss(r_min):
    tx = lanton(0.1, weight_decay=0.0, r_min=r_min)
    grad = lambda p, t: noisy_grads(jax.tree.map(lambda a, b: a - b, p, targets),
                                     jax.random.PRNGKey(t), stds)
    p = run(tx, init, 150, grads=grad).params[-1]
    return float(loss(p))

  uniform = final_loss(1.0)  # r_min = 1 clips every rate to 1: the base optimizer
  adaptive = final_loss(0.05)
  assert adaptive < 0.6 * uniform, (adaptive, uniform)


@OPTAX_ADAMW  # and optax.cosine_decay_schedule: jnp.minimum(int32 count, float)
def test_deep_linear_net_with_noise_injection_converges_without_nans():
  rng = np.random.default_rng(13)
  x = jnp.asarray(rng.normal(size=(64, 8)), jnp.float32)
  y = x @ jnp.asarray(rng.normal(size=(8, 4)), jnp.float32)
  params = {f"w{i}": jnp.asarray(rng.normal(size=s) * 0.3, jnp.float32)
            for i, s in enumerate([(8, 16), (16, 16), (16, 4)])}
  loss = lambda p: 0.5 * jnp.mean(jnp.sum((x @ p["w0"] @ p["w1"] @ p["w2"] - y) ** 2, -1))
  tx = lanton(optax.cosine_decay_schedule(2e-2, 400), weight_decay=0.0)
  grad = lambda p, t: jax.tree.map(
      lambda g, s: g + s * jax.random.normal(jax.random.PRNGKey(t), g.shape),
      jax.grad(loss)(p), {"w0": 0.01, "w1": 0.5, "w2": 0.01})
  out = run(tx, params, 400, grads=grad)
  p, s = out.params[-1], out.states[-1]
  assert float(loss(p)) < 0.1 * float(loss(params))
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(p))
  assert float(optax.tree.get(s, "rates")["w1"]) < 1.0


def test_mode_arguments_are_keyword_only():
  with pytest.raises(TypeError):
    scale_by_lanton(0.9, 0.99, 5, "momentum")  # pylint: disable=too-many-function-args
  with pytest.raises(TypeError):
    lanton(1e-2, 0.9, 0.99, 5, 0.1, "momentum")  # pylint: disable=too-many-function-args
  with pytest.raises(TypeError):
    noise_adaptive_layerwise(optax.sgd(0.1), "l2")  # pylint: disable=too-many-function-args
  with pytest.raises(TypeError):
    layer_rates([jnp.ones(())], ["g"], "mean")  # pylint: disable=too-many-function-args


def test_public_exports():
  assert optzoo.lanton is lanton and optzoo.noise_adaptive_layerwise is noise_adaptive_layerwise
  assert optzoo.scale_by_lanton is scale_by_lanton
