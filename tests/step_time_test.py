"""benchmarks/step_time.py's traffic model, its temporary-buffer and page-fault measurements and
a quick paired timing, on small problems; the benchmarks share only common.py."""

import pathlib

import jax
import jax.numpy as jnp
import optax
import pytest

import step_time


def test_memory_passes_counts_reads_and_writes_of_param_sized_arrays():
  n = 1 << 18
  x = jnp.ones(n)
  # one loop: read x, write the result
  assert step_time.memory_passes(jax.jit(lambda x: x * 2.0 + 1.0), x, n) == pytest.approx(2.0)
  # two outputs, two loops on XLA:CPU: x read twice, two writes
  two = jax.jit(lambda x: (x * 2.0, jnp.sin(x)))
  assert step_time.memory_passes(two, x, n) == pytest.approx(4.0)
  assert step_time.memory_passes(lambda x: x, x, n) is None  # not jitted: no model


def test_temp_and_page_faults_see_a_steps_temporary_buffer():
  n = 1 << 24  # 64 MiB of float32: above the size glibc ever serves from its heap (32 MiB)
  fused = jax.jit(lambda x: x * 2.0 + 1.0, donate_argnums=0)
  # the scatter's result is read twice by the fusion after it: XLA keeps it in its temp buffer
  scattered = jax.jit(lambda x: x.at[::4096].add(1.0) * 2.0 + x, donate_argnums=0)
  assert step_time.temp_mib(fused, jnp.ones(n)) < 1.0
  assert step_time.temp_mib(scattered, jnp.ones(n)) >= 64.0
  assert step_time.temp_mib(lambda x: x, jnp.ones(n)) is None  # not jitted
  faults = {}
  for name, step in (("fused", fused), ("scattered", scattered)):
    carry = step(jnp.ones(n))
    faults[name], carry = step_time.page_faults_per_step(step, carry, n=3)
  if faults["fused"] is None:
    pytest.skip("no getrusage on this platform")
  assert faults["fused"][0] < 8.0 and faults["scattered"][0] >= 60.0, faults
  assert faults["scattered"][1] > faults["fused"][1], faults  # the kernel's time goes with them


def test_update_only_pair_reports_a_ratio_and_passes():
  pair = step_time.Pair("sgd vs sgd", step_time.update_only_build(
      lambda: optax.sgd(1e-3), lambda: optax.sgd(1e-3)), target=None)
  row = step_time.time_pair(pair, 1 << 16, n_pairs=4, warmup=1)
  assert row["ratio"] > 0
  pa, pb = row["passes"]
  # params and gradients read, params written (biases under min_bytes are not counted)
  assert pa == pb and pa == pytest.approx(3.0, abs=0.1)
  assert row["temp_mib"][0] == row["temp_mib"][1] < 1.0  # sgd keeps no temporaries
  assert all(m is None or m >= 0.0 for m in row["faulted_mib"] + row["kernel_ms"]), row


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
