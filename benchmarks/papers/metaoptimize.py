"""MetaOptimize (arXiv 2402.02342): from a step size orders of magnitude off, MetaOptimize over
AdamW reaches the loss of the best hand-tuned fixed step size and schedule.

Data: scikit-learn's digits (8x8 images as 64 features in [0, 1]), the main job's split (1,437
train / 360 validation, ``workloads.digits``'s); model: optzoo's two-hidden-layer MLP
(``objectives.mlp_model``, width 64, 10 classes); minibatches of 64; validation loss after the
budget. Hand-tuned AdamW (weight decay 1e-4, optax's default): its step size over the main job's
grid, once constant and once with the warmup + cosine schedule, best point on seed 0 re-run on 7
seeds (``benchmarks/run.py``'s protocol). MetaOptimize: ``metaoptimize(scale_by_adam(),
weight_decay=1e-4)`` at the paper's defaults (Lion meta-update, meta step 1e-3, one scalar step
size, gamma 1), started 10^4 and 10^2 below and 10^2 above the best constant AdamW step size, on
the same 7 seeds, no schedule (the step size is learned). One compilation per configuration.

    python benchmarks/papers/metaoptimize.py [--quick]
"""

from __future__ import annotations

import claims
import common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optzoo
from optzoo import objectives, sweep, workloads

# Lion's meta-update moves log(step size) by at most the meta step (1e-3) per step, so reaching
# 10^4 (ln = 9.2) takes >= 9,200 steps: the budget was raised from 1,000 to 10,000 for that
# reason after the --quick smoke run (before any full run)
STEPS, QUICK_STEPS = 10_000, 40
WIDTH, BATCH, WD = 32, 64, 1e-4  # width 32: objectives.mlp_model's default
FACTORS = (1e-4, 1e-2, 1e2)


def mlp_digits_workload(steps: int, eval_every: int) -> workloads.Workload:
  """Digits as 64 features, the main job's split, optzoo's MLP (``objectives.mlp_model``)."""
  from sklearn.datasets import load_digits  # noqa: PLC0415

  data = load_digits()
  x, y = (data.data / 16.0).astype(np.float32), data.target.astype(np.int32)
  perm = np.random.default_rng(0).permutation(len(y))  # digits_workload's split
  tr, va = perm[:1437], perm[1437:]
  xt, yt, xv, yv = (jnp.asarray(a) for a in (x[tr], y[tr], x[va], y[va]))
  model = objectives.mlp_model(WIDTH, 10)

  def init(key):
    return model.init(key, xt[:1])["params"]

  def xent(params, xs, ys):
    return optax.softmax_cross_entropy_with_integer_labels(model.apply({"params": params}, xs),
                                                           ys).mean()

  def loss(params, b):
    return xent(params, *b)

  def batch_fn(key, _step):
    i = jax.random.randint(key, (BATCH,), 0, xt.shape[0])
    return xt[i], yt[i]

  def eval_fn(params):
    out = model.apply({"params": params}, xv)
    return {"loss": optax.softmax_cross_entropy_with_integer_labels(out, yv).mean(),
            "accuracy": jnp.mean(jnp.argmax(out, -1) == yv)}

  return workloads.Workload("digits_mlp", init, loss, steps, batch_fn, eval_fn, eval_every,
                            f"MLP 64-{WIDTH}-{WIDTH}-10 on digits, batch {BATCH}",
                            "validation loss")


def main(argv=None):
  args = claims.parse(__doc__, argv)
  timer = claims.Timer()
  steps = QUICK_STEPS if args.quick else STEPS
  w = mlp_digits_workload(steps, 10 if args.quick else 250)
  grid = common.lr_grid(3 if args.quick else common.GRID_SIZE)
  n_seeds = len(grid)
  rows = {
      "AdamW, constant step size": claims.tune("adamw const", optax.adamw, w, grid,
                                               {"weight_decay": WD}, scheduled=False),
      "AdamW, warmup + cosine": claims.tune("adamw sched", optax.adamw, w, grid,
                                            {"weight_decay": WD}),
  }
  best_const = rows["AdamW, constant step size"]["best_lr"]
  starts = [best_const * f for f in FACTORS]
  seeds = np.arange(1, n_seeds + 1)
  mo = sweep.sweep(optzoo.metaoptimize, w.loss, w.init, steps,
                   hparams={"base": optax.scale_by_adam(), "weight_decay": WD},
                   grid={"initial_learning_rate": starts}, seeds=seeds, batch_fn=w.batch_fn,
                   eval_fn=w.eval_fn, eval_every=w.eval_every,
                   state_fn=lambda s: {"lr": optzoo.metaoptimize_learning_rates(s)})
  for i, (a0, f) in enumerate(zip(starts, FACTORS)):
    final = mo.evals["loss"][i, :, -1]
    rows[f"MetaOptimize from {a0:.2g} ({f:g}x the tuned constant)"] = {
        "best_lr": a0, "evals": {k: v[i] for k, v in mo.evals.items()},
        "eval_steps": mo.eval_steps.tolist(), "seeds": seeds.tolist(),
        "final": final.tolist(), "mean": float(np.mean(final)), "std": float(np.std(final))}
  for n, r in claims.ranks(rows).items():
    rows[n]["rank"] = r

  plt = common.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
  for n, r in rows.items():
    cur = np.asarray(r["evals"]["loss"])
    axes[0].plot(r["eval_steps"], cur.mean(0), label=n)
    if "lr" in r["evals"]:
      lr = np.asarray(r["evals"]["lr"])
      line, = axes[1].plot(r["eval_steps"], np.exp(np.log(lr).mean(0)), label=n)
      axes[1].fill_between(r["eval_steps"], lr.min(0), lr.max(0), color=line.get_color(),
                           alpha=0.2, lw=0)
  for n in ("AdamW, constant step size",):
    axes[1].axhline(rows[n]["best_lr"], color="k", ls=":", lw=0.8, label=f"{n} (tuned)")
  axes[0].set_yscale("log")
  axes[0].set_ylabel("validation loss (mean over seeds)")
  axes[1].set_yscale("log")
  axes[1].set_ylabel("learned step size (geometric mean, band min..max over seeds)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.legend(fontsize=7)
  fig.suptitle(f"MetaOptimize over AdamW, {w.description}, {steps} steps", fontsize=8)
  fig.tight_layout()
  common.savefig(fig, "papers/metaoptimize.png", args.out)

  best_rank = min(rows[n]["rank"] for n in list(rows)[:2])
  mo_names = list(rows)[2:]
  matched = [n for n in mo_names if rows[n]["rank"] <= best_rank]
  # the rule, fixed before the run: reproduced if MetaOptimize from every start ranks with the
  # best tuned AdamW (tie rule) or better; partly if from some starts; not reproduced otherwise
  verdict = ("reproduced" if len(matched) == len(mo_names) else
             "partly" if matched else "not reproduced")
  final_lr = {n: float(np.exp(np.mean(np.log(np.asarray(rows[n]["evals"]["lr"])[:, -1]))))
              for n in mo_names}
  details = "\n".join([
      f"Settings: {w.description}, {steps} steps, evaluation every {w.eval_every}; AdamW step "
      f"sizes {', '.join(claims.fmt(x, 2) for x in grid)}; MetaOptimize at the paper's defaults "
      "with the repository's safeguard on (its default). Verdict rule, fixed before the run: "
      "reproduced if MetaOptimize from every start ties (main job's tie rule) or beats the "
      "best tuned AdamW; partly if from some. The budget: Lion's meta-update changes "
      "log(step size) by at most the meta step size (1e-3) per step, so a start 10^4 off needs "
      "at least 9,200 steps; the budget was raised from 1,000 to 10,000 steps for this reason "
      "after the --quick smoke run, before any full run.", "",
      claims.rows_table(rows, "validation loss"), "",
      "Learned step size at the end (geometric mean over seeds): "
      + "; ".join(f"{n}: {claims.fmt(v)}" for n, v in final_lr.items()) + ". Best step size "
      "column: the tuned peak for AdamW, the initial step size for MetaOptimize.", "",
      "The repository's other MetaOptimize study (`benchmarks/layerwise.py` -> "
      "`benchmarks/results/metaoptimize_mlp.md`) runs the same question on a synthetic "
      "noisy-label MLP with a constant-step-size Adam grid, including the authors' rule without "
      "the safeguard."])
  claim = claims.Claim(
      key="metaoptimize",
      paper="MetaOptimize (arXiv 2402.02342)",
      claim="Started from a step size orders of magnitude off, MetaOptimize over AdamW learns a "
            "step size (schedule) that reaches the loss of the best hand-tuned fixed step size "
            "and schedule (the paper's small-scale MNIST-MLP and larger experiments).",
      experiment=f"MLP on scikit-learn digits, {steps} steps; AdamW tuned constant and "
                 "warmup+cosine vs MetaOptimize from 1e-4x, 1e-2x and 1e2x the tuned step size, "
                 f"{n_seeds} seeds",
      result="validation loss: " + "; ".join(
          f"{n} {claims.fmt(r['mean'])}" for n, r in rows.items()),
      verdict=verdict, details=details)
  claims.write(claim, timer, args.out, args.quick)
  return claim


if __name__ == "__main__":
  main()
