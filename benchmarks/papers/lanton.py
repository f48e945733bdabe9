"""LANTON (Noise-Adaptive Layerwise Learning Rates, arXiv 2510.14009) against Muon and AdamW on
the character-level transformer LM: steps to a target loss and final loss over 7 seeds.

All three are the main job's own contestants (``benchmarks/run.py``: ``optzoo.lanton`` at its
defaults, ``optax.contrib.muon``, ``optax.adamw``), tuned by its protocol on its char-LM
workload (``workloads.charlm``: Python standard-library source, 300 steps): the step size
over the 7-point grid with warmup + cosine on seed 0, the best point re-run on seeds 1..7, one
compilation each. Target: 1.1x AdamW's mean final validation loss (the main job's target rule
with AdamW as the reference).

    python benchmarks/papers/lanton.py [--quick]
"""

from __future__ import annotations

import claims
import common
import numpy as np

from optzoo import workloads

NAMES = ("lanton", "optax.contrib.muon", "optax.adamw")


def main(argv=None):
  args = claims.parse(__doc__, argv)
  timer = claims.Timer()
  w = (workloads.charlm(steps=20, eval_every=10) if args.quick
       else workloads.charlm())
  grid = common.lr_grid(3 if args.quick else common.GRID_SIZE)
  names = NAMES[::2] if args.quick else NAMES  # --quick: LANTON and AdamW only
  rows = claims.tune_contestants(names, w, grid)
  target = 1.1 * rows["optax.adamw"]["mean"]
  med = {}
  for n, r in rows.items():
    hit = [s for s in claims.steps_to(r["evals"]["loss"], r["eval_steps"], target)
           if s is not None]
    med[n] = float(np.median(hit)) if hit else float("inf")

  plt = common.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.2))
  claims.plot_curves(ax, rows, f"{w.description}: validation loss, tuned step sizes, 7 seeds "
                     "(dotted: target)", target)
  fig.tight_layout()
  common.savefig(fig, "papers/lanton.png", args.out)

  others = [n for n in rows if n != "lanton"]
  best_final = rows["lanton"]["rank"] == 1 and all(rows[n]["rank"] > 1 for n in others)
  fastest = all(med["lanton"] < med[n] for n in others)
  # the rule, fixed before the run: reproduced if LANTON both reaches the target in fewer
  # (median) steps than Muon and AdamW and has the best final loss beyond the seed spread;
  # partly if one of the two; not reproduced if neither
  verdict = ("reproduced" if best_final and fastest else
             "partly" if best_final or fastest else "not reproduced")
  details = "\n".join([
      f"Settings: {w.description}, {w.steps} steps; step sizes "
      f"{', '.join(claims.fmt(x, 2) for x in grid)} with warmup + cosine; LANTON at its "
      "defaults (the paper's: Newton-Schulz on hidden matrices, previous-gradient noise "
      "estimator, r_min 0.05, weight decay 0.1), Muon and AdamW at optax's defaults. Verdict "
      "rule, fixed before the run: reproduced if LANTON is first both in median steps to the "
      "target and in final loss (beyond the seed spread); partly if in one of the two.", "",
      claims.rows_table(rows, "validation loss (nats/byte)", target), "",
      f"Target {target:.4g} = 1.1x AdamW's mean final loss. The main job's leaderboard "
      "(`benchmarks/results/leaderboard.md`) runs the same three on this workload among all "
      "the others."])
  claim = claims.Claim(
      key="lanton",
      paper="LANTON, noise-adaptive layerwise learning rates (arXiv 2510.14009)",
      claim="Layerwise learning rates scaled by each layer's estimated gradient noise make "
            "LANTON converge faster than Muon and AdamW on transformer language models (the "
            "paper's GPT-2 training curves).",
      experiment=f"the main job's char-level transformer LM, {w.steps} steps, each method tuned "
                 "on the step-size grid, 7 seeds",
      result="final validation loss: " + ", ".join(
          f"{n} {claims.fmt(r['mean'], 4)} +- {claims.fmt(r['std'], 2)}" for n, r in rows.items())
             + "; median steps to target: " + ", ".join(
          f"{n} {'-' if not np.isfinite(m) else f'{m:.0f}'}" for n, m in med.items()),
      verdict=verdict, details=details)
  claims.write(claim, timer, args.out, args.quick)
  return claim


if __name__ == "__main__":
  main()
