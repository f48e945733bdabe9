"""optzoo.layouts: the default rules on real Flax nnx layers, from_nnx, overrides, round trips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from optzoo import layouts, models


def _by_leaf(treatment):
  return {r["leaf"]: r for r in treatment}


def test_default_rules_on_the_transformer_match_the_module_types():
  prob = models.get("transformer")
  params = prob.init()
  by_default = _by_leaf(layouts.describe(params))
  by_model = _by_leaf(layouts.describe(params, prob.layouts))
  assert {k: r["layout"] for k, r in by_default.items()} == \
      {k: r["layout"] for k, r in by_model.items()}
  q = by_default["block/attn/query/kernel"]
  assert (q["matrix"], q["layers"]) == ("16 x 16", 1)          # (in, heads*head_dim), one rate
  assert by_default["block/attn/out/kernel"]["layout"] == layouts.general(2, 1)
  assert by_default["block/attn/query/bias"]["kind"] == "vector"   # (heads, head_dim) bias
  assert by_default["embed/embedding"]["kind"] == "embedding"
  assert by_default["lm_head/kernel"]["kind"] == "embedding"      # the output head, by path


def test_conv_kernel_is_one_matrix_with_window_axes():
  params = models.get("cnn").init()
  conv2 = _by_leaf(layouts.describe(params))["conv2/kernel"]
  assert (conv2["matrix"], conv2["layers"], conv2["window_axes"]) == ("72 x 8", 1, (0, 1))


def test_scanned_stack_is_one_matrix_per_block_and_unmarked_stacks_are_an_error():
  prob = models.get("scanned")
  params = prob.init()
  rows = _by_leaf(layouts.describe(params, prob.layouts))
  assert rows["blocks/up/kernel"]["layers"] == 2 and rows["blocks/up/kernel"]["matrix"] == "16 x 32"
  assert rows["blocks/attn/query/kernel"]["layout"] == layouts.general(1, 2).shifted(1)
  marked = _by_leaf(layouts.describe(params, stack_axes={"blocks": 1}))
  assert {k: r["layout"] for k, r in marked.items()} == {k: r["layout"] for k, r in rows.items()}
  with pytest.raises(layouts.AmbiguousLayoutError, match="blocks/down/kernel"):
    layouts.describe(params)


def test_overrides_as_pytree_and_callable():
  params = {"w": jnp.zeros((3, 4, 5)), "b": jnp.zeros(5)}
  with pytest.raises(layouts.AmbiguousLayoutError, match="stack_axes"):
    layouts.infer(params)
  lays = layouts.infer(params, {"w": layouts.conv(3), "b": None})
  assert lays == [layouts.VECTOR, layouts.conv(3)]
  lays = layouts.infer(params, lambda names, shape: layouts.dense().shifted(1) if len(shape) == 3 else None)
  assert lays[1].num_layers((3, 4, 5)) == 3
  with pytest.raises(ValueError, match="does not fit"):
    layouts.infer(params, {"w": layouts.dense(), "b": None})


@pytest.mark.parametrize("lay,shape", [
    (layouts.dense(), (4, 6)), (layouts.conv(4), (3, 3, 2, 5)), (layouts.general(1, 2), (4, 2, 3)),
    (layouts.general(2, 1), (2, 3, 4)), (layouts.general(1, 2).shifted(1), (2, 4, 2, 3)),
])
def test_to_and_from_matrices_round_trip(lay, shape):
  x = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
  m = layouts.to_matrices(x, lay)
  assert m.shape == (lay.num_layers(shape),) + lay.matrix_shape(shape)
  np.testing.assert_array_equal(layouts.from_matrices(m, lay, shape), x)


def test_query_kernel_matrix_is_in_by_heads_times_head_dim():
  x = jax.random.normal(jax.random.PRNGKey(0), (16, 2, 8))
  m = layouts.to_matrices(x, layouts.general(1, 2))[0]
  np.testing.assert_array_equal(m, x.reshape(16, 16))
