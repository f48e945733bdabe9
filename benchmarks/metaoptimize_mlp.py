"""MetaOptimize vs optax.adam on the Flax MLP: does a learned step size recover a tuned one?

The data are ``objectives.mlp_data()`` with 20% of the labels redrawn at random (fixed seed):
the clean blobs are separable, so every run would drive the loss to 0. ``optax.adam`` is tuned
on a learning-rate grid x 3 seeds (one sweep); it is then also run at a learning rate 10x below
the tuned one. ``optzoo.metaoptimize(optax.scale_by_adam(), ...)`` (Lion meta, meta lr 1e-3,
scalar step size, the paper's defaults, optzoo's default safeguard) starts from that
10x-too-small step size (and from 100x too small) and learns it (one sweep over the two starts x
3 seeds); the same run from 10x too small with ``safeguard=False`` (the authors' rule) shows the
step size that keeps growing once the loss has converged. Departure from the main job's budget
rule, on purpose: constant step sizes (the question is whether a learned step size recovers a
tuned constant one). Reported: the final full-batch loss (mean +- std over seeds) and the
learned step size over time.

Writes ``benchmarks/results/metaoptimize_mlp.md`` and ``metaoptimize_mlp.png``.

    python benchmarks/metaoptimize_mlp.py          # default (a few minutes on a CPU)
    python benchmarks/metaoptimize_mlp.py --quick  # smoke run: prints, writes no files
"""

from __future__ import annotations

import argparse
import time

import common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optzoo
from optzoo import objectives, sweep

MO_ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
MO_BATCH = 64
MO_LABEL_NOISE = 0.2  # labels redrawn at random (fixed seed), so the loss cannot reach 0
MO_TARGET = 1e-3  # full-batch loss for the "steps to target" column


def _mo_problem():
  """(init params, batch loss, batch_fn, full-batch loss) of the noisy-label MLP."""
  obj = objectives.get("mlp")
  xs, ys = objectives.mlp_data()
  rng = np.random.default_rng(123)
  redraw = rng.uniform(size=ys.shape) < MO_LABEL_NOISE
  ys = np.where(redraw, rng.integers(0, int(ys.max()) + 1, size=ys.shape), ys).astype(np.int32)
  xs, ys = jnp.asarray(xs), jnp.asarray(ys)
  model = objectives.mlp_model()

  def full_loss(params):
    logits = model.apply({"params": params}, xs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()

  def batch_loss(params, idx):
    logits = model.apply({"params": params}, xs[idx])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ys[idx]).mean()

  def batch_fn(key, _t):
    return jax.random.randint(key, (MO_BATCH,), 0, xs.shape[0])

  return obj.init(), batch_loss, batch_fn, full_loss


def _learned_lr(state):
  return {"lr": jnp.exp(optax.tree.get(state, "log_learning_rate"))}


def run_metaoptimize(quick: bool) -> dict:
  """Runs the MetaOptimize comparison and returns its numbers.

  Every configuration is one ``optzoo.sweep`` (grid x seeds, one compilation): optax.adam
  over ``MO_ADAM_GRID``, then MetaOptimize from 10x and 100x below the tuned step size.
  Returns a dict with ``machine``, ``steps``, ``seeds``, ``adam_grid`` ({lr: final loss}),
  ``tuned_lr``, ``rows`` (one per run: ``name``, ``init_lr``, ``final_loss`` mean over seeds,
  ``final_std``, ``final_lr`` (learned step size, mean over seeds; None for Adam),
  ``loss_ratio`` = final loss / tuned Adam's, ``steps_to_target``: per seed, the first logged
  step with full-batch loss < ``MO_TARGET``), ``curves`` (name -> {``step``, ``loss``,
  ``lr``}, seed means), ``table`` (markdown), ``seconds`` and ``small`` (a tenth of
  ``tuned_lr``).
  """
  t_start = time.time()
  steps = 1_500 if quick else 4_000
  log_every = 50 if quick else 100
  seeds = (0,) if quick else (0, 1, 2)
  params0, batch_loss, batch_fn, full_loss = _mo_problem()
  kw = dict(batch_fn=batch_fn, eval_fn=full_loss, eval_every=log_every, seeds=list(seeds))

  adam = sweep.sweep(optax.adam, batch_loss, params0, steps,
                     grid={"learning_rate": MO_ADAM_GRID}, **kw)
  grid = {lr: float(np.mean(adam.final["loss"][i])) for i, lr in enumerate(MO_ADAM_GRID)}
  tuned_i = adam.best("loss")
  tuned = MO_ADAM_GRID[tuned_i]
  small = tuned / 10.0
  runs = {f"optax.adam (tuned, {tuned:g})": (tuned, adam.evals["loss"][tuned_i], None)}
  if small in MO_ADAM_GRID:
    small_curves = adam.evals["loss"][MO_ADAM_GRID.index(small)]
  else:
    small_curves = sweep.sweep(optax.adam, batch_loss, params0, steps,
                               hparams={"learning_rate": small}, **kw).evals["loss"][0]
  runs[f"optax.adam (10x too small, {small:g})"] = (small, small_curves, None)
  starts = [tuned / 10.0, tuned / 100.0]
  mo = sweep.sweep(optzoo.metaoptimize, batch_loss, params0, steps,
                   hparams={"base": optax.scale_by_adam()},
                   grid={"initial_learning_rate": starts}, state_fn=_learned_lr, **kw)
  for i, (a0, factor) in enumerate(zip(starts, (10, 100))):
    runs[f"metaoptimize(scale_by_adam) from {a0:g} ({factor:g}x too small)"] = (
        a0, mo.evals["loss"][i], mo.evals["lr"][i])
  # the authors' rule (no safeguard) from 10x too small: the step size keeps growing once the
  # loss has converged
  raw = sweep.sweep(optzoo.metaoptimize, batch_loss, params0, steps,
                    hparams={"base": optax.scale_by_adam(), "safeguard": False,
                             "initial_learning_rate": small}, state_fn=_learned_lr, **kw)
  runs[f"same, safeguard=False (the authors' rule), from {small:g}"] = (
      small, raw.evals["loss"][0], raw.evals["lr"][0])

  base_loss = grid[tuned]
  rows, curves = [], {}
  step_axis = adam.eval_steps
  for name, (lr0, losses, lrs) in runs.items():
    final = losses[:, -1]
    hits = []
    for curve in losses:
      hit = np.nonzero(curve < MO_TARGET)[0]
      hits.append(int(step_axis[hit[0]]) if hit.size else None)
    rows.append({
        "name": name, "init_lr": lr0, "final_loss": float(np.mean(final)),
        "final_std": float(np.std(final)),
        "final_lr": None if lrs is None else float(np.mean(lrs[:, -1])),
        "loss_ratio": float(np.mean(final)) / base_loss, "steps_to_target": hits,
    })
    curves[name] = {"step": step_axis.tolist(), "loss": np.mean(losses, 0).tolist(),
                    "lr": None if lrs is None else np.mean(lrs, 0).tolist()}

  machine = common.machine_name()
  lines = [
      "# MetaOptimize over Adam vs optax.adam on the Flax MLP",
      "",
      f"Machine: {machine}. Objective: the Flax MLP of `objectives.get('mlp')` (16-32-32-4, its "
      f"512 Gaussian-blob samples) with {MO_LABEL_NOISE:.0%} of the labels redrawn at random "
      "(fixed seed; the clean blobs are separable, so the loss would reach 0 and the comparison "
      f"would be about nothing); minibatches of {MO_BATCH} drawn at random, {steps} steps, seeds "
      f"{list(seeds)}; loss is the full-batch cross-entropy at the end, mean +- std over seeds. "
      f"Each configuration is one `optzoo.sweep` (grid x seeds, one compilation). Adam tuned on "
      f"the grid {list(MO_ADAM_GRID)} in this run: best {tuned:g}. MetaOptimize: Lion meta, "
      "meta lr 1e-3, scalar step size, gamma 1 (paper defaults). Departure from the main "
      "job's budget rule, on purpose: constant step sizes (no schedule), a full-batch loss "
      "and a grid of its own, since the question is whether a learned step size recovers a "
      "tuned constant one.",
      "",
      "| run | initial lr | final loss | loss / tuned Adam | "
      f"steps to loss {MO_TARGET:g} (per seed) | learned lr at end (seed mean) |",
      "|---|---|---|---|---|---|",
  ]
  for r in rows:
    learned = "-" if r["final_lr"] is None else f"{r['final_lr']:.3g}"
    reached = ", ".join("-" if h is None else str(h) for h in r["steps_to_target"])
    lines.append(f"| {r['name']} | {r['init_lr']:.3g} | {r['final_loss']:.4g} +- "
                 f"{r['final_std']:.2g} | {r['loss_ratio']:.3g} | {reached} | {learned} |")
  lines += ["", "Adam grid (final loss, seed mean): "
            + ", ".join(f"{lr:g}: {v:.4g}" for lr, v in grid.items())]
  table = "\n".join(lines) + "\n"

  return {
      "machine": machine, "steps": steps, "seeds": list(seeds),
      "adam_grid": grid, "tuned_lr": tuned, "small": small,
      "rows": rows, "curves": curves, "table": table, "seconds": time.time() - t_start,
  }


def _mo_plot(mo: dict, out) -> None:
  plt = common.pyplot()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
  for name, c in mo["curves"].items():
    ax1.plot(c["step"], c["loss"], label=name, ls="-" if c["lr"] is not None else "--")
    if c["lr"] is not None:
      ax2.plot(c["step"], c["lr"], label=name)
  ax1.set_yscale("log")
  ax1.set_xlabel("step")
  ax1.set_ylabel("full-batch loss (seed mean)")
  ax1.legend(fontsize=7)
  ax2.axhline(mo["tuned_lr"], color="k", ls=":", label=f"tuned Adam lr {mo['tuned_lr']:g}")
  ax2.axhline(mo["small"], color="gray", ls=":", label=f"10x too small {mo['small']:g}")
  ax2.set_yscale("log")
  ax2.set_xlabel("step")
  ax2.set_ylabel("learned step size exp(log_learning_rate)")
  ax2.legend(fontsize=7)
  fig.suptitle("MetaOptimize(scale_by_adam, Lion meta) vs optax.adam, Flax MLP "
               "(safeguard on unless marked)")
  fig.tight_layout()
  common.savefig(fig, "metaoptimize_mlp.png", out)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="smoke run; prints, writes no files")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  mo = run_metaoptimize(args.quick)
  print(mo["table"])
  if not args.quick:  # a smoke run prints and writes nothing
    common.write("metaoptimize_mlp.md", mo["table"], args.out)
    _mo_plot(mo, args.out)
  print(f"({mo['seconds']:.1f} s)")


if __name__ == "__main__":
  main()
