"""MADA (arXiv 2401.08893) against tuned Adam on the character-level transformer LM, its learned
coefficients over training, and its robustness to the initial betas.

Part 1: ``optzoo.mada`` (the main job's contestant: paper defaults, all six coefficients learned
from b1 0.9, b2 0.95 at the Adam corner) and ``optax.adam``, tuned by the main job's protocol
(``benchmarks/run.py``: 7-point step-size grid with warmup + cosine on seed 0, the best point on
seeds 1..7, one compilation each) on the main job's char-LM (``workloads.charlm``) widened
to ``WIDTH``; then MADA's best point again on seeds 1..3 recording its coefficients. The initial-beta
robustness study (``benchmarks/robustness_mada.py``) is not re-run: see the section's text.

    python benchmarks/papers/mada.py [--quick]
"""

from __future__ import annotations

import claims
import common
import numpy as np

import optzoo
from optzoo import sweep, workloads

#: the widest char-LM the 2-4 minute budget allows on the shared 2-core machine (1 block; the
#: main job's is width 32). The issue asks for >= 1M parameters (width ~290): from the main
#: job's measured 3 s per 7-model, 300-step run at width 32, that is ~50x the work, tens of
#: minutes under this machine's load
WIDTH = 64


def main(argv=None):
  args = claims.parse(__doc__, argv)
  timer = claims.Timer()
  if args.quick:
    w = workloads.charlm(steps=20, eval_every=10, width=16)
  else:
    w = workloads.charlm(width=WIDTH, heads=2)
  grid = common.lr_grid(3 if args.quick else common.GRID_SIZE)
  rows = claims.tune_contestants(("mada", "optax.adam"), w, grid)
  seeds = [1] if args.quick else [1, 2, 3]
  coeffs = sweep.sweep(optzoo.mada, w.loss, w.init, w.steps,
                       hparams={"learning_rate": rows["mada"]["best_lr"]}, seeds=seeds,
                       schedule=common.schedule(w.steps), batch_fn=w.batch_fn,
                       eval_every=w.eval_every, state_fn=optzoo.mada_coefficients)

  plt = common.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  claims.plot_curves(axes[0], rows, f"{w.description.split(' on ')[0]}: validation loss, 7 seeds")
  for name, v in coeffs.evals.items():
    v = np.asarray(v)[0]
    axes[1].plot(coeffs.eval_steps, v.mean(0), label=name)
  axes[1].set_xlabel("step")
  axes[1].set_ylabel("coefficient (mean over seeds)")
  axes[1].legend(fontsize=7)
  axes[1].set_title(f"MADA's learned coefficients at lr {claims.fmt(rows['mada']['best_lr'], 2)}",
                    fontsize=8)
  fig.tight_layout()
  common.savefig(fig, "papers/mada.png", args.out)

  r_mada, r_adam = rows["mada"]["rank"], rows["optax.adam"]["rank"]
  # the rule, fixed before the run: reproduced if MADA beats tuned Adam beyond the seed spread;
  # partly if they tie; not reproduced if Adam is better
  verdict = ("reproduced" if r_mada < r_adam else "partly" if r_mada == r_adam
             else "not reproduced")
  final_c = {k: float(np.asarray(v)[0][:, -1].mean()) for k, v in coeffs.evals.items()}
  details = "\n".join([
      f"Settings: {w.description}, {w.steps} steps; step sizes "
      f"{', '.join(claims.fmt(x, 2) for x in grid)} with warmup + cosine; MADA at its defaults "
      "(the paper's hyper-learning rates, learning all six coefficients). Verdict rule, fixed "
      "before the run: reproduced if MADA beats tuned Adam beyond the seed spread, partly if "
      f"they tie. Size: width {WIDTH}, not the >= 1M parameters asked for (see `WIDTH` in the "
      "script).", "",
      "### Part 1: tuned MADA vs tuned Adam", "",
      claims.rows_table(rows, "validation loss (nats/byte)"), "",
      "MADA's coefficients at the end (mean over seeds "
      f"{seeds}): " + ", ".join(f"{k} {v:.3f}" for k, v in final_c.items()) + ".", "",
      "### Robustness to the initial betas: not run here", "",
      "`benchmarks/robustness_mada.py` (folding it in was the plan) sweeps the initial (b1, b2) "
      "through one `optzoo.sweep`, but `optzoo.mada` now declares b1 and b2 static arguments, "
      "so that script stops with a ValueError on this revision; its committed results, from "
      "before the change, are in `benchmarks/results/robustness_mada.md`. A per-point loop "
      "(32 compilations) did not fit the day's budget.", "",
      ])
  claim = claims.Claim(
      key="mada",
      paper="MADA (arXiv 2401.08893)",
      claim="Learning the coefficients that interpolate Adam, AMSGrad/AVGrad, Yogi, Adan and "
            "Lion by hypergradient descent beats tuned Adam on GPT-2 validation loss, and is "
            "robust to poorly chosen initial betas (the paper's GPT-2 tables, its initial-beta "
            "grid and its coefficient-trajectory figure).",
      experiment=f"char-level transformer LM (width {w.description.split('width ')[1].split(')')[0]}), "
                 f"{w.steps} steps, both tuned on the step-size grid, 7 seeds (the initial-beta "
                 "robustness grid not run)",
      result=f"validation loss MADA {claims.fmt(rows['mada']['mean'], 4)} +- "
             f"{claims.fmt(rows['mada']['std'], 2)} vs Adam "
             f"{claims.fmt(rows['optax.adam']['mean'], 4)} +- "
             f"{claims.fmt(rows['optax.adam']['std'], 2)}",
      verdict=verdict, details=details)
  claims.write(claim, timer, args.out, args.quick)
  return claim


if __name__ == "__main__":
  main()
