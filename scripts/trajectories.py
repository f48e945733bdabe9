"""Records every registry optimizer's trajectory, and compares two commits bitwise.

A refactor that claims "behaviour unchanged" runs this on the commit before and the commit after:

    python scripts/trajectories.py --compare BEFORE_REV AFTER_REV

It checks out each revision into a temporary git worktree, records there (in a fresh process
that imports that revision's optzoo) the losses, final params and final optimizer state of every
registry entry on every toy objective (the Flax MLP included) plus a few non-default settings
that exercise other code paths, and reports every array that differs in any bit.

Only the registry's stable public face is used (``ENTRIES``, ``name``, ``make``, ``factory``,
``toy_kwargs``, ``extra_args``) and ``objectives.TOY_SUITE`` / ``objectives.get``, so old and new
commits are recorded by the same code. ``--record OUT.npz`` records the working tree alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np

STEPS = 60


def _variants():
  """(label, entry name, kwargs over the toy kwargs): settings beyond the registry's."""
  import optax  # noqa: PLC0415

  return [
      ("lanton/gram", "lanton", {"dual_norm": "gram"}),
      ("lanton/noise_every3", "lanton", {"noise_every": 3, "warmup_steps": 2}),
      ("lanton/mean_svd", "lanton", {"dual_norm": "svd", "normalize": "mean"}),
      ("mada/learn_b1b2", "mada", {"learn": ("b1", "b2")}),
      ("adahessian/every3", "adahessian", {"update_every": 3}),
      ("metaoptimize/sgd", "metaoptimize", {"base": optax.identity()}),
      ("metaoptimize/lion", "metaoptimize", {"base": optax.scale_by_lion()}),
      ("metaoptimize/authors", "metaoptimize", {"safeguard": False}),
      ("nal/l2", "noise_adaptive_layerwise", {"dual_norm": "l2", "inner": optax.sgd(1e-2)}),
  ]


def _run(tx, loss, params, extra_args):
  import jax  # noqa: PLC0415
  import optax  # noqa: PLC0415

  def body(carry, _):
    p, st = carry
    value, grads = jax.value_and_grad(loss)(p)
    extras = {"obj_fn": loss} if "obj_fn" in extra_args else {}
    updates, st = tx.update(grads, st, p, **extras)
    return (optax.apply_updates(p, updates), st), value

  @jax.jit
  def run(p):
    (p, st), losses = jax.lax.scan(body, (p, tx.init(p)), None, length=STEPS)
    return losses, p, st

  return run(params)


def record(out: str, only: str | None = None) -> None:
  import jax  # noqa: PLC0415
  from optzoo import objectives, registry  # noqa: PLC0415

  entries = {e.name: e for e in registry.ENTRIES}
  arrays: dict[str, np.ndarray] = {}
  jobs = [(e.name, e.name, None) for e in registry.ENTRIES]
  jobs += [(label, name, kw) for label, name, kw in _variants()]
  for label, name, kw in jobs:
    if only and only not in label:
      continue
    e = entries[name]
    for obj_name in objectives.TOY_SUITE:
      obj = objectives.get(obj_name)
      tx = e.make(obj_name) if kw is None else e.make(obj_name, **kw)
      losses, p, st = _run(tx, obj.loss, obj.init(), tuple(e.extra_args))
      leaves = [np.asarray(losses)] + [np.asarray(x) for x in jax.tree.leaves((p, st))]
      for i, x in enumerate(leaves):
        arrays[f"{label}|{obj_name}|{i:03d}"] = x
      print(f"{label:28s} {obj_name:16s} final loss {float(losses[-1]):.6g}", flush=True)
  np.savez(out, **arrays)


def compare(a: str, b: str) -> int:
  za, zb = np.load(a), np.load(b)
  keys = sorted(zb)  # B may hold a subset of A's runs (--only)
  runs = sorted({k.rsplit("|", 1)[0] for k in keys})
  bad = [] if runs else ["no runs recorded"]
  for run in runs:
    ka = sorted(k for k in za if k.startswith(run + "|"))
    kb = sorted(k for k in zb if k.startswith(run + "|"))
    if ka != kb:
      bad.append(f"{run}: different number of arrays ({len(ka)} vs {len(kb)})")
      continue
    for k in ka:
      x, y = za[k], zb[k]
      if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
        bad.append(f"{k}: differs")
  print(f"{len(runs)} runs ({len(keys)} arrays) compared bitwise: {len(bad)} differences")
  for line in bad[:50]:
    print("  " + line)
  return 1 if bad else 0


def compare_revs(rev_a: str, rev_b: str, only: str | None) -> int:
  root = subprocess.check_output(["git", "rev-parse", "--show-toplevel"], text=True).strip()
  outs = []
  with tempfile.TemporaryDirectory() as tmp:
    for i, rev in enumerate((rev_a, rev_b)):
      tree = os.path.join(tmp, f"tree{i}")
      subprocess.check_call(["git", "-C", root, "worktree", "add", "-q", "--detach", tree, rev])
      try:
        out = os.path.join(tmp, f"rev{i}.npz")
        env = {**os.environ, "PYTHONPATH": tree}
        cmd = [sys.executable, os.path.abspath(__file__), "--record", out]
        if only:
          cmd += ["--only", only]
        print(f"recording {rev} ...", flush=True)
        subprocess.check_call(cmd, env=env, cwd=tree, stdout=subprocess.DEVNULL)
        outs.append(out)
      finally:
        subprocess.check_call(["git", "-C", root, "worktree", "remove", "--force", tree])
    print(f"{rev_a} -> {rev_b}: ", end="")
    return compare(*outs)


def main() -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--record", metavar="OUT.npz")
  ap.add_argument("--compare", nargs=2, metavar=("REV_A", "REV_B"))
  ap.add_argument("--compare-files", nargs=2, metavar=("A.npz", "B.npz"))
  ap.add_argument("--only", help="record only runs whose label contains this")
  args = ap.parse_args()
  if args.record:
    record(args.record, args.only)
    return 0
  if args.compare_files:
    return compare(*args.compare_files)
  if args.compare:
    return compare_revs(*args.compare, args.only)
  ap.print_help()
  return 2


if __name__ == "__main__":
  sys.exit(main())
