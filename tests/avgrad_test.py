"""AVGrad against a plain NumPy loop of the spec's equations (mada.md section 4)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import optzoo

from helpers import run


def _loss(p):
  return jnp.sum(jnp.sin(3.0 * p["w"]) ** 2) + 0.5 * jnp.sum((p["b"] - 1.0) ** 4)


def _numpy_avgrad(params, grad_fn, steps, lr, b1, b2, eps, wd=0.0, mask=None):
  """The spec's equations, written out: m, v EMAs; vbar the mean of raw v_1..v_t."""
  p = {k: np.array(v, np.float64) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in p.items()}
  v = {k: np.zeros_like(x) for k, x in p.items()}
  vsum = {k: np.zeros_like(x) for k, x in p.items()}
  out = []
  for t in range(1, steps + 1):
    g = {k: np.asarray(x, np.float64) for k, x in grad_fn(p).items()}
    for k in p:
      m[k] = b1 * m[k] + (1 - b1) * g[k]
      v[k] = b2 * v[k] + (1 - b2) * g[k] ** 2
      vsum[k] = vsum[k] + v[k]
      vbar = vsum[k] / t
      u = (m[k] / (1 - b1**t)) / (np.sqrt(vbar / (1 - b2**t)) + eps)
      decay = wd * p[k] if (mask is None or mask[k]) else 0.0
      p[k] = p[k] - lr * (u + decay)
    out.append({k: x.copy() for k, x in p.items()})
  return out


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_matches_numpy_loop_for_100_steps(wd):
  with jax.enable_x64(True):
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(4, 3))), "b": jnp.asarray(rng.normal(size=5))}
    mask = {"w": True, "b": False}
    lr, b1, b2, eps = 3e-2, 0.9, 0.99, 1e-8
    grad = jax.jit(jax.grad(_loss))
    want = _numpy_avgrad(params, lambda p: grad({k: jnp.asarray(v) for k, v in p.items()}),
                         100, lr, b1, b2, eps, wd, mask)
    tx = optzoo.avgrad(lr, b1=b1, b2=b2, eps=eps, weight_decay=wd, mask=mask)
    for t, p in enumerate(run(tx, params, 100, loss=_loss).params):
      for k in p:
        np.testing.assert_allclose(np.asarray(p[k]), want[t][k], rtol=1e-6, atol=1e-6,
                                   err_msg=f"step {t + 1}, leaf {k}")


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-5.0, 5.0, allow_nan=False), min_size=1, max_size=25))
def test_running_mean_lies_between_min_and_max_of_raw_second_moments(gs):
  """vbar_t is the mean of v_1..v_t: never above AMSGrad's max, never below the min."""
  tx = optzoo.scale_by_avgrad(b1=0.9, b2=0.9)
  state = tx.init(jnp.zeros(1))
  vs = []
  for g in gs:
    _, state = tx.update(jnp.array([g], jnp.float32), state)
    vs.append(float(state.nu[0]))
    vbar = float(state.nu_avg[0])
    assert min(vs) * (1 - 1e-5) - 1e-12 <= vbar <= max(vs) * (1 + 1e-5) + 1e-12
    np.testing.assert_allclose(vbar, np.mean(vs), rtol=1e-5, atol=1e-12)


def test_first_step_is_sign_like_and_state_is_readable():
  tx = optzoo.scale_by_avgrad()
  state = tx.init({"w": jnp.zeros(3)})
  u, state = tx.update({"w": jnp.array([2.0, -0.5, 0.0])}, state)
  # at t=1, m_hat = g and vbar_hat = g^2, so u = g / (|g| + eps)
  np.testing.assert_allclose(u["w"], [1.0, -1.0, 0.0], atol=2e-5)
  assert int(optax.tree.get(state, "count")) == 1
  np.testing.assert_allclose(optax.tree.get(state, "nu_avg")["w"], optax.tree.get(state, "nu")["w"])


@pytest.mark.parametrize("arg,value", [("b1", 1.0), ("b2", -0.1), ("eps", -1.0),
                                       ("learning_rate", -1e-3), ("weight_decay", -1.0)])
def test_bad_arguments_raise_naming_the_argument(arg, value):
  kwargs = {"learning_rate": 1e-3, arg: value}
  with pytest.raises(ValueError, match=arg):
    optzoo.avgrad(**kwargs)
