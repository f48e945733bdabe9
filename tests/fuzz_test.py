"""The registry fuzz suite, fast profile: scripts/fuzzing.py's properties (no exception but the
documented clear errors, finite updates, a stable state signature, jitted = eager to the dtype's
tolerance, bitwise-repeatable runs, the dtype policy) on a few drawn examples per optimizer
(derandomized, so CI draws the same ones), plus the failures the long profile found, kept as
plain regression examples. The long profile: ``python scripts/fuzz.py --seconds 600``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from hypothesis import Phase, given, settings

import fuzzing
from helpers import registry_names_marked


@pytest.mark.parametrize("name", registry_names_marked())
def test_fuzz_fast_profile(name):
  # no shrinking: every shrunk example compiles anew (the long profile shrinks)
  @settings(max_examples=2, deadline=None, database=None, derandomize=True,
            phases=[Phase.explicit, Phase.generate])
  @given(fuzzing.examples(name, float16=True, max_leaves=3))
  def prop(ex):
    fuzzing.check(ex)

  prop()


def test_regression_lanton_zero_size_matrix_leaf():
  """Found by the fuzz suite: LANTON (Newton-Schulz directions) raised ZeroDivisionError on a
  zero-size matrix leaf of shape (2, 0) (optzoo.lmo.newton_schulz_many reshaped it with -1)."""
  ex = fuzzing.Example(
      name="lanton", kwargs={"learning_rate": 1.6e-3, "weight_decay": 0.057, "ns_steps": 5,
                             "dual_norm": "ns", "warmup_steps": 0, "r_min": 0.22},
      shapes=[jax.ShapeDtypeStruct((2, 0), jnp.float32)], log_scales=(0.0,), seed=0)
  with jax.numpy_dtype_promotion("standard"):  # lanton's vector optimizer is optax's AdamW
    assert fuzzing.check(ex) == "ok"


@pytest.mark.parametrize("shape", [(0, 0), (0, 3)])
def test_regression_lanton_matrix_leaf_without_rows(shape):
  """Found by the long profile: LANTON's hidden dual norm scaled by sqrt(cols / rows) in Python,
  a ZeroDivisionError on a matrix leaf with zero rows."""
  ex = fuzzing.Example(
      name="lanton", kwargs={"learning_rate": 0.05, "weight_decay": 0.0, "b1": 0.5, "b2": 0.9375,
                             "ns_steps": 1, "r_min": 0.5, "warmup_steps": 0, "dual_norm": "ns",
                             "normalize": "min"},
      shapes=jax.ShapeDtypeStruct(shape, jnp.float32), log_scales=(0.0,), seed=0)
  with jax.numpy_dtype_promotion("standard"):  # lanton's vector optimizer is optax's AdamW
    assert fuzzing.check(ex) == "ok"
