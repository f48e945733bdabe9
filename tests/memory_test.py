"""optzoo._src.base.memory: state bytes and update temporaries, against optimizers whose state is
known exactly."""

import jax
import optax
import pytest

import optzoo
from optzoo._src.base import memory

PARAMS = {"a": jax.ShapeDtypeStruct((1000, 100), "float32"),
          "b": jax.ShapeDtypeStruct((100,), "float32")}


def test_state_bytes_of_known_states():
  assert memory.state_bytes(optax.sgd(1e-3).init(PARAMS)) == 0
  # Adam: two float32 moments per param and an int32 count
  state = jax.eval_shape(optax.adam(1e-3).init, PARAMS)
  assert memory.state_bytes(state) == 2 * 4 * 100_100 + 4


def test_bytes_per_param_of_adam_and_lion():
  assert memory.bytes_per_param(optax.adam(1e-3), PARAMS) == pytest.approx(8.0, abs=1e-3)
  assert memory.bytes_per_param(optzoo.lion(1e-3), PARAMS) == pytest.approx(4.0, abs=1e-3)


def test_update_temporaries_and_their_arguments():
  assert optzoo.temp_bytes_per_param(optax.sgd(1e-3), PARAMS) < 1.0
  with pytest.raises(ValueError, match="cannot supply"):
    optzoo.temp_bytes_per_param(optax.sgd(1e-3), PARAMS, extra_args=("noise_grads",))
