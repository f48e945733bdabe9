"""Layerwise step sizes: LANTON vs optax.contrib.muon vs optax.adamw on a small Flax transformer LM,
then MetaOptimize vs optax.adam on the Flax MLP.

LANTON part. Data: a random order-2 Markov chain over 32 tokens (Dirichlet(0.1) rows, fixed
seed) generated here; its entropy rate is the best achievable loss. Model: a 2-block pre-norm
causal transformer (d=64, 4 heads, MLP 4x, learned positions, untied head). Each optimizer runs
the same warmup + cosine schedule on a small learning-rate grid, best final loss kept; the
baseline muon is D-Muon-like (``consistent_rms=0.2``, AdamW on embedding, head and vectors,
weight decay 0.1). An ablation runs LANTON with every rate clipped to 1 (``r_min=1``). Reported:
final held-out loss, steps to reach muon's final loss, jitted train-step time (forward, backward
and update) as a median paired ratio to muon's, loss curves and per-layer rates.

MetaOptimize part. The data are ``objectives.mlp_data()`` with 20% of the labels redrawn at
random (fixed seed): the clean blobs are separable, so every run would drive the loss to 0.
``optax.adam`` is tuned on a learning-rate grid in the same run; it is then also run at a
learning rate 10x below the tuned one. ``optzoo.metaoptimize(optax.scale_by_adam(), ...)``
(Lion meta, meta lr 1e-3, scalar step size, the paper's defaults, and optzoo's default
safeguard) starts from that 10x-too-small step size (and from 100x too small) and learns it;
the same run from 10x too small with ``safeguard=False`` (the authors' rule) shows the step size
that keeps growing once the loss has converged. Reported: the final full-batch loss (mean over
seeds) and the learned step size over time.

Writes ``benchmarks/results/layerwise.md`` (both parts), ``layerwise_loss.png``,
``layerwise_rates.png``, and the MetaOptimize part alone as ``metaoptimize_mlp.md`` and
``metaoptimize_mlp.png``.

    python benchmarks/layerwise.py                      # default (a few minutes on a CPU)
    python benchmarks/layerwise.py --only metaoptimize  # one part (writes that part's files)
    python benchmarks/layerwise.py --quick              # smoke run: short, one lr each, no files

Device-agnostic: runs on the default JAX device (a GPU when present).
"""

from __future__ import annotations

import argparse
import math
import time

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optzoo
from optzoo import default_lanton_labels, objectives

VOCAB, SEQ, BATCH, D_MODEL, HEADS, LAYERS = 16, 32, 32, 64, 4, 2
EVAL_EVERY = 25


# ----------------------------------------------------------------------------- LANTON: data
def markov_data(n_train: int = 4096, n_eval: int = 512, seed: int = 0):
  """Token sequences from a random order-2 Markov chain, and the chain's entropy rate (nats)."""
  rng = np.random.default_rng(seed)
  trans = rng.dirichlet(np.full(VOCAB, 0.1), size=(VOCAB, VOCAB))  # P(x_t | x_{t-2}, x_{t-1})
  n = n_train + n_eval
  seqs = np.empty((n, SEQ + 1), np.int32)
  seqs[:, :2] = rng.integers(0, VOCAB, (n, 2))
  cum = np.cumsum(trans, axis=-1)
  for t in range(2, SEQ + 1):
    c = cum[seqs[:, t - 2], seqs[:, t - 1]]
    seqs[:, t] = np.minimum((rng.random((n, 1)) < c).argmax(-1), VOCAB - 1)
  # stationary distribution over (x_{t-1}, x_t) pairs by power iteration
  pair = np.full((VOCAB, VOCAB), 1.0 / VOCAB**2)
  for _ in range(500):
    pair = np.einsum("ab,abc->bc", pair, trans)
  ent = -np.sum(trans * np.log(np.maximum(trans, 1e-30)), axis=-1)
  rate = float(np.sum(pair * ent))
  return jnp.asarray(seqs[:n_train]), jnp.asarray(seqs[n_train:]), rate


# ----------------------------------------------------------------------------- model
class Block(nn.Module):
  d: int
  heads: int

  @nn.compact
  def __call__(self, x):
    b, t, _ = x.shape
    dh = self.d // self.heads
    h = nn.RMSNorm(name="norm_attn")(x)
    q, k, v = (nn.Dense(self.d, use_bias=False, name=n)(h).reshape(b, t, self.heads, dh)
               for n in ("q", "k", "v"))
    att = jnp.einsum("bthd,bshd->bhts", q, k) / math.sqrt(dh)
    att = jnp.where(jnp.tril(jnp.ones((t, t), bool)), att, -1e9)
    o = jnp.einsum("bhts,bshd->bthd", jax.nn.softmax(att, axis=-1), v).reshape(b, t, self.d)
    x = x + nn.Dense(self.d, use_bias=False, name="o")(o)
    h = nn.RMSNorm(name="norm_mlp")(x)
    h = jax.nn.gelu(nn.Dense(4 * self.d, use_bias=False, name="mlp_in")(h))
    return x + nn.Dense(self.d, use_bias=False, name="mlp_out")(h)


class TinyLM(nn.Module):
  @nn.compact
  def __call__(self, tokens):
    x = nn.Embed(VOCAB, D_MODEL, name="embed",
                 embedding_init=nn.initializers.normal(1.0))(tokens)
    pos = self.param("pos_embed", nn.initializers.normal(0.02), (SEQ, D_MODEL))
    x = x + pos[: tokens.shape[1]]
    for i in range(LAYERS):
      x = Block(D_MODEL, HEADS, name=f"block{i}")(x)
    return nn.Dense(VOCAB, use_bias=False, name="lm_head")(nn.RMSNorm(name="norm_f")(x))


MODEL = TinyLM()


def loss_fn(params, seqs):
  logits = MODEL.apply(params, seqs[:, :-1])
  return optax.softmax_cross_entropy_with_integer_labels(logits, seqs[:, 1:]).mean()


# ----------------------------------------------------------------------------- optimizers
def schedule(lr: float, steps: int):
  return optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 20), steps, end_value=lr / 10)


def _hidden_only(params):
  """D-Muon: Newton-Schulz on the hidden matrices; AdamW on embedding, head and vectors."""
  return jax.tree.map(lambda lab: optax.contrib.MuonDimensionNumbers() if lab == "hidden" else None,
                      default_lanton_labels(params))


OPTIMIZERS = {
    # name: (factory(lr schedule), lr grid)
    "lanton": (lambda s: optzoo.lanton(s, weight_decay=0.1), (6e-2, 1.2e-1, 2.4e-1)),
    "optax.contrib.muon": (lambda s: optax.contrib.muon(
        s, beta=0.95, nesterov=False, consistent_rms=0.2, weight_decay=0.1, adam_b1=0.9,
        adam_b2=0.95, muon_weight_dimension_numbers=_hidden_only), (1e-2, 3e-2, 6e-2)),
    "optax.adamw": (lambda s: optax.adamw(s, b1=0.9, b2=0.95, weight_decay=0.1),
                    (3e-3, 1e-2, 3e-2)),
}
ABLATION = "lanton, rates fixed at 1 (r_min=1)"


def _ablation(s):
  return optzoo.lanton(s, weight_decay=0.1, r_min=1.0)


def _rate_leaves(state):
  rates = optax.tree.get(state, "rates")
  out = {}
  for path, r in jax.tree_util.tree_flatten_with_path(rates)[0]:
    name = jax.tree_util.keystr(path).replace("['params']", "").replace("']['", "/")
    name = name.strip("[]'").replace("/kernel", "").replace("/embedding", "")
    out[name] = np.asarray(r, np.float64)
  return out


def train(make_tx, steps: int, data, seed: int = 0) -> dict:
  """Trains from a fixed init; returns eval-loss curve, rates (if any) and the final loss."""
  train_seqs, eval_seqs = data
  params = MODEL.init(jax.random.PRNGKey(seed), train_seqs[:2, :-1])
  tx = make_tx()
  state = tx.init(params)

  @jax.jit
  def chunk(carry, key):
    def body(c, k):
      p, s = c
      idx = jax.random.randint(k, (BATCH,), 0, train_seqs.shape[0])
      g = jax.grad(loss_fn)(p, train_seqs[idx])
      u, s = tx.update(g, s, p)
      return (optax.apply_updates(p, u), s), None

    carry, _ = jax.lax.scan(body, carry, jax.random.split(key, EVAL_EVERY))
    return carry, loss_fn(carry[0], eval_seqs)

  key = jax.random.PRNGKey(100 + seed)
  curve, rates = [float(loss_fn(params, eval_seqs))], []
  carry = (params, state)
  has_rates = True
  try:
    optax.tree.get(state, "rates")
  except (KeyError, ValueError):
    has_rates = False
  for _ in range(steps // EVAL_EVERY):
    key, sub = jax.random.split(key)
    carry, ev = chunk(carry, sub)
    curve.append(float(ev))
    if has_rates:
      rates.append(_rate_leaves(carry[1]))
  if not all(np.isfinite(curve)):
    curve = [c if np.isfinite(c) else float("nan") for c in curve]
  return {"curve": curve, "rates": rates, "final": curve[-1]}


def time_steps(makers: dict, data, n_pairs: int) -> dict:
  """Median paired ratio of jitted train-step time (fwd + bwd + update) to muon's."""
  train_seqs, _ = data
  params = MODEL.init(jax.random.PRNGKey(0), train_seqs[:2, :-1])
  batch = train_seqs[:BATCH]
  steps, carries = {}, {}
  for name, make in makers.items():
    tx = make()

    def step(c, tx=tx):
      p, s = c
      g = jax.grad(loss_fn)(p, batch)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    steps[name] = jax.jit(step)
    carries[name] = (jax.tree.map(jnp.copy, params), tx.init(params))
  times, _ = common.paired_times(steps, carries, n_pairs)
  base = times["optax.contrib.muon"]
  return {n: {"ms": float(np.median(t) * 1e3), "ratio": float(np.median(t / base))}
          for n, t in times.items()}


# Train-step timings at lr 1e-2: name -> (optimizer, the ratio to muon's step asked for).
TIMED = {
    "optax.contrib.muon": (lambda: OPTIMIZERS["optax.contrib.muon"][0](1e-2), None),
    "lanton": (lambda: OPTIMIZERS["lanton"][0](1e-2), 1.10),
    "lanton (dual_norm='gram')": (
        lambda: optzoo.lanton(1e-2, weight_decay=0.1, dual_norm="gram"), None),
    "optax.adamw": (lambda: OPTIMIZERS["optax.adamw"][0](1e-2), None),
}


def _steps_to(curve, target):
  hit = [i * EVAL_EVERY for i, c in enumerate(curve) if c <= target]
  return hit[0] if hit else None


def run_lanton(quick: bool) -> dict:
  t0 = time.time()
  steps = 100 if quick else 400
  train_seqs, eval_seqs, rate = markov_data()
  data = (train_seqs, eval_seqs)
  results, grids = {}, {}
  for name, (make, grid) in OPTIMIZERS.items():
    lrs = grid[:1] if quick else grid
    runs = {lr: train(lambda lr=lr, make=make: make(schedule(lr, steps)), steps, data) for lr in lrs}
    grids[name] = {lr: r["final"] for lr, r in runs.items()}
    best = min(runs, key=lambda lr: runs[lr]["final"] if np.isfinite(runs[lr]["final"]) else 1e9)
    results[name] = dict(runs[best], lr=best)
  lr_l = results["lanton"]["lr"]
  results[ABLATION] = dict(train(lambda: _ablation(schedule(lr_l, steps)), steps, data), lr=lr_l)
  target = results["optax.contrib.muon"]["final"]
  timing = time_steps({name: make for name, (make, _) in TIMED.items()}, data,
                      10 if quick else 30)
  n_params = sum(x.size for x in jax.tree.leaves(MODEL.init(jax.random.PRNGKey(0),
                                                             train_seqs[:2, :-1])))
  return {"steps": steps, "entropy_rate": rate, "target": target, "results": results,
          "grids": grids, "timing": timing, "n_params": int(n_params), "quick": quick,
          "seconds": time.time() - t0}


# ----------------------------------------------------------------------------- MetaOptimize
MO_ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
MO_BATCH = 64
MO_LABEL_NOISE = 0.2  # labels redrawn at random (fixed seed), so the loss cannot reach 0
MO_TARGET = 1e-3  # full-batch loss for the "steps to target" column


def _mo_trainer(steps: int, log_every: int):
  """``train(tx, seed) -> (full-batch losses every log_every steps, step sizes, final loss)``."""
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

  def train(tx, seed):
    key = jax.random.PRNGKey(seed)
    params = obj.init()

    def body(carry, t):
      p, s = carry
      idx = jax.random.randint(jax.random.fold_in(key, t), (MO_BATCH,), 0, xs.shape[0])
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


def _mo_steps_to(losses, step_axis):
  hit = np.nonzero(np.asarray(losses) < MO_TARGET)[0]
  return int(step_axis[hit[0]]) if hit.size else None


def run_metaoptimize(quick: bool) -> dict:
  """Runs the MetaOptimize comparison and returns its numbers.

  Returns a dict with ``machine``, ``steps``, ``seeds``, ``adam_grid`` ({lr: final loss}),
  ``tuned_lr``, ``rows`` (one per run: ``name``, ``init_lr``, ``final_loss`` mean over seeds,
  ``final_lr`` (learned step size, seed 0; None for Adam), ``loss_ratio`` = final loss / tuned
  Adam's, ``steps_to_target``: first logged step with full-batch loss < ``MO_TARGET``, seed 0),
  ``curves`` (name -> {``step``, ``loss``, ``lr``} lists, seed 0), ``table`` (markdown),
  ``seconds`` and ``small`` (a tenth of ``tuned_lr``).
  """
  t_start = time.time()
  steps = 1_500 if quick else 4_000
  log_every = 50 if quick else 100
  seeds = (0,) if quick else (0, 1, 2)
  train = _mo_trainer(steps, log_every)

  def evaluate(make_tx):
    fn = jax.jit(lambda seed: train(make_tx(), seed))
    outs = [fn(s) for s in seeds]
    final = float(np.mean([float(o[2]) for o in outs]))
    return final, outs[0]

  grid = {lr: evaluate(lambda lr=lr: optax.adam(lr)) for lr in MO_ADAM_GRID}
  tuned = min(grid, key=lambda lr: grid[lr][0])
  small = tuned / 10.0
  runs = {
      f"optax.adam (tuned, {tuned:g})": (tuned, grid[tuned], False),
  }
  small_res = grid[small] if small in grid else evaluate(lambda: optax.adam(small))
  runs[f"optax.adam (10x too small, {small:g})"] = (small, small_res, False)
  for factor in (10.0, 100.0):
    a0 = tuned / factor
    res = evaluate(lambda a0=a0: optzoo.metaoptimize(optax.scale_by_adam(),
                                                  initial_learning_rate=a0))
    runs[f"metaoptimize(scale_by_adam) from {a0:g} ({factor:g}x too small)"] = (a0, res, True)
  res = evaluate(lambda: optzoo.metaoptimize(optax.scale_by_adam(), initial_learning_rate=small,
                                             safeguard=False))
  runs[f"same, safeguard=False (the authors' rule), from {small:g}"] = (small, res, True)

  base_loss = grid[tuned][0]
  rows, curves = [], {}
  step_axis = [int(s) for s in np.arange(log_every, steps + 1, log_every)]
  for name, (lr0, (final, (losses, lrs, _)), is_mo) in runs.items():
    rows.append({
        "name": name, "init_lr": lr0, "final_loss": final,
        "final_lr": float(lrs[-1]) if is_mo else None, "loss_ratio": final / base_loss,
        "steps_to_target": _mo_steps_to(losses, step_axis),
    })
    curves[name] = {"step": step_axis, "loss": [float(x) for x in losses],
                    "lr": [float(x) for x in lrs] if is_mo else None}

  machine = common.machine_name()
  lines = [
      "# MetaOptimize over Adam vs optax.adam on the Flax MLP",
      "",
      f"Machine: {machine}. Objective: the Flax MLP of `objectives.get('mlp')` (16-32-32-4, its "
      f"512 Gaussian-blob samples) with {MO_LABEL_NOISE:.0%} of the labels redrawn at random "
      "(fixed seed; the clean blobs are separable, so the loss would reach 0 and the comparison would "
      f"be about nothing); minibatches of {MO_BATCH} drawn at random, {steps} steps, seeds "
      f"{list(seeds)}; loss is the full-batch cross-entropy at the end, mean over seeds. Adam "
      "tuned on the grid "
      f"{list(MO_ADAM_GRID)} in this run: best {tuned:g}. MetaOptimize: Lion meta, meta lr 1e-3, "
      "scalar step size, gamma 1 (paper defaults), with optzoo's default safeguard (the meta "
      "step shrinks once the meta signal falls below a tenth of its peak) unless marked "
      "safeguard=False.",
      "",
      "| run | initial lr | final loss | loss / tuned Adam | "
      f"steps to loss {MO_TARGET:g} (seed 0) | learned lr at end (seed 0) |",
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

  return {
      "machine": machine, "steps": steps, "seeds": list(seeds),
      "adam_grid": {lr: v[0] for lr, v in grid.items()}, "tuned_lr": tuned, "small": small,
      "rows": rows, "curves": curves, "table": table, "seconds": time.time() - t_start,
  }


def _table(lt: dict, mo: dict | None, machine: str) -> str:
  res, timing = lt["results"], lt["timing"]
  lines = [
      "# Layerwise step sizes: LANTON and MetaOptimize",
      "",
      f"Machine: {machine}. Generated by `python benchmarks/layerwise.py"
      f"{' --quick' if lt['quick'] else ''}`.",
      "",
      "## LANTON vs optax.contrib.muon vs optax.adamw (small Flax transformer LM)",
      "",
      f"Data: random order-2 Markov chain over {VOCAB} tokens, sequences of {SEQ}, batch {BATCH}; "
      f"entropy rate (best possible loss) {lt['entropy_rate']:.4f} nats. Model: {LAYERS} "
      f"pre-norm blocks, d={D_MODEL}, {HEADS} heads, {lt['n_params']:,} parameters. "
      f"{lt['steps']} steps, warmup + cosine to lr/10, one seed, held-out loss every "
      f"{EVAL_EVERY} steps. Muon is D-Muon-like (consistent_rms 0.2, AdamW on embedding/head/"
      "vectors, weight decay 0.1); LANTON uses its defaults (dual norm 'ns', prev-grad noise, "
      "r_min 0.05, 0.2 x sign on embedding/head, AdamW on vectors, weight decay 0.1). Target = muon's "
      "final held-out loss.",
      "",
      "| optimizer | best lr (grid) | final held-out loss | excess over entropy rate | "
      "steps to muon's final loss |",
      "|---|---|---:|---:|---:|",
  ]
  for name, r in res.items():
    grid = lt["grids"].get(name)
    g = ", ".join(f"{k:g}: {v:.3f}" for k, v in grid.items()) if grid else "lanton's"
    hit = _steps_to(r["curve"], lt["target"])
    lines.append(f"| {name} | {r['lr']:g} ({g}) | {r['final']:.4f} | "
                 f"{r['final'] - lt['entropy_rate']:.4f} | {'not reached' if hit is None else hit} |")
  lines += [
      "",
      "Train-step time (forward + backward + update, jitted), median of paired ratios to muon:",
      "",
      "| optimizer | ms / step | ratio to muon | target |",
      "|---|---:|---:|---|",
  ]
  for name, t in timing.items():
    tgt = "" if TIMED[name][1] is None else f"<= {TIMED[name][1]:.2f}"
    lines.append(f"| {name} | {t['ms']:.2f} | {t['ratio']:.3f} | {tgt} |")
  lines += ["", "Plots: `layerwise_loss.png` (held-out loss), `layerwise_rates.png` "
            "(LANTON's per-layer rates r_l).", ""]
  if mo is None:
    lines += ["## MetaOptimize", "", "Not run (`--only lanton`).", ""]
  else:
    body = mo["table"].splitlines()
    body = [("## " + l[2:]) if l.startswith("# ") else l for l in body]
    lines += body + ["", "Plot: `metaoptimize_mlp.png` (this part alone: `metaoptimize_mlp.md`)."
                     if not lt["quick"] else "(quick run: no plot)", ""]
  return "\n".join(lines) + "\n"


def _plots(lt: dict, out) -> None:
  plt = common.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for name, r in lt["results"].items():
    xs = np.arange(len(r["curve"])) * EVAL_EVERY
    ax.plot(xs, r["curve"], label=f"{name} (lr {r['lr']:g})", ls=":" if "r_min" in name else "-")
  ax.axhline(lt["entropy_rate"], color="k", lw=0.8, ls="--", label="entropy rate")
  ax.set_ylim(lt["entropy_rate"] - 0.05, lt["entropy_rate"] + 1.5)
  ax.set_xlabel("step")
  ax.set_ylabel("held-out cross-entropy (nats)")
  ax.set_title("Tiny transformer LM on an order-2 Markov chain")
  ax.legend(fontsize=8)
  fig.tight_layout()
  common.savefig(fig, "layerwise_loss.png", out)

  rates = lt["results"]["lanton"]["rates"]
  if rates:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = (np.arange(len(rates)) + 1) * EVAL_EVERY
    colors = plt.get_cmap("tab20").colors
    for i, name in enumerate(rates[0]):
      ys = [float(np.ravel(r[name])[0]) for r in rates]
      ax.plot(xs, ys, label=name, color=colors[i % len(colors)],
              ls="--" if ("embed" in name or "head" in name) else "-")
    ax.set_xlabel("step")
    ax.set_ylabel("layer rate r_l")
    ax.set_title("LANTON per-layer rates (hidden: solid, embedding/head: dashed)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    common.savefig(fig, "layerwise_rates.png", out)


def _mo_plot(mo: dict, out) -> None:
  plt = common.pyplot()
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
  for name, c in mo["curves"].items():
    ax1.plot(c["step"], c["loss"], label=name, ls="-" if c["lr"] is not None else "--")
    if c["lr"] is not None:
      ax2.plot(c["step"], c["lr"], label=name)
  ax1.set_yscale("log")
  ax1.set_xlabel("step")
  ax1.set_ylabel("full-batch loss (seed 0)")
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
  ap.add_argument("--only", choices=("lanton", "metaoptimize"), help="run one part only")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  t0 = time.time()
  lt = mo = None
  if args.only != "metaoptimize":
    lt = run_lanton(args.quick)
    print(f"LANTON part: {lt['seconds']:.1f} s", flush=True)
  if args.only != "lanton":
    mo = run_metaoptimize(args.quick)
    print(f"MetaOptimize part: {mo['seconds']:.1f} s", flush=True)
  table = mo["table"] if lt is None else _table(lt, mo, common.machine_name())
  print(table)
  if not args.quick:  # a smoke run prints and writes nothing
    if lt is not None:
      common.write("layerwise.md", table, args.out)
      _plots(lt, args.out)
    if mo is not None:
      common.write("metaoptimize_mlp.md", mo["table"], args.out)
      _mo_plot(mo, args.out)
  print(f"({time.time() - t0:.1f} s)")


if __name__ == "__main__":
  main()
