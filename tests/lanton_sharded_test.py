"""LANTON's Newton-Schulz on whole matrices (``ns_mesh``) on FSDP-split matrices: a child process
with 4 simulated CPU devices (XLA reads the device count when it starts) compiles the update
with and without it and counts the collectives."""

import json
import os
import pathlib
import subprocess
import sys

from helpers import SHARDED_FLAGS, repo_env

CHILD = pathlib.Path(__file__).with_name("lanton_sharded_child.py")


def test_newton_schulz_on_whole_matrices_moves_each_matrix_once_per_iteration_set():
  env = dict(repo_env(), JAX_PLATFORMS="cpu",
             XLA_FLAGS=SHARDED_FLAGS.replace("device_count=8", "device_count=4"))
  env["PYTHONPATH"] = os.pathsep.join([str(CHILD.parents[1] / "benchmarks"), env["PYTHONPATH"]])
  proc = subprocess.run([sys.executable, str(CHILD)], env=env, capture_output=True, text=True,
                        timeout=600, check=False)
  line = [x for x in proc.stdout.splitlines() if x.startswith("OPTZOO-NS ")]
  assert proc.returncode == 0 and line, proc.stderr[-3000:]
  got = json.loads(line[0].removeprefix("OPTZOO-NS "))
  # two all-gathers of each matrix (the momentum's and the noise's Newton-Schulz): 2x the params'
  # bytes, against Newton-Schulz on the shards, which communicates at every iteration
  assert got["whole"] <= 2.0 + 1e-3, got
  assert got["split"] > 3 * got["whole"], got
  assert got["max_abs_diff"] <= 1e-5, got  # the same updates
  assert got["state_kept"], got  # the momentum keeps its params' FSDP sharding
  assert got["stack"] < 0.01, got  # a stack split along its layers is not gathered
