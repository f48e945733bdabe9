"""MetaOptimize over Adam's direction vs optax.adam on the Flax MLP (minibatch training).

The data are ``objectives.mlp_data()`` with 20% of the labels redrawn at random (fixed seed):
the clean blobs are separable, so every run would drive the loss to 0.

``optax.adam`` is tuned on a learning-rate grid in the same run; it is then also run at a
learning rate 10x below the tuned one. ``optzoo.metaoptimize(optax.scale_by_adam(), ...)``
(Lion meta, meta lr 1e-3, scalar step size, the paper's defaults) starts from that 10x-too-small
step size (and from 100x too small) and learns it. Reported: the final full-batch loss (mean
over seeds) and the learned step size over time. Writes
``benchmarks/results/metaoptimize_mlp.md`` and ``.png`` with the machine named.

    python benchmarks/metaoptimize_mlp.py            # default (a few minutes on a CPU core)
    python benchmarks/metaoptimize_mlp.py --quick    # smoke run (seconds)

``run(quick)`` returns the numbers as a dict (``benchmarks/layerwise.py`` calls it).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

from optzoo import metaoptimize, objectives  # noqa: E402

RESULTS = _HERE / "results"
ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
BATCH = 64
LABEL_NOISE = 0.2  # fraction of labels redrawn at random (fixed seed), so the loss cannot reach 0
TARGET = 1e-3  # full-batch loss for the "steps to target" column


def _machine_name() -> str:
  try:
    from step_time import machine_name  # noqa: PLC0415
    return machine_name()
  except Exception:  # noqa: BLE001 - the name is informative only
    dev = jax.devices()[0]
    return f"{dev.platform}:{getattr(dev, 'device_kind', dev.platform)} (jax {jax.__version__})"


def _trainer(steps: int, log_every: int):
  """``train(tx, seed) -> (full-batch losses every log_every steps, step sizes, final loss)``."""
  obj = objectives.get("mlp")
  xs, ys = objectives.mlp_data()
  rng = np.random.default_rng(123)
  redraw = rng.uniform(size=ys.shape) < LABEL_NOISE
  ys = np.where(redraw, rng.integers(0, int(ys.max()) + 1, size=ys.shape), ys).astype(np.int32)
  xs, ys = jnp.asarray(xs), jnp.asarray(ys)
  model = objectives.mlp_model()

  def full_loss(params):
    logits = model.apply({"params": params}, xs)
    return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()

  def batch_loss(params, idx):
    logits = model.apply({"params": params}, xs[idx])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ys[idx]).mean()

  def train(tx, seed):
    key = jax.random.PRNGKey(seed)
    params = obj.init()

    def body(carry, t):
      p, s = carry
      idx = jax.random.randint(jax.random.fold_in(key, t), (BATCH,), 0, xs.shape[0])
      u, s = tx.update(jax.grad(batch_loss)(p, idx), s, p)
      p = optax.apply_updates(p, u)
      lr = (jnp.exp(s.log_learning_rate) if hasattr(s, "log_learning_rate")
            else jnp.float32(jnp.nan))
      return (p, s), lr

    def chunk(carry, t0):
      carry, lrs = jax.lax.scan(body, carry, t0 + jnp.arange(log_every))
      return carry, (full_loss(carry[0]), lrs[-1])

    starts = jnp.arange(0, steps, log_every)
    (p, _), (losses, lrs) = jax.lax.scan(chunk, (params, tx.init(params)), starts)
    return losses, lrs, full_loss(p)

  return train


def _steps_to(losses, step_axis):
  hit = np.nonzero(np.asarray(losses) < TARGET)[0]
  return int(step_axis[hit[0]]) if hit.size else None


def run(quick: bool) -> dict:
  """Runs the comparison and returns its numbers.

  Returns a dict with ``machine``, ``steps``, ``seeds``, ``adam_grid`` ({lr: final loss}),
  ``tuned_lr``, ``rows`` (one per run: ``name``, ``init_lr``, ``final_loss`` mean over seeds,
  ``final_lr`` (learned step size, seed 0; None for Adam), ``loss_ratio`` = final loss / tuned
  Adam's, ``steps_to_target``: first logged step with full-batch loss < ``TARGET``, seed 0),
  ``curves`` (name -> {``step``, ``loss``, ``lr``} lists, seed 0), ``table`` (markdown),
  ``seconds``. With ``quick=False`` it also writes the table and a PNG to
  ``benchmarks/results/metaoptimize_mlp.{md,png}`` (``paths``).
  """
  t_start = time.time()
  steps = 1_500 if quick else 4_000
  log_every = 50 if quick else 100
  seeds = (0,) if quick else (0, 1, 2)
  train = _trainer(steps, log_every)

  def evaluate(make_tx):
    fn = jax.jit(lambda seed: train(make_tx(), seed))
    outs = [fn(s) for s in seeds]
    final = float(np.mean([float(o[2]) for o in outs]))
    return final, outs[0]

  grid = {lr: evaluate(lambda lr=lr: optax.adam(lr)) for lr in ADAM_GRID}
  tuned = min(grid, key=lambda lr: grid[lr][0])
  small = tuned / 10.0
  runs = {
      f"optax.adam (tuned, {tuned:g})": (tuned, grid[tuned], False),
  }
  small_res = grid[small] if small in grid else evaluate(lambda: optax.adam(small))
  runs[f"optax.adam (10x too small, {small:g})"] = (small, small_res, False)
  for factor in (10.0, 100.0):
    a0 = tuned / factor
    res = evaluate(lambda a0=a0: metaoptimize(optax.scale_by_adam(), initial_learning_rate=a0))
    runs[f"metaoptimize(scale_by_adam) from {a0:g} ({factor:g}x too small)"] = (a0, res, True)

  base_loss = grid[tuned][0]
  rows, curves = [], {}
  step_axis = [int(s) for s in np.arange(log_every, steps + 1, log_every)]
  for name, (lr0, (final, (losses, lrs, _)), is_mo) in runs.items():
    rows.append({
        "name": name, "init_lr": lr0, "final_loss": final,
        "final_lr": float(lrs[-1]) if is_mo else None, "loss_ratio": final / base_loss,
        "steps_to_target": _steps_to(losses, step_axis),
    })
    curves[name] = {"step": step_axis, "loss": [float(x) for x in losses],
                    "lr": [float(x) for x in lrs] if is_mo else None}

  machine = _machine_name()
  lines = [
      "# MetaOptimize over Adam vs optax.adam on the Flax MLP",
      "",
      f"Machine: {machine}. Objective: the Flax MLP of `objectives.get('mlp')` (16-32-32-4, its "
      f"512 Gaussian-blob samples) with {LABEL_NOISE:.0%} of the labels redrawn at random (fixed "
      "seed; the clean blobs are separable, so the loss would reach 0 and the comparison would "
      f"be about nothing); minibatches of {BATCH} drawn at random, {steps} steps, seeds "
      f"{list(seeds)}; loss is the full-batch cross-entropy at the end, mean over seeds. Adam "
      "tuned on the grid "
      f"{list(ADAM_GRID)} in this run: best {tuned:g}. MetaOptimize: Lion meta, meta lr 1e-3, "
      "scalar step size, gamma 1 (paper defaults).",
      "",
      f"| run | initial lr | final loss | loss / tuned Adam | steps to loss {TARGET:g} (seed 0) "
      "| learned lr at end (seed 0) |",
      "|---|---|---|---|---|---|",
  ]
  for r in rows:
    learned = "-" if r["final_lr"] is None else f"{r['final_lr']:.3g}"
    reached = "not reached" if r["steps_to_target"] is None else str(r["steps_to_target"])
    lines.append(f"| {r['name']} | {r['init_lr']:.3g} | {r['final_loss']:.4g} | "
                 f"{r['loss_ratio']:.3g} | {reached} | {learned} |")
  lines += ["", "Adam grid (final loss): "
            + ", ".join(f"{lr:g}: {v[0]:.4g}" for lr, v in grid.items())]
  table = "\n".join(lines) + "\n"

  out = {
      "machine": machine, "steps": steps, "seeds": list(seeds),
      "adam_grid": {lr: v[0] for lr, v in grid.items()}, "tuned_lr": tuned, "rows": rows,
      "curves": curves, "table": table, "seconds": time.time() - t_start,
  }
  if not quick:
    out["paths"] = _write(table, curves, tuned, small)
  return out


def _write(table: str, curves: dict, tuned: float, small: float) -> dict:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  RESULTS.mkdir(parents=True, exist_ok=True)
  md = RESULTS / "metaoptimize_mlp.md"
  png = RESULTS / "metaoptimize_mlp.png"
  md.write_text(table)
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
  for name, c in curves.items():
    ax1.plot(c["step"], c["loss"], label=name, ls="-" if c["lr"] is not None else "--")
    if c["lr"] is not None:
      ax2.plot(c["step"], c["lr"], label=name)
  ax1.set_yscale("log")
  ax1.set_xlabel("step")
  ax1.set_ylabel("full-batch loss (seed 0)")
  ax1.legend(fontsize=7)
  ax2.axhline(tuned, color="k", ls=":", label=f"tuned Adam lr {tuned:g}")
  ax2.axhline(small, color="gray", ls=":", label=f"10x too small {small:g}")
  ax2.set_yscale("log")
  ax2.set_xlabel("step")
  ax2.set_ylabel("learned step size exp(log_learning_rate)")
  ax2.legend(fontsize=7)
  fig.suptitle("MetaOptimize(scale_by_adam, Lion meta) vs optax.adam, Flax MLP")
  fig.tight_layout()
  fig.savefig(png, dpi=110)
  plt.close(fig)
  return {"table": str(md), "png": str(png)}


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="short smoke run; writes no files")
  args = ap.parse_args(argv)
  result = run(args.quick)
  print(result["table"])
  print(f"({result['seconds']:.1f} s)")
  if "paths" in result:
    print("wrote", result["paths"])


if __name__ == "__main__":
  main()
