"""optzoo.sweep over a mesh: examples/sharded_sweep.py on 8 simulated CPU devices (a child
process, since XLA reads the device count when it starts), then as two processes of 4 devices
each under jax.distributed over localhost; and the argument checks, in this process."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import SHARDED_FLAGS
from optzoo import sweep

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sharded_sweep.py"
CASES = ["even", "compiled", "padded"]

pytestmark = pytest.mark.standard_promotion("the sweeps run optax.adam (float ** int32)")


def _env(devices: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=SHARDED_FLAGS.replace("device_count=8", f"device_count={devices}"))
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  return env


def _rows(out: str) -> list[dict]:
  return [json.loads(line.removeprefix("OPTZOO-SWEEP ")) for line in out.splitlines()
          if line.startswith("OPTZOO-SWEEP ")]


def _check(rows: list[dict], processes: int) -> None:
  assert [r["name"] for r in rows] == CASES, rows
  for r in rows:
    assert r["devices"] == 8 and r["processes"] == processes, r
    # every point of every run, losses and final params, as the one-device sweep's
    assert r["ok"] and r["max_rel_diff"] <= 1e-5, r
  even, compiled, padded = rows
  assert even["compilations"] == 1 and compiled["compilations"] == 0, rows
  assert padded["shape"] == [3, 3] and padded["compilations"] == 1, padded  # 9 runs, not 16
  # each device computes its share: XLA's flops per device are about 1/8 of one device's
  assert even["flops_per_device_ratio"] < 0.2, even


def test_a_sweep_splits_over_8_devices_and_equals_one_device():
  """About 40 s on an idle 2-core machine (four sweep compilations in a child process)."""
  proc = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                        env=_env(8), cwd=REPO, timeout=900)
  assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
  _check(_rows(proc.stdout), processes=1)


def test_a_sweep_runs_as_two_processes_under_jax_distributed():
  """Two processes of 4 CPU devices each over localhost: one global mesh of 8, every process
  reads the whole result, and it equals each process's own one-device sweep."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  procs = [subprocess.Popen(
      [sys.executable, str(EXAMPLE), "--distributed", "--coordinator", f"localhost:{port}",
       "--num-processes", "2", "--process-id", str(i)],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(4), cwd=REPO)
      for i in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, (out[-2000:], err[-3000:])
    _check(_rows(out), processes=2)
  assert _rows(outs[0][0]) == _rows(outs[1][0])


def _loss(params):
  return jnp.sum((params - 3.0) ** 2)


def test_a_mesh_of_this_process_devices_equals_no_mesh_and_keeps_the_grid_shape():
  grid = {"learning_rate": [1e-2, 1e-1, 0.5]}
  kw = dict(grid=grid, seeds=2, return_params=True)
  plain = sweep.sweep(optax.adam, _loss, jnp.zeros(4), 10, **kw)
  spread = sweep.sweep(optax.adam, _loss, jnp.zeros(4), 10, mesh=jax.devices(), **kw)
  assert spread.losses.shape == (3, 2, 10) and spread.params.shape == (3, 2, 4)
  assert spread.devices == len(jax.devices()) and spread.compilations == 1
  np.testing.assert_allclose(spread.losses, plain.losses, rtol=1e-6)
  np.testing.assert_allclose(spread.params, plain.params, rtol=1e-6)
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ("hosts",))
  again = sweep.sweep(optax.adam, _loss, jnp.zeros(4), 10, mesh=mesh, **kw)
  np.testing.assert_array_equal(again.losses, spread.losses)


@pytest.mark.parametrize("bad", [[], ["cpu:0"], 8])
def test_a_mesh_that_is_not_one_is_named(bad):
  with pytest.raises(TypeError, match="mesh must be"):
    sweep.sweep(optax.adam, _loss, jnp.zeros(4), 4, hparams={"learning_rate": 0.1}, mesh=bad)
