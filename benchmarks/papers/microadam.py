"""MicroAdam (arXiv 2405.15593): error feedback rescues Top-k Adam on Rosenbrock (its Fig. 1).

On the 2-D Rosenbrock function, keeping one of the two gradient coordinates per step (density
0.5, the Top-k of the figure) and feeding Adam's statistics with those sparse gradients alone
("Top-k Adam", ``optzoo.microadam(error_feedback=False)``) stalls, while MicroAdam (the same
Top-k with the compressed error feedback of the dropped mass) converges like Adam. All three
are tuned by the main job's protocol (``benchmarks/run.py``: 7-point step-size grid with warmup
+ cosine on seed 0, then the best point on 7 seeds; Rosenbrock is deterministic, so the seeds
agree unless the optimizer draws random numbers).

    python benchmarks/papers/microadam.py [--quick]
"""

from __future__ import annotations

import claims
import common
import optax

import optzoo
from optzoo import workloads

STEPS, QUICK_STEPS = 2000, 100
#: MicroAdam's settings here: k = 1 of the 2 coordinates (the figure's Top-k), window m = 10
#: (the paper's default), everything else at the defaults (4-bit error feedback)
MICRO = {"density": 0.5, "num_grads": 10}


def contestants() -> dict:
  return {
      "optax.adam": (optax.adam, {}, ()),
      "Top-k Adam (microadam, error_feedback=False)": (
          optzoo.microadam, {**MICRO, "error_feedback": False}, ()),
      "MicroAdam (Top-k + compressed error feedback)": (optzoo.microadam, MICRO, ()),
      # added after the first full run (where MicroAdam stalled): is it the 4-bit error?
      "MicroAdam, error feedback not quantized": (optzoo.microadam,
                                                  {**MICRO, "quantize_ef": False}, ()),
  }


def rosenbrock(x, y):
  return (1 - x) ** 2 + 100 * (y - x**2) ** 2


def main(argv=None):
  args = claims.parse(__doc__, argv)
  timer = claims.Timer()
  steps = QUICK_STEPS if args.quick else STEPS
  w = workloads.rosenbrock(steps=steps)
  grid = common.lr_grid(3 if args.quick else common.GRID_SIZE)
  rows = claims.tune_all(contestants(), w, grid)
  fig, ax = common.pyplot().subplots(figsize=(6.5, 5))
  claims.plot_trajectories(ax, rows, f"Rosenbrock from (-1.2, 1), {steps} steps, tuned step "
                           "size, seed 1", rosenbrock, (-2, 2, -1, 3))
  fig.tight_layout()
  common.savefig(fig, "papers/microadam.png", args.out)
  names = list(rows)
  adam, topk, micro, exact = (rows[n]["mean"] for n in names)
  # the rule, fixed before the run: MicroAdam converges (f - f* < 1e-3) and Top-k Adam without
  # error feedback stalls (f - f* above 1e-2 and above 10x MicroAdam's): reproduced; the
  # ordering holds but MicroAdam does not reach 1e-3: partly
  if micro < 1e-3 and topk > max(1e-2, 10 * micro):
    verdict = "reproduced"
  elif topk > 10 * micro:
    verdict = "partly"
  else:
    verdict = "not reproduced"
  details = "\n".join([
      f"Settings: Rosenbrock `(1-x)^2 + 100 (y-x^2)^2` from the classic start (-1.2, 1) (the "
      f"figure's start point is not in our notes, so this is our choice), {steps} steps; "
      f"MicroAdam density 0.5 (k = 1 of 2), window m = 10 (paper default), 4-bit quantized "
      "error feedback (paper default); step-size grid "
      f"{', '.join(claims.fmt(x, 2) for x in grid)} with warmup + cosine, the best point on "
      "seed 0 re-run on 7 seeds. Verdict rule, fixed before the run: reproduced if MicroAdam "
      "ends with f - f* < 1e-3 while Top-k Adam without error feedback ends above 1e-2 and "
      "above 10x MicroAdam; partly if only the 10x ordering holds. Added after the first full "
      "run, where MicroAdam stalled and Top-k Adam converged: the row with unquantized error "
      "feedback (the verdict still reads the paper's MicroAdam row).", "",
      claims.rows_table(rows, "final f - f*", target=1e-3), "",
      "Not done (time): the paper's second comparison, MicroAdam against Adam on a language "
      "model at matched steps with peak memory (the main job's leaderboard has MicroAdam on the "
      "char-LM, and `benchmarks/results/memory.md` its state memory)."])
  claim = claims.Claim(
      key="microadam",
      paper="MicroAdam (arXiv 2405.15593)",
      claim="Fig. 1: on Rosenbrock, Top-k Adam without error feedback stalls, while Top-k with "
            "(compressed) error feedback, MicroAdam, converges like Adam.",
      experiment=f"2-D Rosenbrock, k = 1 of 2 coordinates, {steps} steps, each method's step "
                 "size tuned on the main job's grid",
      result=f"final f - f*: Adam {claims.fmt(adam)}, Top-k Adam without EF "
             f"{claims.fmt(topk)}, MicroAdam {claims.fmt(micro)} (unquantized EF "
             f"{claims.fmt(exact)})",
      verdict=verdict, details=details)
  claims.write(claim, timer, args.out, args.quick)
  return claim


if __name__ == "__main__":
  main()
