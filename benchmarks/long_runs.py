"""Long runs in the precision people train in: every registry optimizer trains the char-level
transformer (workloads.charlm) for ``--steps`` steps (default 5,000) twice, with float32
params and with bfloat16 params (float32 state where the optimizer has a ``mu_dtype`` option).

Each run uses the entry's toy settings with its learning rate on the budget rule's warmup +
cosine schedule, minibatches of the workload, one seed; curvature methods get the minibatch loss
as ``obj_fn``. Checked for every run: no NaN or Inf in the training losses or the final params;
bfloat16's final validation loss within 5% of float32's; MetaOptimize's learned step size stays
finite and positive and inside ``log_lr_bounds`` when given (its docstring's only bounds), and
LANTON's layer rates stay in ``[r_min, r_max]`` at every step.

Writes ``long_runs.md`` (and ``long_runs.png``, the training-loss curves) into ``--out``
(``--quick``: ``long_runs_quick.*``, 20 steps of MetaOptimize and LANTON only; the test suite
runs it). Run: ``python benchmarks/long_runs.py [--steps N] [--only NAME ...] [--quick]``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import common
from optzoo import registry, training, workloads

QUICK = ("metaoptimize", "lanton")  # the two whose bounds are watched
TOLERANCE = 0.05  # bf16 final validation loss within 5% of f32's


def make_optimizer(entry, dtype, steps):
  """The entry's toy optimizer, its learning rate on the budget schedule (MetaOptimize's
  initial step size is learned, not scheduled), float32 moments for bfloat16 params where the
  factory has ``mu_dtype``."""
  kwargs = dict(entry.toy_kwargs)
  if entry.lr_arg == "learning_rate" and not callable(kwargs[entry.lr_arg]):
    peak, sched = kwargs[entry.lr_arg], common.schedule(steps)
    kwargs[entry.lr_arg] = lambda t: peak * sched(t)
  if dtype != jnp.float32 and "mu_dtype" in inspect.signature(entry.factory).parameters:
    kwargs["mu_dtype"] = jnp.float32
  return entry.factory(**kwargs)


def _watch(state):
  """``(low, high)`` of what the run must keep in bounds: MetaOptimize's learned step sizes,
  LANTON's layer rates (NaN, NaN when the state has neither)."""
  for name, fn in (("log_learning_rate", jnp.exp), ("rates", lambda x: x)):
    try:
      leaves = jax.tree.leaves(optax.tree.get(state, name))
    except (KeyError, ValueError):
      continue
    if leaves:
      flat = jnp.concatenate([fn(jnp.ravel(x).astype(jnp.float32)) for x in leaves])
      return jnp.stack([jnp.min(flat), jnp.max(flat)])
  return jnp.full((2,), jnp.nan, jnp.float32)


def train(entry, wl, dtype, steps, chunk=250):
  """One run: ``{'loss': per-step training loss, 'watch': (steps, 2), 'val': final validation
  loss, 'finite': bool, 'seconds': float}``."""
  key = jax.random.PRNGKey(0)
  params = jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                        else x, wl.init(key))
  tx = make_optimizer(entry, dtype, steps)
  state = tx.init(params)

  def one(carry, t):
    p, s = carry
    batch = wl.batch_fn(jax.random.fold_in(key, t), t)

    def loss(q):
      return wl.loss(q, batch)

    value, grads = jax.value_and_grad(loss)(p)
    u, s = tx.update(grads, s, p, **training.extra_kwargs(entry.extra_args, loss, value))
    return (optax.apply_updates(p, u), s), (value.astype(jnp.float32), _watch(s))

  @jax.jit
  def run_chunk(p, s, t0):
    return jax.lax.scan(one, (p, s), t0 + jnp.arange(chunk))

  t0 = time.perf_counter()
  losses, watch = [], []
  for start in range(0, steps, chunk):
    (params, state), (l, w) = run_chunk(params, state, start)
    losses.append(np.asarray(l))
    watch.append(np.asarray(w))
  loss = np.concatenate(losses)[:steps]
  val = float(wl.eval_fn(params)["loss"])
  finite = bool(np.all(np.isfinite(loss)) and np.isfinite(val) and all(
      bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(params)
      if jnp.issubdtype(x.dtype, jnp.floating)))
  return {"loss": loss, "watch": np.concatenate(watch)[:steps], "val": val, "finite": finite,
          "seconds": time.perf_counter() - t0}


def bounds_ok(entry, watch) -> tuple[bool, str]:
  """Whether the watched quantity stayed within the bounds the docstring states."""
  if np.all(np.isnan(watch)):
    return True, "-"
  lo, hi = float(np.min(watch[:, 0])), float(np.max(watch[:, 1]))
  kw = entry.toy_kwargs
  if entry.name == "metaoptimize":
    bounds = kw.get("log_lr_bounds") or (None, None)
    low = 0.0 if bounds[0] is None else float(np.exp(bounds[0]))
    high = np.inf if bounds[1] is None else float(np.exp(bounds[1]))
    ok = np.isfinite(lo) and np.isfinite(hi) and low < lo and hi <= high * (1 + 1e-6)
    return bool(ok), f"step size in [{lo:.3g}, {hi:.3g}]"
  r_min, r_max = kw.get("r_min", 0.05), kw.get("r_max", 1.0)
  ok = lo >= r_min * (1 - 1e-6) and hi <= r_max * (1 + 1e-6)
  return bool(ok), f"rates in [{lo:.3g}, {hi:.3g}] (bounds [{r_min}, {r_max}])"


def report(rows, steps, wl, seconds) -> str:
  lines = [
      "# Long runs: float32 vs bfloat16 params", "",
      f"Every optimizer trains {wl.description} for {steps} steps, once with float32 params and "
      "once with bfloat16 params (float32 moments where the optimizer has `mu_dtype`); toy "
      "settings, learning rate on the warmup + cosine schedule, one seed. Final validation "
      f"loss in nats/byte; ratio = bf16 / f32 (required within {TOLERANCE:.0%}). "
      f"Machine: {common.machine_name()}; {seconds:.0f} s in all. Written by "
      "`benchmarks/long_runs.py`.", "",
      "| optimizer | f32 val loss | bf16 val loss | bf16 / f32 | no NaN/Inf | bounds | holds |",
      "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(f"| {r['name']} | {r['f32']:.4f} | {r['bf16']:.4f} | {r['ratio']:.3f} | "
                 f"{'yes' if r['finite'] else 'NO'} | {r['bounds']} | "
                 f"{'yes' if r['holds'] else 'NO'} |")
  return "\n".join(lines) + "\n"


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--steps", type=int, default=5000)
  ap.add_argument("--only", nargs="*", help="registry names (default: all)")
  ap.add_argument("--quick", action="store_true", help="20 steps of MetaOptimize and LANTON")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  steps = 20 if args.quick else args.steps
  names = QUICK if args.quick else (args.only or registry.names())
  chunk = min(250, steps)
  steps = -(-steps // chunk) * chunk
  wl = workloads.charlm(steps, eval_every=chunk)
  t0 = time.perf_counter()
  rows, curves = [], {}
  for name in names:
    entry = registry.get(name)
    runs = {d: train(entry, wl, dt, steps, chunk)
            for d, dt in (("f32", jnp.float32), ("bf16", jnp.bfloat16))}
    checks = [bounds_ok(entry, runs[d]["watch"]) for d in runs]
    ratio = runs["bf16"]["val"] / runs["f32"]["val"]
    finite = runs["f32"]["finite"] and runs["bf16"]["finite"]
    row = {"name": name, "f32": runs["f32"]["val"], "bf16": runs["bf16"]["val"], "ratio": ratio,
           "finite": finite, "bounds": "; ".join(c[1] for c in checks),
           "bounds_ok": all(c[0] for c in checks),
           "seconds": [runs[d]["seconds"] for d in runs]}
    row["holds"] = finite and row["bounds_ok"] and abs(ratio - 1) <= TOLERANCE
    rows.append(row)
    curves[name] = {d: runs[d]["loss"] for d in runs}
    print("OPTZOO-LONG " + json.dumps(row), flush=True)
  prefix = "long_runs_quick" if args.quick else "long_runs"
  common.write(f"{prefix}.md", report(rows, steps, wl, time.perf_counter() - t0), args.out)
  plt = common.pyplot()
  fig, axes = plt.subplots(1, len(curves), figsize=(3.2 * len(curves), 2.8), squeeze=False)
  for ax, (name, c) in zip(axes[0], curves.items()):
    for d, loss in c.items():
      k = max(1, len(loss) // 100)
      ax.plot(np.arange(len(loss))[::k], loss[::k], label=d, lw=1)
    ax.set_title(name, fontsize=8)
    ax.legend(fontsize=7)
  common.savefig(fig, f"{prefix}.png", args.out, bbox_inches="tight")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
