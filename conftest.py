"""pytest settings for the doctests of optzoo/ (``pytest --doctest-modules optzoo``).

tests/conftest.py does not reach modules outside tests/, so the doctests get JAX's strict dtype
promotion and rank-promotion errors here, the same two settings as tests/conftest.py.
"""

import os
import shutil
import tempfile

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


def pytest_configure(config):
  """One JAX compilation cache for the whole test session: its pytest-xdist workers, and the
  child processes and notebook kernels they start, inherit the environment, so a program that
  one test compiled is read back, not compiled again, by every later test that builds the same
  one (the conformance kit, the layout tests and the notebooks build many alike). A fresh folder
  per session, removed at its end; a cache the user configured is left as it is."""
  if hasattr(config, "workerinput") or "JAX_COMPILATION_CACHE_DIR" in os.environ:
    return
  path = tempfile.mkdtemp(prefix="optzoo-test-jax-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = path
  os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
  jax.config.update("jax_compilation_cache_dir", path)  # this process too (a run without -n)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  config.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
  if not (isinstance(item, pytest.DoctestItem) and item.name in STANDARD_PROMOTION_DOCTESTS):
    return (yield)
  with jax.numpy_dtype_promotion("standard"):
    return (yield)


# The longest items of the suite (about 20 s to 2 min each on a 2-core machine), longest first.
# pytest-xdist hands its first items to the workers one by one in turn, so starting with these
# spreads them over both workers, and the many short tests after them fill the gaps; collected
# last (the notebooks are), they would end the run with one worker idle.
LONGEST_FIRST = (
    "tests/leaderboard_test.py::test_quick_run",
    "tests/sharded_training_test.py::test_every_registry_optimizer_sharded",
    "notebooks/05_flax_models.ipynb",
    "notebooks/04_meta_and_layerwise.ipynb",
    "tests/conformance_test.py::test_sharding_on_8_simulated_devices",
    "notebooks/02_microadam.ipynb",
    "notebooks/03_curvature.ipynb",
    "tests/conformance_test.py::test_conformance[krylov_cubic_newton-models]",
    "tests/sharded_training_test.py::test_two_processes_share_one_global_mesh",
    "tests/package_test.py::test_wheel_installs_into_a_fresh_venv_and_trains",
    "notebooks/01_first_order.ipynb",
    # added with issues 19-25: paper quick modes, resume in child processes, the 1,000-step
    # recompilation check, the sweeps over a mesh, the long-run and compare command tests
    "tests/papers_test.py::test_quick_mode[lion]",
    "tests/papers_test.py::test_quick_mode[mada]",
    "tests/papers_test.py::test_quick_mode[metaoptimize]",
    "tests/resume_test.py::test_orbax_resume_is_bitwise",
    "tests/papers_test.py::test_quick_mode[lanton]",
    "tests/recompile_test.py",
    "tests/long_runs_test.py::test_quick_run_writes_results_and_holds",
    "tests/sharded_sweep_test.py",
    "notebooks/06_compare_your_model.ipynb",
    "tests/compare_test.py",
)


def pytest_collection_modifyitems(items):
  def rank(item):
    for i, prefix in enumerate(LONGEST_FIRST):
      if item.nodeid.startswith(prefix):
        return i
    return len(LONGEST_FIRST)

  items.sort(key=rank)  # stable: every other item keeps its place
