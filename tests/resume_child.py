"""Child process of resume_test.py: checkpoint with orbax at step K, resume in a fresh process.

    python tests/resume_child.py save DIR --mode one_device|sharded [--only NAME ...]
    python tests/resume_child.py resume DIR --mode one_device|sharded [--only NAME ...]

``save`` runs every registry optimizer (wrapped by ``optzoo.inject_hyperparams``, with a
warmup + cosine schedule on its learning rate) for K jitted steps, saves params and state with
``orbax.checkpoint.StandardCheckpointer``, runs K more steps and saves the final params and state
as the reference. ``resume``, in another process, restores the step-K checkpoint against the
abstract state (``jax.eval_shape(tx.init, params)`` with the shardings the run uses), runs K
steps and prints one line ``OPTZOO-RESUME {name: {"ok": bool, "errors": [...]}}``: the resumed
run must equal the reference bit for bit, and in ``sharded`` mode every restored leaf must have
the sharding it was saved with.

``sharded`` uses the mesh and the FSDP rule of examples/sharded_training.py (a (data=2, fsdp=4)
mesh of 8 simulated CPU devices, the state shardings from its ``state_shardings``) on a small
problem, so compiling stays cheap. Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``
in both modes (``one_device`` uses the first device). Outside pytest: JAX's standard promotion.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding, PartitionSpec as P, SingleDeviceSharding

from helpers import jitted_step, scheduled_optimizer, small_problem
from optzoo import registry

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "examples"))
import sharded_training as example  # noqa: E402

K = 5  # steps before the checkpoint, and after it


def placed(params, mode):
  """``(params on the run's devices, their shardings, mesh or None)``."""
  if mode == "one_device":
    sh = jax.tree.map(lambda _: SingleDeviceSharding(jax.devices()[0]), params)
    return jax.device_put(params, sh), sh, None
  mesh = example.make_mesh(2, 4)
  sh = jax.tree.map(lambda a: NamedSharding(mesh, example.fsdp_spec(a.shape, 4)), params)
  return jax.device_put(params, sh), sh, mesh


def init_state(tx, params, mode, mesh):
  if mode == "one_device":
    return jax.jit(tx.init)(params)
  return example.init_state(tx, params, mesh)


def run(step, params, state, steps):
  for _ in range(steps):
    params, state = step(params, state)
  return params, state


def specs_of(tree) -> list:
  """Each leaf's ``PartitionSpec`` as JSON (None on one device)."""
  def spec(a):
    if not isinstance(a.sharding, NamedSharding):
      return None
    return [list(x) if isinstance(x, tuple) else x for x in a.sharding.spec]

  return [spec(a) for a in jax.tree.leaves(tree)]


def save(entry, root, mode):
  params0, loss = small_problem()
  params, _, mesh = placed(params0, mode)
  tx = scheduled_optimizer(entry)
  step = jitted_step(tx, loss, entry.extra_args)
  p, s = run(step, params, init_state(tx, params, mode, mesh), K)
  with ocp.StandardCheckpointer() as ckptr:
    ckptr.save(root / entry.name / "step_k", {"params": p, "opt_state": s})
    specs = {"step_k": specs_of({"params": p, "opt_state": s})}
    p, s = run(step, p, s, K)
    ckptr.save(root / entry.name / "final", {"params": p, "opt_state": s})
    specs["final"] = specs_of({"params": p, "opt_state": s})
  (root / entry.name / "specs.json").write_text(json.dumps(specs))


def target_of(abstract, specs, mesh):
  """``abstract``'s shapes and dtypes with the saved shardings (orbax's restore target)."""
  def sharding(spec):
    if mesh is None:
      return SingleDeviceSharding(jax.devices()[0])
    return NamedSharding(mesh, P(*[tuple(x) if isinstance(x, list) else x for x in spec]))

  leaves, treedef = jax.tree.flatten(abstract)
  return jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding(sp))
                                      for a, sp in zip(leaves, specs)])


def resume(entry, root, mode) -> list[str]:
  """Restores step K, runs K steps; the differences from the uninterrupted run."""
  params0, loss = small_problem()
  params, _, mesh = placed(params0, mode)
  tx = scheduled_optimizer(entry)
  abstract = {"params": params, "opt_state": jax.eval_shape(tx.init, params)}
  specs = json.loads((root / entry.name / "specs.json").read_text())
  with ocp.StandardCheckpointer() as ckptr:
    restored = ckptr.restore(root / entry.name / "step_k",
                             target_of(abstract, specs["step_k"], mesh))
    reference = ckptr.restore(root / entry.name / "final",
                              target_of(abstract, specs["final"], mesh))
  errors = []
  if jax.tree.structure(restored) != jax.tree.structure(abstract):
    errors.append("the restored tree's structure is not tx.init's")
  if specs_of(restored) != specs["step_k"]:
    errors.append("restored leaves lost their saved shardings")
  step = jitted_step(tx, loss, entry.extra_args)
  p, s = run(step, restored["params"], restored["opt_state"], K)
  if specs_of({"params": p, "opt_state": s}) != specs["final"]:
    errors.append("after resuming, the shardings differ from the uninterrupted run's")
  got = jax.device_get({"params": p, "opt_state": s})
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got),
                          jax.tree.leaves(jax.device_get(reference))):
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
      errors.append(f"{jax.tree_util.keystr(path)} differs from the uninterrupted run")
  return errors


def main(argv=None) -> None:
  ap = argparse.ArgumentParser()
  ap.add_argument("phase", choices=("save", "resume"))
  ap.add_argument("dir", type=pathlib.Path)
  ap.add_argument("--mode", choices=("one_device", "sharded"), required=True)
  ap.add_argument("--only", nargs="*")
  args = ap.parse_args(argv)
  out = {}
  for entry in registry.ENTRIES:
    if args.only and entry.name not in args.only:
      continue
    try:
      if args.phase == "save":
        save(entry, args.dir.resolve(), args.mode)
        out[entry.name] = {"ok": True, "errors": []}
      else:
        errors = resume(entry, args.dir.resolve(), args.mode)
        out[entry.name] = {"ok": not errors, "errors": errors}
    except Exception as e:  # noqa: BLE001 - reported back to the parent test
      out[entry.name] = {"ok": False, "errors": [f"{args.phase}: {type(e).__name__}: {e}"]}
  print("OPTZOO-RESUME " + json.dumps(out), flush=True)


if __name__ == "__main__":
  main()
