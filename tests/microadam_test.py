"""Tests of optzoo.microadam: reduction to Adam, window formula, error feedback, sparsity, memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optzoo
from optzoo import compression as C
from optzoo import objectives, registry, training

from helpers import with_standard_promotion

EXACT = dict(density=1.0, quantize_ef=False, values_dtype=jnp.float32)


def _loss_and_params():
  obj = objectives.get("mixed_pytree")
  params = obj.init()

  def loss(p):  # couple the leaves so that gradients do not vanish coordinate by coordinate
    return obj.loss(p) + 0.1 * jnp.sum(jnp.tanh(p["dense"]["kernel"]) ** 2) * jnp.sum(p["scale"])

  return loss, params


@pytest.mark.parametrize("name,make_ref,kwargs", [
    ("adam", lambda: optax.adam(3e-2), dict(learning_rate=3e-2)),
    ("adamw", lambda: optax.adamw(3e-2, weight_decay=0.1),
     dict(learning_rate=3e-2, weight_decay=0.1)),
    ("adam-quantized-ef", lambda: optax.adam(3e-2),  # density 1: the residual is 0, Q(0) = 0
     dict(learning_rate=3e-2, quantize_ef=True)),
])
def test_density_one_full_window_is_adam_step_by_step(name, make_ref, kwargs):
  loss, params = _loss_and_params()
  tx = optzoo.microadam(**(EXACT | dict(num_grads=50) | kwargs))
  ref = with_standard_promotion(make_ref())  # optax's bias correction: float ** int32
  st, st_ref = tx.init(params), ref.init(params)
  step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
  step_ref = jax.jit(lambda p, s: ref.update(jax.grad(loss)(p), s, p))
  p = params
  for t in range(50):
    u, st = step(p, st)
    u_ref, st_ref = step_ref(p, st_ref)
    for a, b in zip(jax.tree.leaves(u), jax.tree.leaves(u_ref)):
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7,
                                 err_msg=f"{name}: step {t + 1}")
    p = optax.apply_updates(p, u_ref)


def test_windowed_adam_closed_form_for_a_constant_gradient():
  # with g = 1, m = 10 the global-step bias correction makes |u| grow past the window
  tx = optzoo.scale_by_microadam(**EXACT, num_grads=10)
  p = jnp.zeros(3)
  state = tx.init(p)
  step = jax.jit(lambda s: tx.update(jnp.ones(3), s, p))
  got = {}
  for t in range(1, 101):
    u, state = step(state)
    got[t] = float(u[0])
  b1, b2 = 0.9, 0.999
  for t in (1, 5, 10, 11, 20, 100):
    ages = np.arange(min(t, 10))
    m = (1 - b1) / (1 - b1**t) * np.sum(b1**ages)
    v = (1 - b2) / (1 - b2**t) * np.sum(b2**ages)
    assert got[t] == pytest.approx(m / (np.sqrt(v) + 1e-8), rel=1e-5)
  assert got[10] == pytest.approx(1.0, abs=1e-5)
  assert (round(got[11], 3), round(got[20], 3), round(got[100], 3)) == (0.995, 1.046, 2.014)


def test_ring_buffer_and_error_feedback_identity_before_quantization():
  """scatter(I_t, V_t) + e_t == g_t + e_{t-1} exactly; slot (t-1) mod m holds step t."""
  rng = np.random.default_rng(0)
  params = {"w": jnp.zeros((37, 11)), "b": jnp.zeros(5)}
  tx = optzoo.scale_by_microadam(density=0.05, num_grads=3, block_size=64,
                                 quantize_ef=False, values_dtype=jnp.float32)
  state = tx.init(params)
  assert state.qmin is None and state.qmax is None  # no quantization: no bucket stats
  step = jax.jit(lambda g, s: tx.update(g, s, params))
  total_g = jax.tree.map(jnp.zeros_like, params)
  window_sum = []
  for t in range(1, 7):
    g = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
    prev_ef = state.ef
    _, state = step(g, state)
    slot = (t - 1) % 3
    for key in params:
      lay = C.block_layout(params[key].size, 64, 0.05)
      acc = g[key].reshape(-1) + prev_ef[key]
      sent = C.scatter_blocks(state.idx[key][slot], state.val[key][slot], lay)
      np.testing.assert_array_equal(np.asarray(sent + state.ef[key]), np.asarray(acc))
      # the slot holds this step's top-k of the accumulator
      idx, vals = C.topk_blocks(acc, lay, values_dtype=None)
      np.testing.assert_array_equal(np.asarray(state.idx[key][slot]), np.asarray(idx))
      np.testing.assert_array_equal(np.asarray(state.val[key][slot]), np.asarray(vals))
    window_sum.append(jax.tree.map(
        lambda i, v, p: C.scatter_blocks(i[slot], v[slot], C.block_layout(p.size, 64, 0.05)),
        state.idx, state.val, params))
    total_g = jax.tree.map(jnp.add, total_g, g)
  # unrolled: everything sent plus the final residual telescopes to the sum of gradients
  for key in params:
    sent_total = sum(w[key] for w in window_sum)
    np.testing.assert_allclose(np.asarray(sent_total + state.ef[key]),
                               np.asarray(total_g[key].reshape(-1)), rtol=1e-5, atol=1e-5)
  assert int(state.count) == 6 and state.qmin is None and state.qmax is None


def test_quantized_error_feedback_is_the_residual_up_to_half_a_step():
  rng = np.random.default_rng(1)
  p = jnp.zeros(1000)
  q = 64
  tx = optzoo.scale_by_microadam(density=0.02, num_grads=4, quant_bucket_size=q, block_size=256)
  lay = C.block_layout(1000, 256, 0.02)
  state = tx.init(p)
  step = jax.jit(lambda g, s: tx.update(g, s, p))
  for t in range(1, 5):
    g = jnp.asarray(rng.normal(size=1000), jnp.float32)
    acc = g + C.dequantize_4bit(state.ef, state.qmin, state.qmax, 1000, q)
    _, state = step(g, state)
    slot = (t - 1) % 4
    resid = acc.at[C.global_indices(state.idx[slot], lay)].set(0.0)
    e = C.dequantize_4bit(state.ef, state.qmin, state.qmax, 1000, q)
    hi, lo = np.asarray(state.qmax, np.float32), np.asarray(state.qmin, np.float32)
    step_size = np.repeat(hi - lo, q)[:1000] / 15  # subtract in float32, not bfloat16
    assert np.all(np.abs(np.asarray(e - resid)) <= step_size / 2 + 1e-6)
    assert state.ef.dtype == jnp.uint8 and state.ef.shape == (500,)
    assert state.val.dtype == jnp.bfloat16 and state.idx.dtype == jnp.int16


def test_update_is_sparse_on_the_window_union():
  rng = np.random.default_rng(2)
  params = {"w": jnp.zeros(3000), "b": jnp.zeros(7)}
  m = 3
  tx = optzoo.microadam(1e-2, density=0.01, num_grads=m, block_size=1024)
  lays = {k: C.block_layout(v.size, 1024, 0.01) for k, v in params.items()}
  state = tx.init(params)
  step = jax.jit(lambda g, s: tx.update(g, s, params))
  for t in range(1, 8):
    g = {k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) for k, v in params.items()}
    u, state = step(g, state)
    inner = state[0]
    for key, lay in lays.items():
      nnz = int(jnp.sum(u[key] != 0))
      assert 1 <= nnz <= min(t, m) * lay.k, (t, key, nnz)
      window = set(np.asarray(C.global_indices(inner.idx[key][:min(t, m)], lay)).ravel().tolist())
      assert set(np.flatnonzero(np.asarray(u[key])).tolist()) <= window


def test_error_feedback_off_keeps_ef_zero_and_selects_the_raw_gradient():
  g = jnp.asarray(np.random.default_rng(3).normal(size=500), jnp.float32)
  tx = optzoo.scale_by_microadam(density=0.01, error_feedback=False, block_size=128)
  state = tx.init(g)
  step = jax.jit(tx.update)
  for _ in range(2):
    _, state = step(g, state, g)
  assert not bool(jnp.any(state.ef)) and not bool(jnp.any(state.qmax))
  idx, _ = C.topk_blocks(g, C.block_layout(500, 128, 0.01))
  np.testing.assert_array_equal(np.asarray(state.idx[1]), np.asarray(idx))


def test_every_leaf_size_and_dtype_works():
  params = {"s": jnp.array(0.5), "b1": jnp.ones(1), "b3": jnp.ones(3), "k": jnp.ones((5, 7)),
            "big": jnp.ones(5000), "h": jnp.ones(4, jnp.bfloat16)}
  tx = optzoo.microadam(1e-2)  # defaults: density 0.01, so every small leaf keeps k = 1
  state = tx.init(params)
  assert all(v.shape == (10, 1) for k, v in state[0].idx.items() if k != "big")
  grads = jax.tree.map(lambda p: jnp.full_like(p, -2.0), params)
  u, state = jax.jit(tx.update)(grads, state, params)
  assert u["h"].dtype == jnp.bfloat16 and u["s"].shape == ()
  # a scalar is always selected: its update is -lr * sign(g) at step 1 and its EF stays 0
  assert float(u["s"]) == pytest.approx(1e-2, rel=1e-5)
  assert float(C.dequantize_4bit(state[0].ef["s"], state[0].qmin["s"], state[0].qmax["s"], 1,
                                 128)[0]) == 0.0
  for leaf in jax.tree.leaves(u):
    assert bool(jnp.all(jnp.isfinite(leaf)))
    assert int(jnp.sum(leaf != 0)) >= 1


def test_jit_and_eager_agree():
  target = jnp.linspace(-1.0, 1.0, 40)

  def loss(p):
    return jnp.sum((p - target) ** 2) + jnp.sum(jnp.tanh(p)) ** 2

  tx = optzoo.microadam(1e-2, density=0.3, num_grads=4, block_size=16)
  s1 = s2 = tx.init(jnp.zeros(40))
  p1 = p2 = jnp.zeros(40)
  jstep = jax.jit(tx.update)
  for _ in range(2):
    u1, s1 = tx.update(jax.grad(loss)(p1), s1, p1)
    u2, s2 = jstep(jax.grad(loss)(p2), s2, p2)
    p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
  assert int(jnp.sum(p1 != 0)) > 0
  np.testing.assert_allclose(np.asarray(p1), np.asarray(p2), rtol=1e-6, atol=1e-7)


def test_state_is_under_095_bytes_per_param_at_defaults():
  params = objectives.synthetic_params(1_000_000)
  tx = optzoo.microadam(1e-3)
  bpp = optzoo.bytes_per_param(tx, params)
  assert bpp <= 0.95
  assert optzoo.bytes_per_param(optax.adam(1e-3), params) == pytest.approx(8.0, abs=1e-3)
  # and it is exactly the reference's layout: 4 m k + ceil(d/2) + 2 * 2 * ceil(d/q) per leaf, + count
  expected = 4
  for p in params.values():
    d = int(np.prod(p.shape))
    expected += 4 * 10 * C.block_layout(d, 4096, 0.01).k + (d + 1) // 2 + 4 * -(-d // 128)
  assert optzoo.state_bytes(jax.eval_shape(tx.init, params)) == expected


@pytest.mark.standard_promotion("the registry's rosenbrock learning rate is an "
                                 "optax.cosine_decay_schedule: jnp.minimum(int32 count, float)")
def test_rosenbrock_converges():
  obj = objectives.get("rosenbrock")
  tx = registry.get("microadam").make("rosenbrock")  # top-1 of 2 coordinates per step

  final, _ = training.optimize(tx, obj.loss, obj.init(), 20_000)
  assert float(obj.distance(final)) < 3e-2


def test_flax_mlp_final_loss_within_10_percent_of_adam():
  obj = objectives.get("mlp")
  lr, steps = 3e-3, 200

  def final_loss(tx):
    return float(training.optimize(tx, obj.loss, obj.init(), steps)[1][-1])

  start = float(obj.loss(obj.init()))
  adam = final_loss(with_standard_promotion(optax.adam(lr)))  # bias correction: float ** int32
  # The MLP is tiny (leaves of 4 to 1024 weights), so use 10% density: 1% keeps 1-11 per leaf.
  micro = final_loss(optzoo.microadam(lr, density=0.1))
  assert micro <= 1.1 * adam, (micro, adam)
  assert adam < 0.01 * start


@pytest.mark.parametrize("kwargs,name", [
    (dict(learning_rate=-1.0), "learning_rate"), (dict(b1=1.0), "b1"), (dict(b2=-0.1), "b2"),
    (dict(eps=-1e-8), "eps"), (dict(density=0.0), "density"), (dict(density=1.5), "density"),
    (dict(quant_bucket_size=63), "quant_bucket_size"), (dict(block_size=40_000), "block_size"),
    (dict(num_grads=0), "num_grads"), (dict(weight_decay=-1.0), "weight_decay"),
    (dict(approx_topk_recall=0.0), "approx_topk_recall"),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
  with pytest.raises(ValueError, match=name):
    optzoo.microadam(**({"learning_rate": 1e-3} | kwargs))


def test_static_arguments_must_be_python_ints():
  with pytest.raises(TypeError, match="num_grads"):
    optzoo.microadam(1e-3, num_grads=2.5)


# ----------------------------------------------------------------------------- edge cases
def test_complex_and_integer_leaves_are_rejected_at_init_naming_the_leaf():
  tx = optzoo.microadam(1e-3)
  with pytest.raises(TypeError, match=r"\['z'\].*complex64.*does not support complex"):
    tx.init({"w": jnp.ones(3), "z": jnp.ones(2, jnp.complex64)})
  with pytest.raises(TypeError, match=r"\['n'\].*int8"):
    tx.init({"w": jnp.ones(3), "n": jnp.ones(2, jnp.int8)})


@pytest.mark.parametrize("quantize_ef", [True, False])
def test_a_gradient_of_another_shape_is_refused_naming_the_leaf(quantize_ef):
  """Same size, other shape (a transposed kernel): refused against params; another size is
  refused against the flat state even without params."""
  p = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
  tx = optzoo.microadam(1e-3, quantize_ef=quantize_ef)
  state = tx.init(p)
  for bad in ({"w": jnp.ones((3, 4)), "b": jnp.zeros(3)},
              {"w": jnp.ones((4, 3)), "b": jnp.zeros((3, 1))}):
    leaf = "w" if bad["w"].shape != (4, 3) else "b"
    with pytest.raises(ValueError, match=rf"\['{leaf}'\].*state was initialized for shape"):
      tx.update(bad, state, p)
  for bad in ({"w": jnp.ones((4, 4)), "b": jnp.zeros(3)}, {"w": jnp.ones((4, 3)), "b": jnp.zeros(5)}):
    leaf = "w" if bad["w"].shape != (4, 3) else "b"
    with pytest.raises(ValueError, match=rf"\['{leaf}'\].*initialized for a leaf of another size"):
      tx.update(bad, state)
  # no zero-size leaves (orbax refuses them), nothing param-shaped
  assert all(x.size for x in jax.tree.leaves(state))


def test_empty_pytree_gives_empty_updates():
  tx = optzoo.microadam(1e-3)
  state = tx.init({})
  updates, state = jax.jit(tx.update)({}, state, {})
  assert updates == {}


def test_float32_gradients_of_1e20_give_finite_updates():
  """The squared window values overflow to inf: the step there is 0, never NaN."""
  p = {"w": jnp.ones((8, 8))}
  tx = optzoo.microadam(1e-3, density=0.5, num_grads=4)
  state = tx.init(p)
  update = jax.jit(tx.update)
  for t in range(10):
    pattern = jnp.arange(64).reshape(8, 8) % (t + 2) == 0
    u, state = update({"w": jnp.where(pattern, 1e20, 0.3 * (t + 1))}, state, p)
    assert bool(jnp.all(jnp.isfinite(u["w"]))), t
    for leaf in jax.tree.leaves(state):
      if jnp.issubdtype(leaf.dtype, jnp.floating):
        assert not bool(jnp.any(jnp.isnan(leaf.astype(jnp.float32)))), t


# ----------------------------------------------------------------------------- streaming
def _whole_leaf_step(kw, t, g, idx, val, ef, lo, hi):
  """The update as one whole-leaf computation (optzoo's implementation before streaming):
  ``(u, idx, val, ef, lo, hi)`` at step t (traced, from 1), quantized error feedback, b1 0.9,
  b2 0.999."""
  m, q = kw["num_grads"], kw["quant_bucket_size"]
  lay = C.block_layout(g.size, kw["block_size"], kw["density"])
  acc = g.reshape(-1) + C.dequantize_4bit(ef, lo, hi, g.size, q)
  rel, v = C.topk_blocks(acc, lay, values_dtype=None)
  ef, lo, hi = C.quantize_4bit(acc.at[C.global_indices(rel, lay)].set(0.0), q)
  slot = (t - 1) % m
  idx = jax.lax.dynamic_update_index_in_dim(idx, rel.astype(jnp.int16), slot, 0)
  val = jax.lax.dynamic_update_index_in_dim(val, v.astype(jnp.bfloat16), slot, 0)
  age = ((t - 1 - jnp.arange(m)) % m).astype(jnp.float32)
  live = jnp.arange(m) < jnp.minimum(t, m)
  w1 = jnp.where(live, jnp.float32(0.9) ** age, 0.0)
  w2 = jnp.where(live, jnp.float32(0.999) ** age, 0.0)
  vw = val.astype(jnp.float32)
  contrib = jnp.stack([w1[:, None] * vw, w2[:, None] * vw * vw], axis=-1).reshape(-1, 2)
  z = jnp.zeros((g.size, 2), jnp.float32).at[C.global_indices(idx, lay).reshape(-1)].add(contrib)
  tf = t.astype(jnp.float32)
  mhat = (1 - jnp.float32(0.9)) / (1 - jnp.float32(0.9) ** tf) * z[:, 0]
  vhat = (1 - jnp.float32(0.999)) / (1 - jnp.float32(0.999) ** tf) * z[:, 1]
  u = jnp.where(vhat > 0, mhat / (jnp.sqrt(vhat) + jnp.float32(1e-8)), 0.0)
  return u.reshape(g.shape), idx, val, ef, lo, hi


@pytest.mark.parametrize("chunk_size", [1, 700])
def test_streamed_update_equals_the_whole_leaf_update_bit_for_bit(chunk_size):
  """Chunks of 1 block and of 7 blocks, then a tail (whole blocks and the remainder block), and
  a leaf smaller than a block: state and updates are bitwise those of the unstreamed
  computation, over steps that wrap the window."""
  kw = dict(num_grads=3, density=0.05, block_size=100, quant_bucket_size=20)
  g_shapes = {"w": (37, 29), "b": (7,)}  # 1073 = 10 blocks + remainder 73; 7 < one block
  tx = optzoo.scale_by_microadam(chunk_size=chunk_size, **kw)
  rng = np.random.default_rng(chunk_size)
  p = {k: jnp.zeros(s) for k, s in g_shapes.items()}
  state = tx.init(p)
  ref = {k: (state.idx[k], state.val[k], state.ef[k], state.qmin[k], state.qmax[k]) for k in p}
  update, ref_step = jax.jit(tx.update), jax.jit(_whole_leaf_step, static_argnums=0)
  for t in range(1, 6):
    g = {k: jnp.asarray(rng.normal(size=s) * t, jnp.float32) for k, s in g_shapes.items()}
    u, state = update(g, state, p)
    for k in p:
      want = ref_step(_Frozen(kw), jnp.int32(t), g[k], *ref[k])
      ref[k] = want[1:]
      got = (u[k], state.idx[k], state.val[k], state.ef[k], state.qmin[k], state.qmax[k])
      for x, y in zip(got, want):
        assert x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes(), (t, k)


class _Frozen(dict):
  """A hashable dict, for a static argument."""

  def __hash__(self):
    return hash(tuple(sorted(self.items())))


def test_peak_update_memory_is_under_two_bytes_per_param_at_10m():
  """State + temporaries of the donated update (compiled only, nothing allocated), on a
  10M-parameter pytree of few leaves so that it compiles in seconds (benchmarks/memory.py
  measures the MLP-shaped pytree at 10M and 100M)."""
  params = {"w": jax.ShapeDtypeStruct((2400, 4096), jnp.float32),
            "v": jax.ShapeDtypeStruct((169_679,), jnp.float32),
            "b": jax.ShapeDtypeStruct((4096,), jnp.float32)}
  tx = optzoo.microadam(1e-3)
  peak = optzoo.bytes_per_param(tx, params) + optzoo.temp_bytes_per_param(tx, params, donate=True)
  assert peak <= 2.0


# ----------------------------------------------------------------------------- checkpoints
def test_state_saves_and_restores_through_orbax_and_continues_bitwise(tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  tx = optzoo.microadam(1e-2, block_size=64, quant_bucket_size=16)
  loss, params = _loss_and_params()

  @jax.jit
  def run(p, s, n):
    def body(_, c):
      g = jax.grad(loss)(c[0])
      u, st = tx.update(g, c[1], c[0])
      return optax.apply_updates(c[0], u), st
    return jax.lax.fori_loop(0, n, body, (p, s))

  p3, s3 = run(params, tx.init(params), 3)
  with ocp.StandardCheckpointer() as ckpt:
    ckpt.save(tmp_path / "ckpt", {"params": p3, "opt_state": s3})
    ckpt.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"params": p3, "opt_state": s3})
    restored = ckpt.restore(tmp_path / "ckpt", target)
  assert jax.tree.structure(restored["opt_state"]) == jax.tree.structure(s3)
  want = run(p3, s3, 4)
  got = run(restored["params"], restored["opt_state"], 4)
  for x, y in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    assert x.dtype == y.dtype and np.asarray(x).tobytes() == np.asarray(y).tobytes()
