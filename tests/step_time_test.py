"""benchmarks/step_time.py's traffic model and a quick paired timing, on tiny problems; the
benchmarks share only common.py."""

import pathlib
import sys

import jax
import jax.numpy as jnp
import optax
import pytest

# benchmarks/ on the path, as when the script runs (it imports its neighbour `common`)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import step_time  # noqa: E402


def test_memory_passes_counts_reads_and_writes_of_param_sized_arrays():
  n = 1 << 18
  x = jnp.ones(n)
  # one loop: read x, write the result
  assert step_time.memory_passes(jax.jit(lambda x: x * 2.0 + 1.0), x, n) == pytest.approx(2.0)
  # two outputs, two loops on XLA:CPU: x read twice, two writes
  two = jax.jit(lambda x: (x * 2.0, jnp.sin(x)))
  assert step_time.memory_passes(two, x, n) == pytest.approx(4.0)
  assert step_time.memory_passes(lambda x: x, x, n) is None  # not jitted: no model


def test_update_only_pair_reports_a_ratio_and_passes():
  pair = step_time.Pair("sgd vs sgd", step_time.update_only_build(
      lambda: optax.sgd(1e-3), lambda: optax.sgd(1e-3)), target=None)
  row = step_time.time_pair(pair, 1 << 16, n_pairs=4, warmup=1)
  assert row["ratio"] > 0
  pa, pb = row["passes"]
  # params and gradients read, params written (biases under min_bytes are not counted)
  assert pa == pb and pa == pytest.approx(3.0, abs=0.1)


def test_benchmarks_share_only_common_and_leave_sys_path_alone():
  import ast  # noqa: PLC0415

  folder = pathlib.Path(step_time.__file__).parent
  scripts = {p.stem for p in folder.glob("*.py")}
  for path in folder.glob("*.py"):
    for node in ast.walk(ast.parse(path.read_text())):
      assert not (isinstance(node, ast.Attribute) and node.attr == "path"
                  and isinstance(node.value, ast.Name) and node.value.id == "sys"), path.name
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
      for name in names:
        assert name == "common" or name.split(".")[0] not in scripts, (path.name, name)
