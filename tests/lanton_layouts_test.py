"""LANTON and noise_adaptive_layerwise on real layers (optzoo.layouts), zero-noise layers, the
loss-scale invariance, masked extra arguments, and leaf checks."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optzoo import layouts, lmo, models
from optzoo import default_lanton_labels, lanton, noise_adaptive_layerwise, scale_by_lanton


OPTAX_ADAMW = ("lanton's default vector optimizer is optax.adamw, whose bias "
               "correction computes float ** int32")

OPTAX_INNER = ("the wrapped optimizer is optax's Adam, whose bias correction computes "
               "float ** int32")

def _leaves(tree):
  return jax.tree.leaves(tree)


def _by_name(params, tree):
  """``tree``'s leaves keyed by the '/'-joined path names of ``params``' leaves."""
  names = ["/".join(layouts.path_names(p)) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
  return dict(zip(names, jax.tree.leaves(tree)))


def _one_step(tx, params, grads, **extra):
  """One jitted update from ``tx``'s init (one compilation instead of an eager op-by-op run)."""
  state = tx.init(params)
  return jax.jit(lambda g, s, p, e: tx.update(g, s, p, **e))(grads, state, params, extra)


def _assert_in_band(update_mat, grad_mat):
  """Newton-Schulz's output along the input's singular directions: in [0.68, 1.14] where the
  input's singular value is at least 1% of its Frobenius norm, and never above the quintic's
  maximum 1.2024 (with rounding)."""
  u, s, vt = np.linalg.svd(np.asarray(grad_mat, np.float64))
  along = np.diag(u.T @ np.asarray(update_mat, np.float64) @ vt.T)
  big = s >= 0.01 * np.linalg.norm(s)
  assert big.sum() >= 2
  assert along[big].min() >= 0.68 and along[big].max() <= 1.14, along
  assert np.linalg.svd(np.asarray(update_mat), compute_uv=False).max() <= 1.21


# ----------------------------------------------------------------------------- real layers
@pytest.mark.parametrize("name", ["transformer", "scanned", "cnn"])
def test_one_rate_per_layer_and_newton_schulz_on_the_matrix_view(name):
  prob = models.get(name)
  params = prob.init()
  grads = jax.grad(prob.loss)(params)
  tx = scale_by_lanton(layouts=prob.layouts)  # no weight decay: the update is r * s * NS(B)
  u, state = _one_step(tx, params, grads)
  lays = layouts.infer(params, prob.layouts)
  for lay, x, r, h in zip(lays, _leaves(params), _leaves(state.rates), _leaves(state.noise)):
    assert r.shape == h.shape == tuple(x.shape[a] for a in lay.batch_axes)
    assert r.size == lay.num_layers(x.shape)
  rates = _by_name(params, state.rates)
  if name == "transformer":
    assert rates["block/attn/query/kernel"].shape == ()  # one rate, not one per input row
    assert rates["block/attn/out/kernel"].shape == ()
  if name == "scanned":
    assert rates["blocks/attn/query/kernel"].shape == (2,)
    assert rates["blocks/down/kernel"].shape == (2,)
    assert rates["blocks/ln1/scale"].shape == (2,)
  if name == "cnn":
    assert rates["conv2/kernel"].shape == ()  # one (3*3*8, 8) matrix, not 9 layers
  # the first hidden update of every matrix leaf, divided by its scale: Newton-Schulz's band
  ups, gs = _by_name(params, u), _by_name(params, grads)
  for (leaf, x), lay in zip(_by_name(params, params).items(), lays):
    if lay.kind != "matrix":
      continue
    rows, cols = lay.matrix_shape(x.shape)
    scale = 0.2 * math.sqrt(max(rows, cols))
    um = layouts.to_matrices(jnp.asarray(ups[leaf]), lay) / scale
    gm = layouts.to_matrices(jnp.asarray(gs[leaf]), lay)
    for k in range(um.shape[0]):
      _assert_in_band(um[k], gm[k])


@pytest.mark.standard_promotion(OPTAX_ADAMW)
def test_query_kernel_is_one_matrix_and_attention_biases_are_vectors():
  prob = models.get("transformer")
  params = prob.init()
  labels = _by_name(params, default_lanton_labels(params, prob.layouts))
  assert labels["block/attn/query/kernel"] == labels["block/attn/out/kernel"] == "hidden"
  assert labels["block/attn/query/bias"] == labels["block/attn/key/bias"] == "vector"
  assert labels["embed/embedding"] == labels["lm_head/kernel"] == "embed_head"
  assert default_lanton_labels(params) == default_lanton_labels(params, prob.layouts)
  grads = jax.grad(prob.loss)(params)
  # default: the attention biases go to AdamW (no Newton-Schulz, no layer rate, no decay)
  u, _ = _one_step(lanton(1e-2), params, grads)
  bias = params["block"]["attn"]["query"]["bias"]
  g_bias = grads["block"]["attn"]["query"]["bias"]
  adamw = optax.adamw(1e-2, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.0)
  want, _ = adamw.update(jnp.asarray(g_bias), adamw.init(jnp.asarray(bias)), jnp.asarray(bias))
  np.testing.assert_allclose(jnp.asarray(u["block"]["attn"]["query"]["bias"]), want, rtol=1e-6)
  # as a sign group: a sign update, never orthogonalized
  u, _ = _one_step(lanton(1e-2, vector_optimizer="sign", weight_decay=0.0), params, grads)
  np.testing.assert_array_equal(jnp.asarray(u["block"]["attn"]["query"]["bias"]),
                                -1e-2 * 0.2 * jnp.sign(jnp.asarray(g_bias)))


def test_dual_norms_and_scales_use_the_matrix_view():
  """With the split estimator and b2 = 0, H is the squared dual norm of noise_grads: nuclear
  norm of the (in, heads*head_dim) view times sqrt(cols/rows)."""
  for name, leaf, lay in [("transformer", ("block", "attn", "query", "kernel"), layouts.general(1, 2)),
                          ("transformer", ("block", "attn", "out", "kernel"), layouts.general(2, 1)),
                          ("transformer", ("block", "up", "kernel"), layouts.dense()),
                          ("cnn", ("conv2", "kernel"), layouts.conv(4))]:
    prob = models.get(name)
    params = prob.init()
    grads = jax.grad(prob.loss)(params)
    noise = jax.tree.map(lambda g: jnp.cos(3.0 * g) * g, grads)
    tx = scale_by_lanton(layouts=prob.layouts, noise_estimator="split", b2=0.0, dual_norm="svd")
    _, state = _one_step(tx, params, grads, noise_grads=noise)
    pick = lambda t: jnp.asarray(functools.reduce(lambda node, k: node[k], leaf, t))  # noqa: E731
    x = pick(params)
    rows, cols = lay.matrix_shape(x.shape)
    want = (math.sqrt(cols / rows) * float(lmo.nuclear_norm(layouts.to_matrices(pick(noise), lay)[0]))) ** 2
    np.testing.assert_allclose(float(pick(state.noise)), want, rtol=1e-5)


@pytest.mark.standard_promotion(OPTAX_ADAMW)
def test_scanned_stack_needs_its_layout_and_stack_axes_give_the_same_numbers():
  prob = models.get("scanned")
  params = prob.init()
  with pytest.raises(layouts.AmbiguousLayoutError, match="blocks/down/kernel"):
    lanton(1e-2).init(params)
  with pytest.raises(layouts.AmbiguousLayoutError, match="blocks/down/kernel"):
    noise_adaptive_layerwise(optax.sgd(0.1)).init(params)
  grads = jax.grad(prob.loss)(params)
  outs = []
  for kw in ({"layouts": prob.layouts}, {"stack_axes": {"blocks": 1}}):
    tx = lanton(1e-2, warmup_steps=0, **kw)
    state = tx.init(params)
    for t in range(2):
      u, state = tx.update(jax.tree.map(lambda g: g * (1.0 + 0.3 * t), grads), state, params)
    outs.append((u, optax.tree.get(state, "rates")))
  for a, b in zip(_leaves(outs[0]), _leaves(outs[1])):
    np.testing.assert_array_equal(a, b)


@pytest.mark.standard_promotion(OPTAX_INNER)
def test_wrapper_one_rate_per_layer_on_the_scanned_model():
  prob = models.get("scanned")
  params = prob.init()
  grads = jax.grad(prob.loss)(params)
  tx = noise_adaptive_layerwise(optax.adam(1e-3), dual_norm="ns", layouts=prob.layouts,
                                warmup_steps=0)
  state = tx.init(params)
  for t in range(3):
    u, state = tx.update(jax.tree.map(lambda g: g * (1.0 + 0.2 * t * t), grads), state, params)
  for lay, x, r in zip(layouts.infer(params, prob.layouts), _leaves(params), _leaves(state.rates)):
    assert r.shape == tuple(x.shape[a] for a in lay.batch_axes)
  assert all(bool(jnp.all(jnp.isfinite(v))) for v in _leaves(u))


# ----------------------------------------------------------------------------- masked extra args
def _split_grads(params, seed):
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return treedef.unflatten([0.1 * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


@pytest.mark.standard_promotion(OPTAX_ADAMW)
def test_split_estimator_on_a_model_with_biases():
  prob = models.get("transformer")
  params = prob.init()
  grads = jax.grad(prob.loss)(params)
  for tx in (lanton(1e-2, noise_estimator="split", layouts=prob.layouts),
             noise_adaptive_layerwise(optax.adam(1e-3), noise_estimator="split",
                                      layouts=prob.layouts)):
    state = tx.init(params)
    step = jax.jit(lambda g, s, p, n: tx.update(g, s, p, noise_grads=n))
    for t in range(2):
      u, state = step(grads, state, params, _split_grads(params, t))
    noise = [h for h in _leaves(optax.tree.get(state, "noise"))]
    assert noise and all(float(jnp.min(h)) > 0 for h in noise)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in _leaves(u))


@pytest.mark.standard_promotion(OPTAX_ADAMW)
def test_split_estimator_inside_a_users_partition_with_frozen_leaves():
  rng = np.random.default_rng(0)
  params = {"frozen": {"kernel": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)},
            "block": {"kernel": jnp.asarray(rng.normal(size=(6, 5)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
                      "w2": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)}}
  labels = {"frozen": "freeze", "block": "train"}
  for make in (lambda: lanton(1e-2, noise_estimator="split", warmup_steps=0),
               lambda: noise_adaptive_layerwise(optax.sgd(0.1), noise_estimator="split",
                                                warmup_steps=0)):
    outer = optax.partition({"train": make(), "freeze": optax.set_to_zero()}, labels)
    alone = make()
    so, sa = outer.init(params), alone.init({"block": params["block"]})
    for t in range(3):
      g, n = _split_grads(params, t), _split_grads(params, 10 + t)  # noise_grads: the full tree
      uo, so = outer.update(g, so, params, noise_grads=n)
      ua, sa = alone.update({"block": g["block"]}, sa, {"block": params["block"]},
                            noise_grads={"block": n["block"]})
      assert float(jnp.max(jnp.abs(uo["frozen"]["kernel"]))) == 0.0
      for a, b in zip(_leaves(uo["block"]), _leaves(ua["block"])):
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- zero-noise members
def _three_with_a_constant_layer():
  rng = np.random.default_rng(1)
  params = {k: jnp.asarray(rng.normal(size=(6, 8)), jnp.float32) for k in ("a", "b", "const")}

  def grads(t):
    keys = jax.random.split(jax.random.PRNGKey(t), 2)
    return {"a": params["a"] + 0.1 * jax.random.normal(keys[0], (6, 8)),
            "b": params["b"] + 1.0 * jax.random.normal(keys[1], (6, 8)),
            "const": params["const"]}  # a constant gradient: zero measured noise

  return params, grads


@pytest.mark.parametrize("normalize", ["min", "mean"])
def test_a_zero_noise_member_does_not_pin_the_others_at_r_min(normalize):
  params, grads = _three_with_a_constant_layer()
  kw = dict(warmup_steps=0, normalize=normalize, r_max=1.0)
  for make in (lambda **k: scale_by_lanton(dual_norm="svd", **k),
               lambda **k: noise_adaptive_layerwise(optax.sgd(0.1), dual_norm="svd", **k)):
    with_const, without = make(**kw), make(**kw)
    sw, so = with_const.init(params), without.init({k: params[k] for k in "ab"})
    for t in range(8):
      g = grads(t)
      _, sw = with_const.update(g, sw, params)
      _, so = without.update({k: g[k] for k in "ab"}, so, {k: params[k] for k in "ab"})
    assert float(sw.noise["const"]) == 0.0 and float(sw.rates["const"]) == 1.0
    for k in "ab":
      np.testing.assert_allclose(sw.rates[k], so.rates[k], rtol=1e-6)
    assert float(sw.rates["b"]) > 0.05  # not pinned at r_min
    if normalize == "min":
      assert float(sw.rates["a"]) == 1.0 and float(sw.rates["b"]) < 0.5


def test_wrapper_rates_compare_noise_per_entry_not_leaf_size():
  rng = np.random.default_rng(2)
  params = {"small": jnp.asarray(rng.normal(size=(4, 4)), jnp.float32),
            "big": jnp.asarray(rng.normal(size=(32, 32)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(8,)), jnp.float32)}

  def rates(per_entry, dual):
    tx = noise_adaptive_layerwise(optax.sgd(0.1), dual_norm=dual, dual_per_entry=per_entry,
                                  warmup_steps=0)
    s = tx.init(params)
    for t in range(30):
      keys = jax.random.split(jax.random.PRNGKey(t), 3)
      g = {k: params[k] + jax.random.normal(key, params[k].shape)  # the same noise per entry
           for k, key in zip(params, keys)}
      _, s = tx.update(g, s, params)
    return {k: float(v) for k, v in s.rates.items()}

  for dual in ("l1", "l2", "svd", "fro_bound"):
    r = rates(True, dual)
    assert min(r.values()) > 0.6, (dual, r)
  r = rates(False, "l1")  # the raw l1 norm: a leaf 64 times larger reads 64 times noisier
  assert r["bias"] == 1.0 and r["small"] < 0.7 and r["big"] == pytest.approx(0.05), r


# ----------------------------------------------------------------------------- invariances
def _params():
  rng = np.random.default_rng(3)
  return {"wte": jnp.asarray(rng.normal(size=(10, 4)), jnp.float32),
          "block": {"q": jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
                    "mlp": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
                    "scale": jnp.ones(4, jnp.float32)}}


def test_loss_scale_invariance_from_1e_minus_6_to_1e6():
  params = _params()
  stds = {"wte": 0.5, "block": {"q": 0.1, "mlp": 1.0, "scale": 0.3}}

  def run(c):
    tx = lanton(1e-2, vector_optimizer="sign", warmup_steps=2)
    state, p, ups = tx.init(params), params, []
    for t in range(8):
      leaves, treedef = jax.tree.flatten(p)
      keys = jax.random.split(jax.random.PRNGKey(t), len(leaves))
      g = treedef.unflatten([c * (x + s * jax.random.normal(k, x.shape)) for x, k, s in
                             zip(leaves, keys, treedef.flatten_up_to(stds))])
      u, state = tx.update(g, state, p)
      ups.append(u)
      p = optax.apply_updates(p, u)
    return ups, optax.tree.get(state, "rates")

  u1, r1 = run(1.0)
  for c in (1e-6, 1e-5, 1e-3, 1e3, 1e6):
    u2, r2 = run(c)
    for a, b in zip(_leaves(u1), _leaves(u2)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(a))))
    for a, b in zip(_leaves(r1), _leaves(r2)):
      np.testing.assert_allclose(a, b, rtol=1e-4)


@pytest.mark.standard_promotion(
    "the wrapped optimizer is optax's Adam with bfloat16 moments (float32 updates mixed in)")
def test_previous_gradient_buffer_keeps_float32_with_bfloat16_momentum():
  """A constant gradient has zero noise: a bfloat16 buffer's rounding would read as noise."""
  params = _params()
  c = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=jnp.float32).reshape(p.shape)) / 3,
                   params)
  for tx in (scale_by_lanton(mu_dtype=jnp.bfloat16),
             noise_adaptive_layerwise(optax.adam(1e-3, mu_dtype=jnp.bfloat16))):
    s = tx.init(params)
    for _ in range(3):
      _, s = tx.update(c, s, params)
    assert all(x.dtype == jnp.float32 for x in _leaves(s.prev_grad))
    assert all(float(h) == 0.0 for h in _leaves(s.noise))
  s = scale_by_lanton(mu_dtype=jnp.bfloat16, prev_dtype=jnp.bfloat16).init(params)
  assert all(x.dtype == jnp.bfloat16 for x in _leaves(s.prev_grad))


# ----------------------------------------------------------------------------- leaf checks
_MAKERS = {
    "scale_by_lanton": lambda: scale_by_lanton(),
    "lanton": lambda: lanton(1e-2),
    "noise_adaptive_layerwise": lambda: noise_adaptive_layerwise(optax.sgd(0.1)),
}


@pytest.mark.parametrize("who", sorted(_MAKERS))
def test_complex_and_integer_leaves_are_refused_at_init(who):
  for dtype, word in ((jnp.complex64, "complex"), (jnp.int32, "int32")):
    params = {"ok": jnp.ones((3, 4)), "bad": jnp.ones((3, 4), dtype)}
    with pytest.raises(TypeError, match=f"bad.*{word}|{word}.*bad"):
      _MAKERS[who]().init(params)


@pytest.mark.parametrize("who", sorted(_MAKERS))
def test_gradient_shapes_are_checked_and_the_leaf_named(who):
  params = {"w": jnp.ones((3, 4)), "v": jnp.ones((4, 5))}
  tx = _MAKERS[who]()
  state = tx.init(params)
  with pytest.raises(ValueError, match="'v'.*shape"):
    tx.update({"w": jnp.ones((3, 4)), "v": jnp.ones((5, 4))}, state, params)


@pytest.mark.standard_promotion(OPTAX_ADAMW)
@pytest.mark.parametrize("who", sorted(_MAKERS))
def test_empty_pytree_gives_empty_updates(who):
  tx = _MAKERS[who]()
  state = tx.init({})
  u, _ = tx.update({}, state, {})
  assert u == {}
  u, _ = jax.jit(tx.update)({}, state, {})
  assert u == {}
