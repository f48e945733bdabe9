"""examples/sharded_training.py: every registry optimizer trains a flax.nnx transformer with params
and state sharded over a (data=2, fsdp=4) mesh of 8 simulated CPU devices; mirroring state
leaves keep their param's sharding after jit(init) and after jitted updates, and params equal
the one-device run to 1e-5 (AdaHessian at eps 0.1, where the comparison is well conditioned:
the example's EXAMPLE_KWARGS says why).

The example runs once, in a child process (XLA reads the device count when it starts), over
all optimizers. LLVM's optimizations are turned down there: the check is about sharding and
numerics, which the backend's code generation does not change, and compiling is most of the
run.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys


from helpers import SHARDED_FLAGS
from optzoo import registry

REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sharded_training.py"
# optimizers whose state holds param-shaped leaves (MicroAdam's is compressed, Krylov keeps
# scalars and its subspace coefficients)
MIRRORING = ("lion", "avgrad", "mada", "adahessian", "metaoptimize", "lanton",
             "noise_adaptive_layerwise")


def _rows():
  env = dict(os.environ, XLA_FLAGS=SHARDED_FLAGS, JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  proc = subprocess.run([sys.executable, str(EXAMPLE), "--steps", "3"], capture_output=True,
                        text=True, env=env, cwd=REPO, timeout=1200)
  out = {}
  for line in proc.stdout.splitlines():
    if line.startswith("OPTZOO-SHARDED "):
      row = json.loads(line.removeprefix("OPTZOO-SHARDED "))
      out[row["name"]] = row
  assert out, f"no result lines (exit {proc.returncode}):\n{proc.stderr[-4000:]}"
  return out, proc.returncode, proc.stdout


def test_every_registry_optimizer_sharded():
  """One run of the example (about 80 s) over every registry optimizer, in one test so that no
  two pytest-xdist workers each run it. Every failing optimizer and check is listed."""
  rows, returncode, stdout = _rows()
  assert sorted(rows) == sorted(registry.names())
  assert "mesh {'data': 2, 'fsdp': 4} on cpu" in stdout
  failures = []
  for name, row in rows.items():
    if row["sharding_errors"]:
      failures.append(f"{name}: {row['sharding_errors']}")
    if name in MIRRORING and row["mirroring_leaves"] < 20:  # a buffer over the 20 trained leaves
      failures.append(f"{name}: only {row['mirroring_leaves']} mirroring state leaves")
    assert row["tol"] == 1e-5
    if not row["equal"]:
      failures.append(f"{name}: sharded params differ from one device by "
                      f"{row['max_abs_diff']:.3g} at {row['worst_leaf']}")
  assert not failures, failures
  assert returncode == 0, stdout[-3000:]
  departing = {n: r["example_kwargs"] for n, r in rows.items() if r["example_kwargs"]}
  assert departing == {"adahessian": {"eps": 0.1}}, departing


def test_nothing_in_optzoo_assumes_one_host():
  """The optimizers never look at devices or processes (only the kit's sharding check builds a
  mesh), so the same code runs on a global multi-host mesh. One host callback is allowed:
  MetaOptimize's traced ``init`` raises its base check's verdict from the values its probe
  computed from constants (the same on every device and process; the two-process test below
  runs it)."""
  import re  # noqa: PLC0415

  pattern = re.compile(r"\bjax\.(devices|local_devices|device_count|local_device_count|"
                       r"device_get|device_put|process_index|process_count|pure_callback|"
                       r"experimental\.io_callback|debug\.callback)\b")
  allowed = {("metaoptimize.py", "jax.debug.callback(functools.partial(_raise_verdict,")}
  offenders = []
  for path in sorted((REPO / "optzoo").rglob("*.py")):
    if path.name in ("testing.py", "pytest_plugin.py", "strategies.py", "registry.py",
                     "sweep.py", "compare.py", "workloads.py"):
      continue  # test and benchmark tooling (it measures on this host), not training code
    for i, line in enumerate(path.read_text().splitlines(), 1):
      if pattern.search(line) and not any(path.name == name and line.strip().startswith(code)
                                          for name, code in allowed):
        offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
  assert not offenders, offenders


def test_two_processes_share_one_global_mesh():
  """The same script on two 'hosts' (2 processes x 4 CPU devices, jax.distributed over
  localhost): one global (2, 4) mesh, shardings kept, results equal one device's."""
  import socket  # noqa: PLC0415

  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=SHARDED_FLAGS.replace("device_count=8", "device_count=4"))
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  procs = [subprocess.Popen(
      [sys.executable, str(EXAMPLE), "--distributed", "--coordinator", f"localhost:{port}",
       "--num-processes", "2", "--process-id", str(i), "--only", "lion", "metaoptimize", "lanton"],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
      for i in range(2)]
  outs = [p.communicate(timeout=900) for p in procs]
  for i, (out, err) in enumerate(outs):
    assert procs[i].returncode == 0, (out[-2000:], err[-3000:])
    rows = [json.loads(line.removeprefix("OPTZOO-SHARDED ")) for line in out.splitlines()
            if line.startswith("OPTZOO-SHARDED ")]
    assert [r["name"] for r in rows] == ["lion", "metaoptimize", "lanton"], out
    for r in rows:
      assert r["sharding_errors"] == [] and r["equal"], r
    assert "mesh {'data': 2, 'fsdp': 4}" in out
