"""optzoo's pytest plugin: the conformance kit as one pytest test per check.

Installed with optzoo (entry point ``pytest11``), so pytest loads it in any project where optzoo
is installed; elsewhere add ``-p optzoo.pytest_plugin`` or ``pytest_plugins =
["optzoo.pytest_plugin"]`` in the top-level ``conftest.py``. It imports nothing heavy until a
test asks for a fixture.

``optzoo_check`` runs one check of :data:`optzoo.testing.CHECKS` on your optimizer; a test that
takes it is repeated once per check (ids ``[jit]``, ``[dtypes]``, ...), a check that does not
apply is a pytest skip with the reason, and a failure shows the check's message:

.. code-block:: python

   import pytest

   @pytest.mark.optzoo_checks("jit", "dtypes", "inject_hyperparams")  # default: every check
   def test_my_optimizer(optzoo_check):
       optzoo_check(my_optimizer, {"learning_rate": 1e-2})

``optzoo_check(factory, kwargs, **fields)`` takes the fields of :class:`optzoo.testing.Subject`
(``extra_args``, ``static_args``, ``lr_arg``, ``convergence_steps``, ...); passed a registry
entry alone, ``optzoo_check(entry)``, it checks that entry.

The ``optzoo`` Hypothesis profile (no deadline, 10 examples), for property tests written with
:mod:`optzoo.strategies`: ``pytest --hypothesis-profile=optzoo``.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import pytest

# The plugin's interface is its fixture, marker and profile, described above; pytest finds them.
__all__: list[str] = []

_MARKER = "optzoo_checks"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config) -> None:
  config.addinivalue_line(
      "markers", f"{_MARKER}(*names): the conformance checks the optzoo_check fixture runs "
      "(default: all of optzoo.testing.CHECKS)")
  # --hypothesis-profile=optzoo: register the profile (optzoo.strategies does) before
  # Hypothesis's own pytest_configure loads it. Nothing is imported otherwise.
  if _option(config, "hypothesis_profile") == "optzoo":
    import optzoo.strategies  # noqa: F401, PLC0415


def _option(config, name: str) -> Any:
  try:
    return config.getoption(name)
  except ValueError:  # the option's plugin (Hypothesis) is not installed
    return None


def pytest_generate_tests(metafunc) -> None:
  if "optzoo_check" not in metafunc.fixturenames:
    return
  marker = metafunc.definition.get_closest_marker(_MARKER)
  if marker is not None and marker.args:
    names = list(marker.args)
  else:
    from optzoo import testing  # noqa: PLC0415

    names = list(testing.CHECKS)
  metafunc.parametrize("optzoo_check", names, indirect=True, ids=names)


@pytest.fixture
def optzoo_check(request) -> Callable[..., str]:
  """``run(factory, kwargs=None, **subject_fields)``: runs this test's conformance check (the
  test is parametrized over the checks) and returns 'ok'; a check that does not apply skips the
  test. ``factory`` may be a registry entry, checked with its own settings."""
  from optzoo import testing  # noqa: PLC0415

  name = getattr(request, "param", None)
  if name is None:
    raise pytest.UsageError("optzoo_check is parametrized by optzoo's plugin; do not call it "
                            "from another fixture")
  if name not in testing.CHECKS:
    raise pytest.UsageError(f"unknown conformance check {name!r}; known: {list(testing.CHECKS)}")

  def run(factory: Any, kwargs: Mapping[str, Any] | None = None, **fields: Any) -> str:
    if kwargs is None and hasattr(factory, "toy_kwargs"):
      subject = testing.subject_from_entry(factory)
    else:
      fields.setdefault("name", getattr(factory, "__name__", "optimizer"))
      subject = testing.Subject(factory=factory, kwargs=dict(kwargs or {}), **fields)
    result = testing.run_check(name, subject)
    if result.startswith("skipped"):
      pytest.skip(f"{name}: {result}")
    return result

  return run
