"""pytest settings for the doctests of optzoo/ (``pytest --doctest-modules optzoo``).

tests/conftest.py does not reach modules outside tests/, so the doctests get JAX's strict dtype
promotion and rank-promotion errors here, the same two settings as tests/conftest.py.
"""

import jax
import pytest

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

# Doctests that run under standard promotion, and why (their examples show plain user code).
STANDARD_PROMOTION_DOCTESTS = {
    "optzoo._src.lanton.lanton": "lanton's default vector optimizer is optax.adamw, whose bias "
                                 "correction computes float ** int32",
    "optzoo._src.metaoptimize.metaoptimize": "the example's base is optax.scale_by_adam(), whose "
                                             "bias correction computes float ** int32",
    "optzoo.testing": "the example runs the kit on optax.adam, whose bias correction computes "
                      "float ** int32",
    "optzoo._src.metaoptimize": "the example's base is optax.scale_by_adam()",
    "optzoo.sweep": "the example sweeps optax.adam (float ** int32)",
    "optzoo.strategies": "the example trains with optax.adam (float ** int32)",
}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
  if not (isinstance(item, pytest.DoctestItem) and item.name in STANDARD_PROMOTION_DOCTESTS):
    return (yield)
  with jax.numpy_dtype_promotion("standard"):
    return (yield)
