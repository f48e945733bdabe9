"""Tests of optzoo.metaoptimize (Hessian-free 2x2 MetaOptimize, the paper's Algorithm 3)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optzoo import metaoptimize, metaoptimize_learning_rates

from helpers import assert_trees_close, run, with_standard_promotion

PARAMS = {
    "a": jnp.linspace(-1.0, 1.0, 5),
    "b": {"kernel": jnp.arange(6.0).reshape(2, 3) / 6.0, "bias": jnp.array([0.5, -0.5, 0.2])},
}


def _loss(p):
  return (jnp.sum(jnp.sin(3.0 * p["a"]) ** 2) + jnp.sum((p["b"]["kernel"] - 0.3) ** 4)
          + 0.5 * jnp.sum((p["b"]["bias"] + 1.0) ** 2) + jnp.sum(p["a"][:3]) * jnp.sum(p["b"]["bias"]))


def _adam(tx=None):
  """optax.scale_by_adam() (or tx) exempt from strict promotion: optax's bias correction
  computes a Python float ** int32 count. MetaOptimize around it stays strict."""
  return with_standard_promotion(optax.scale_by_adam() if tx is None else tx)


LABELS = {"a": "first", "b": {"kernel": "second", "bias": "first"}}


# --------------------------------------------------------------------- meta lr 0 = the base
@pytest.mark.parametrize("base,twin", [
    (_adam(), lambda lr: _adam(optax.adam(lr))),
    (optax.scale_by_lion(), lambda lr: optax.lion(lr, weight_decay=0.0)),
    (optax.identity(), lambda lr: optax.sgd(lr)),
])
def test_meta_lr_zero_equals_the_base_scaled_step_by_step(base, twin):
  lr = 3e-2
  mo = run(metaoptimize(base, lr, meta_learning_rate=0.0), PARAMS, 15, loss=_loss).updates
  ref = run(twin(lr), PARAMS, 15, loss=_loss).updates
  for u, r in zip(mo, ref):  # exp(log lr) in float32 may differ from lr by one ulp
    assert_trees_close(u, r, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("granularity", ["per_leaf", "per_weight", LABELS])
@pytest.mark.parametrize("meta", ["lion", "adam", "rmsprop", "sgd"])
def test_meta_lr_zero_keeps_every_block_at_the_initial_step(granularity, meta):
  lr = 1e-2
  mo = run(metaoptimize(_adam(), lr, meta_learning_rate=0.0, meta=meta, granularity=granularity),
           PARAMS, 8, loss=_loss)
  ref = run(_adam(optax.adam(lr)), PARAMS, 8, loss=_loss)
  for u, r in zip(mo.updates, ref.updates):
    assert_trees_close(u, r, rtol=1e-6, atol=1e-9)
  for x in jax.tree.leaves(metaoptimize_learning_rates(mo.states[-1])):
    np.testing.assert_allclose(np.asarray(x), lr, rtol=1e-6)


def test_meta_lr_zero_with_weight_decay_equals_adamw():
  mask = {"a": True, "b": {"kernel": True, "bias": False}}
  for kw in ({}, {"mask": mask}):
    mo = run(metaoptimize(_adam(), 2e-2, meta_learning_rate=0.0, weight_decay=0.3, **kw),
             PARAMS, 20, loss=_loss)
    ref = run(_adam(optax.adamw(2e-2, weight_decay=0.3, **kw)), PARAMS, 20, loss=_loss)
    for u, r in zip(mo.updates, ref.updates):
      assert_trees_close(u, r, rtol=1e-6, atol=1e-9)
    assert_trees_close(mo.params[-1], ref.params[-1], rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------- trace and first step
def test_first_step_does_not_move_the_step_size_and_second_does():
  for meta in ("lion", "adam", "rmsprop", "sgd"):
    states = run(metaoptimize(_adam(), 1e-2, meta=meta), PARAMS, 2, loss=_loss).states
    b0, b1, b2 = (float(s.log_learning_rate) for s in states)
    assert b1 == b0, meta  # h_0 = 0 so z_1 = 0
    assert b2 != b1, meta


@pytest.mark.parametrize("base", [_adam(), optax.scale_by_lion(), optax.identity()])
def test_trace_is_the_total_displacement_without_decay(base):
  """gamma = 1, no decay: h_t = w_t - w_0 for any base (Hessian-free), while alpha moves."""
  tx = metaoptimize(base, 1e-2, meta_learning_rate=0.05, granularity="per_leaf")
  out = run(tx, PARAMS, 12, loss=_loss)
  states, params = out.states, out.params[-1]
  assert float(jnp.max(jnp.abs(states[-1].log_learning_rate["a"] - math.log(1e-2)))) > 0.1
  displacement = jax.tree.map(lambda w, w0: w - w0, params, PARAMS)
  assert_trees_close(states[-1].trace, displacement, rtol=1e-5, atol=1e-6)


def test_trace_follows_the_decayed_recursion():
  """h_{t+1} = gamma (1 - kappa alpha_t mask) h_t + dw_t with the alpha used for the step."""
  gamma, kappa = 0.9, 0.2
  mask = {"a": False, "b": {"kernel": True, "bias": True}}
  tx = metaoptimize(_adam(), 5e-2, meta_learning_rate=0.05, gamma=gamma,
                    weight_decay=kappa, mask=mask, granularity=LABELS)
  out = run(tx, PARAMS, 10, loss=_loss)
  updates, states = out.updates, out.states
  flags = jax.tree.map(float, mask)
  labels_tree = LABELS
  for t, dw in enumerate(updates):
    alpha = metaoptimize_learning_rates(states[t])
    a_tree = jax.tree.map(lambda lab: alpha[lab], labels_tree)
    want = jax.tree.map(lambda h, d, a, m: gamma * (1.0 - kappa * a * m) * h + d,
                        states[t].trace, dw, a_tree, flags)
    assert_trees_close(states[t + 1].trace, want, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------- step size learning
_DIM = 20
_CURV = jnp.asarray(np.logspace(-1.0, 1.0, _DIM), jnp.float32)
_W_STAR = jnp.asarray(np.random.default_rng(0).normal(size=_DIM) * 2.0, jnp.float32)


def _quad_loss(w):
  return 0.5 * jnp.sum(_CURV * (w - _W_STAR) ** 2)


@jax.jit
def _noisy_quadratic_runs(lr0):
  """(final loss, final alpha) for fixed Adam and MetaOptimize(Adam) with Lion and Adam meta."""
  steps = 5_000
  noise = 0.1 * jax.random.normal(jax.random.PRNGKey(0), (steps, _DIM))

  def final(tx):
    def body(carry, n):
      w, s = carry
      u, s = tx.update(jax.grad(_quad_loss)(w) + n, s, w)
      return (optax.apply_updates(w, u), s), None

    w0 = jnp.zeros(_DIM)
    (w, s), _ = jax.lax.scan(body, (w0, tx.init(w0)), noise)
    return _quad_loss(w), jnp.exp(s.log_learning_rate)

  return [final(metaoptimize(_adam(), lr0, meta_learning_rate=eta, meta=meta))
          for eta, meta in ((0.0, "lion"), (1e-3, "lion"), (1e-3, "adam"))]


def test_step_size_100x_too_small_rises_and_beats_the_fixed_step():
  """The good fixed Adam step here is ~1e-2 (loss ~1e-3 after 5k steps); start at 1e-4."""
  lr0 = 1e-4
  (loss_fixed, _), (loss_lion, a_lion), (loss_adam, a_adam) = _noisy_quadratic_runs(lr0)
  for name, loss, alpha in (("lion", loss_lion, a_lion), ("adam", loss_adam, a_adam)):
    assert float(alpha) >= 10 * lr0, (name, float(alpha))
    assert float(loss) < 0.01 * float(loss_fixed), (name, float(loss), float(loss_fixed))


@pytest.mark.parametrize("meta", ["lion", "adam", "sgd"])
def test_divergent_step_size_falls_and_the_run_recovers(meta):
  """SGD on 0.5 w^2 diverges for alpha > 2; from alpha0 = 2.2 the step size must fall below 2."""
  tx = metaoptimize(optax.identity(), 2.2, meta_learning_rate=1e-2, meta=meta)
  out = run(tx, {"w": jnp.array([1.0])}, 200, loss=lambda p: 0.5 * jnp.sum(p["w"] ** 2))
  states, params = out.states, out.params[-1]
  rates = [float(metaoptimize_learning_rates(s)) for s in states]
  assert min(rates[:16]) < 2.0, rates[:16]
  assert abs(float(params["w"][0])) < 1e-6


@pytest.mark.parametrize("granularity", ["scalar", "per_leaf", "per_weight", LABELS])
def test_lion_meta_moves_log_step_size_by_at_most_eta_and_stays_positive(granularity):
  eta = 0.02
  states = run(metaoptimize(_adam(), 1e-2, meta_learning_rate=eta, granularity=granularity),
               PARAMS, 30, loss=_loss).states
  moved = 0.0
  for s0, s1 in zip(states[:-1], states[1:]):
    for b0, b1 in zip(jax.tree.leaves(s0.log_learning_rate), jax.tree.leaves(s1.log_learning_rate)):
      b0, b1 = np.asarray(b0, np.float64), np.asarray(b1, np.float64)
      step = np.abs(b1 - b0)
      ulp = np.spacing(np.abs(b0).astype(np.float32)).astype(np.float64)
      assert np.all(step <= eta * (1 + 1e-6) + 2 * ulp), float(step.max())
      moved = max(moved, float(step.max()))
    for a in jax.tree.leaves(metaoptimize_learning_rates(s1)):
      assert np.all(np.isfinite(a)) and np.all(np.asarray(a) > 0)
  assert moved > 0.5 * eta  # the bound is attained, so the test would see a larger step


@pytest.mark.parametrize("meta", ["lion", "adam", "sgd"])
def test_log_lr_bounds_are_respected(meta):
  lo, hi = math.log(3e-3), math.log(2e-2)
  tx = metaoptimize(_adam(), 1e-2, meta_learning_rate=0.5 if meta != "sgd" else 50.0,
                    meta=meta, granularity="per_weight", log_lr_bounds=(lo, hi))
  states = run(tx, PARAMS, 40, loss=_loss).states
  betas = np.concatenate([np.ravel(np.asarray(b)) for s in states
                          for b in jax.tree.leaves(s.log_learning_rate)])
  assert np.all(betas >= np.float32(lo)) and np.all(betas <= np.float32(hi))
  assert np.any(np.isclose(betas, np.float32(lo))) or np.any(np.isclose(betas, np.float32(hi)))
  # without bounds the same run leaves the interval, so the clip is what held it
  free = metaoptimize(_adam(), 1e-2, meta_learning_rate=0.5 if meta != "sgd" else 50.0,
                      meta=meta, granularity="per_weight")
  states_free = run(free, PARAMS, 40, loss=_loss).states
  b_free = np.concatenate([np.ravel(np.asarray(b)) for s in states_free
                           for b in jax.tree.leaves(s.log_learning_rate)])
  assert np.any(b_free < lo) or np.any(b_free > hi)


# --------------------------------------------------------------------- IDBD (Sutton 1992)
def _idbd_data(n, seed=0, dim=20, relevant=5, flip_every=20):
  """Sutton's tracking task: y = sum_{i<5} s_i x_i, one random s_i flips every 20 examples."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, dim)).astype(np.float32)
  signs = np.zeros(dim)
  signs[:relevant] = rng.choice([-1.0, 1.0], relevant)
  y = np.empty(n, np.float32)
  for t in range(n):
    if t > 0 and t % flip_every == 0:
      i = rng.integers(relevant)
      signs[i] = -signs[i]
    y[t] = x[t] @ signs
  return jnp.asarray(x), jnp.asarray(y)


def _lms_run(tx, xs, ys, with_diag=False):
  def body(carry, xy):
    w, s = carry
    x, y = xy
    err = y - x @ w
    extra = {"hessian_diag": x * x} if with_diag else {}
    u, s = tx.update(-err * x, s, w, **extra)
    w = optax.apply_updates(w, u)
    return (w, s), (err**2, w)

  w0 = jnp.zeros(xs.shape[1])
  (_, s), (sq_err, ws) = jax.lax.scan(body, (w0, tx.init(w0)), (xs, ys))
  return sq_err, ws, s


def test_idbd_tracking_task_beats_the_best_fixed_step_size():
  """Per-weight MetaOptimize over SGD (gamma 0.9, Lion meta) vs LMS on a grid of steps.

  MSE over examples 20k..30k. Sutton (1992) reports LMS at best ~3.5; this reaches ~1.4.
  """
  xs, ys = _idbd_data(30_000)
  grid = jnp.array([0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07])

  @jax.jit
  def runs():
    fixed = jax.vmap(lambda lr: jnp.mean(_lms_run(optax.sgd(lr), xs, ys)[0][20_000:]))(grid)
    tx = metaoptimize(optax.identity(), 0.02, gamma=0.9, granularity="per_weight")
    sq_err, _, state = _lms_run(tx, xs, ys)
    return fixed, jnp.mean(sq_err[20_000:]), jnp.exp(state.log_learning_rate)

  fixed, mse, alpha = runs()
  best = float(jnp.nanmin(fixed))
  assert float(mse) < 0.6 * best, (float(mse), np.asarray(fixed))
  # it learned which inputs matter: every relevant step size exceeds every irrelevant one
  assert float(jnp.min(alpha[:5])) > 10 * float(jnp.max(alpha[5:])), np.asarray(alpha)


def test_sgd_meta_with_diagonal_hessian_is_exactly_idbd():
  """SGD base + SGD meta, per weight, alpha_{t+1} timing, trace decay max(0, 1 - alpha x^2)."""
  theta, alpha0, steps = 0.01, 0.05, 300
  xs, ys = _idbd_data(steps, seed=3)
  tx = metaoptimize(optax.identity(), alpha0, meta_learning_rate=theta, meta="sgd",
                    granularity="per_weight", alpha_timing="next")
  _, ws, _ = jax.jit(lambda: _lms_run(tx, xs, ys, with_diag=True))()
  # Sutton (1992), float64 NumPy
  x64, y64 = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
  beta = np.full(20, np.log(np.float32(alpha0)), np.float64)
  w, h = np.zeros(20), np.zeros(20)
  ref = []
  for t in range(steps):
    x = x64[t]
    delta = y64[t] - w @ x
    beta += theta * delta * x * h
    a = np.exp(beta)
    w = w + a * delta * x
    h = h * np.maximum(0.0, 1.0 - a * x * x) + a * delta * x
    ref.append(w.copy())
  np.testing.assert_allclose(np.asarray(ws), np.array(ref), rtol=2e-4, atol=2e-5)


# --------------------------------------------------------------------- granularity
def test_granularity_consistency():
  steps = 10
  kw = dict(meta="sgd", meta_learning_rate=5.0)  # SGD meta: blocks move by their own z
  scalar = run(metaoptimize(_adam(), 1e-2, **kw), PARAMS, steps, loss=_loss)
  one_label = jax.tree.map(lambda _: 0, PARAMS)
  block = run(metaoptimize(_adam(), 1e-2, granularity=one_label, **kw), PARAMS, steps, loss=_loss)
  s_scalar, p_scalar, s_one, p_one = (scalar.states, scalar.params[-1], block.states,
                                      block.params[-1])
  assert_trees_close(p_scalar, p_one, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(float(s_one[-1].log_learning_rate["0"]),
                             float(s_scalar[-1].log_learning_rate), rtol=1e-6)
  # a label per leaf = per_leaf
  leaf_labels = {"a": "a", "b": {"kernel": "k", "bias": "c"}}
  leaf = run(metaoptimize(_adam(), 1e-2, granularity="per_leaf", **kw), PARAMS, steps, loss=_loss)
  lab = run(metaoptimize(_adam(), 1e-2, granularity=lambda p: leaf_labels, **kw), PARAMS, steps,
            loss=_loss)
  s_leaf, p_leaf, s_lab, p_lab = leaf.states, leaf.params[-1], lab.states, lab.params[-1]
  assert_trees_close(p_leaf, p_lab, rtol=1e-6, atol=1e-7)
  lab_rates = metaoptimize_learning_rates(s_lab[-1])
  leaf_rates = metaoptimize_learning_rates(s_leaf[-1])
  assert_trees_close(jax.tree.map(lambda lab: lab_rates[lab], leaf_labels), leaf_rates, rtol=1e-6)
  # the blocks really differ from each other (else the test above proves little)
  assert len({round(float(v), 6) for v in lab_rates.values()}) == 3
  # per_weight on one-element params = scalar
  one = {"x": jnp.array([1.5])}
  loss1 = lambda p: jnp.sum(p["x"] ** 4 - p["x"])  # noqa: E731
  p_w = run(metaoptimize(_adam(), 1e-2, granularity="per_weight", **kw), one, steps,
            loss=loss1).params[-1]
  p_s = run(metaoptimize(_adam(), 1e-2, **kw), one, steps, loss=loss1).params[-1]
  assert_trees_close(p_w, p_s, rtol=1e-6)


@pytest.mark.standard_promotion("optax.MultiSteps divides its accumulator by an int32 count "
                                 "and optax.scale_by_adam's bias correction takes float ** int32")
def test_learning_rates_helper_through_wrappers():
  tx = optax.MultiSteps(optax.chain(
      optax.clip_by_global_norm(1.0),
      optax.inject_hyperparams(metaoptimize, static_args=("base", "granularity"))(
          base=optax.scale_by_adam(), initial_learning_rate=1e-2, granularity=LABELS)),
      every_k_schedule=1)
  states = run(tx, PARAMS, 3, loss=_loss).states
  rates = metaoptimize_learning_rates(states[-1])
  assert sorted(rates) == ["first", "second"]
  assert all(0 < float(v) < 1 for v in rates.values())


# --------------------------------------------------------------------- validation
def test_rejects_a_base_that_already_has_a_learning_rate():
  for bad in (optax.adam(1e-3), optax.adamw(1e-3), optax.sgd(1e-2),
              optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(1e-3)),
              optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(0.1))):
    with pytest.raises(ValueError, match="learning-rate-free base"):
      metaoptimize(bad, 1e-3).init(PARAMS)
  injected = metaoptimize(optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), 1e-3)
  with pytest.raises(ValueError, match="points against the gradient"):
    injected.init(PARAMS)
  # accepted: lr-free bases, pre-processing, and the explicit opt-out
  for ok in (optax.scale_by_adam(), optax.scale_by_lion(), optax.identity(),
             optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_rms()),
             optax.chain(optax.scale_by_adam(), optax.scale(2.0))):  # a positive factor
    metaoptimize(ok, 1e-3).init(PARAMS)
  metaoptimize(optax.adam(1e-3), 1e-3, check_base=False)


@pytest.mark.parametrize("kwargs,name", [
    ({"initial_learning_rate": 0.0}, "initial_learning_rate"),
    ({"initial_learning_rate": -1e-3}, "initial_learning_rate"),
    ({"meta_learning_rate": -1e-3}, "meta_learning_rate"),
    ({"gamma": 1.5}, "gamma"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"meta_b1": 1.0}, "meta_b1"),
    ({"meta_b2": -0.1}, "meta_b2"),
    ({"meta": "adagrad"}, "meta"),
    ({"granularity": "per_row"}, "granularity"),
    ({"alpha_timing": "later"}, "alpha_timing"),
    ({"log_lr_bounds": (0.0, -1.0)}, "log_lr_bounds"),
    ({"log_lr_bounds": (-3.0, -1.0)}, "log_lr_bounds"),  # log(1e-3) is below -3
])
def test_validation(kwargs, name):
  args = {"base": optax.scale_by_adam(), "initial_learning_rate": 1e-3, **kwargs}
  with pytest.raises(ValueError, match=name):
    metaoptimize(**args)


def test_absent_meta_moments_are_none_and_modes_are_keyword_only():
  for meta, has_mu, has_nu in (("lion", True, False), ("adam", True, True),
                               ("rmsprop", False, True), ("sgd", False, False)):
    state = metaoptimize(optax.scale_by_adam(), 1e-3, meta=meta).init(PARAMS)
    assert (state.meta_mu is not None, state.meta_nu is not None) == (has_mu, has_nu), meta
  with pytest.raises(TypeError):
    metaoptimize(optax.scale_by_adam(), 1e-3, 1e-3, 1.0, "adam")


def test_labels_missing_a_leaf_raise_naming_it():
  with pytest.raises(ValueError, match="no value for the leaf"):
    metaoptimize(optax.scale_by_adam(), 1e-3, granularity={"a": "x"}).init(PARAMS)


def test_weight_decay_needs_params():
  tx = metaoptimize(_adam(), 1e-3, weight_decay=0.1)
  state = tx.init(PARAMS)
  with pytest.raises(ValueError, match="params"):
    tx.update(PARAMS, state)
  tx0 = metaoptimize(_adam(), 1e-3)
  tx0.update(PARAMS, tx0.init(PARAMS))  # no decay: params are optional
