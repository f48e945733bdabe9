"""MADA: its corners against optax step by step, hypergradients against finite differences,
the coefficient boxes, trimming, and the Reddi et al. online problem."""


import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optzoo
from optzoo import MADA_COEFF_NAMES as COEFF_NAMES
from optzoo import mada_coefficients as coeffs_dict

from optzoo._src import mada as mada_mod  # the implementation module (private)

from helpers import assert_trees_close, run, with_standard_promotion

FROZEN = {"learn": (), "v_init": 0.0}  # the corners: nothing learned, v starts at 0



def _params(seed=0):
  rng = np.random.default_rng(seed)
  return {"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.asarray(rng.normal(size=5)),
          "s": jnp.asarray(rng.uniform(0.5, 1.5, size=(2,)))}


def _loss(p):
  return (jnp.sum(jnp.sin(2.0 * p["w"]) ** 2) + 0.25 * jnp.sum((p["b"] - 1.0) ** 4)
          + jnp.sum(p["s"] ** 2) * jnp.sum(p["w"][0]))


def _assert_same_trajectory(tx_a, tx_b, steps=100, rtol=1e-10, atol=1e-12):
  """Runs both optimizers on _loss from _params() and compares the params after every step;
  returns tx_a's final state."""
  a, b = (run(tx, _params(), steps, loss=_loss) for tx in (tx_a, tx_b))
  for t, (pa, pb) in enumerate(zip(a.params, b.params)):
    assert_trees_close(pa, pb, rtol=rtol, atol=atol, err_msg=f"step {t + 1}")
  return a.states[-1]


# ----------------------------------------------------------------------------- corners
@pytest.mark.parametrize("kw", [FROZEN, {"hyper_lr": 0.0, "v_init": 0.0}],
                         ids=["learn_nothing", "hyper_lr_zero"])
def test_adam_corner_equals_optax_adam_step_by_step(kw):
  with jax.enable_x64(True):
    state = _assert_same_trajectory(
        optzoo.mada(1e-2, b1=0.9, b2=0.99, eps=1e-8, **kw),
        with_standard_promotion(optax.adam(1e-2, b1=0.9, b2=0.99, eps=1e-8)))
    # hyper_lr 0 still computes the hypergradient; the coefficients must not move
    np.testing.assert_array_equal(optax.tree.get(state, "coeffs"), [0.9, 0.99, 0.0, 1.0, 1.0, 1.0])


def test_adam_corner_with_masked_decay_equals_optax_adamw():
  with jax.enable_x64(True):
    mask = lambda p: jax.tree.map(lambda x: x.ndim >= 2, p)  # noqa: E731  (the reference's rule)
    _assert_same_trajectory(
        optzoo.mada(1e-2, b2=0.99, eps=1e-8, weight_decay=0.1, mask=mask, **FROZEN),
        with_standard_promotion(
            optax.adamw(1e-2, b1=0.9, b2=0.99, eps=1e-8, weight_decay=0.1, mask=mask)))


def test_adam_corner_with_default_v_init_is_adam_up_to_1e_15():
  with jax.enable_x64(True):
    _assert_same_trajectory(optzoo.mada(1e-2, b2=0.99, eps=1e-8, learn=()),
                            with_standard_promotion(optax.adam(1e-2, b1=0.9, b2=0.99, eps=1e-8)),
                            rtol=1e-6, atol=1e-9)


def test_yogi_corner_equals_optax_scale_by_yogi_with_zero_init():
  with jax.enable_x64(True):
    _assert_same_trajectory(
        optzoo.mada(1e-2, c=0.0, b2=0.99, eps=1e-8, **FROZEN),
        with_standard_promotion(optax.chain(
            optax.scale_by_yogi(b1=0.9, b2=0.99, eps=1e-8, initial_accumulator_value=0.0),
            optax.scale(-1e-2))))


@pytest.mark.parametrize("compat,lion_b1", [("paper", 0.95), ("reference", 0.95 * 0.98)])
def test_lion_corner_equals_optax_lion(compat, lion_b1):
  """gamma = 0 is Lion(0.95, 0.98); the reference code's order makes it Lion(0.931, 0.98)."""
  with jax.enable_x64(True):
    _assert_same_trajectory(
        optzoo.mada(1e-3, gamma=0.0, compat=compat, **FROZEN),
        optax.lion(1e-3, b1=lion_b1, b2=0.98, weight_decay=0.0), rtol=0.0, atol=1e-15)


def test_avgrad_corner_equals_avgrad():
  with jax.enable_x64(True):
    _assert_same_trajectory(optzoo.mada(1e-2, rho=0.0, b2=0.99, eps=1e-8, **FROZEN),
                            optzoo.avgrad(1e-2, b1=0.9, b2=0.99, eps=1e-8))


# ----------------------------------------------------------------------------- hypergradients
def _fd_check(kw, coeffs_to_check, steps_before=4, lr=3e-2, delta=1e-6):
  """h_k (from the implementation) against central differences of L(theta_{t-1}(kappa))."""
  with jax.enable_x64(True):
    tx = optax.chain(optzoo.scale_by_mada(learning_rate=lr, hyper_lr=0.0, **kw), optax.scale(-lr))
    grad = jax.grad(_loss)
    step = jax.jit(lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
        tx.update(grad(p), s, p)))
    p, s = _params(1), tx.init(_params(1))
    for _ in range(steps_before):
      p, s = step(p, s)
    p1, s1 = step(p, s)          # step t-1 (it produced theta_{t-1} with kappa)
    _, s2 = step(p1, s1)         # step t: computes h from g_t and step t-1's tangents
    h = np.asarray(s2[0].hypergrad)
    for name in coeffs_to_check:
      k = COEFF_NAMES.index(name)

      def loss_at(dk):
        inner = s[0]._replace(coeffs=s[0].coeffs.at[k].add(dk))
        p_new, _ = step(p, (inner,) + tuple(s[1:]))
        return float(_loss(p_new))

      fd = (loss_at(delta) - loss_at(-delta)) / (2 * delta)
      np.testing.assert_allclose(h[k], fd, rtol=2e-5, atol=1e-9, err_msg=f"h[{name}]")
    return h


@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_hypergradients_match_central_finite_differences(compat):
  # rho = 1 so that the detached vbar does not enter: every coefficient is then exact
  kw = dict(b1=0.8, b2=0.9, b3=0.3, rho=1.0, c=0.6, gamma=0.7, eps=1e-8, compat=compat)
  h = _fd_check(kw, ("b1", "b2", "b3", "c", "gamma"))
  assert np.all(h[[0, 1, 2, 4, 5]] != 0)


def test_rho_hypergradient_matches_finite_differences():
  # rho and b1, gamma do not go through vbar's dependence on kappa
  _fd_check(dict(b1=0.8, b2=0.9, rho=0.4, gamma=0.7, eps=1e-8), ("b1", "rho", "gamma"))


def test_closed_form_tangents_match_jvp():
  with jax.enable_x64(True):
    rng = np.random.default_rng(3)
    arr = lambda scale=1.0: jnp.asarray(rng.normal(size=(7,)) * scale)  # noqa: E731
    g, m, n, prev_grad, ell = arr(), arr(), arr(), arr(), arr()
    v, vb = jnp.abs(arr()) + 0.1, jnp.abs(arr()) + 0.1
    kap = mada_mod._Coeffs(*(jnp.asarray(x) for x in (0.8, 0.9, 0.3, 0.6, 0.4, 0.7)))
    rule = mada_mod._StepRule(b3=True, c=True, rho=True, gamma=True, reference=False,
                              eps=1e-8, eps_root=0.0, lion_b1=0.95, lion_b2=0.98)
    t, first = jnp.asarray(5.0), jnp.asarray(False)
    state = (g, m, v, vb, n, prev_grad, ell)
    _, f = mada_mod._direction(kap, *state, t=t, first=first, rule=rule)
    closed = mada_mod._tangents(kap, f, t, COEFF_NAMES, rule)
    assert tuple(closed) == COEFF_NAMES
    for name in COEFF_NAMES:
      def along(x, name=name):
        return mada_mod._direction(kap._replace(**{name: x}), *state, t=t, first=first,
                                   rule=rule)[0]

      jvp = jax.jvp(along, (getattr(kap, name),), (jnp.ones(()),))[1]
      np.testing.assert_allclose(closed[name], jvp, rtol=1e-10, atol=1e-12, err_msg=name)


def test_no_hypergradient_at_step_one_and_no_rho_hypergradient_at_step_two():
  tx = optzoo.mada(1e-2, rho=0.5)
  update = jax.jit(tx.update)
  p = _params()
  s = tx.init(p)
  _, s = update(jax.grad(_loss)(p), s, p)
  np.testing.assert_array_equal(s[0].hypergrad, np.zeros(6))
  _, s = update(jax.grad(_loss)(p), s, p)
  assert float(s[0].hypergrad[3]) == 0.0  # vbar_1 = v_1
  assert np.any(np.asarray(s[0].hypergrad) != 0.0)


def test_hypergradient_is_linear_in_the_loss_scale_and_the_direction_is_not():
  def run(scale):
    tx = optzoo.scale_by_mada(learning_rate=1e-2, eps=0.0, v_init=0.0, hyper_lr=0.0)
    p, s = _params(), None
    s = tx.init(p)
    for _ in range(3):
      u, s = tx.update(jax.tree.map(lambda x: scale * x, jax.grad(_loss)(p)), s, p)
      p = optax.apply_updates(p, jax.tree.map(lambda x: -1e-2 * x, u))
    return u, s.hypergrad

  u1, h1 = run(1.0)
  u10, h10 = run(10.0)
  np.testing.assert_allclose(h10, 10.0 * h1, rtol=1e-4, atol=1e-7)
  for k in u1:
    np.testing.assert_allclose(u10[k], u1[k], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- coefficients
def test_coefficients_stay_in_their_boxes_and_unlearned_ones_never_move():
  learn = ("b1", "b3", "rho", "gamma")
  tx = optzoo.mada(5e-2, b3=0.5, rho=0.5, c=0.5, gamma=0.5, learn=learn, hyper_lr=50.0,
                   hyper_momentum=0.5)
  lo = np.array([b[0] for b in mada_mod.DEFAULT_BOUNDS], np.float32)  # coeffs are float32 here
  hi = np.array([b[1] for b in mada_mod.DEFAULT_BOUNDS], np.float32)
  p = _params()
  s = tx.init(p)
  init = np.asarray(optax.tree.get(s, "coeffs"))
  step = jax.jit(lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
      tx.update(jax.grad(_loss)(p), s, p)))
  moved = np.zeros(6, bool)
  for _ in range(30):
    p, s = step(p, s)
    k = np.asarray(optax.tree.get(s, "coeffs"))
    assert np.all(k >= lo) and np.all(k <= hi), k
    for i, name in enumerate(COEFF_NAMES):
      if name not in learn:
        assert k[i] == init[i], f"{name} moved"
    moved |= k != init
  assert moved[[0, 2, 3, 5]].all(), "the learned coefficients should have moved"
  assert set(coeffs_dict(s)) == set(COEFF_NAMES)


def test_hyper_start_delays_learning():
  tx = optzoo.mada(1e-2, hyper_start=5, hyper_lr=1.0, learn=("b1",))
  p = _params()
  s = tx.init(p)
  seen = []
  for _ in range(7):
    u, s = tx.update(jax.grad(_loss)(p), s, p)
    p = optax.apply_updates(p, u)
    seen.append(float(optax.tree.get(s, "coeffs")[0]))
  assert seen[:5] == [float(np.float32(0.9))] * 5  # steps 1..5: h = 0
  assert seen[5] != seen[4]


def test_no_nan_when_a_leaf_has_zero_gradient():
  for v_init in (0.0, 1e-15):
    tx = optzoo.mada(1e-2, b3=0.2, rho=0.5, c=0.5, gamma=0.8, v_init=v_init, hyper_lr=0.1)
    p = dict(_params(), unused=jnp.ones((3, 2)))
    s = tx.init(p)
    update = jax.jit(tx.update)
    for _ in range(20):
      u, s = update(jax.grad(_loss)(p), s, p)
      p = optax.apply_updates(p, u)
    for leaf in jax.tree.leaves((p, s)):
      assert bool(jnp.all(jnp.isfinite(leaf))), f"v_init={v_init}"


# ----------------------------------------------------------------------------- trimming
def test_trimming_drops_the_state_of_inactive_coefficients():
  p = {"w": jnp.zeros((10, 10))}
  hyper = optzoo.mada(1e-3, learn=("b1", "b2")).init(p)[0]
  assert hyper.nu_avg is None and hyper.diff_mu is None and hyper.prev_grad is None
  assert hyper.lion_mu is None and len(hyper.tangents) == 2
  full = optzoo.mada(1e-3).init(p)[0]
  assert all(x is not None for x in (full.nu_avg, full.diff_mu, full.prev_grad, full.lion_mu))
  assert len(full.tangents) == 6
  ref = optzoo.mada(1e-3, compat="reference").init(p)[0]
  assert ref.prev_grad is None  # the reference's previous gradient is zero
  adam = optzoo.bytes_per_param(optax.adam(1e-3), p)
  assert optzoo.bytes_per_param(optzoo.mada(1e-3, learn=()), p) == pytest.approx(adam, rel=0.1)
  assert optzoo.bytes_per_param(optzoo.mada(1e-3, learn=("b1", "b2")), p) == pytest.approx(
      2 * adam, rel=0.1)
  # an active but frozen coefficient keeps its arrays
  assert optzoo.mada(1e-3, rho=0.5, learn=()).init(p)[0].nu_avg is not None


def test_hyperadam_learns_the_same_b1_b2_whatever_else_is_trimmed():
  """Trimming changes nothing numerically: learning only (b1, b2) from the Adam corner gives the
  same trajectory as the untrimmed transform with the other hyper learning rates at 0."""
  with jax.enable_x64(True):
    _assert_same_trajectory(
        optzoo.mada(1e-2, learn=("b1", "b2"), hyper_lr=0.01),
        optzoo.mada(1e-2, hyper_lr=(0.01, 0.01, 0.0, 0.0, 0.0, 0.0)), steps=30,
        rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- toy dynamics
def _reddi(rho, steps=20_000, learn=(), hyper_lr=0.0, mom=0.0):
  """f_t(x) = 1010 x if t mod 101 == 1 else -10 x on [-1, 1] (amsgrad_toy.py); x* = -1."""
  bounds = ((0.01, 0.99), (0.01, 0.99), (0.0, 0.99), (0.0, 1.0), (0.0, 1.0), (0.0, 1.0))
  tx = optax.chain(
      optzoo.scale_by_mada(learning_rate=1e-3, b1=0.9, b2=0.99, rho=rho, eps=1e-8, learn=learn,
                           hyper_lr=hyper_lr, hyper_momentum=mom, bounds=bounds),
      optax.scale(-1e-3))

  def body(carry, t):
    x, s = carry
    g = jnp.where(t % 101 == 1, 1010.0, -10.0) * jnp.ones(1)
    u, s = tx.update(g, s)
    return (jnp.clip(x + u, -1.0, 1.0), s), None

  x0 = jnp.zeros(1)
  (x, s), _ = jax.jit(lambda c: jax.lax.scan(body, c, jnp.arange(1, steps + 1)))((x0, tx.init(x0)))
  return float(x[0]), s[0]


def test_reddi_problem_adam_corner_goes_up_avgrad_corner_goes_down():
  x_adam, _ = _reddi(rho=1.0)
  x_avg, _ = _reddi(rho=0.0)
  assert x_adam > 0.3, x_adam      # Adam heads to the wrong end, +1
  assert x_avg < -0.01, x_avg      # AVGrad moves toward the minimizer -1
  x_learn, s = _reddi(rho=1.0, learn=("rho",), hyper_lr=0.1, mom=0.9)
  assert float(s.coeffs[3]) < 0.3  # learned rho leaves the Adam corner
  assert x_learn < x_adam


def test_learned_mada_reduces_a_quadratic():
  from optzoo import objectives
  obj = objectives.get("ill_conditioned")
  tx = optzoo.mada(1e-2, b2=0.99, eps=1e-8)
  p = obj.init()
  s = tx.init(p)
  step = jax.jit(lambda p, s: (lambda u_s: (optax.apply_updates(p, u_s[0]), u_s[1]))(
      tx.update(jax.grad(obj.loss)(p), s, p)))
  start = float(obj.loss(p))
  for _ in range(300):
    p, s = step(p, s)
  assert float(obj.loss(p)) < 1e-2 * start
  assert bool(jnp.all(jnp.isfinite(optax.tree.get(s, "coeffs"))))


@pytest.mark.parametrize("kwargs,match", [
    ({"learn": ("b1", "beta")}, "learn"), ({"compat": "torch"}, "compat"), ({"b1": 1.0}, "b1"),
    ({"rho": 1.5}, "rho"), ({"hyper_lr": -1.0}, "hyper_lr"), ({"learning_rate": -1.0}, "learning_rate"),
    ({"bounds": ((0, 1),) * 5}, "bounds"),
    ({"bounds": ((0.0, 0.99),) + mada_mod.DEFAULT_BOUNDS[1:]}, "bounds"), ({"hyper_lr": {"delta": 1.0}}, "hyper_lr")])
def test_bad_arguments_raise_naming_the_argument(kwargs, match):
  with pytest.raises(ValueError, match=match):
    optzoo.mada(**{"learning_rate": 1e-3, **kwargs})


def test_compat_and_mu_dtype_are_keyword_only():
  with pytest.raises(TypeError):
    optzoo.scale_by_mada(1e-3, *(0.9, 0.95, 0.0, 1.0, 1.0, 1.0, 1e-6, 0.0, 0.95, 0.98,
                                 COEFF_NAMES, 0.1, 0.0, 10.0, 0, mada_mod.DEFAULT_BOUNDS, 0.0),
                         "reference")


def test_hyper_sgd_clips_and_uses_heavy_ball_momentum():
  """kappa <- proj(kappa - eta * buf), buf <- mu * buf + clip(h), clip(h) = h min(1, C/(|h|+1e-6))."""
  eta, mu, clip = 1e-3, 0.7, 1e-4
  with jax.enable_x64(True):
    tx = optzoo.mada(1e-2, learn=("b1", "b2", "gamma"), gamma=0.8, hyper_lr=eta,
                     hyper_momentum=mu, hyper_clip=clip)
    update = jax.jit(tx.update)
    p = _params()
    s = tx.init(p)
    buf = np.zeros(6)
    for _ in range(4):
      before = np.asarray(s[0].coeffs)
      u, s = update(jax.grad(_loss)(p), s, p)
      p = optax.apply_updates(p, u)
      h = np.asarray(s[0].hypergrad)
      h_clip = h * np.minimum(1.0, clip / (np.abs(h) + 1e-6))
      buf = mu * buf + h_clip
      np.testing.assert_allclose(np.asarray(s[0].hyper_buf), buf, rtol=1e-12, atol=1e-18)
      lo = np.array([b[0] for b in mada_mod.DEFAULT_BOUNDS])
      hi = np.array([b[1] for b in mada_mod.DEFAULT_BOUNDS])
      want = np.where([True, True, False, False, False, True],
                      np.clip(before - eta * buf, lo, hi), before)
      np.testing.assert_allclose(np.asarray(s[0].coeffs), want, rtol=1e-12, atol=1e-15)
    assert np.all(np.abs(h[[0, 1, 5]]) > clip), "the clip should have been active here"


# ----------------------------------------------------------------------------- edge cases
_OVERFLOW_CONFIGS = {
    "default": {}, "hyperadam": {"learn": ("b1", "b2")}, "avgrad_corner": {"rho": 0.0},
    "all_active": {"b3": 0.5, "rho": 0.5, "c": 0.5, "gamma": 0.5}, "yogi_corner": {"c": 0.0},
    "reference": {"compat": "reference", "b3": 0.3, "rho": 0.3},
}


@pytest.mark.parametrize("name", sorted(_OVERFLOW_CONFIGS))
def test_float32_gradients_of_1e20_give_finite_updates_like_amsgrad(name):
  """|g|^2 overflows float32: v and vbar become inf, never NaN (inf - inf, 0 * inf)."""
  p = {"a": jnp.ones(4), "b": jnp.ones((2, 3))}

  def grads(t):  # huge entries from the second step on (the reference's n_0 = g_1^2 would
    # overflow at the first), mixed with ordinary ones, in both leaves
    big = 1e20 if t % 2 else 1.0
    return {"a": jnp.array([1e20, -1e20, 0.5, -0.3]) * (1.0 + t) if t else jnp.full(4, 0.7),
            "b": big * jnp.array([[1.0, -1.0, 2.0], [0.5, 3.0, -2.0]])}

  txs = [optzoo.mada(1e-2, **_OVERFLOW_CONFIGS[name])]
  if name == "default":  # the yardstick: optax.amsgrad stays finite here
    txs.append(with_standard_promotion(optax.amsgrad(1e-2)))
  for tx in txs:
    state, params = tx.init(p), p
    update = jax.jit(tx.update)
    for t in range(8):
      u, state = update(grads(t), state, params)
      params = optax.apply_updates(params, u)
      assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(u)), (name, t)
    for leaf in jax.tree.leaves((params, state)):  # inf moments are fine, NaN is not
      assert not bool(jnp.any(jnp.isnan(leaf))), name


def test_empty_pytree_gives_empty_updates():
  for tx in (optzoo.mada(1e-2), optzoo.mada(1e-2, learn=("b1", "b2")),
             optzoo.mada(1e-2, b3=0.3, rho=0.5, c=0.5, gamma=0.5, learn=())):
    state = tx.init({})
    updates, state = jax.jit(tx.update)({}, state, {})
    assert updates == {}
    assert optax.tree.get(state, "coeffs").shape == (6,)


def test_complex_and_integer_leaves_are_rejected_at_init_naming_the_leaf():
  good = jnp.ones(3)
  with pytest.raises(TypeError, match=r"\['z'\].*complex64.*does not support complex"):
    optzoo.mada(1e-2).init({"w": good, "z": jnp.ones(2, jnp.complex64)})
  with pytest.raises(TypeError, match=r"\['n'\].*int32"):
    optzoo.mada(1e-2).init({"w": good, "n": jnp.ones(2, jnp.int32)})
  with pytest.raises(TypeError, match="complex"):  # abstract params too
    jax.eval_shape(optzoo.mada(1e-2).init, {"z": jax.ShapeDtypeStruct((2,), jnp.complex64)})


def test_a_gradient_of_another_shape_is_refused_naming_the_leaf():
  p = {"w": jnp.ones((2, 3)), "b": jnp.ones(3)}
  tx = optzoo.mada(1e-2)
  state = tx.init(p)
  with pytest.raises(ValueError, match=r"\['w'\].*\(3, 2\).*\(2, 3\)"):
    tx.update({"w": jnp.ones((3, 2)), "b": jnp.ones(3)}, state, None)


@pytest.mark.parametrize("kwargs,name", [
    ({"b2": 0.999}, "b2"), ({"b1": 0.995}, "b1"), ({"b3": 0.995}, "b3"),
    ({"rho": 0.9, "bounds": mada_mod.DEFAULT_BOUNDS[:3] + ((0.0, 0.5),) + mada_mod.DEFAULT_BOUNDS[4:]},
     "rho"),
])
def test_a_learned_coefficient_starting_outside_its_box_is_an_error(kwargs, name):
  with pytest.raises(ValueError, match=rf"{name}=.*outside its bounds"):
    optzoo.mada(1e-2, **kwargs)
  # not learned: it never moves, so no box applies
  optzoo.mada(1e-2, learn=tuple(k for k in COEFF_NAMES if k != name), **kwargs)


def test_one_nan_gradient_poisons_every_leaf_unless_apply_if_finite_skips_the_step():
  """The coefficients are shared across leaves; optax.apply_if_finite skips the whole step."""
  p = _params()
  grad = jax.grad(_loss)

  def run(tx, steps=6, bad_step=2):
    state, params = tx.init(p), p
    update = jax.jit(tx.update)
    for t in range(steps):
      g = grad(params)
      if t == bad_step:  # one NaN entry in one leaf
        g = dict(g, b=g["b"].at[0].set(jnp.nan))
      u, state = update(g, state, params)
      params = optax.apply_updates(params, u)
    return params, state

  tx = optzoo.mada(1e-2)
  params, state = run(tx)
  assert all(bool(jnp.all(jnp.isnan(x))) for x in jax.tree.leaves(params))  # every leaf
  assert bool(jnp.all(jnp.isnan(optax.tree.get(state, "coeffs"))))
  params, state = run(optax.apply_if_finite(optzoo.mada(1e-2), max_consecutive_errors=3))
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves((params, state)))
  assert int(state.total_notfinite) == 1
  # the skipped step left the state untouched: five good steps, as a run without the bad one
  ref, _ = run(tx, steps=5, bad_step=-1)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
