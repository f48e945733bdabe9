"""Layerwise step sizes: LANTON vs optax.contrib.muon vs optax.adamw on a small Flax transformer LM,
then MetaOptimize vs optax.adam on the Flax MLP (``benchmarks/metaoptimize_mlp.py``).

LANTON part. Data: a random order-2 Markov chain over 32 tokens (Dirichlet(0.1) rows, fixed
seed) generated here; its entropy rate is the best achievable loss. Model: a 2-block pre-norm
causal transformer (d=64, 4 heads, MLP 4x, learned positions, untied head). Each optimizer runs
the same warmup + cosine schedule on a small learning-rate grid, best final loss kept; the
baseline muon is D-Muon-like (``consistent_rms=0.2``, AdamW on embedding, head and vectors,
weight decay 0.1). An ablation runs LANTON with every rate clipped to 1 (``r_min=1``). Reported:
final held-out loss, steps to reach muon's final loss, jitted train-step time (forward, backward
and update) as a median paired ratio to muon's, loss curves and per-layer rates. Writes
``benchmarks/results/layerwise.md``, ``layerwise_loss.png`` and ``layerwise_rates.png``.

    python benchmarks/layerwise.py            # default (a few minutes on a CPU)
    python benchmarks/layerwise.py --quick    # smoke run: one lr per optimizer, short, no files

Device-agnostic: runs on the default JAX device (a GPU when present).
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

_HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

import optzoo  # noqa: E402
from optzoo import default_lanton_labels  # noqa: E402
from step_time import machine_name  # noqa: E402

RESULTS = _HERE / "results"
VOCAB, SEQ, BATCH, D_MODEL, HEADS, LAYERS = 16, 32, 32, 64, 4, 2
EVAL_EVERY = 25


# ----------------------------------------------------------------------------- data
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
  steps = {}
  for name, make in makers.items():
    tx = make()

    def step(c, tx=tx):
      p, s = c
      g = jax.grad(loss_fn)(p, batch)
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    fn = jax.jit(step)
    carry = (jax.tree.map(jnp.copy, params), tx.init(params))
    for _ in range(3):
      carry = jax.block_until_ready(fn(carry))
    steps[name] = [fn, carry]
  times = {n: [] for n in steps}
  names = list(steps)
  for i in range(n_pairs):
    order = names if i % 2 == 0 else names[::-1]
    for n in order:
      fn, carry = steps[n]
      t0 = time.perf_counter()
      steps[n][1] = jax.block_until_ready(fn(carry))
      times[n].append(time.perf_counter() - t0)
  base = np.array(times["optax.contrib.muon"])
  return {n: {"ms": float(np.median(t) * 1e3), "ratio": float(np.median(np.array(t) / base))}
          for n, t in times.items()}


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
  timing = time_steps({
      "optax.contrib.muon": lambda: OPTIMIZERS["optax.contrib.muon"][0](1e-2),
      "lanton": lambda: OPTIMIZERS["lanton"][0](1e-2),
      "lanton (dual_norm='gram')": lambda: optzoo.lanton(1e-2, weight_decay=0.1, dual_norm="gram"),
      "optax.adamw": lambda: OPTIMIZERS["optax.adamw"][0](1e-2),
  }, data, 10 if quick else 30)
  n_params = sum(x.size for x in jax.tree.leaves(MODEL.init(jax.random.PRNGKey(0),
                                                             train_seqs[:2, :-1])))
  return {"steps": steps, "entropy_rate": rate, "target": target, "results": results,
          "grids": grids, "timing": timing, "n_params": int(n_params), "quick": quick,
          "seconds": time.time() - t0}


def run_metaoptimize(quick: bool) -> dict | None:
  """The MetaOptimize part: ``benchmarks/metaoptimize_mlp.py``'s ``run(quick)``."""
  try:
    import metaoptimize_mlp  # noqa: PLC0415
  except ImportError as e:  # the other half of the issue is not there
    print(f"MetaOptimize part skipped: {e}")
    return None
  return metaoptimize_mlp.run(quick)


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
    tgt = "<= 1.10" if name == "lanton" else ""
    lines.append(f"| {name} | {t['ms']:.2f} | {t['ratio']:.3f} | {tgt} |")
  lines += ["", "Plots: `layerwise_loss.png` (held-out loss), `layerwise_rates.png` "
            "(LANTON's per-layer rates r_l).", ""]
  if mo is None:
    lines += ["## MetaOptimize", "", "Not run: `benchmarks/metaoptimize_mlp.py` is missing.", ""]
  else:
    body = mo["table"].splitlines()
    body = [("## " + l[2:]) if l.startswith("# ") else l for l in body]
    lines += body + ["", "Plot: `metaoptimize_mlp.png` (written by `benchmarks/metaoptimize_mlp.py`)."
                     if not lt["quick"] else "(quick run: no plot)", ""]
  return "\n".join(lines) + "\n"


def _plots(lt: dict, out_dir: pathlib.Path) -> list[str]:
  import matplotlib  # noqa: PLC0415
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  paths = []
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
  p = out_dir / "layerwise_loss.png"
  fig.savefig(p, dpi=110)
  plt.close(fig)
  paths.append(str(p))

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
    p = out_dir / "layerwise_rates.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(str(p))
  return paths


def main(argv=None) -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="smoke run; prints, writes no files")
  ap.add_argument("--out", default=str(RESULTS), help="directory for the table and plots")
  args = ap.parse_args(argv)
  t0 = time.time()
  lt = run_lanton(args.quick)
  print(f"LANTON part: {lt['seconds']:.1f} s", flush=True)
  mo = run_metaoptimize(args.quick)
  table = _table(lt, mo, machine_name())
  print(table)
  if args.quick:  # smoke run: prints, writes nothing
    print(f"({time.time() - t0:.1f} s)")
    return
  out_dir = pathlib.Path(args.out)
  out_dir.mkdir(parents=True, exist_ok=True)
  (out_dir / "layerwise.md").write_text(table)
  paths = _plots(lt, out_dir)
  print(f"wrote {out_dir / 'layerwise.md'} {paths} ({time.time() - t0:.1f} s)")


if __name__ == "__main__":
  main()
