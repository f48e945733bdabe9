"""optzoo.pytest_plugin, used as a user's project uses it (a test file run by pytest in a child
process): one test per conformance check, a check that does not apply is a skip, a failing one
shows the kit's message, a registry entry checks with its own settings, the marker refuses an
unknown check name, and ``--hypothesis-profile=optzoo`` loads optzoo's profile."""

from __future__ import annotations

from helpers import run_pytest

_PLUGIN_TESTS = '''
import jax
import optax
import pytest

from optzoo import registry


@pytest.mark.optzoo_checks("jit", "extra_args", "abstract_init", "validation", "sharding")
def test_adam(optzoo_check):
    assert optzoo_check(optax.adam, {"learning_rate": 1e-2}) == "ok"


def broken(learning_rate):
    def update(updates, state, params=None):
        return jax.tree.map(lambda g: g.astype("float16"), updates), state
    return optax.GradientTransformation(lambda p: optax.EmptyState(), update)


@pytest.mark.optzoo_checks("dtypes")
def test_broken(optzoo_check):
    optzoo_check(broken, {"learning_rate": 1e-2})


@pytest.mark.optzoo_checks("extra_args")
def test_entry(optzoo_check):
    optzoo_check(registry.get("lion"))
'''


def test_plugin_runs_one_test_per_check(tmp_path):
  path = tmp_path / "test_plugin_use.py"
  path.write_text(_PLUGIN_TESTS)
  proc = run_pytest(path, "-vv")  # -q -vv: one line per test
  out = proc.stdout
  assert "test_adam[jit] PASSED" in out and "test_adam[abstract_init] PASSED" in out, out[-3000:]
  # optax.adam accepts a negative learning rate: the kit's 'validation' check says so
  assert "test_adam[validation] FAILED" in out and "learning_rate=-1.0 was accepted" in out
  assert "test_adam[sharding] SKIPPED" in out and "needs >= 2 devices" in out, out[-3000:]
  assert "test_broken[dtypes] FAILED" in out and "float16" in out, out[-3000:]
  assert "test_entry[extra_args] PASSED" in out, out[-3000:]
  assert "2 failed, 4 passed, 1 skipped" in out, out[-1000:]


def test_plugin_registers_the_hypothesis_profile(tmp_path):
  path = tmp_path / "test_profile.py"
  path.write_text("from hypothesis import settings\n\n"
                  "def test_profile():\n"
                  "    assert settings().deadline is None and settings().max_examples == 10\n")
  proc = run_pytest(path, "--hypothesis-profile=optzoo")
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_without_the_marker_a_test_runs_every_check(tmp_path):
  from optzoo import testing  # noqa: PLC0415

  path = tmp_path / "test_every_check.py"
  path.write_text("def test_any(optzoo_check):\n    pass\n")
  proc = run_pytest(path, "--collect-only")
  ids = [line.split("[", 1)[1].rstrip("]") for line in proc.stdout.splitlines()
         if "test_any[" in line]
  assert ids == list(testing.CHECKS), proc.stdout[-3000:]


def test_an_unknown_check_name_is_an_error_naming_it(tmp_path):
  path = tmp_path / "test_typo.py"
  path.write_text("import optax, pytest\n\n"
                  "@pytest.mark.optzoo_checks('jitt')\n"
                  "def test_typo(optzoo_check):\n"
                  "    optzoo_check(optax.adam, {'learning_rate': 1e-2})\n")
  proc = run_pytest(path)
  assert proc.returncode != 0
  assert "unknown conformance check 'jitt'" in proc.stdout + proc.stderr, proc.stdout[-3000:]
