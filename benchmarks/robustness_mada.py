"""MADA's robustness study in miniature: final validation loss over a grid of initial (b1, b2).

For Adam, MADA learning only (b1, b2) ("HyperAdam") and full MADA (all six coefficients learned
from the Adam corner), on the main job's two minibatch workloads (``optzoo.workloads``): the CNN on
scikit-learn's digits and the character-level transformer LM on Python standard-library source.

Budget rule, as in the main job (``benchmarks/run.py``): the workload's step budget, the
warmup + cosine schedule, and one peak learning rate per workload chosen the main job's way:
optax.adam at its default betas swept over ``common.lr_grid()`` on seed 0 (one ``optzoo.sweep``
compilation); that learning rate is then shared by all three optimizers. Each (optimizer,
workload) is one ``optzoo.sweep`` over the (b1, b2) grid x seeds 1..3 (one compilation; b1 and
b2 are traced, MADA's learned coefficients are read from its state with ``state_fn``).

Where it departs from the main job, plainly: the swept quantity is the initial (b1, b2), not
the step size, and the learning rate is Adam's (tuned at Adam's default betas), which if
anything favours Adam. The paper's protocol is a 25 x 11 grid of GPT-style models; this is a
small grid of small models, so only the qualitative comparison carries over. Reported: mean /
median / worst over the grid of the seed-mean final validation loss, the number of grid points
within 10% of the best point of the workload, the mean final coefficients; heatmaps.

    python benchmarks/robustness_mada.py            # 4 x 4 grid, 3 seeds, both workloads
    python benchmarks/robustness_mada.py --quick    # 2 x 2 grid, 1 seed, short runs
"""

from __future__ import annotations

import argparse
import time

import common
import numpy as np
import optax

import optzoo
from optzoo import sweep
from optzoo import workloads as workloads_

# The reference Shakespeare grid's hyper-optimizer: the same hyper-LR for every coefficient
# and heavy-ball momentum 0.5 (gamma's hyper-LR is kept too, as in MADA's GPT-2 runs).
HYPER = {"hyper_lr": 2.5e-3, "hyper_momentum": 0.5}
GRIDS = {
    "default": ((0.01, 0.5, 0.9, 0.99), (0.501, 0.8, 0.95, 0.99)),
    "quick": ((0.5, 0.9), (0.6, 0.99)),
}
#: name -> (factory, fixed kwargs); b1, b2 and the learning rate come from the sweep
OPTIMIZERS = {
    "Adam": (optax.adam, {"eps": 1e-8}),
    "HyperAdam": (optzoo.mada, {"eps": 1e-8, "learn": ("b1", "b2"), **HYPER}),
    "MADA": (optzoo.mada, {"eps": 1e-8, **HYPER}),
}


def workloads(quick: bool) -> list[workloads_.Workload]:
  if quick:
    return [workloads_.digits(steps=50, eval_every=25),
            workloads_.charlm(steps=50, eval_every=25)]
  return [workloads_.digits(), workloads_.charlm()]


def adam_learning_rate(w: workloads_.Workload, grid: np.ndarray) -> tuple[float, np.ndarray]:
  """The main job's choice: optax.adam's best peak learning rate on ``grid`` (seed 0)."""
  res = sweep.sweep(optax.adam, w.loss, w.init, w.steps, grid={"learning_rate": grid},
                    seeds=[0], schedule=common.schedule(w.steps), batch_fn=w.batch_fn,
                    eval_fn=w.eval_fn, eval_every=w.eval_every)
  return float(grid[res.best("loss")]), res.final["loss"][:, 0]


def run_grid(w: workloads_.Workload, name: str, lr: float, b1s, b2s, seeds) -> dict:
  """Seed-mean final validation loss ``(len(b1s), len(b2s))`` and mean final coefficients."""
  factory, fixed = OPTIMIZERS[name]
  state_fn = (None if factory is optax.adam
              else lambda s: {"coeffs": optax.tree.get(s, "coeffs")})
  res = sweep.sweep(factory, w.loss, w.init, w.steps, grid={"b1": b1s, "b2": b2s},
                    seeds=seeds, hparams={**fixed, "learning_rate": lr},
                    schedule=common.schedule(w.steps), batch_fn=w.batch_fn, eval_fn=w.eval_fn,
                    state_fn=state_fn, eval_every=w.eval_every)
  val = np.nanmean(np.where(np.isfinite(res.final["loss"]), res.final["loss"], np.inf), axis=1)
  if state_fn is None:
    coeffs = np.stack([res.points["b1"], res.points["b2"], np.zeros_like(res.points["b1"]),
                       *(np.ones_like(res.points["b1"]),) * 3], -1)
  else:
    coeffs = res.evals["coeffs"][:, :, -1].mean(axis=1)
  return {"val": val.reshape(len(b1s), len(b2s)), "coeffs": coeffs,
          "seconds": res.compile_seconds + res.run_seconds, "compilations": res.compilations}


def summarize(x: np.ndarray) -> str:
  x = np.where(np.isfinite(x), x, np.inf)
  return f"{np.mean(x):.4g} / {np.median(x):.4g} / {np.max(x):.4g}"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="2 x 2 grid, 1 seed, short runs")
  ap.add_argument("--workloads", nargs="*", default=None, help="digits, charlm (default both)")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  b1s, b2s = GRIDS["quick" if args.quick else "default"]
  seeds = [1] if args.quick else [1, 2, 3]
  lr_grid = common.lr_grid(3 if args.quick else common.GRID_SIZE)
  t_start = time.perf_counter()
  results, lrs = {}, {}
  loads = [w for w in workloads(args.quick) if not args.workloads or w.name in args.workloads]
  for w in loads:
    lrs[w.name], _ = adam_learning_rate(w, lr_grid)
    for opt in OPTIMIZERS:
      results[w.name, opt] = run_grid(w, opt, lrs[w.name], b1s, b2s, seeds)
      r = results[w.name, opt]
      print(f"{w.name:7s} {opt:10s} lr {lrs[w.name]:.3g} val {summarize(r['val'])} "
            f"({r['seconds']:.1f}s, {r['compilations']} compilation)", flush=True)

  lines = [
      "# MADA robustness to the initial (b1, b2), in miniature",
      "",
      f"Machine: {common.machine_name()}. Grid: b1 in {list(b1s)}, b2 in {list(b2s)} "
      f"({len(b1s) * len(b2s)} points x {len(seeds)} seeds per optimizer and workload, one "
      "`optzoo.sweep` compilation each), the main job's workloads, step budgets and warmup + "
      "cosine schedule; peak learning rate = optax.adam's best on the main job's grid "
      f"{[float(f'{x:.3g}') for x in lr_grid]} at default betas (seed 0), shared by all three "
      f"({', '.join(f'{k} {v:.3g}' for k, v in lrs.items())}). HyperAdam and MADA start at the "
      "grid point (MADA at the Adam corner for the other four coefficients) with hyper-LR "
      f"{HYPER['hyper_lr']} and hyper-momentum {HYPER['hyper_momentum']}. Departures from the "
      "main job: (b1, b2) is swept instead of the step size, and the learning rate is Adam's. "
      f"Generated by `python benchmarks/robustness_mada.py{' --quick' if args.quick else ''}` "
      f"in {time.perf_counter() - t_start:.0f} s.",
      "",
      "Final validation loss, mean over seeds; mean / median / worst over the grid (lower is "
      "better); 'within 10%': grid points within 10% of the workload's best point.",
      "",
      "| workload | optimizer | validation loss (mean / median / worst) | within 10% of best | "
      "mean final coefficients (b1, b2, b3, rho, c, gamma) |",
      "|---|---|---|---:|---|",
  ]
  for w in loads:
    best = min(np.nanmin(np.where(np.isfinite(results[w.name, o]["val"]),
                                  results[w.name, o]["val"], np.inf)) for o in OPTIMIZERS)
    for opt in OPTIMIZERS:
      r = results[w.name, opt]
      near = int(np.sum(np.nan_to_num(r["val"], nan=np.inf) <= 1.1 * best))
      mean_c = ", ".join(f"{x:.3f}" for x in np.mean(r["coeffs"], axis=0))
      lines.append(f"| {w.name} | {opt} | {summarize(r['val'])} | {near}/{r['val'].size} | "
                   f"{mean_c} |")
  print("\n".join(lines))
  common.write("robustness_mada.md", "\n".join(lines) + "\n", args.out)

  plt = common.pyplot()
  names = [w.name for w in loads]
  fig, axes = plt.subplots(len(names), len(OPTIMIZERS),
                           figsize=(4 * len(OPTIMIZERS), 3.4 * len(names)), squeeze=False)
  for i, wname in enumerate(names):
    # log10 colour scale: a diverged run is many decades above the rest
    logs = {o: np.log10(np.maximum(np.nan_to_num(results[wname, o]["val"], nan=1e30,
                                                 posinf=1e30), 1e-8)) for o in OPTIMIZERS}
    vals = np.stack(list(logs.values()))
    vmin, vmax = float(vals.min()), float(vals.max())
    for j, opt in enumerate(OPTIMIZERS):
      ax = axes[i, j]
      im = ax.imshow(logs[opt], vmin=vmin, vmax=vmax, cmap="viridis", origin="lower")
      ax.set_xticks(range(len(b2s)), [str(b) for b in b2s])
      ax.set_yticks(range(len(b1s)), [str(b) for b in b1s])
      ax.set_xlabel("initial b2")
      if j == 0:
        ax.set_ylabel("initial b1")
      ax.set_title(f"{wname}: {opt}")
      for (a, b), v in np.ndenumerate(results[wname, opt]["val"]):
        ax.text(b, a, f"{v:.3g}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(im, ax=axes[i].tolist(), shrink=0.8, label="log10 final validation loss")
  fig.suptitle(f"Final validation loss (mean over {len(seeds)} seeds) over initial (b1, b2) - "
               f"{common.machine_name()}", fontsize=8)
  common.savefig(fig, "robustness_mada.png", args.out, bbox_inches="tight")
  return results


if __name__ == "__main__":
  main()
