"""MetaOptimize, never silently wrong: bases that carry a learning rate or a weight decay are
refused however they are composed, the step size settles once the loss has converged (the
safeguard) while ``safeguard=False`` is the authors' algorithm step by step, complex params,
integer leaves, gradient shapes, empty pytrees, and NaN gradients under apply_if_finite."""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optzoo import metaoptimize, metaoptimize_learning_rates, objectives
from optzoo.training import CompileCounter

# every test here runs optax code that strict promotion refuses
pytestmark = pytest.mark.standard_promotion(
    "the bases are optax's scale_by_adam and friends (float ** int32 in the bias correction)")

PARAMS = {"a": jnp.linspace(-1.0, 1.0, 5),
          "b": {"kernel": jnp.arange(12.0).reshape(4, 3) / 12.0, "bias": jnp.zeros(3)}}
LABELS = {"a": "x", "b": {"kernel": "y", "bias": "x"}}
MATRICES = {"w1": jnp.ones((4, 3)), "w2": jnp.ones((3, 5))}


def _loss(p):
  return (jnp.sum(jnp.sin(3.0 * p["a"]) ** 2) + jnp.sum((p["b"]["kernel"] - 0.3) ** 4)
          + 0.5 * jnp.sum((p["b"]["bias"] + 1.0) ** 2) + jnp.sum(p["a"][:3]) * jnp.sum(p["b"]["bias"]))


# --------------------------------------------------------------------- composed bases
_REFUSED = {
    "adam": lambda: optax.adam(1e-3),
    "sgd": lambda: optax.sgd(1e-2),
    "chain_negative_scale": lambda: optax.chain(optax.scale_by_adam(), optax.scale(-1.0)),
    "chain_lr": lambda: optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(1e-3)),
    "chain_decay": lambda: optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.1)),
    "partition": lambda: optax.partition(
        {"x": optax.adam(1e-3), "y": optax.scale_by_adam()}, LABELS),
    "multi_transform": lambda: optax.multi_transform(
        {"x": optax.scale_by_adam(), "y": optax.sgd(1e-2)}, LABELS),
    "partition_decay": lambda: optax.partition(
        {"x": optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.1)),
         "y": optax.scale_by_lion()}, LABELS),
    "multisteps": lambda: optax.MultiSteps(optax.adam(1e-3), every_k_schedule=4),
    "multisteps_too_long": lambda: optax.MultiSteps(optax.scale_by_adam(), every_k_schedule=32),
    "muon": lambda: optax.contrib.muon(1e-3),
    "inject_hyperparams": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
}


@pytest.mark.parametrize("name", sorted(_REFUSED))
def test_a_base_with_a_learning_rate_or_decay_is_refused_however_composed(name):
  params = MATRICES if name == "muon" else PARAMS
  with pytest.raises(ValueError, match="learning-rate-free base"):
    metaoptimize(_REFUSED[name](), 1e-3).init(params)


def test_the_probe_names_the_leaf_and_the_reason():
  with pytest.raises(ValueError, match=r"leaf \['a'\] points against the gradient"):
    metaoptimize(_REFUSED["partition"](), 1e-3).init(PARAMS)
  with pytest.raises(ValueError, match=r"leaf \['a'\] at a zero gradient"):
    metaoptimize(_REFUSED["partition_decay"](), 1e-3).init(PARAMS)
  with pytest.raises(ValueError, match="zero updates for 16 steps"):
    metaoptimize(_REFUSED["multisteps_too_long"](), 1e-3).init(PARAMS)


def test_the_probe_also_runs_when_init_is_traced():
  """Inside jax.jit the probe is part of the caller's program (no compilation of its own) and
  its ValueError arrives, wrapped, when that program runs; jax.eval_shape runs nothing."""
  tx = metaoptimize(_REFUSED["multisteps"](), 1e-3)
  with pytest.raises(jax.errors.JaxRuntimeError, match="points against the gradient"):
    jax.block_until_ready(jax.jit(tx.init)(PARAMS))
  with pytest.raises(jax.errors.JaxRuntimeError, match=r"leaf \['a'\] at a zero gradient"):
    jax.block_until_ready(jax.jit(jax.vmap(metaoptimize(_REFUSED["partition_decay"](), 1e-3).init))(
        jax.tree.map(lambda x: jnp.stack([x, x]), PARAMS)))
  jax.eval_shape(tx.init, PARAMS)


def test_the_probe_is_one_program_cached_per_base_and_shapes():
  base = optax.scale_by_adam()
  counts = []
  for _ in range(2):
    with CompileCounter() as c:
      metaoptimize(base, 1e-3, check_base=True).init(PARAMS)
    counts.append(c.count)
  with CompileCounter() as c:
    jax.block_until_ready(jax.jit(metaoptimize(optax.scale_by_adam(), 1e-3).init)(PARAMS))
  assert counts[1] == 0 and c.count == 1, (counts, c.count)


@pytest.mark.parametrize("base,params", [
    (optax.scale_by_adam(), PARAMS), (optax.scale_by_lion(), PARAMS), (optax.identity(), PARAMS),
    (optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_rms()), PARAMS),
    (optax.partition({"x": optax.scale_by_adam(), "y": optax.scale_by_lion()}, LABELS), PARAMS),
    (optax.partition({"x": optax.scale_by_adam(), "y": optax.set_to_zero()}, LABELS), PARAMS),
    (optax.MultiSteps(optax.scale_by_adam(), every_k_schedule=2), PARAMS),
    (optax.contrib.scale_by_muon(weight_dimension_numbers=jax.tree.map(
        lambda _: optax.contrib.MuonDimensionNumbers(), MATRICES)), MATRICES),
    (optax.scale_by_adam(), {"z": jnp.ones(3, jnp.complex64)}),
], ids=["adam", "lion", "sgd", "clip_rms", "partition", "frozen_leaves", "multisteps", "muon",
        "complex"])
def test_learning_rate_free_bases_are_accepted(base, params):
  tx = metaoptimize(base, 1e-3)
  state = tx.init(params)
  jax.jit(tx.update)(params, state, params)
  metaoptimize(optax.adam(1e-3), 1e-3, check_base=False).init(params)  # the opt-out


# --------------------------------------------------------------------- the safeguard
_TOYS = ("parabola", "rosenbrock", "matrix_parabola", "mixed_pytree")
_BASES = {"sgd": optax.identity, "adam": optax.scale_by_adam, "lion": optax.scale_by_lion}


def _run(tx, obj, steps):
  """(losses, step sizes) of a jitted full-batch run."""
  def body(carry, _):
    p, s = carry
    value, g = jax.value_and_grad(obj.loss)(p)
    u, s = tx.update(g, s, p)
    return (optax.apply_updates(p, u), s), (value, metaoptimize_learning_rates(s))

  @jax.jit
  def run(p):
    return jax.lax.scan(body, (p, tx.init(p)), None, length=steps)[1]

  losses, rates = run(obj.init())
  return np.asarray(losses), np.asarray(rates)


@pytest.mark.parametrize("objective", _TOYS)
def test_no_runaway_for_30000_steps_with_sgd_adam_and_lion_bases(objective):
  """Default safeguard, constant initial step 1e-3: the step size settles and the loss drops.

  Without it the step size of the SGD and Adam bases climbs like exp(1e-3 t) after
  convergence (to ~100-1000 on these objectives, far past the stability limit 2/L).
  """
  obj = objectives.get(objective)
  for name, make in _BASES.items():
    losses, rates = _run(metaoptimize(make(), 1e-3), obj, 30_000)
    assert np.all(np.isfinite(losses)), (objective, name)
    assert losses[-1] < 0.05 * losses[0], (objective, name, losses[-1], losses[0])
    assert rates.max() < 0.1, (objective, name, rates.max())
    assert 0.5 < rates[-1] / rates[9_999] < 2.0, (objective, name, rates[9_999], rates[-1])
  if objective == "parabola":  # the authors' rule runs away on the same problem
    _, rates = _run(metaoptimize(optax.identity(), 1e-3, safeguard=False), obj, 30_000)
    assert rates.max() > 10.0, rates.max()


def _authors_reference(params, loss, steps, *, alpha0, eta, kappa, meta, b1=0.9, b2=0.999,
                       eps=1e-8, mb1=0.9, mb2=None, meta_eps=1e-16):
  """The paper's Algorithm 3 (the authors' Hessian-free, 2x2 trace) over an Adam base, written
  out in NumPy on one flat float64 vector (the log step size, the meta-gradient and the meta
  moments in float32, as optzoo keeps them): ``(params, log step size)`` after every step."""
  flat, unravel = jax.flatten_util.ravel_pytree(params)
  grad = jax.jit(lambda w: jax.flatten_util.ravel_pytree(jax.grad(loss)(unravel(w)))[0])
  f32 = np.float32
  w = np.asarray(flat, np.float64)
  h, m, v = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
  beta, mm, mv = f32(np.log(f32(alpha0))), f32(0), f32(0)
  mb2 = (0.99 if meta == "lion" else 0.999) if mb2 is None else mb2
  out = []
  for t in range(1, steps + 1):
    g = np.asarray(grad(w), np.float64)
    z = f32(np.sum(h.astype(f32) * g.astype(f32), dtype=np.float64))  # uses the old trace
    alpha = float(np.exp(beta))
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    u = (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    dw = -alpha * (u + kappa * w)
    w = w + dw
    h = (1 - kappa * alpha) * h + dw
    if meta == "lion":  # sign first, then the momentum
      beta = f32(beta - f32(eta) * np.sign(f32(mb1) * mm + f32(1 - mb1) * z))
      mm = f32(mb2) * mm + f32(1 - mb2) * z
    else:  # adam: moments first
      mm = f32(mb1) * mm + f32(1 - mb1) * z
      mv = f32(mb2) * mv + f32(1 - mb2) * z * z
      beta = f32(beta - f32(eta) * (mm / f32(1 - mb1**t))
                 / (np.sqrt(mv / f32(1 - mb2**t)) + f32(meta_eps)))
    out.append((w.copy(), float(beta)))
  return out


@pytest.mark.parametrize("meta", ["lion", "adam"])
def test_safeguard_off_is_the_authors_algorithm_step_by_step(meta):
  steps, kw = 150, dict(alpha0=1e-2, eta=0.02, kappa=0.1)
  with jax.enable_x64(True):
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), PARAMS)
    ref = _authors_reference(params, _loss, steps, meta=meta, **kw)
    tx = metaoptimize(optax.scale_by_adam(), kw["alpha0"], meta_learning_rate=kw["eta"],
                      weight_decay=kw["kappa"], meta=meta, safeguard=False)
    step = jax.jit(lambda p, s: tx.update(jax.grad(_loss)(p), s, p))
    p, s = params, tx.init(params)
    moved = 0.0
    for t, (w_ref, beta_ref) in enumerate(ref):
      u, s = step(p, s)
      p = optax.apply_updates(p, u)
      w = np.asarray(jax.flatten_util.ravel_pytree(p)[0])
      # float32 rounding of exp(beta) and of the bias corrections: a few 1e-6 after 150 steps;
      # a wrong rule (a flipped sign, another order) moves beta by eta = 0.02 in one step
      np.testing.assert_allclose(w, w_ref, rtol=0, atol=2e-5, err_msg=f"step {t + 1}")
      np.testing.assert_allclose(float(s.log_learning_rate), beta_ref, rtol=0, atol=1e-5,
                                 err_msg=f"step {t + 1}")
      moved = max(moved, abs(beta_ref - float(np.log(np.float32(kw["alpha0"])))))
  assert moved > 0.5, moved  # the step size really moved


def test_safeguard_changes_nothing_while_the_meta_signal_is_at_its_working_level():
  """Identical to the authors' rule until the signal falls below a tenth of its peak."""
  obj = objectives.get("parabola")
  on = _run(metaoptimize(optax.identity(), 1e-3), obj, 3_000)[1]
  off = _run(metaoptimize(optax.identity(), 1e-3, safeguard=False), obj, 3_000)[1]
  split = int(np.argmax(on != off))
  assert split > 500, split  # the whole rise from 1e-3 is the authors'
  np.testing.assert_array_equal(on[:split], off[:split])
  assert on[-1] < off[-1]


def test_safeguard_state_and_switch():
  for meta, has_peak in (("lion", True), ("adam", True), ("rmsprop", True), ("sgd", False)):
    state = metaoptimize(optax.scale_by_adam(), 1e-3, meta=meta).init(PARAMS)
    assert (state.meta_peak is not None) == has_peak, meta
    assert metaoptimize(optax.scale_by_adam(), 1e-3, meta=meta,
                        safeguard=False).init(PARAMS).meta_peak is None


# --------------------------------------------------------------------- inputs
def test_complex_parabola_reaches_its_minimum_like_optax_adam():
  """Descent along conj(grad), as optax.adam; meta lr 0 is optax.adam step by step."""
  c = jnp.array([1.0 + 2.0j, -0.5 + 0.25j, 0.3 - 1.0j], jnp.complex64)

  def loss(z):
    return jnp.sum(jnp.abs(z - c) ** 2)

  def run(tx, steps):
    def body(carry, _):
      z, s = carry
      u, s = tx.update(jnp.conj(jax.grad(loss)(z)), s, z)
      return (optax.apply_updates(z, u), s), None
    z0 = jnp.zeros(3, jnp.complex64)
    return jax.jit(lambda: jax.lax.scan(body, (z0, tx.init(z0)), None, length=steps)[0])()

  z, state = run(metaoptimize(optax.scale_by_adam(), 1e-2), 3_000)
  assert state.trace.dtype == jnp.complex64
  assert float(loss(z)) < 1e-6, float(loss(z))
  assert float(metaoptimize_learning_rates(state)) > 1e-2  # it learned a larger step
  z_mo, _ = run(metaoptimize(optax.scale_by_adam(), 1e-2, meta_learning_rate=0.0), 50)
  z_adam, _ = run(optax.adam(1e-2), 50)
  np.testing.assert_allclose(np.asarray(z_mo), np.asarray(z_adam), rtol=1e-5, atol=1e-6)


def test_integer_leaves_are_rejected_at_init_naming_the_leaf():
  with pytest.raises(TypeError, match=r"metaoptimize: the leaf \['n'\] has dtype int32"):
    metaoptimize(optax.scale_by_adam(), 1e-3).init({"w": jnp.ones(3), "n": jnp.ones(2, jnp.int32)})


def test_a_gradient_of_another_shape_is_refused_naming_the_leaf():
  tx = metaoptimize(optax.scale_by_adam(), 1e-3)
  state = tx.init(PARAMS)
  bad = {"a": PARAMS["a"], "b": {"kernel": jnp.ones((3, 4)), "bias": jnp.zeros(3)}}
  with pytest.raises(ValueError, match=r"\['b'\]\['kernel'\].*\(3, 4\).*\(4, 3\)"):
    tx.update(bad, state)


def test_empty_pytree_gives_empty_updates():
  for granularity in ("scalar", "per_leaf", "per_weight"):
    tx = metaoptimize(optax.scale_by_adam(), 1e-3, granularity=granularity)
    state = tx.init({})
    updates, state = jax.jit(tx.update)({}, state, {})
    assert updates == {}


def test_one_nan_gradient_poisons_the_shared_step_size_unless_apply_if_finite_skips_it():
  def run(tx, steps=6, bad_step=2):
    p, state = PARAMS, tx.init(PARAMS)
    update = jax.jit(tx.update)
    for t in range(steps):
      g = jax.grad(_loss)(p)
      if t == bad_step:
        g = {"a": g["a"].at[0].set(jnp.nan), "b": g["b"]}
      u, state = update(g, state, p)
      p = optax.apply_updates(p, u)
    return p, state

  tx = metaoptimize(optax.scale_by_adam(), 1e-2, meta_learning_rate=0.01)
  p, state = run(tx)
  assert bool(jnp.isnan(state.log_learning_rate))
  assert all(bool(jnp.all(jnp.isnan(x))) for x in jax.tree.leaves(p))  # every leaf
  p, state = run(optax.apply_if_finite(tx, max_consecutive_errors=3))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((p, state)))
  ref, _ = run(tx, steps=5, bad_step=-1)
  for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(ref)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)


@pytest.mark.parametrize("base", ["adam", "lion"])
def test_float32_gradients_of_1e20_give_finite_updates_with_a_normalised_base(base):
  p = {"a": jnp.ones(4), "b": jnp.ones((2, 3))}
  tx = metaoptimize(_BASES[base](), 1e-3)
  state, params = tx.init(p), p
  update = jax.jit(tx.update)
  for t in range(8):
    big = 1e20 if t % 2 else 1.0
    g = {"a": jnp.array([1e20, -1e20, 0.5, -0.3]) * (1.0 + t),
         "b": big * jnp.array([[1.0, -1.0, 2.0], [0.5, 3.0, -2.0]])}
    u, state = update(g, state, params)
    params = optax.apply_updates(params, u)
    assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u)), t
  assert bool(jnp.isfinite(state.log_learning_rate))
