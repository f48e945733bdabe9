"""MADA (arXiv 2401.08893) against tuned Adam on the character-level transformer LM, its learned
coefficients over training, and its robustness to the initial betas.

Part 1: ``optzoo.mada`` (the main job's contestant: paper defaults, all six coefficients learned
from b1 0.9, b2 0.95 at the Adam corner) and ``optax.adam``, tuned by the main job's protocol
(``benchmarks/run.py``: 7-point step-size grid with warmup + cosine on seed 0, the best point on
seeds 1..7, one compilation each) on the main job's char-LM (``workloads.charlm``) widened
to ``WIDTH``; then MADA's best point again on seeds 1..3 recording its coefficients.

Part 2, the paper's initial-beta grid in miniature: Adam, HyperAdam (MADA learning only b1 and
b2) and MADA (all six learned, the other four starting at the Adam corner) from every initial
(b1, b2) of :data:`BETAS`, at Adam's tuned step size from part 1 (which if anything favours
Adam), the hyper-optimizer of the authors' Shakespeare grid (:data:`HYPER`). Each optimizer is
one ``optzoo.sweep`` over the grid x seeds: the initial betas only set MADA's first coefficients
(its ``init``), so the sweep traces them (``optzoo.mada`` declares them static for
``inject_hyperparams``, where changing them after ``init`` would do nothing).

    python benchmarks/papers/mada.py [--quick]
"""

from __future__ import annotations

import claims
import common
import numpy as np
import optax

import optzoo
from optzoo import sweep, workloads

#: the widest char-LM the 2-4 minute budget allows on the shared 2-core machine (1 block; the
#: main job's is width 32). The issue asks for >= 1M parameters (width ~290): from the main
#: job's measured 3 s per 7-model, 300-step run at width 32, that is ~50x the work, tens of
#: minutes under this machine's load
WIDTH = 64
#: initial (b1, b2) of part 2: the paper's grid, coarsened
BETAS = {"full": ((0.01, 0.5, 0.9, 0.99), (0.501, 0.8, 0.95, 0.99)),
         "quick": ((0.5, 0.9), (0.6, 0.99))}
#: "near the best point": within 2% of its validation loss (a char-LM's losses differ by a few %)
NEAR = 0.02
#: the authors' Shakespeare grid's hyper-optimizer: one hyper-LR and heavy-ball momentum 0.5
HYPER = {"hyper_lr": 2.5e-3, "hyper_momentum": 0.5}


def _from_betas(learn):
  """``(learning_rate, b1, b2) -> optzoo.mada`` learning ``learn``, for a sweep that traces b1, b2."""

  def factory(learning_rate, b1, b2):
    return optzoo.mada(learning_rate, b1=b1, b2=b2, eps=1e-8, learn=learn, **HYPER)

  return factory


#: part 2's contestants: factories of (learning_rate, b1, b2)
ROBUSTNESS = {
    "Adam": lambda learning_rate, b1, b2: optax.adam(learning_rate, b1=b1, b2=b2, eps=1e-8),
    "HyperAdam": _from_betas(("b1", "b2")),
    "MADA": _from_betas(optzoo.MADA_COEFF_NAMES),
}


def beta_grid(w: workloads.Workload, lr: float, quick: bool) -> dict:
  """Seed-mean final validation loss ``(len(b1s), len(b2s))`` of each :data:`ROBUSTNESS` entry."""
  b1s, b2s = BETAS["quick" if quick else "full"]
  out = {}
  # --quick skips HyperAdam, MADA's own code with fewer coefficients learned (a compilation less)
  for name in ("Adam", "MADA") if quick else ROBUSTNESS:
    factory = ROBUSTNESS[name]
    res = sweep.sweep(factory, w.loss, w.init, w.steps, grid={"b1": b1s, "b2": b2s},
                      seeds=[1] if quick else [1, 2], hparams={"learning_rate": lr},
                      schedule=common.schedule(w.steps), batch_fn=w.batch_fn, eval_fn=w.eval_fn,
                      eval_every=w.eval_every)
    val = np.where(np.isfinite(res.final["loss"]), res.final["loss"], np.inf).mean(axis=1)
    out[name] = val.reshape(len(b1s), len(b2s))
  return out


def robustness_table(grids: dict) -> tuple[str, bool]:
  """The table, and the verdict rule fixed before the run: MADA is robust if its worst grid
  point is no worse than Adam's and at least as many of its points are within :data:`NEAR` of
  the best point of all three."""
  best = min(float(np.min(v)) for v in grids.values())
  near = {k: int(np.sum(v <= (1 + NEAR) * best)) for k, v in grids.items()}
  lines = ["| optimizer | validation loss over the grid (mean / median / worst) | "
           f"within {NEAR:.0%} of the best point |", "|---|---|---:|"]
  for k, v in grids.items():
    lines.append(f"| {k} | {claims.fmt(np.mean(v), 4)} / {claims.fmt(np.median(v), 4)} / "
                 f"{claims.fmt(np.max(v), 4)} | {near[k]}/{v.size} |")
  robust = (np.max(grids["MADA"]) <= np.max(grids["Adam"]) and near["MADA"] >= near["Adam"])
  return "\n".join(lines), bool(robust)


def _heatmaps(fig, gs, grids: dict, quick: bool) -> None:
  b1s, b2s = BETAS["quick" if quick else "full"]
  logs = {k: np.log10(np.minimum(v, 1e30)) for k, v in grids.items()}
  lo, hi = min(float(v.min()) for v in logs.values()), max(float(v.max()) for v in logs.values())
  for j, (name, v) in enumerate(logs.items()):
    ax = fig.add_subplot(gs[1, 2 * j:2 * j + 2])
    ax.imshow(v, vmin=lo, vmax=hi, cmap="viridis", origin="lower")
    ax.set_xticks(range(len(b2s)), [str(b) for b in b2s])
    ax.set_yticks(range(len(b1s)), [str(b) for b in b1s])
    ax.set_xlabel("initial b2")
    ax.set_ylabel("initial b1")
    ax.set_title(f"{name}: final validation loss", fontsize=8)
    for (a, b), x in np.ndenumerate(grids[name]):
      ax.text(b, a, claims.fmt(x, 3), ha="center", va="center", color="w", fontsize=7)


def main(argv=None):
  args = claims.parse(__doc__, argv)
  timer = claims.Timer()
  width = 16 if args.quick else WIDTH
  if args.quick:
    w = workloads.charlm(steps=20, eval_every=10, width=width)
  else:
    w = workloads.charlm(width=width, heads=2)
  grid = common.lr_grid(3 if args.quick else common.GRID_SIZE)
  rows = claims.tune_contestants(("mada", "optax.adam"), w, grid)
  seeds = [1] if args.quick else [1, 2, 3]
  coeffs = sweep.sweep(optzoo.mada, w.loss, w.init, w.steps,
                       hparams={"learning_rate": rows["mada"]["best_lr"]}, seeds=seeds,
                       schedule=common.schedule(w.steps), batch_fn=w.batch_fn,
                       eval_every=w.eval_every, state_fn=optzoo.mada_coefficients)

  grids = beta_grid(w, rows["optax.adam"]["best_lr"], args.quick)
  table, robust = robustness_table(grids)

  plt = common.pyplot()
  fig = plt.figure(figsize=(13, 8))
  gs = fig.add_gridspec(2, 6)
  claims.plot_curves(fig.add_subplot(gs[0, :3]), rows,
                     f"{w.description.split(' on ')[0]}: validation loss, 7 seeds")
  ax = fig.add_subplot(gs[0, 3:])
  for name, v in coeffs.evals.items():
    v = np.asarray(v)[0]
    ax.plot(coeffs.eval_steps, v.mean(0), label=name)
  ax.set_xlabel("step")
  ax.set_ylabel("coefficient (mean over seeds)")
  ax.legend(fontsize=7)
  ax.set_title(f"MADA's learned coefficients at lr {claims.fmt(rows['mada']['best_lr'], 2)}",
               fontsize=8)
  _heatmaps(fig, gs, grids, args.quick)
  fig.tight_layout()
  common.savefig(fig, "papers/mada.png", args.out)

  r_mada, r_adam = rows["mada"]["rank"], rows["optax.adam"]["rank"]
  # the rule, fixed before the run: reproduced if MADA beats tuned Adam beyond the seed spread and
  # is robust on the beta grid (robustness_table); partly if it does one of the two or ties
  # Adam; not reproduced if Adam is better and MADA is not robust
  beats, ties = r_mada < r_adam, r_mada == r_adam
  verdict = ("reproduced" if beats and robust else "partly" if beats or ties or robust
             else "not reproduced")
  b1s, b2s = BETAS["quick" if args.quick else "full"]
  final_c = {k: float(np.asarray(v)[0][:, -1].mean()) for k, v in coeffs.evals.items()}
  details = "\n".join([
      f"Settings: {w.description}, {w.steps} steps; step sizes "
      f"{', '.join(claims.fmt(x, 2) for x in grid)} with warmup + cosine; MADA at its defaults "
      "(the paper's hyper-learning rates, learning all six coefficients). Verdict rule, fixed "
      "before the run: reproduced if MADA beats tuned Adam beyond the seed spread (part 1) and "
      "is robust to the initial betas (part 2); partly if it ties Adam or only one holds; not "
      f"reproduced if neither. Size: width {width}, not the >= 1M parameters asked for (see "
      "`WIDTH` in the script).", "",
      "### Part 1: tuned MADA vs tuned Adam", "",
      claims.rows_table(rows, "validation loss (nats/byte)"), "",
      "MADA's coefficients at the end (mean over seeds "
      f"{seeds}): " + ", ".join(f"{k} {v:.3f}" for k, v in final_c.items()) + ".", "",
      "### Part 2: robustness to the initial betas", "",
      f"Initial b1 in {list(b1s)}, b2 in {list(b2s)}, seeds {[1] if args.quick else [1, 2]}, "
      f"all at Adam's tuned step size {claims.fmt(rows['optax.adam']['best_lr'], 2)}; "
      f"hyper-LR {HYPER['hyper_lr']}, hyper-momentum {HYPER['hyper_momentum']}. Verdict rule, "
      "fixed before the run: MADA is robust if its worst grid point is no worse than Adam's and "
      f"at least as many of its points are within {NEAR:.0%} of the best point. MADA robust: "
      f"**{'yes' if robust else 'no'}**.", "",
      table, "",
      ])
  claim = claims.Claim(
      key="mada",
      paper="MADA (arXiv 2401.08893)",
      claim="Learning the coefficients that interpolate Adam, AMSGrad/AVGrad, Yogi, Adan and "
            "Lion by hypergradient descent beats tuned Adam on GPT-2 validation loss, and is "
            "robust to poorly chosen initial betas (the paper's GPT-2 tables, its initial-beta "
            "grid and its coefficient-trajectory figure).",
      experiment=f"char-level transformer LM (width {w.description.split('width ')[1].split(')')[0]}), "
                 f"{w.steps} steps, both tuned on the step-size grid, 7 seeds; Adam, HyperAdam "
                 f"and MADA from a {len(b1s)} x {len(b2s)} grid of initial (b1, b2)",
      result=f"validation loss MADA {claims.fmt(rows['mada']['mean'], 4)} +- "
             f"{claims.fmt(rows['mada']['std'], 2)} vs Adam "
             f"{claims.fmt(rows['optax.adam']['mean'], 4)} +- "
             f"{claims.fmt(rows['optax.adam']['std'], 2)}; worst over the beta grid MADA "
             f"{claims.fmt(np.max(grids['MADA']), 4)} vs Adam {claims.fmt(np.max(grids['Adam']), 4)}",
      verdict=verdict, details=details)
  claims.write(claim, timer, args.out, args.quick)
  return claim


if __name__ == "__main__":
  main()
