"""optzoo/_src/layer_rates.py, the machinery LANTON and the noise-adaptive wrapper share: the
rate rule, the layer views of Flax layouts, the noise EMA and its sparse refresh, the warmup and
the per-entry dual norms. (The optimizers that use it are tested in lanton_test.py and
noise_adaptive_layerwise_test.py.)"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optzoo import layouts
from optzoo._src import layer_rates as lr


def _rates(noise, groups="g" * 8, **kw):
  return [float(r) for r in lr.layer_rates([jnp.asarray(h, jnp.float32) for h in noise],
                                           list(groups)[:len(noise)], **kw)]


# ----------------------------------------------------------------------------- the rate rule
def test_min_rule_is_the_ratio_of_noise_stds_to_the_quietest():
  h = [1.0, 4.0, 16.0, 100.0]
  np.testing.assert_allclose(_rates(h), [1.0, 0.5, 0.25, 0.1], rtol=1e-6)


@pytest.mark.parametrize("normalize", ["min", "mean", "max"])
def test_rates_do_not_change_when_the_loss_is_rescaled(normalize):
  h = np.array([0.3, 2.0, 5.0, 0.7])
  for c in (1e-6, 1e3):  # the loss times sqrt(c): H times c
    np.testing.assert_allclose(_rates(h * c, normalize=normalize),
                               _rates(h, normalize=normalize), rtol=1e-5)


def test_equal_noise_gives_rate_one_exactly_and_groups_are_independent():
  assert _rates([3.0, 3.0, 3.0]) == [1.0, 1.0, 1.0]
  # the quiet leaf of group 'a' does not pull down group 'b'
  assert _rates([1e-3, 4e-3, 50.0, 50.0], "aabb") == pytest.approx([1.0, 0.5, 1.0, 1.0])


def test_rates_are_clipped_at_r_min_and_noisier_layers_are_slower():
  r = _rates([1.0, 2.0, 1e6], r_min=0.2)
  assert r[0] > r[1] > r[2] == pytest.approx(0.2)


def test_a_layer_without_noise_is_left_out_of_the_reference():
  # an exact zero (frozen layer) and one far under the median's floor: both run at 1, the
  # others keep their ratio to the quietest measured layer
  assert _rates([0.0, 1e-12, 1.0, 4.0]) == pytest.approx([1.0, 1.0, 1.0, 0.5])
  assert _rates([0.0, 0.0]) == [1.0, 1.0]


def test_mean_max_and_none_normalisations():
  h = [1.0, 4.0, 16.0]
  mean = float(np.mean(h))
  np.testing.assert_allclose(_rates(h, normalize="mean", r_max=10.0),
                             np.sqrt(mean / np.array(h)), rtol=1e-5)
  np.testing.assert_allclose(_rates(h, normalize="max"), np.sqrt(16.0 / np.array(h)).clip(0, 1),
                             rtol=1e-5)
  np.testing.assert_allclose(_rates([0.25, 4.0, 1e4], normalize="none", r_max=3.0),
                             [2.0, 0.5, 0.05], rtol=1e-5)


def test_stacked_layers_are_members_of_their_group():
  """A scanned stack's per-layer noise (shape (L,)) joins its group layer by layer."""
  out = lr.layer_rates([jnp.array([1.0, 4.0, 16.0]), jnp.array(4.0)], ["g", "g"])
  np.testing.assert_allclose(out[0], [1.0, 0.5, 0.25], rtol=1e-6)
  assert out[0].shape == (3,) and out[1].shape == () and out[0].dtype == jnp.float32


# ----------------------------------------------------------------------------- layer views
def _view(shape, layout):
  return lr.View(layout, shape)


@pytest.mark.parametrize("shape, layout", [
    ((6, 5), layouts.dense()),
    ((3, 3, 4, 8), layouts.conv(4)),
    ((4, 6, 5), lr.stacked_matrix(3)),
])
def test_a_views_matrices_round_trip_and_its_reductions_are_per_layer(shape, layout):
  x = jax.random.normal(jax.random.PRNGKey(0), shape)
  v = _view(shape, layout)
  m = v.to_mat(x)
  rows, cols = v.dims
  assert m.shape == v.layer_shape + (rows, cols)
  np.testing.assert_array_equal(v.from_mat(m), x)
  sums = v.reduce(jnp.sum, x)
  assert sums.shape == v.layer_shape
  np.testing.assert_allclose(sums, jnp.sum(m, axis=(-2, -1)), rtol=1e-5)
  assert v.expand(sums).ndim == len(shape)
  assert v.layer_size * max(1, int(np.prod(v.layer_shape))) == x.size


def test_views_read_standard_flax_layouts():
  params = {"conv": {"kernel": jnp.zeros((3, 3, 2, 4)), "bias": jnp.zeros(4)},
            "blocks": {"mlp": {"kernel": jnp.zeros((5, 8, 8))}}}
  vs = dict(zip(lr.leaf_names(params), lr.views(params, None, {"blocks": 1})))
  assert vs["conv/kernel"].dims == (18, 4) and vs["conv/kernel"].layer_shape == ()
  assert vs["conv/bias"].lay.kind == "vector"
  assert vs["blocks/mlp/kernel"].layer_shape == (5,) and vs["blocks/mlp/kernel"].dims == (8, 8)


# ----------------------------------------------------------------------------- the noise EMA
def _rule(**kw):
  args = dict(b2=0.5, noise_estimator="prev_grad", normalize="min", r_min=0.05, r_max=1.0,
              rate_eps=1e-8, warmup_steps=2, noise_every=1, noise_floor=1e-6, prev_dtype=None,
              estimators=lr.typing.Literal["prev_grad", "momentum", "split"])
  args.update(kw)
  return lr.rate_rule(**args)


def test_the_ema_refreshes_only_on_steps_with_a_sample_and_every_kth_step():
  h0 = [jnp.array(1.0)]
  diffs = [jnp.array([3.0, 4.0])]
  norm = lambda ds: [jnp.linalg.norm(d) for d in ds]  # noqa: E731
  rule = _rule()
  assert float(lr.refresh_noise(rule, h0, diffs, jnp.asarray(True), 1, norm)[0]) == 13.0
  assert float(lr.refresh_noise(rule, h0, diffs, jnp.asarray(False), 1, norm)[0]) == 1.0
  sparse = _rule(noise_every=3)
  got = [float(lr.refresh_noise(sparse, h0, diffs, jnp.asarray(True), c, norm)[0])
         for c in range(4)]
  assert got == [13.0, 1.0, 1.0, 13.0]


def test_rates_are_one_during_warmup():
  h = [jnp.array(1.0), jnp.array(100.0)]
  rule = _rule(warmup_steps=2)
  assert [float(r) for r in lr.warm_rates(rule, h, ["g", "g"], jnp.asarray(1))] == [1.0, 1.0]
  assert [float(r) for r in lr.warm_rates(rule, h, ["g", "g"], jnp.asarray(2))] == \
      pytest.approx([1.0, 0.1])


def test_the_previous_gradient_buffer_is_at_least_float32():
  params = {"w": jnp.zeros((2, 3), jnp.bfloat16)}
  count, prev, noise, rates = lr.init_rate_fields(_rule(), params, [()])
  assert prev["w"].dtype == jnp.float32 and int(count) == 0
  assert float(noise["w"]) == 0.0 and float(rates["w"]) == 1.0
  assert lr.diff(jnp.ones(2, jnp.bfloat16), jnp.zeros(2, jnp.bfloat16)).dtype == jnp.float32


@pytest.mark.parametrize("bad, match", [({"b2": 1.5}, "b2"), ({"r_min": 0.0}, "r_min"),
                                        ({"normalize": "median"}, "normalize"),
                                        ({"noise_estimator": "adam"}, "noise_estimator"),
                                        ({"noise_every": 0}, "noise_every")])
def test_bad_rate_settings_are_refused_by_name(bad, match):
  with pytest.raises(ValueError, match=match):
    _rule(**bad)


# ----------------------------------------------------------------------------- dual norms
@pytest.mark.parametrize("name, expected", [("l1", np.sqrt(2 / np.pi)), ("l2", 1.0),
                                            ("svd", None), ("fro_bound", None)])
def test_per_entry_dual_norms_of_unit_noise_do_not_grow_with_the_layer(name, expected):
  """Per entry, i.i.d. unit-variance noise gives the same value for a small and a large layer,
  so a group compares noise levels, not sizes."""
  dual = lr.layer_dual(name, per_entry=True)
  vals = []
  for m, n in ((64, 32), (256, 128)):
    x = jax.random.normal(jax.random.PRNGKey(m), (m, n))
    vals.append(float(dual(_view((m, n), layouts.dense()), x)))
  if expected is not None:
    np.testing.assert_allclose(vals, expected, rtol=0.05)
  assert vals[1] == pytest.approx(vals[0], rel=0.1)
