"""A hyperparameter sweep spread over every device, one host or many, in one compilation.

``optzoo.sweep.sweep(..., mesh=jax.devices())`` lays the grid x seeds runs on one axis and
splits them evenly over the devices; each device trains its share of the models. This script
sweeps a small MLP regression three ways and checks each against the same sweep on one device:

* ``even``: 4 learning rates x 4 seeds of Adam = 16 runs, 2 per device on 8 devices, through
  :func:`optzoo.sweep.compile_sweep` (one compilation; XLA's flops per device are reported
  against the one-device program's);
* ``compiled``: the same compiled program run again with new values and seeds, compiling
  nothing;
* ``padded``: 3 learning rates x 3 seeds of optzoo's Lion = 9 runs through
  :func:`optzoo.sweep.sweep`, which 8 devices do not divide (padded to 16 with copies of the
  last run; the result has 9).

On a CPU-only machine it asks XLA for 8 host devices (set below unless already set)::

    python examples/sharded_sweep.py

Across hosts, start it on every host with ``--distributed`` (``jax.distributed.initialize()``;
``--coordinator``, ``--num-processes`` and ``--process-id`` where the cluster's environment does
not say them). The mesh is then every host's devices; every process calls the sweep alike and
reads the whole result::

    python examples/sharded_sweep.py --distributed --coordinator host0:1234 \\
        --num-processes 2 --process-id 0            # and --process-id 1 on the other host

Prints one ``OPTZOO-SWEEP {json}`` line per case and exits non-zero if a check fails.
"""

from __future__ import annotations

import os

# Before jax is imported: 8 simulated CPU devices (no effect on GPUs/TPUs, or if already set).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import optzoo  # noqa: E402
from optzoo import sweep  # noqa: E402

# NumPy data: nothing touches a JAX backend before jax.distributed.initialize()
X = np.random.default_rng(42).standard_normal((64, 5)).astype(np.float32)
Y = np.sin(X @ np.arange(1.0, 6.0, dtype=np.float32) / 5.0)


def init(key):
  k1, k2 = jax.random.split(key)
  return {"hidden": {"kernel": 0.3 * jax.random.normal(k1, (5, 16)), "bias": jnp.zeros(16)},
          "out": {"kernel": 0.3 * jax.random.normal(k2, (16, 1)), "bias": jnp.zeros(1)}}


def loss(params, batch):
  x, y = batch
  h = jnp.tanh(x @ params["hidden"]["kernel"] + params["hidden"]["bias"])
  return jnp.mean((h @ params["out"]["kernel"] + params["out"]["bias"] - y[:, None]) ** 2)


def batch_fn(key, _step):
  i = jax.random.randint(key, (16,), 0, X.shape[0])
  return jnp.asarray(X)[i], jnp.asarray(Y)[i]


def compare(name: str, one, spread, tol: float, compilations: int = 1) -> dict:
  """The checks of a sharded sweep ``spread`` against the one-device ``one``: the largest
  difference of each leaf (losses, every final param) relative to that leaf's largest value,
  and ``compilations`` XLA compilations during the sharded call."""
  diffs = [np.max(np.abs(a - b)) / np.max(np.abs(a)) for a, b in
           zip(jax.tree.leaves((one.losses, one.params)),
               jax.tree.leaves((spread.losses, spread.params)))]
  row = {"name": name, "devices": spread.devices, "processes": jax.process_count(),
         "shape": list(spread.losses.shape[:2]), "compilations": spread.compilations,
         "max_rel_diff": float(max(diffs)), "tol": tol}
  row["ok"] = (spread.losses.shape == one.losses.shape
               and spread.compilations == compilations and row["max_rel_diff"] <= tol)
  return row


def run_cases(steps: int, tol: float) -> list[dict]:
  kw = dict(batch_fn=batch_fn, eval_fn=lambda p: loss(p, (X, Y)), eval_every=steps // 2,
            return_params=True)
  devices = jax.devices()
  # even: compiled once on one device and once on the mesh, then run with the same values
  lrs, seeds = [1e-3, 1e-2, 3e-2, 1e-1], [[0, 1, 2, 3]] * 4
  one = sweep.compile_sweep(optax.adam, loss, init, steps, names=("learning_rate",),
                            shape=(4, 4), **kw)
  prog = sweep.compile_sweep(optax.adam, loss, init, steps, names=("learning_rate",),
                             shape=(4, 4), mesh=devices, **kw)
  row = compare("even", one.run({"learning_rate": lrs}, seeds),
                prog.run({"learning_rate": lrs}, seeds), tol, compilations=0)
  row["compilations"] = prog.compilations
  row["ok"] = row["ok"] and prog.compilations == 1
  # XLA's flops per device of the sharded program against the one-device program's
  flops = [p.cost().get("flops", 0.0) for p in (one, prog)]
  row["flops_per_device_ratio"] = flops[1] / flops[0] if flops[0] else None
  rows = [row]
  # compiled: the same program, new values and seeds, no compilation
  new = ({"learning_rate": [5e-3] * 4}, [[4, 5, 6, 7]] * 4)
  rows.append(compare("compiled", one.run(*new), prog.run(*new), tol, compilations=0))
  # padded: 9 runs on 8 devices, through optzoo.sweep.sweep
  grid = {"learning_rate": [1e-4, 1e-3, 1e-2]}
  rows.append(compare(
      "padded", sweep.sweep(optzoo.lion, loss, init, steps, grid=grid, seeds=3, **kw),
      sweep.sweep(optzoo.lion, loss, init, steps, grid=grid, seeds=3, mesh=devices, **kw), tol))
  return rows


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=8, help="steps per run (8; even)")
  ap.add_argument("--tol", type=float, default=1e-5,
                  help="max |sharded - one device| / max |one device|, per leaf of losses and "
                  "params (1e-5)")
  ap.add_argument("--distributed", action="store_true",
                  help="call jax.distributed.initialize() first (one process per host)")
  ap.add_argument("--coordinator", help="host:port of process 0")
  ap.add_argument("--num-processes", type=int, help="processes in all (else auto-detected)")
  ap.add_argument("--process-id", type=int, help="this process's index (else auto-detected)")
  args = ap.parse_args(argv)
  if args.distributed:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  rows = run_cases(args.steps, args.tol)
  for row in rows:
    print("OPTZOO-SWEEP " + json.dumps(row), flush=True)
  print(f"{len(jax.devices())} devices, {jax.process_count()} processes on "
        f"{jax.devices()[0].platform}", flush=True)
  return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
  sys.exit(main())
