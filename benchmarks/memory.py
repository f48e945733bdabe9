"""Optimizer memory per parameter of every registry optimizer and optax baselines: the state
kept between steps, the temporaries of the compiled update, and their sum, the peak.

Each optimizer is built with its required arguments only (taken from the registry entry's
toy kwargs: learning rate, base optimizer, ...) so every other hyperparameter is at its
default, and measured abstractly on a 10M-parameter MLP-shaped pytree (nothing is allocated):
its state with ``jax.eval_shape(tx.init, params)`` (exact), and the temporaries of its update
with XLA's memory analysis of ``jax.jit(tx.update, donate_argnums=(grads, state))`` compiled
for this machine's default device (``optzoo.temp_bytes_per_param(..., donate=True)``;
``obj_fn`` is a sum of squares, so a real model's activations in a Hessian-vector product come
on top). The peak is state + temporaries. MicroAdam's peak is also measured at 100M
parameters. A second table measures a whole training step (``training_step_peak``): the
leaderboard's character-level transformer scaled to about 10M parameters, one jitted
``value_and_grad`` + update + ``apply_updates`` with params and state donated, for
``optax.adam``, ``optax.adafactor`` and ``optzoo.microadam``. Writes
``benchmarks/results/memory.md`` and ``memory.png``.

    python benchmarks/memory.py            # 10M parameters (and 100M for MicroAdam)
    python benchmarks/memory.py --quick    # 1M parameters, a 1-block transformer

The optax optimizers measured beside the zoo are ``OPTAX``, at their defaults too (their
learning rate does not change the state).
"""

from __future__ import annotations

import argparse
import inspect

import common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optzoo
from optzoo import models, objectives, registry

#: optax optimizers measured beside the zoo.
OPTAX = {
    "optax.adam": lambda: optax.adam(1e-3),
    "optax.lion": lambda: optax.lion(1e-3),
    "optax.adafactor": lambda: optax.adafactor(1e-3),
}


#: registry optimizers in a non-default setting, measured beside them: (name, family, make)
VARIANTS = [
    ('mada learn=("b1", "b2")', "meta",
     lambda: optzoo.mada(1e-3, learn=("b1", "b2"))),
]


def at_defaults(entry: registry.Entry) -> optax.GradientTransformation:
  """The entry's optimizer with only its required arguments (from toy_kwargs) passed."""
  sig = inspect.signature(entry.factory)
  required = [n for n, p in sig.parameters.items()
              if p.default is inspect.Parameter.empty
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
  kw = {n: entry.toy_kwargs[n] for n in required if n in entry.toy_kwargs}
  return entry.factory(**kw)


def measure(n_params: int) -> list[dict]:
  params = objectives.synthetic_params(n_params)
  n = sum(int(p.size) for p in jax.tree.leaves(params))
  rows = []
  subjects = [(e.name, e.family, lambda e=e: at_defaults(e), e.extra_args)
              for e in registry.ENTRIES]
  subjects += [(name, "optax baseline", make, ()) for name, make in OPTAX.items()]
  subjects += [(name, family, make, ()) for name, family, make in VARIANTS]
  for name, family, make, extra_args in subjects:
    try:
      tx = make()
      bpp = optzoo.bytes_per_param(tx, params)
      temp = optzoo.temp_bytes_per_param(tx, params, extra_args, donate=True)
      err = ""
    except Exception as e:  # noqa: BLE001 - reported in the table, the others still run
      bpp, temp, err = float("nan"), float("nan"), f"{type(e).__name__}: {e}"
    rows.append({"name": name, "family": family, "bpp": bpp, "mib": bpp * n / 2**20,
                 "temp": temp, "temp_mib": temp * n / 2**20, "error": err})
    print(f"{name:<28} {bpp:8.4f} B/param state  {temp:8.3f} B/param update temporaries",
          err, flush=True)
  return rows, n


def microadam_peak(n_params: int) -> float:
  """MicroAdam's peak bytes/param (state + donated update temporaries) at ``n_params``."""
  params = objectives.synthetic_params(n_params)
  tx = optzoo.microadam(1e-3)
  return optzoo.bytes_per_param(tx, params) + optzoo.temp_bytes_per_param(tx, params,
                                                                         donate=True)


def char_transformer(layers: int, width: int, seq: int, vocab: int = 128, heads: int = 8):
  """The leaderboard's char-level LM with ``layers`` blocks (``optzoo.models.char_lm``):
  ``(loss(params, windows), abstract params)``."""
  from flax import nnx  # noqa: PLC0415

  def build():
    return models.char_lm(nnx.Rngs(0), vocab=vocab, width=width, heads=heads, seq=seq,
                          layers=layers)

  graphdef, params = nnx.split(nnx.eval_shape(build), nnx.Param)

  def loss(p, windows):
    logits = nnx.merge(graphdef, p)(windows[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, windows[:, 1:]).mean()

  return loss, params


def training_step_peak(tx, loss, params, windows) -> float:
  """Peak bytes of one jitted training step (``value_and_grad`` + update + ``apply_updates``,
  params and state donated), from XLA's memory analysis: arguments + outputs - the outputs
  that reuse donated arguments + temporaries."""
  def step(p, state, batch):
    value, grads = jax.value_and_grad(loss)(p, batch)
    updates, state = tx.update(grads, state, p)
    return optax.apply_updates(p, updates), state, value

  state = jax.eval_shape(tx.init, params)
  m = jax.jit(step, donate_argnums=(0, 1)).lower(params, state, windows).compile()
  m = m.memory_analysis()
  return (m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
          + m.temp_size_in_bytes)


#: the whole-step subjects (name -> optimizer)
STEP_SUBJECTS = {
    "optax.adam": lambda: optax.adam(1e-3),
    "optax.adafactor": lambda: optax.adafactor(1e-3),
    "microadam": lambda: optzoo.microadam(1e-3),
}


def measure_step(quick: bool) -> tuple[list[dict], dict]:
  shape = dict(layers=1, width=128, seq=32, batch=8) if quick else \
      dict(layers=3, width=512, seq=128, batch=8)
  loss, params = char_transformer(shape["layers"], shape["width"], shape["seq"])
  n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  windows = jax.ShapeDtypeStruct((shape["batch"], shape["seq"] + 1), jnp.int32)
  rows = []
  for name, make in STEP_SUBJECTS.items():
    tx = make()
    peak = training_step_peak(tx, loss, params, windows) / n
    rows.append({"name": name, "peak": peak, "state": optzoo.bytes_per_param(tx, params)})
    print(f"training step {name:<16} peak {peak:8.3f} B/param", flush=True)
  return rows, {**shape, "n": n}


def table_lines(rows: list[dict], n: int, micro_100m: float | None = None,
                step_rows: list[dict] = (), step_shape: dict | None = None) -> list[str]:
  """memory.md's text below its title: the peak table, MicroAdam at 100M, the training step."""
  adam = next(r for r in rows if r["name"] == "optax.adam")
  adam_peak = adam["bpp"] + adam["temp"]
  lines = [
      f"Machine: {common.machine_name()}. Pytree: {n:,} float32 parameters "
      "(`objectives.synthetic_params`, MLP-shaped), state measured with "
      "`jax.eval_shape(tx.init, params)` and `optzoo.state_bytes`; update temporaries with "
      "`optzoo.temp_bytes_per_param(..., donate=True)` (XLA's memory analysis of the compiled "
      "`tx.update` with the gradients and the state donated, on this machine's default device; "
      "`obj_fn` a sum of squares, so no model activations); peak = state + temporaries.",
      "Each optimizer at its defaults (only required arguments passed, from the registry).",
      "Generated by `python benchmarks/memory.py`.",
      "",
      "| optimizer | family | state bytes / param | update temp bytes / param (donated) "
      "| peak bytes / param | peak vs optax.adam | peak MiB |",
      "|---|---|---:|---:|---:|---:|---:|",
  ]
  for r in sorted(rows, key=lambda r: (r["bpp"] != r["bpp"], r["bpp"] + r["temp"])):
    if r["error"]:
      lines.append(f"| {r['name']} | {r['family']} | error: {r['error']} | | | | |")
      continue
    peak = r["bpp"] + r["temp"]
    lines.append(f"| {r['name']} | {r['family']} | {r['bpp']:.3f} | {r['temp']:.3f} | "
                 f"{peak:.3f} | {peak / adam_peak:.3f} | {r['mib'] + r['temp_mib']:.1f} |")
  if micro_100m is not None:
    lines += ["", f"MicroAdam at 100,000,000 parameters (same pytree shape, same measure): peak "
              f"{micro_100m:.3f} bytes / param."]
  if step_rows:
    sa = next(r["peak"] for r in step_rows if r["name"] == "optax.adam")
    lines += [
        "",
        "## A whole training step",
        "",
        f"The leaderboard's character-level transformer (`optzoo.models.char_lm`, the "
        f"architecture of `workloads.charlm`) with "
        f"{step_shape['layers']} blocks, width {step_shape['width']}, sequence "
        f"{step_shape['seq']}, batch {step_shape['batch']}: {step_shape['n']:,} float32 "
        "parameters. One jitted `value_and_grad` + `tx.update` + `optax.apply_updates`, params "
        "and state donated; peak = arguments + outputs - outputs aliased to donated arguments + "
        "temporaries (XLA's memory analysis; activations included).",
        "",
        "| optimizer | state bytes / param | step peak bytes / param | minus optax.adam's |",
        "|---|---:|---:|---:|",
    ]
    for r in step_rows:
      lines.append(f"| {r['name']} | {r['state']:.3f} | {r['peak']:.3f} | {r['peak'] - sa:+.3f} |")
  return lines


def write(rows: list[dict], n: int, out, micro_100m: float | None = None,
          step_rows: list[dict] = (), step_shape: dict | None = None) -> None:
  lines = ["# Optimizer memory: state, update temporaries and peak", ""]
  lines += table_lines(rows, n, micro_100m, step_rows, step_shape)
  common.write("memory.md", "\n".join(lines) + "\n", out)

  plt = common.pyplot()
  ok = sorted([r for r in rows if not r["error"]], key=lambda r: r["bpp"] + r["temp"])
  fig, ax = plt.subplots(figsize=(8, 0.35 * len(ok) + 1.5))
  colors = ["tab:gray" if r["family"] == "optax baseline" else
            "tab:green" if r["name"] == "microadam" else "tab:blue" for r in ok]
  names = [r["name"] for r in ok]
  ax.barh(names, [r["bpp"] for r in ok], color=colors, label="state")
  ax.barh(names, [r["temp"] for r in ok], left=[r["bpp"] for r in ok], color=colors, alpha=0.35,
          hatch="//", label="update temporaries (donated)")
  for i, r in enumerate(ok):
    ax.text(r["bpp"] + r["temp"], i, f" {r['bpp']:.2f} + {r['temp']:.2f}", va="center",
            fontsize=8)
  ax.set_xlabel("bytes per parameter: state (solid) + donated update temporaries (hatched)")
  ax.set_title(f"Optimizer memory, {n / 1e6:.0f}M float32 params (gray: optax)", fontsize=10)
  ax.set_xlim(0, max(r["bpp"] + r["temp"] for r in ok) * 1.3)
  fig.tight_layout()
  common.savefig(fig, "memory.png", out)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--params", type=float, default=1e7, help="parameters of the pytree (10M)")
  ap.add_argument("--quick", action="store_true", help="1M parameters")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  rows, n = measure(int(1e6 if args.quick else args.params))
  micro_100m = None if args.quick else microadam_peak(100_000_000)
  if micro_100m is not None:
    print(f"microadam at 100M: peak {micro_100m:.3f} B/param", flush=True)
  step_rows, step_shape = measure_step(args.quick)
  write(rows, n, args.out, micro_100m, step_rows, step_shape)
  return rows


if __name__ == "__main__":
  main()
