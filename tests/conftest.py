"""Settings for the whole test session, and the one marker that relaxes them.

JAX's strict dtype promotion and rank-promotion errors are on for every test (module level: it
runs before any test module is imported, in every pytest-xdist worker too). The doctests of
optzoo/ get the same two settings from the repository's root conftest.py, which this file does
not reach.

A test that needs JAX's standard promotion says why::

  @pytest.mark.standard_promotion("optax.adam's bias correction computes float ** int32")

and runs under ``jax.numpy_dtype_promotion("standard")`` (rank promotion stays an error).
Where only an optax reference optimizer needs it, ``helpers.with_standard_promotion(tx)``
exempts that optimizer alone.

Helper functions shared by the test files are in helpers.py (a plain module: a conftest.py
cannot be imported by name reliably).
"""

import jax
import pytest

from helpers import OPTAX_ADAM_INSIDE

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def pytest_configure(config):
  config.addinivalue_line(
      "markers", "standard_promotion(reason): run the test under JAX's standard dtype promotion "
      "(the reason, a non-empty string, says why it cannot be strict)")


# conformance_test.py (its owner's file, not edited here) runs every registry entry through
# the kit. These (entry, check) pairs go through optax code that strict promotion rejects (no fix
# in optzoo can reach it).
_CONFORMANCE_STANDARD_PROMOTION = {
    **{(name, None): why for name, why in OPTAX_ADAM_INSIDE.items()},
    (None, "multisteps"): "optax.MultiSteps divides its float32 accumulator by an int32 count",
    **{(name, "convergence"): "the registry's learning rate is an optax.cosine_decay_schedule "
                              "(jnp.minimum of the int32 count and a float)"
       for name in ("lion", "microadam")},
}

# the checks of those entries that pass strict anyway (no update call, or skipped): not marked
_NO_UPDATE = {"lanton": ("abstract_init", "validation"),
              "metaoptimize": ("abstract_init", "validation"),
              "noise_adaptive_layerwise": ("abstract_init", "validation", "constant_schedule")}


def pytest_collection_modifyitems(config, items):
  for item in items:
    if item.path.name != "conformance_test.py" or not hasattr(item, "callspec"):
      continue
    name, check = item.callspec.params.get("name"), item.callspec.params.get("check")
    if check in _NO_UPDATE.get(name, ()):
      continue
    for key in ((name, check), (name, None), (None, check)):
      if key in _CONFORMANCE_STANDARD_PROMOTION:
        item.add_marker(pytest.mark.standard_promotion(_CONFORMANCE_STANDARD_PROMOTION[key]))
        break


def _promotion_marked(item) -> bool:
  """Whether ``item`` runs under standard promotion (marked, with a non-empty reason)."""
  marker = item.get_closest_marker("standard_promotion")
  if marker is None:
    return False
  reason = marker.args[0] if marker.args else marker.kwargs.get("reason")
  if not isinstance(reason, str) or not reason.strip():
    raise pytest.UsageError(f"{item.nodeid}: standard_promotion needs a reason")
  return True


def _under_marked_promotion(item):
  if not _promotion_marked(item):
    return (yield)
  with jax.numpy_dtype_promotion("standard"):
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):  # setup too: a fixture is built in its first test's setup
  return (yield from _under_marked_promotion(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
  return (yield from _under_marked_promotion(item))
