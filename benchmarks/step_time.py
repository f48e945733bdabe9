"""Jitted step time of optzoo optimizers against their optax twins, as ratios.

``PAIRS`` is the table of comparisons: for each, the optzoo optimizer, the optax twin it is
timed against (or a whole training step against ``value_and_grad`` + ``optax.adam``) and the
ratio the issue asks for. Update-only pairs run on a 10M-parameter MLP-shaped pytree. Both
sides of a pair run in the same process, interleaved step by step (``common.paired_times``),
after warm-up; the ratio is the median over >= 30 pairs of (optzoo time / twin time). Results
go to ``benchmarks/results/step_time.md`` with the machine named.

    python benchmarks/step_time.py                # all pairs, 10M params
    python benchmarks/step_time.py --only lion --params 1e6 --pairs 30
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
from typing import Any, Callable

import common
import jax
import jax.numpy as jnp
import numpy as np
import optax

import optzoo
from optzoo import objectives

# A step is a jitted function carry -> carry; the pair times both steps on the same machine.
Step = Callable[[Any], Any]


@dataclasses.dataclass
class Pair:
  """One timed comparison.

  Attributes:
    label: row label, e.g. 'lion vs optax.lion'.
    build: ``build(n_params) -> (step, carry, twin_step, twin_carry)``; each step is a
      jitted ``carry -> carry`` (donating its argument is fine).
    target: the ratio the issue asks for (None: report only).
    gpu_target: the ratio asked for on a GPU, where that differs (None: the same).
  """

  label: str
  build: Callable[[int], tuple[Step, Any, Step, Any]]
  target: float | None = None
  gpu_target: float | None = None
  floor: str = "passes"  # the step's floor: 'passes' (memory-bound) or 'flops' (compute-bound)


def update_only_build(make_opt: Callable[[], optax.GradientTransformation],
                      make_twin: Callable[[], optax.GradientTransformation]):
  """A builder timing ``update + apply_updates`` on fixed random gradients.

  The gradients are fixed (no model), so only the optimizer's own cost is measured.
  """

  def build(n_params: int):
    params = objectives.synthetic_params(n_params, abstract=False)
    grads = jax.tree.map(lambda p: jnp.sin(p * 37.0) * 1e-2, params)

    def make_step(tx):
      def step(carry):
        p, st = carry
        u, st = tx.update(grads, st, p)
        return optax.apply_updates(p, u), st

      return jax.jit(step, donate_argnums=0)

    a, b = make_opt(), make_twin()
    pa = jax.tree.map(jnp.copy, params)
    pb = jax.tree.map(jnp.copy, params)
    return make_step(a), (pa, a.init(pa)), make_step(b), (pb, b.init(pb))

  return build


def adahessian_mlp_build(update_every: int, window: int = 1, batch: int = 128,
                         width: int = 1024, depth: int = 3, in_features: int = 512,
                         twin: str = "adam"):
  """AdaHessian's whole training step on a Flax MLP against ``value_and_grad`` + ``optax.adam``.

  Both steps are jitted ``(params, state) -> (params, state)`` on the same synthetic batch
  (``common.mlp_problem``); the AdaHessian one passes ``obj_fn`` so its Hessian-vector
  product (and the refresh ``lax.cond`` when ``update_every > 1``) is inside the timed step.
  ``n_params`` is ignored: the model is ``in_features -> width x depth -> 10`` (its size is in
  the row label). One timed sample is ``window`` consecutive steps dispatched from Python, so
  with ``update_every = window = 10`` every sample holds exactly one Hessian refresh and nine
  cached steps, and the ratio is that of the mean step time over the window. ``twin='sophia'``
  times against ``optax.contrib.sophia`` refreshing its Hessian estimate as often
  (``update_interval = update_every``), which also takes ``obj_fn``.
  """

  def build(n_params: int):
    del n_params
    xs, ys, params, loss_fn = common.mlp_problem(batch, width, depth, in_features)

    def make_step(tx, needs_obj_fn):
      def one(carry, x, y):
        p, st = carry
        _, g = jax.value_and_grad(loss_fn)(p, x, y)
        extras = {"obj_fn": lambda q: loss_fn(q, x, y)} if needs_obj_fn else {}
        u, st = tx.update(g, st, p, **extras)
        return optax.apply_updates(p, u), st

      one = jax.jit(one, donate_argnums=0)

      def step(carry):
        for _ in range(window):
          carry = one(carry, xs, ys)
        return carry

      step.flops = lambda carry: window * _flops(one.lower(carry, xs, ys))
      return step

    a = optzoo.adahessian(1e-3, update_every=update_every)
    if twin == "sophia":
      b = optax.contrib.sophia(1e-3, update_interval=update_every)
    else:
      b = optax.adam(1e-3)
    pa = jax.tree.map(jnp.copy, params)
    pb = jax.tree.map(jnp.copy, params)
    return (make_step(a, True), (pa, a.init(pa)), make_step(b, twin == "sophia"),
            (pb, b.init(pb)))

  return build


def _flops(lowered) -> float:
  return float(lowered.compile().cost_analysis()["flops"])


def flop_count(step: Any, carry: Any) -> float | None:
  """XLA's flop count of one compiled step (None when it cannot be read)."""
  if hasattr(step, "flops"):
    return step.flops(carry)
  return _flops(step.lower(carry)) if hasattr(step, "lower") else None


def _muon():
  """The D-Muon-like optax.contrib.muon that LANTON is timed against."""
  return optax.contrib.muon(1e-3, beta=0.95, weight_decay=0.1, consistent_rms=0.2,
                            nesterov=False, adam_b1=0.9, adam_b2=0.95)


def _topk_only() -> optax.GradientTransformation:
  """MicroAdam's block top-k selection alone, at microadam's default block size and density:
  the update passes the gradient through and keeps, as its state, the indices selected from
  gradient + params (params stand in for MicroAdam's error feedback: the selection's input must
  change every step, or XLA folds it away as a constant of the fixed gradients)."""
  defaults = inspect.signature(optzoo.microadam).parameters
  block, density = defaults["block_size"].default, defaults["density"].default

  def select(g):
    lay = optzoo.compression.block_layout(g.size, block, density)
    return optzoo.compression.topk_blocks(g.reshape(-1), lay)[0]

  def init(params):
    return jax.tree.map(lambda p: jnp.zeros_like(select(p)), params)

  def update(updates, state, params=None):
    del state
    return updates, jax.tree.map(lambda g, p: select(g + p), updates, params)

  return optax.GradientTransformation(init, update)


def _mlp_params(width: int, depth: int, in_features: int) -> int:
  return in_features * width + width + (depth - 1) * (width * width + width) + width * 10 + 10


_AH = _mlp_params(1024, 3, 512)        # the default adahessian_mlp_build MLP, 2.6M params
_AH_SMALL = _mlp_params(512, 3, 256)   # 256 -> 512 x 3 -> 10, 0.66M params
_VS_ADAM_STEP = "vs value_and_grad+optax.adam"

# Every comparison: the optzoo optimizer, the optax twin it is timed against, the target.
PAIRS: list[Pair] = [
    Pair("lion vs optax.lion",
         update_only_build(lambda: optzoo.lion(1e-3), lambda: optax.lion(1e-3)), target=1.02),
    Pair("avgrad vs optax.amsgrad",
         update_only_build(lambda: optzoo.avgrad(1e-3), lambda: optax.amsgrad(1e-3)),
         target=1.05),
    Pair("mada vs optax.adam",
         update_only_build(lambda: optzoo.mada(1e-3), lambda: optax.adam(1e-3)), target=5.0),
    Pair("metaoptimize vs optax.adam",
         update_only_build(
             lambda: optzoo.metaoptimize(optax.scale_by_adam(), initial_learning_rate=1e-3),
             lambda: optax.adam(1e-3))),
    # LANTON at its defaults: the noise's nuclear norm ('ns') is one more Newton-Schulz pass
    # per matrix than muon's (fused into the same batched call): the floor column shows it.
    Pair("lanton (defaults, dual_norm='ns') vs optax.contrib.muon",
         update_only_build(lambda: optzoo.lanton(1e-3), _muon), target=1.10),
    # The cheap Gram (Schatten-4) estimate of the noise instead: report only, since it misreads
    # the noise of real layers (benchmarks/layerwise.py measures it).
    Pair("lanton (dual_norm='gram') vs optax.contrib.muon",
         update_only_build(lambda: optzoo.lanton(1e-3, dual_norm="gram"), _muon)),
    # <= 6.5x Adam's step on the CPU at 10M params (issue 21: its block top-k alone is ~5.5x),
    # and <= 2x on a GPU at 100M params (`--params 1e8`).
    Pair("microadam vs optax.adam",
         update_only_build(lambda: optzoo.microadam(1e-3), lambda: optax.adam(1e-3)),
         target=6.5, gpu_target=2.0),
    # MicroAdam's exact block top-k alone (jax.lax.top_k at its default layout, plus the
    # params update): the part of its step no reordering of the rest can remove.
    Pair("microadam's block top-k alone vs optax.adam",
         update_only_build(_topk_only, lambda: optax.adam(1e-3))),
    # MADA learning only (b1, b2) (HyperAdam): the other four coefficients are trimmed away.
    Pair("mada (learn b1, b2) vs optax.adam",
         update_only_build(lambda: optzoo.mada(1e-3, learn=("b1", "b2")),
                           lambda: optax.adam(1e-3)), target=2.0),
    # AdaHessian (issue 5): one full step including its HVP, and with the Hessian refreshed
    # every 10th step timed over windows of 10 consecutive steps (one refresh each).
    Pair(f"adahessian step+HVP (MLP {_AH / 1e6:.1f}M, batch 128) {_VS_ADAM_STEP}",
         adahessian_mlp_build(update_every=1), target=2.5, floor="flops"),
    Pair(f"adahessian update_every=10, 10-step windows (MLP {_AH / 1e6:.1f}M) {_VS_ADAM_STEP}",
         adahessian_mlp_build(update_every=10, window=10), target=1.3, floor="flops"),
    # Against optax.contrib.sophia at equal Hessian frequency (both take obj_fn): never slower.
    Pair(f"adahessian step+HVP (MLP {_AH / 1e6:.1f}M) vs optax.contrib.sophia "
         "(update_interval=1)",
         adahessian_mlp_build(update_every=1, twin="sophia"), target=1.0, floor="flops"),
    Pair(f"adahessian update_every=10, 10-step windows (MLP {_AH / 1e6:.1f}M) vs "
         "optax.contrib.sophia (update_interval=10)",
         adahessian_mlp_build(update_every=10, window=10, twin="sophia"), target=1.0,
         floor="flops"),
    # The same on a smaller MLP: the ratio depends on model size, because the HVP's extra
    # matmuls (about 2x a gradient's) dominate only once matmuls dominate the step; at 2.6M
    # params the XLA flop count alone is 2.85x (benchmarks/adahessian_flops.py).
    Pair(f"adahessian step+HVP (MLP {_AH_SMALL / 1e6:.2f}M, batch 128) {_VS_ADAM_STEP}",
         adahessian_mlp_build(update_every=1, width=512, in_features=256), target=2.5,
         floor="flops"),
    Pair(f"adahessian update_every=10, 10-step windows (MLP {_AH_SMALL / 1e6:.2f}M) "
         f"{_VS_ADAM_STEP}",
         adahessian_mlp_build(update_every=10, window=10, width=512, in_features=256),
         target=1.3, floor="flops"),
]


_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
                "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8}
_NO_TRAFFIC = ("parameter", "constant", "tuple", "get-tuple-element", "bitcast")


def _shape_bytes(text: str) -> int:
  return sum(_DTYPE_BYTES.get(dt, 4) * int(np.prod([int(d) for d in dims.split(",") if d]))
             for dt, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text))


def memory_passes(step: Any, carry: Any, n_params: int, min_bytes: int = 1 << 16) -> float | None:
  """Bytes the compiled step moves, in passes over a float32 param vector (a traffic model).

  Every top-level instruction of the compiled entry computation (a fusion, copy, reduction,
  library call) is counted as reading each array operand once and writing its result once;
  arrays under ``min_bytes`` are ignored. On XLA:CPU, which gives every param-sized output its
  own loop over memory, this counts how many times the step streams param-sized arrays; the
  twin's count is the yardstick. None when ``step`` is not a jitted function.
  """
  if not hasattr(step, "lower"):
    return None
  text = step.lower(carry).compile().as_text()
  entry = text[text.index("\nENTRY"):]
  entry = entry[:entry.index("\n}")]
  sizes: dict[str, int] = {}
  moved = 0
  for line in entry.splitlines()[1:]:
    m = re.match(r"\s*(?:ROOT )?%(\S+) = (.*?) ([a-z][\w-]*)\((.*?)\)(?:,|$)", line)
    if not m:
      continue
    name, shape, op, args = m.groups()
    sizes[name] = _shape_bytes(shape)
    if op in _NO_TRAFFIC:
      continue
    for b in [sizes.get(a, 0) for a in re.findall(r"%([\w.\-]+)", args)] + [sizes[name]]:
      moved += b if b >= min_bytes else 0
  return moved / (4 * n_params)


def temp_mib(step: Any, carry: Any) -> float | None:
  """MiB of the temporary buffer XLA allocates for one execution of the compiled step
  (``memory_analysis``): arrays that are neither arguments nor results. None when ``step`` is
  not a jitted function."""
  if not hasattr(step, "lower"):
    return None
  return step.lower(carry).compile().memory_analysis().temp_size_in_bytes / 2**20


def page_faults_per_step(step: Any, carry: Any, n: int = 5) -> tuple[tuple | None, Any]:
  """``(MiB, kernel ms)`` per step: the fresh memory pages this process touched (minor page
  faults times the page size) and the CPU time it spent in the kernel (``getrusage``, over
  ``n`` steps), and the carry after them. On XLA:CPU a step's temporary buffer is allocated on
  every execution (one of tens of MiB is mapped fresh each time), so this is its page-fault
  cost; None where ``resource`` is missing (Windows)."""
  try:
    import resource  # noqa: PLC0415
  except ImportError:
    return None, carry
  start = resource.getrusage(resource.RUSAGE_SELF)
  for _ in range(n):
    carry = jax.block_until_ready(step(carry))
  end = resource.getrusage(resource.RUSAGE_SELF)
  mib = (end.ru_minflt - start.ru_minflt) * resource.getpagesize() / 2**20 / n
  return (mib, (end.ru_stime - start.ru_stime) * 1e3 / n), carry


def time_pair(pair: Pair, n_params: int, n_pairs: int = 30, warmup: int = 3) -> dict:
  step_a, carry_a, step_b, carry_b = pair.build(n_params)
  temps = (temp_mib(step_a, carry_a), temp_mib(step_b, carry_b))
  passes = (memory_passes(step_a, carry_a, n_params), memory_passes(step_b, carry_b, n_params))
  flops = (flop_count(step_a, carry_a), flop_count(step_b, carry_b))
  pair_floor = passes if pair.floor == "passes" else flops
  floor = (None if None in pair_floor or not pair_floor[1]
           else float(pair_floor[0] / pair_floor[1]))
  t, carries = common.paired_times({"a": step_a, "b": step_b}, {"a": carry_a, "b": carry_b},
                                   n_pairs, warmup)
  faults = (page_faults_per_step(step_a, carries["a"])[0],
            page_faults_per_step(step_b, carries["b"])[0])
  gpu = pair.gpu_target is not None and common.on_gpu()
  return {
      "label": pair.label,
      "ms": float(np.median(t["a"]) * 1e3),
      "twin_ms": float(np.median(t["b"]) * 1e3),
      "ratio": float(np.median(t["a"] / t["b"])),
      "target": pair.gpu_target if gpu else pair.target,
      "gpu_target": pair.gpu_target,
      "passes": passes,
      "flops": flops,
      "floor": floor,
      "floor_kind": pair.floor,
      "temp_mib": temps,
      "faulted_mib": tuple(None if f is None else f[0] for f in faults),
      "kernel_ms": tuple(None if f is None else f[1] for f in faults),
  }


def _pair_text(pair: tuple, fmt: str) -> str:
  a, b = pair
  return "" if a is None or b is None else f"{a:{fmt}} / {b:{fmt}}"


def _table_row(r: dict) -> str:
  """One row of the results table."""
  tgt = "" if r["target"] is None else f"<= {r['target']}"
  if r.get("gpu_target") is not None and not common.on_gpu():
    tgt = f"(GPU: <= {r['gpu_target']})"
  floor = "" if r["floor"] is None else f"{r['floor']:.2f} ({r['floor_kind']})"
  gap = "" if r["floor"] is None else f"{r['ratio'] / r['floor']:.2f}"
  return (f"| {r['label']} | {r['ms']:.2f} | {r['twin_ms']:.2f} | {r['ratio']:.3f} | {tgt} | "
          f"{r['ok']} | {_pair_text(r['passes'], '.1f')} | {floor} | {gap} | "
          f"{_pair_text(r['temp_mib'], '.1f')} | {_pair_text(r['faulted_mib'], '.1f')} | "
          f"{_pair_text(r['kernel_ms'], '.1f')} |")


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--params", type=float, default=1e7, help="parameters of the pytree (10M)")
  ap.add_argument("--pairs", type=int, default=30, help="paired timed steps (>= 30)")
  ap.add_argument("--only", nargs="*", help="substrings of the labels to run")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  n = int(args.params)
  pairs = PAIRS
  if args.only:
    pairs = [p for p in pairs if any(s in p.label for s in args.only)]
  rows = []
  for pair in pairs:
    r = time_pair(pair, n, args.pairs)
    ok = "" if r["target"] is None else ("yes" if r["ratio"] <= r["target"] else "NO")
    r["ok"] = ok
    rows.append(r)
    print(f"{r['label']:<48} {r['ms']:9.2f} ms  twin {r['twin_ms']:9.2f} ms  "
          f"ratio {r['ratio']:.3f}  target {r['target']}  {ok}", flush=True)
  lines = [
      "# Step time against the optax twin",
      "",
      f"Machine: {common.machine_name()}. Pytree: {n:,} parameters (MLP-shaped, float32), "
      f"median over {args.pairs} paired jitted steps after warm-up, `block_until_ready`.",
      "Ratio = median of per-pair (optzoo / twin); < 1 is faster than the twin.",
      "Generated by `python benchmarks/step_time.py`.",
      "",
      "| comparison | optzoo ms | twin ms | ratio | target | met | passes (optzoo / twin) | "
      "floor | ratio / floor | temp MiB (optzoo / twin) | faulted MiB/step (optzoo / twin) | "
      "kernel ms/step (optzoo / twin) |",
      "|---|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|",
  ]
  lines += [_table_row(r) for r in rows]
  lines += ["", "Passes: bytes the compiled step reads and writes, counting every top-level "
            "instruction (fusion, copy, reduction) as reading its operands once and writing its "
            "result once, divided by the bytes of one float32 copy of the params "
            "(`memory_passes`; blank where the timed step is a Python loop). XLA:CPU gives every "
            "param-sized output its own loop, so a step that keeps more state streams memory "
            "more often; the ratio of passes predicts the ratio of times of memory-bound steps.",
            "", "Floor: the ratio optzoo / twin of the step's memory passes (memory-bound "
            "optimizer updates) or of XLA's flop count (`cost_analysis`, for whole training "
            "steps with Hessian-vector products); 'ratio / floor' is the gap between the time "
            "ratio and that floor (1.00: at the floor).",
            "", "Temp: the temporary buffer XLA allocates for one execution of the compiled step "
            "(`memory_analysis`: every array that is neither an argument nor a result). Faulted: "
            "fresh memory pages the process touched per step (minor page faults times the page "
            "size) and kernel: the CPU time it spent in the kernel per step (`getrusage`, 5 "
            "steps after the timed ones; both cores count). XLA:CPU allocates a step's temporary "
            "buffer on every execution, and one this large is mapped fresh from the kernel each "
            "time, so the step pays the kernel's page faults on every step: time that neither "
            "passes nor flops count."]
  if any(r.get("gpu_target") is not None for r in rows) and not common.on_gpu():
    lines += ["", "Targets in parentheses apply on a GPU (at `--params 1e8`); no GPU was "
              "measured in this run, so they are not checked here."]
  common.write("step_time.md", "\n".join(lines) + "\n", args.out)
  return rows


if __name__ == "__main__":
  main()
