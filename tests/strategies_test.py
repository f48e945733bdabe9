"""optzoo.strategies (Hypothesis strategies for property tests): the drawn objectives have the
minimizers they claim, drawn hyperparameters build working optimizers for every registry entry,
the README's property test runs as written, and Hypothesis stays an optional dependency (the
plugin's own tests are in pytest_plugin_test.py)."""

from __future__ import annotations

import doctest
import re
import subprocess
import sys
import tomllib

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optzoo import registry, strategies, training

from helpers import REPO, registry_names_marked, repo_env, run_pytest

FEW = settings(max_examples=6, deadline=None, database=None, derandomize=True,
               suppress_health_check=[HealthCheck.too_slow])


OPTAX_EXAMPLE = ("the module's example trains with optax.adam, whose bias correction "
                 "computes float ** int32")

def _max_abs(tree) -> float:
  return max(float(jnp.max(jnp.abs(x.astype(jnp.float32)))) for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- objectives
@FEW
@given(strategies.objectives(dtype=strategies.dtypes()))
def test_drawn_objectives_have_their_minimizer(obj):
  start = obj.init()
  assert jax.tree.structure(start) == jax.tree.structure(obj.minimizer)
  for x, m in zip(jax.tree.leaves(start), jax.tree.leaves(obj.minimizer)):
    assert x.shape == m.shape and x.dtype == m.dtype == obj.dtype
  at_min = float(obj.loss(obj.minimizer))
  assert at_min == pytest.approx(obj.min_loss, abs=1e-6)
  assert at_min < float(obj.loss(start))
  assert float(obj.distance(start)) > 0
  grad = jax.grad(lambda p: obj.loss(p))(obj.minimizer)
  if obj.name != "logistic":  # exact minimizers: the gradient vanishes in any dtype
    assert _max_abs(grad) == 0.0, obj.description
  elif obj.dtype == jnp.float32:  # Newton's float64 solution, rounded to float32
    assert _max_abs(grad) < 1e-5, obj.description


@FEW
@given(strategies.quadratics(rotated=True, max_condition=1e4))
def test_quadratics_have_the_drawn_condition_number(obj):
  flat, unravel = jax.flatten_util.ravel_pytree(obj.minimizer)
  eig = np.linalg.eigvalsh(np.asarray(jax.hessian(lambda x: obj.loss(unravel(x)))(flat)))
  assert eig.min() > 0
  assert eig.max() / eig.min() == pytest.approx(obj.condition, rel=1e-2)
  assert eig.min() == pytest.approx(1.0, rel=1e-3)


@FEW
@given(strategies.pytree_shapes(dtype=strategies.dtypes(), max_leaves=5, max_rank=3))
def test_pytree_shapes_are_pytrees_of_shape_dtype_structs(shapes):
  leaves = jax.tree.leaves(shapes)
  assert 1 <= len(leaves) <= 5
  assert len({x.dtype for x in leaves}) == 1
  for x in leaves:
    assert isinstance(x, jax.ShapeDtypeStruct) and len(x.shape) <= 3
    assert all(1 <= d <= 6 for d in x.shape)


def test_dtypes_offer_float64_only_with_x64():
  found = set()

  @settings(max_examples=30, database=None, derandomize=True)
  @given(strategies.dtypes())
  def collect(dt):
    found.add(jnp.dtype(dt).name)

  collect()
  assert found == {"float32", "bfloat16"}


def test_condition_numbers_refuse_a_range_below_one():
  with pytest.raises(ValueError, match="1 <= low"):
    strategies.condition_numbers(0.5, 10.0)


def test_fixed_arguments_are_respected():
  @settings(max_examples=3, database=None, deadline=None, derandomize=True)
  @given(strategies.rosenbrocks(dims=3, scale=100.0), strategies.logistic_regressions(
      samples=20, features=4, dtype=jnp.bfloat16))
  def check(rb, lg):
    assert rb.init().shape == (3,) and "b = 100" in rb.description
    assert lg.minimizer["w"].shape == (4,) and lg.dtype == jnp.bfloat16

  check()


# ----------------------------------------------------------------------------- hyperparameters
@pytest.mark.parametrize("name", registry_names_marked())
def test_drawn_hyperparameters_build_working_optimizers(name):
  entry = registry.get(name)

  @settings(max_examples=3, deadline=None, database=None, derandomize=True,
            suppress_health_check=[HealthCheck.too_slow])
  @given(strategies.hyperparameters(entry), strategies.quadratics(max_condition=100.0))
  def check(kwargs, obj):
    for arg, spec in strategies.RANGES[name].items():
      value = kwargs[arg]
      if isinstance(spec, strategies.Choice):
        assert value in spec.values
      else:
        assert spec.low <= value <= spec.high, (arg, value)
    tx = entry.factory(**kwargs)
    params, losses = training.optimize(tx, obj.loss, obj.init(), 3, entry.extra_args)
    assert bool(jnp.all(jnp.isfinite(losses))), (kwargs, obj.description)
    assert jax.tree.structure(params) == jax.tree.structure(obj.init())

  check()


def test_every_registry_entry_has_declared_ranges():
  assert sorted(strategies.RANGES) == sorted(registry.names())
  for entry in registry.ENTRIES:
    if entry.lr_arg is not None:
      assert entry.lr_arg in strategies.RANGES[entry.name], entry.name


def test_hyperparameters_for_your_own_optimizer():
  from optzoo import testing  # noqa: PLC0415

  subject = testing.Subject(optax.adamw, {"learning_rate": 1e-3, "weight_decay": 0.0})

  @settings(max_examples=5, database=None, derandomize=True)
  @given(strategies.hyperparameters(subject, ranges={"learning_rate": strategies.Log(1e-4, 1e-1),
                                                     "b1": st.just(0.8)}, b2=0.95))
  def check(kw):
    assert 1e-4 <= kw["learning_rate"] <= 1e-1
    assert kw["b1"] == 0.8 and kw["b2"] == 0.95 and kw["weight_decay"] == 0.0

  check()
  with pytest.raises(KeyError, match="ranges="):
    strategies.hyperparameters(subject)


@pytest.mark.standard_promotion(OPTAX_EXAMPLE)
def test_module_docstring_examples_run():
  result = doctest.testmod(strategies, optionflags=doctest.ELLIPSIS)
  assert result.failed == 0 and result.attempted >= 5


# ----------------------------------------------------------------------------- README
def _readme_section_code(title: str) -> str:
  text = (REPO / "README.md").read_text()
  start = text.index(f"## {title}")
  end = text.find("\n## ", start + 1)
  section = text[start:end if end > 0 else None]
  blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
  assert blocks, f"no python block in README section {title!r}"
  return "\n\n".join(blocks)


def test_readme_property_test_runs_as_written(tmp_path):
  code = _readme_section_code("Property tests of your optimizer")
  lines = code.splitlines()
  first = next(i for i, line in enumerate(lines) if line.startswith("@"))
  end = next((i for i in range(first, len(lines)) if not lines[i].strip()), len(lines))
  assert end - first <= 5, lines[first:end]  # the promised five-line property test
  path = tmp_path / "test_readme_property.py"
  path.write_text(code)
  proc = run_pytest(path)
  assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
  assert re.search(r"\b\d+ passed", proc.stdout), proc.stdout[-2000:]


def test_hypothesis_is_an_extra_not_a_dependency():
  meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
  assert not any(d.startswith("hypothesis") for d in meta["dependencies"])
  assert any(d.startswith("hypothesis") for d in meta["optional-dependencies"]["testing"])
  assert any(d.startswith("pytest") for d in meta["optional-dependencies"]["testing"])
  assert any(d.startswith("hypothesis") for d in meta["optional-dependencies"]["dev"])
  assert meta["entry-points"]["pytest11"] == {"optzoo": "optzoo.pytest_plugin"}


def test_without_hypothesis_the_import_error_says_what_to_install():
  code = ("import sys; sys.modules['hypothesis'] = None\n"
          "import optzoo, optzoo.pytest_plugin\n"
          "try:\n    import optzoo.strategies\n"
          "except ImportError as e:\n    print('ERR', e)\n")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=repo_env(), check=True).stdout
  assert "ERR" in out and "optzoo[testing]" in out, out


def test_import_optzoo_loads_neither_hypothesis_nor_the_plugin():
  code = ("import sys, optzoo\n"
          "print(sorted(m for m in ('hypothesis', 'optzoo.strategies', 'optzoo.pytest_plugin')"
          " if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=repo_env(), check=True).stdout
  assert out.strip() == "[]"
