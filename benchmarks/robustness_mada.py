"""MADA's robustness study in miniature: final loss over a grid of initial (b1, b2).

For Adam, MADA learning only (b1, b2) ("HyperAdam") and full MADA (all six coefficients
learned from the Adam corner), on two tasks:

* ``mlp``: the Flax MLP of ``optzoo.objectives`` (16-32-32-4 on its 512 Gaussian-blob samples,
  minibatches of 32), validated on 512 fresh samples of the same blobs;
* ``charlm``: a tiny character-level language model (embedding + MLP over the last 8
  characters) on synthetic text from a random order-2 Markov chain generated here, trained on
  minibatches and validated on held-out text.

Every grid point is one run; all points of one (task, optimizer) run together under ``vmap``
(the initial betas are traced). The paper's protocol (spec mada.md section 9) is a 25 x 11 grid
of GPT-style models; this is a small grid (4 x 4 by default, 2 x 2 with ``--quick``) of small
models, so only the qualitative comparison carries over. Reported: mean / median / worst over
the grid of the final train loss and of the validation loss; heatmaps of the final train loss.

    python benchmarks/robustness_mada.py            # 4 x 4 grid, both tasks
    python benchmarks/robustness_mada.py --quick    # 2 x 2 grid, fewer steps
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
from optzoo import objectives

# The reference Shakespeare grid's hyper-optimizer: the same hyper-LR for every coefficient
# and heavy-ball momentum 0.5 (spec section 3; gamma's hyper-LR is kept too, as in MADA's GPT-2 runs).
HYPER = {"hyper_lr": 2.5e-3, "hyper_momentum": 0.5}
GRIDS = {
    "default": ((0.01, 0.5, 0.9, 0.99), (0.501, 0.8, 0.95, 0.99)),
    "quick": ((0.5, 0.9), (0.6, 0.99)),
}


def make_optimizer(name: str, lr, b1, b2):
  if name == "Adam":
    return optax.adam(lr, b1=b1, b2=b2, eps=1e-8)
  if name == "HyperAdam":
    return optzoo.mada(lr, b1=b1, b2=b2, eps=1e-8, learn=("b1", "b2"), **HYPER)
  if name == "MADA":
    return optzoo.mada(lr, b1=b1, b2=b2, eps=1e-8, **HYPER)
  raise ValueError(name)


OPTIMIZERS = ("Adam", "HyperAdam", "MADA")


# ----------------------------------------------------------------------------- tasks
def mlp_task():
  model = objectives.mlp_model()
  xs, ys = objectives.mlp_data()              # the objective's 512 training samples
  xv, yv = objectives.mlp_data(n=1024)        # same blobs (same seed: same centers) ...
  xv, yv = jnp.asarray(xv[512:]), jnp.asarray(yv[512:])  # ... fresh samples for validation
  xs, ys = jnp.asarray(xs), jnp.asarray(ys)

  def loss(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return {
      "init": lambda: model.init(jax.random.PRNGKey(0), xs[:1])["params"],
      # minibatches of 32: full-batch training separates the blobs and then only grows the logits
      "batch": lambda key: (lambda i: (xs[i], ys[i]))(jax.random.randint(key, (32,), 0, 512)),
      "train_loss": lambda p: loss(p, xs, ys),
      "val_loss": lambda p: loss(p, xv, yv),
      "loss": loss,
      "lr": 3e-3,
  }


def markov_text(n: int, vocab: int = 12, seed: int = 0) -> np.ndarray:
  """Text from a random order-2 Markov chain with peaked (Dirichlet 0.2) transitions."""
  rng = np.random.default_rng(seed)
  trans = rng.dirichlet(np.full(vocab, 0.2), size=(vocab, vocab))
  cum = np.cumsum(trans, axis=-1)
  out = np.zeros(n, np.int32)
  out[:2] = rng.integers(0, vocab, 2)
  u = rng.uniform(size=n)
  for i in range(2, n):
    out[i] = min(int(np.searchsorted(cum[out[i - 2], out[i - 1]], u[i])), vocab - 1)
  return out


def charlm_task(context: int = 8, vocab: int = 12, batch: int = 64):
  import flax.linen as nn  # noqa: PLC0415

  class CharMLP(nn.Module):
    @nn.compact
    def __call__(self, idx):
      h = nn.Embed(vocab, 16)(idx).reshape(idx.shape[0], -1)
      h = nn.relu(nn.Dense(64)(h))
      return nn.Dense(vocab)(h)

  model = CharMLP()
  text = markov_text(24_000, vocab)
  train, val = jnp.asarray(text[:20_000]), jnp.asarray(text[20_000:])

  def windows(data, starts):
    idx = starts[:, None] + jnp.arange(context + 1)[None, :]
    w = data[idx]
    return w[:, :context], w[:, context]

  eval_train = windows(train, jnp.arange(0, 20_000 - context - 1, 7))
  eval_val = windows(val, jnp.arange(0, 4_000 - context - 1))

  def loss(params, x, y):
    logits = model.apply({"params": params}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  def batch_fn(key):
    starts = jax.random.randint(key, (batch,), 0, 20_000 - context - 1)
    return windows(train, starts)

  return {
      "init": lambda: model.init(jax.random.PRNGKey(1), eval_train[0][:1])["params"],
      "batch": batch_fn,
      "train_loss": lambda p: loss(p, *eval_train),
      "val_loss": lambda p: loss(p, *eval_val),
      "loss": loss,
      "lr": 1e-2,
  }


TASKS = {"mlp": mlp_task, "charlm": charlm_task}


# ----------------------------------------------------------------------------- runs
def run_grid(task, opt_name: str, b1s, b2s, steps: int):
  """Final (train, val) losses, each of shape (len(b1s), len(b2s)), and final coefficients."""
  params0 = task["init"]()
  lr = optax.cosine_decay_schedule(task["lr"], steps, alpha=0.1)

  def one(b1, b2):
    tx = make_optimizer(opt_name, lr, b1, b2)

    def body(carry, key):
      p, s = carry
      g = jax.grad(task["loss"])(p, *task["batch"](key))
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    keys = jax.random.split(jax.random.PRNGKey(42), steps)  # same batches for every run
    (p, s), _ = jax.lax.scan(body, (params0, tx.init(params0)), keys)
    coeffs = (optax.tree.get(s, "coeffs") if opt_name != "Adam"
              else jnp.stack([b1, b2, 0.0, 1.0, 1.0, 1.0]).astype(jnp.float32))
    return task["train_loss"](p), task["val_loss"](p), coeffs

  bb1, bb2 = jnp.meshgrid(jnp.asarray(b1s, jnp.float32), jnp.asarray(b2s, jnp.float32),
                          indexing="ij")
  tr, va, co = jax.jit(jax.vmap(one))(bb1.ravel(), bb2.ravel())
  shape = (len(b1s), len(b2s))
  return np.asarray(tr).reshape(shape), np.asarray(va).reshape(shape), np.asarray(co)


def summarize(x: np.ndarray) -> str:
  x = np.where(np.isfinite(x), x, np.inf)
  return f"{np.mean(x):.4g} / {np.median(x):.4g} / {np.max(x):.4g}"


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="2 x 2 grid and fewer steps")
  ap.add_argument("--steps", type=int, default=None, help="training steps (default 600; quick 100)")
  ap.add_argument("--tasks", nargs="*", default=list(TASKS))
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  b1s, b2s = GRIDS["quick" if args.quick else "default"]
  steps = args.steps or (100 if args.quick else 600)
  t_start = time.perf_counter()
  results = {}
  for task_name in args.tasks:
    task = TASKS[task_name]()
    for opt in OPTIMIZERS:
      t0 = time.perf_counter()
      results[task_name, opt] = run_grid(task, opt, b1s, b2s, steps)
      tr, va, _ = results[task_name, opt]
      print(f"{task_name:7s} {opt:10s} train {summarize(tr)}  val {summarize(va)}  "
            f"({time.perf_counter() - t0:.1f}s)", flush=True)

  lines = [
      "# MADA robustness to the initial (b1, b2), in miniature",
      "",
      f"Machine: {common.machine_name()}. Grid: b1 in {list(b1s)}, b2 in {list(b2s)} "
      f"({len(b1s) * len(b2s)} runs per optimizer and task), {steps} steps, cosine learning-rate "
      "decay to 0.1x. HyperAdam and MADA start at the grid point (MADA at the Adam corner for "
      f"the other four coefficients) with hyper-LR {HYPER['hyper_lr']} and hyper-momentum "
      f"{HYPER['hyper_momentum']}. Generated by `python benchmarks/robustness_mada.py"
      f"{' --quick' if args.quick else ''}` in {time.perf_counter() - t_start:.0f} s.",
      "",
      "Mean / median / worst over the grid (lower is better):",
      "",
      "| task | optimizer | final train loss | validation loss | mean final coefficients (b1, b2, b3, rho, c, gamma) |",
      "|---|---|---|---|---|",
  ]
  for (task_name, opt), (tr, va, co) in results.items():
    mean_c = ", ".join(f"{x:.3f}" for x in np.mean(co, axis=0))
    lines.append(f"| {task_name} | {opt} | {summarize(tr)} | {summarize(va)} | {mean_c} |")
  print("\n".join(lines))
  common.write("robustness_mada.md", "\n".join(lines) + "\n", args.out)

  plt = common.pyplot()
  tasks = list(args.tasks)
  fig, axes = plt.subplots(len(tasks), len(OPTIMIZERS), figsize=(4 * len(OPTIMIZERS), 3.4 * len(tasks)),
                           squeeze=False)
  for i, task_name in enumerate(tasks):
    # log10 colour scale: a diverged run (Adam with b1^2 > b2) is many decades above the rest
    logs = {o: np.log10(np.maximum(np.nan_to_num(results[task_name, o][0], nan=1e30), 1e-8))
            for o in OPTIMIZERS}
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
      ax.set_title(f"{task_name}: {opt}")
      for (a, b), v in np.ndenumerate(results[task_name, opt][0]):
        ax.text(b, a, f"{v:.3g}", ha="center", va="center", color="w", fontsize=7)
    fig.colorbar(im, ax=axes[i].tolist(), shrink=0.8, label="log10 final train loss")
  fig.suptitle(f"Final train loss over initial (b1, b2) - {common.machine_name()}", fontsize=8)
  common.savefig(fig, "robustness_mada.png", args.out, bbox_inches="tight")
  return results


if __name__ == "__main__":
  main()
