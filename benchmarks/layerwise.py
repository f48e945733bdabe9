"""Layerwise step sizes: LANTON vs optax.contrib.muon vs optax.adamw on a small Flax transformer LM.

Data: a random order-2 Markov chain over 16 tokens (Dirichlet(0.1) rows, fixed
seed) generated here; its entropy rate is the best achievable loss. Model: a 2-block pre-norm
causal transformer (d=64, 4 heads, MLP 4x, learned positions, untied head). The main job's
budget rule (``common.py``): each optimizer's learning rate is swept over the same grid
(``common.lr_grid()``) with the same warmup + cosine schedule on seed 0, one ``optzoo.sweep``
compilation each, and the best point is re-run on 3 fresh seeds (mean +- std reported).
Departures, on purpose: synthetic data with a known optimum, and the
paper's D-Muon-like settings (muon with ``consistent_rms=0.2``, AdamW on embedding, head and
vectors, weight decay 0.1 for all three) instead of defaults. An ablation runs LANTON with every
rate clipped to 1 (``r_min=1``) at LANTON's learning rate. Reported: final held-out loss, steps
to reach muon's final loss, jitted train-step time (forward, backward and update) as a median
paired ratio to muon's, loss curves and per-layer rates (read from the state by the sweep's
``state_fn``), and how well each nuclear-norm estimator of the hidden noise reads this model's
own gradient noise against the exact SVD (``noise_estimators``).

Writes ``benchmarks/results/layerwise.md``, ``layerwise_loss.png`` and ``layerwise_rates.png``.

    python benchmarks/layerwise.py          # default (a few minutes on a CPU)
    python benchmarks/layerwise.py --quick  # smoke run: short, 3-point grid, no files

The MetaOptimize study on the Flax MLP is ``benchmarks/metaoptimize_mlp.py``.

Device-agnostic: runs on the default JAX device (a GPU when present).
"""

from __future__ import annotations

import argparse
import inspect
import math
import time

import common
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optzoo
from optzoo import default_lanton_labels, sweep

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
def _hidden_only(params):
  """D-Muon: Newton-Schulz on the hidden matrices; AdamW on embedding, head and vectors."""
  return jax.tree.map(lambda lab: optax.contrib.MuonDimensionNumbers() if lab == "hidden" else None,
                      default_lanton_labels(params))


OPTIMIZERS = {
    # name: factory(learning_rate); the sweep injects the warmup + cosine schedule
    "lanton": lambda learning_rate: optzoo.lanton(learning_rate, weight_decay=0.1),
    "optax.contrib.muon": lambda learning_rate: optax.contrib.muon(
        learning_rate, beta=0.95, nesterov=False, consistent_rms=0.2, weight_decay=0.1,
        adam_b1=0.9, adam_b2=0.95, muon_weight_dimension_numbers=_hidden_only),
    "optax.adamw": lambda learning_rate: optax.adamw(learning_rate, b1=0.9, b2=0.95,
                                                    weight_decay=0.1),
}
QUICK_GRID = (1e-2, 3e-2, 1e-1)
SEEDS = 3  # at the best point
ABLATION = "lanton, rates fixed at 1 (r_min=1)"


def _ablation(learning_rate):
  return optzoo.lanton(learning_rate, weight_decay=0.1, r_min=1.0)


def _rate_leaves(state) -> dict:
  """LANTON's per-layer rates as {layer name: array}, for ``optzoo.sweep``'s ``state_fn``."""
  rates = optax.tree.get(state, "rates")
  out = {}
  for path, r in jax.tree_util.tree_flatten_with_path(rates)[0]:
    name = jax.tree_util.keystr(path).replace("['params']", "").replace("']['", "/")
    name = name.strip("[]'").replace("/kernel", "").replace("/embedding", "")
    out["rate:" + name] = r
  return out


def sweep_lm(factory, steps: int, data, grid, seeds: int, state_fn=None) -> dict:
  """The budget rule on the LM: ``grid`` on seed 0 (one ``optzoo.sweep``), then the best point
  on seeds 1..``seeds`` (a second sweep; fewer runs than the grid's size, and this model's runs
  cost more than a compilation); ``grid`` of one value: seeds only."""
  train_seqs, eval_seqs = data
  grid = np.asarray(grid, np.float32)
  kw = dict(schedule=common.schedule(steps), eval_fn=lambda p: loss_fn(p, eval_seqs),
            batch_fn=lambda key, _t: train_seqs[jax.random.randint(key, (BATCH,), 0,
                                                                   train_seqs.shape[0])],
            eval_every=EVAL_EVERY)

  def init(key):
    return MODEL.init(key, train_seqs[:2, :-1])

  if len(grid) > 1:
    first = sweep.sweep(factory, loss_fn, init, steps, grid={"learning_rate": grid}, seeds=[0],
                        **kw)
    finals = first.final["loss"][:, 0]
    best = int(np.argmin(np.nan_to_num(finals, nan=np.inf)))
  else:
    finals, best = None, 0
  res = sweep.sweep(factory, loss_fn, init, steps, hparams={"learning_rate": float(grid[best])},
                    seeds=list(range(1, seeds + 1)), state_fn=state_fn, **kw)
  curves = res.evals["loss"][0]
  final = curves[:, -1]
  rates = {k[5:]: v[0, 0] for k, v in res.evals.items() if k.startswith("rate:")}
  return {"lr": float(grid[best]), "grid": None if finals is None else dict(
              zip(grid.tolist(), finals.tolist())),
          "curves": curves, "final": float(np.mean(final)), "std": float(np.std(final)),
          "rates": rates}


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
    "optax.contrib.muon": (lambda: OPTIMIZERS["optax.contrib.muon"](1e-2), None),
    "lanton": (lambda: OPTIMIZERS["lanton"](1e-2), 1.10),
    "lanton (dual_norm='gram')": (
        lambda: optzoo.lanton(1e-2, weight_decay=0.1, dual_norm="gram"), None),
    "optax.adamw": (lambda: OPTIMIZERS["optax.adamw"](1e-2), None),
}


# Hidden-noise dual-norm estimators, read against the exact SVD on this model's own noise.
ESTIMATORS = ("ns", "gram", "fro_bound")
SAMPLE_EVERY = 20


def noise_estimators(data, learning_rate: float, steps: int) -> dict:
  """Every ``SAMPLE_EVERY`` steps of a LANTON run (seed 0, the schedule of the sweep), the noise
  ``D = G_t - G_{t-1}`` of every hidden matrix, and each estimator's ``estimate / ||D||_*``: per
  estimator the range over all samples and the cross-layer spread (max / min of the ratios of
  one step's layers; the layer rates are ratios of noises, so this spread is what biases them)."""
  train_seqs, _ = data
  params = MODEL.init(jax.random.PRNGKey(0), train_seqs[:2, :-1])
  multiplier = common.schedule(steps)
  tx = OPTIMIZERS["lanton"](lambda t: learning_rate * multiplier(t))
  state = tx.init(params)
  hidden = [lab == "hidden" for lab in jax.tree.leaves(default_lanton_labels(params))]
  norms = {name: optzoo.lmo.dual_norm(name) for name in ("svd", *ESTIMATORS)}

  @jax.jit
  def train_step(p, s, key):
    g = jax.grad(loss_fn)(p, train_seqs[jax.random.randint(key, (BATCH,), 0,
                                                              train_seqs.shape[0])])
    u, s = tx.update(g, s, p)
    return optax.apply_updates(p, u), s, g

  @jax.jit
  def ratios(g, prev):
    mats = [a - b for a, b, h in zip(jax.tree.leaves(g), jax.tree.leaves(prev), hidden) if h]
    true = jnp.stack([norms["svd"](d) for d in mats])
    return {n: jnp.stack([norms[n](d) for d in mats]) / true for n in ESTIMATORS}

  keys = jax.random.split(jax.random.PRNGKey(0), steps)
  samples, prev = {n: [] for n in ESTIMATORS}, None
  for t in range(steps):
    params, state, g = train_step(params, state, keys[t])
    if prev is not None and t % SAMPLE_EVERY == 0:
      for n, r in jax.device_get(ratios(g, prev)).items():
        samples[n].append(r)
    prev = g
  out = {}
  for n, rs in samples.items():
    rs = np.stack(rs)  # (samples, layers)
    spread = rs.max(axis=1) / rs.min(axis=1)
    out[n] = {"lo": float(rs.min()), "hi": float(rs.max()),
              "spread_median": float(np.median(spread)), "spread_max": float(spread.max())}
  return {"layers": int(sum(hidden)), "samples": len(samples["ns"]), "lr": learning_rate,
          "ratios": out}


def _steps_to(curves, target):
  """Per seed, the first evaluated step at or below ``target`` (None: not reached)."""
  out = []
  for curve in np.atleast_2d(curves):
    hit = np.nonzero(np.nan_to_num(curve, nan=np.inf) <= target)[0]
    out.append(int(hit[0]) * EVAL_EVERY if hit.size else None)
  return out


def run_lanton(quick: bool) -> dict:
  t0 = time.time()
  steps = 100 if quick else 400
  grid = QUICK_GRID if quick else common.lr_grid()
  train_seqs, eval_seqs, rate = markov_data()
  data = (train_seqs, eval_seqs)
  results = {}
  for name, factory in OPTIMIZERS.items():
    results[name] = sweep_lm(factory, steps, data, grid, SEEDS,
                             state_fn=_rate_leaves if name == "lanton" else None)
  results[ABLATION] = sweep_lm(_ablation, steps, data, [results["lanton"]["lr"]], SEEDS)
  target = results["optax.contrib.muon"]["final"]
  timing = time_steps({name: make for name, (make, _) in TIMED.items()}, data,
                      10 if quick else 30)
  estimators = noise_estimators(data, results["lanton"]["lr"], steps)
  n_params = sum(x.size for x in jax.tree.leaves(MODEL.init(jax.random.PRNGKey(0),
                                                             train_seqs[:2, :-1])))
  return {"steps": steps, "entropy_rate": rate, "target": target, "results": results,
          "timing": timing, "estimators": estimators, "n_params": int(n_params), "quick": quick,
          "grid": list(grid), "seconds": time.time() - t0}


def _table(lt: dict, machine: str) -> str:
  res, timing = lt["results"], lt["timing"]
  n_seeds = len(res["lanton"]["curves"])
  lines = [
      "# Layerwise step sizes: LANTON",
      "",
      f"Machine: {machine}. Generated by `python benchmarks/layerwise.py"
      f"{' --quick' if lt['quick'] else ''}`.",
      "",
      "## LANTON vs optax.contrib.muon vs optax.adamw (small Flax transformer LM)",
      "",
      f"Data: random order-2 Markov chain over {VOCAB} tokens, sequences of {SEQ}, batch {BATCH}; "
      f"entropy rate (best possible loss) {lt['entropy_rate']:.4f} nats. Model: {LAYERS} "
      f"pre-norm blocks, d={D_MODEL}, {HEADS} heads, {lt['n_params']:,} parameters. "
      f"Budget rule of the main job: each optimizer's learning rate swept over the same grid "
      f"{[float(f'{x:.3g}') for x in lt['grid']]} on seed 0 ({lt['steps']} steps, warmup + "
      f"cosine to 0, one `optzoo.sweep` compilation), the best point re-run on {n_seeds} fresh "
      f"seeds (mean +- std below), held-out loss every {EVAL_EVERY} steps. Departures, on "
      "purpose: synthetic data with a known optimum, and the paper's D-Muon settings instead of "
      "defaults: muon with consistent_rms 0.2, AdamW on embedding/head/vectors, weight decay "
      "0.1; AdamW with b2 0.95 and weight decay 0.1; LANTON at its defaults with weight decay "
      "0.1 (dual norm 'ns', prev-grad noise, r_min 0.05, 0.2 x sign on embedding/head, AdamW on "
      "vectors). Target = muon's mean final held-out loss.",
      "",
      "| optimizer | best lr | final held-out loss | excess over entropy rate | "
      "steps to muon's final loss (per seed) | grid, seed 0 |",
      "|---|---:|---:|---:|---|---|",
  ]
  for name, r in res.items():
    g = ", ".join(f"{k:.3g}: {v:.3f}" for k, v in r["grid"].items()) if r["grid"] else "lanton's"
    hits = _steps_to(r["curves"], lt["target"])
    lines.append(f"| {name} | {r['lr']:.3g} | {r['final']:.4f} +- {r['std']:.4f} | "
                 f"{r['final'] - lt['entropy_rate']:.4f} | "
                 f"{', '.join('-' if h is None else str(h) for h in hits)} | {g} |")
  lines += [
      "",
      "Train-step time (forward + backward + update, jitted, one model at lr 1e-2), median of "
      "paired ratios to muon:",
      "",
      "| optimizer | ms / step | ratio to muon | target |",
      "|---|---:|---:|---|",
  ]
  for name, t in timing.items():
    tgt = "" if TIMED[name][1] is None else f"<= {TIMED[name][1]:.2f}"
    lines.append(f"| {name} | {t['ms']:.2f} | {t['ratio']:.3f} | {tgt} |")
  lines += _estimator_lines(lt["estimators"])
  lines += ["", "Plots: `layerwise_loss.png` (held-out loss, mean and min..max over seeds), "
            "`layerwise_rates.png` (LANTON's per-layer rates r_l, seed 1).", ""]
  return "\n".join(lines) + "\n"


_NS_STEPS = inspect.signature(optzoo.lanton).parameters["ns_steps"].default
_COST = {"ns": f"one {_NS_STEPS}-step Newton-Schulz pass per matrix (the momentum's own cost "
               "again)",
         "gram": f"one Gram product per matrix (a Newton-Schulz pass: {_NS_STEPS} steps of 3 "
                 "matrix products)",
         "fro_bound": "one reduction"}


def _estimator_lines(est: dict) -> list[str]:
  lines = [
      "",
      "Hidden-noise nuclear-norm estimators on this model's own gradient noise "
      f"(`noise_estimators`: LANTON at lr {est['lr']:.3g}, seed 0; every {SAMPLE_EVERY} steps, "
      f"{est['samples']} samples of `G_t - G_(t-1)` for each of the {est['layers']} hidden "
      "matrices), as estimate / exact SVD value. The layer rates are ratios of the layers' "
      "noises, so the cross-layer spread (max / min of one step's ratios) is the bias an "
      "estimator puts into the rates; 1.00 would be none:",
      "",
      "| estimator | estimate / exact (all samples) | cross-layer spread, median | max | "
      "extra cost per step |",
      "|---|---|---:|---:|---|",
  ]
  for n, r in est["ratios"].items():
    lines.append(f"| {n}{' (default)' if n == 'ns' else ''} | {r['lo']:.2f}-{r['hi']:.2f} | "
                 f"{r['spread_median']:.2f} | {r['spread_max']:.2f} | {_COST[n]} |")
  return lines


def _plots(lt: dict, out) -> None:
  plt = common.pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for name, r in lt["results"].items():
    cur = np.asarray(r["curves"])
    xs = np.arange(cur.shape[1]) * EVAL_EVERY
    line, = ax.plot(xs, cur.mean(0), label=f"{name} (lr {r['lr']:.3g})",
                    ls=":" if "r_min" in name else "-")
    ax.fill_between(xs, cur.min(0), cur.max(0), color=line.get_color(), alpha=0.15, lw=0)
  ax.axhline(lt["entropy_rate"], color="k", lw=0.8, ls="--", label="entropy rate")
  ax.set_ylim(lt["entropy_rate"] - 0.05, lt["entropy_rate"] + 1.5)
  ax.set_xlabel("step")
  ax.set_ylabel("held-out cross-entropy (nats)")
  ax.set_title("Tiny transformer LM on an order-2 Markov chain (band: min..max over seeds)")
  ax.legend(fontsize=8)
  fig.tight_layout()
  common.savefig(fig, "layerwise_loss.png", out)

  rates = lt["results"]["lanton"]["rates"]
  if rates:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    colors = plt.get_cmap("tab20").colors
    for i, (name, r) in enumerate(rates.items()):
      ys = np.asarray(r).reshape(len(r), -1)[:, 0]
      xs = np.arange(len(ys)) * EVAL_EVERY
      ax.plot(xs, ys, label=name, color=colors[i % len(colors)],
              ls="--" if ("embed" in name or "head" in name) else "-")
    ax.set_xlabel("step")
    ax.set_ylabel("layer rate r_l")
    ax.set_title("LANTON per-layer rates (hidden: solid, embedding/head: dashed; seed 1)")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    common.savefig(fig, "layerwise_rates.png", out)


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="smoke run; prints, writes no files")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  lt = run_lanton(args.quick)
  table = _table(lt, common.machine_name())
  print(table)
  if not args.quick:  # a smoke run prints and writes nothing
    common.write("layerwise.md", table, args.out)
    _plots(lt, args.out)
  print(f"({lt['seconds']:.1f} s)")


if __name__ == "__main__":
  main()
