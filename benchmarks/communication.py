"""Collective traffic of every optimizer's update on the sharded example's mesh, measured from
the compiled HLO.

The setup is ``examples/sharded_training.py``'s (loaded with ``runpy``, so the two cannot drift
apart): the nnx transformer of ``optzoo.models``, params split FSDP-style over ``'fsdp'`` (4)
and the batch over ``('data', 'fsdp')`` (2 x 4 = 8 devices). For each registry optimizer, and
``optax.adam`` / ``optax.sgd`` for scale, two functions are compiled with their inputs and
outputs pinned to the params' and state's shardings (so any resharding is inside them):

* the update alone, ``(grads, state, params) -> (params, state)`` with grads sharded like the
  params (curvature optimizers also get ``obj_fn``, the batch loss, whose Hessian-vector
  products run the model);
* the whole training step (forward, backward, update).

Every collective of the partitioned HLO (all-gather, all-reduce, reduce-scatter, all-to-all,
collective-permute) is counted at the per-device bytes of its larger side (operand or result):
an all-gather of a whole param from its shards counts that param's bytes once. An op inside a
``while`` loop counts once per iteration where XLA knows the trip count (else once, flagged);
both branches of a ``conditional`` count (an upper bound). Totals are divided by the bytes of
all params (unsharded), so 1.0 is one param-sized collective per param.

    python benchmarks/communication.py          # 8 simulated CPU devices unless XLA_FLAGS says
    python benchmarks/communication.py --only lion lanton
"""

from __future__ import annotations

import os

# Before jax is imported: 8 simulated CPU devices (no effect if already set, or on GPUs).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import collections  # noqa: E402
import dataclasses  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import runpy  # noqa: E402

import common  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from optzoo import registry, training  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "sharded_training.py"
#: Arrays this small in a collective are scalars or per-layer statistics, not param-shaped: the
#: model's smallest param leaf has 16 elements (its shards 4).
MIN_ELEMENTS = 16
KINDS = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "bf16": 2, "f16": 2, "s16": 2, "u16": 2,
                "f32": 4, "s32": 4, "u32": 4, "f64": 8, "s64": 8, "u64": 8, "c64": 8,
                "c128": 16}


# ----------------------------------------------------------------------------- HLO parsing
def _arrays(text: str) -> list[tuple[int, int]]:
  """``(elements, bytes)`` of every array shape in ``text``."""
  out = []
  for dt, dims in re.findall(r"\b([a-z]+\d*)\[([\d,]*)\]", text):
    n = int(np.prod([int(d) for d in dims.split(",") if d]))
    out.append((n, _DTYPE_BYTES.get(dt, 4) * n))
  return out


def _bytes(text: str, min_elements: int = 0) -> int:
  return sum(b for n, b in _arrays(text) if n >= min_elements)


def _computations(hlo: str) -> dict[str, list[str]]:
  comps, name = {}, None
  for line in hlo.splitlines():
    m = re.match(r"(?:ENTRY )?%?([\w.\-]+) \(.*\{$", line)
    if m and not line.startswith(" "):
      name = m.group(1)
      comps[name] = []
      if line.startswith("ENTRY"):
        comps["__entry__"] = comps[name]
    elif name is not None and line.startswith("  "):
      comps[name].append(line)
  return comps


def _multipliers(comps: dict[str, list[str]]) -> tuple[dict[str, int], bool]:
  """How often each computation runs per call of the entry (while bodies times their known
  trip count); whether some loop's trip count is unknown (then counted once)."""
  mult = collections.defaultdict(int)
  unknown = False
  entry = next(k for k, v in comps.items() if v is comps["__entry__"] and k != "__entry__")
  stack = [(entry, 1)]
  while stack:
    name, m = stack.pop()
    mult[name] += m
    for line in comps.get(name, ()):
      called = re.findall(r"(?:body|condition|to_apply|calls|branch_computations|"
                          r"true_computation|false_computation)=(\{[^}]*\}|%?[\w.\-]+)", line)
      names = [c.strip(" {}%") for group in called for c in group.split(",")]
      if " while(" in line:
        trip = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
        unknown |= trip is None
        k = int(trip.group(1)) if trip else 1
        body = re.search(r"body=%?([\w.\-]+)", line).group(1)
        stack += [(n, m * (k if n == body else k + 1)) for n in names]
      elif re.search(r" (?:fusion|all-reduce|reduce-scatter|reduce|map|sort|scatter|"
                     r"select-and-scatter|reduce-window)\(", line):
        continue  # called computations of these are scalar reducers or fused bodies
      else:
        stack += [(n, m) for n in names]
  return mult, unknown


def collective_bytes(hlo: str) -> tuple[dict[str, int], int, int, bool]:
  """Per-device bytes of each kind of collective in compiled ``hlo`` (loop-weighted); the same
  total counting only arrays of at least :data:`MIN_ELEMENTS` elements (param-shaped traffic,
  not the scalars and per-layer statistics XLA combines into one tuple all-reduce); the largest
  single collective; whether a loop had an unknown trip count."""
  comps = _computations(hlo)
  mult, unknown = _multipliers(comps)
  out = dict.fromkeys(KINDS, 0)
  large = largest = 0
  for name, lines in comps.items():
    if name == "__entry__" or not mult.get(name):
      continue
    for line in lines:
      m = re.match(r"\s*(?:ROOT )?%\S+ = (.*?) (" + "|".join(KINDS) + r")(-start)?\((.*)", line)
      if not m:
        continue
      result, kind, _, rest = m.groups()
      operands = rest.split("), ")[0]
      b = max(_bytes(result), _bytes(operands))
      out[kind] += b * mult[name]
      large += max(_bytes(result, MIN_ELEMENTS), _bytes(operands, MIN_ELEMENTS)) * mult[name]
      largest = max(largest, b)
  return out, large, largest, unknown


# ----------------------------------------------------------------------------- measurement
@dataclasses.dataclass
class Row:
  name: str
  update: dict[str, int]
  update_large: int
  update_largest: int
  step_total: int
  loops_unknown: bool


def measure(name, tx, extra_args, ex, prob, mesh) -> Row:
  """Compiles ``tx``'s update and whole step on the example's mesh and counts collectives."""
  params, frozen, batch = prob.params, prob.frozen, prob.batch
  param_sh = jax.tree.map(lambda p: p.sharding, params)
  state_sh = ex["state_shardings"](tx, params, mesh)
  abstract_state = jax.eval_shape(tx.init, params)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       abstract_state, state_sh)
  grads = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding),
                       params)

  def update(grads, state, params, frozen, batch):
    def loss(p):
      return ex["loss_fn"](prob.graphdef, p, frozen, batch)

    value = loss(params) if "value" in extra_args else None
    u, state = tx.update(grads, state, params, **training.extra_kwargs(extra_args, loss, value))
    return optax.apply_updates(params, u), state

  upd = jax.jit(update, out_shardings=(param_sh, state_sh))
  hlo = upd.lower(grads, state, params, frozen, batch).compile().as_text()
  per_kind, large, largest, unknown = collective_bytes(hlo)
  step = ex["make_step"](tx, prob.graphdef, extra_args, out_shardings=(param_sh, state_sh, None))
  step_hlo = step.lower(params, state, frozen, batch).compile().as_text()
  step_kinds, _, _, unknown_step = collective_bytes(step_hlo)
  return Row(name, per_kind, large, largest, sum(step_kinds.values()), unknown or unknown_step)


def table(rows: list[Row], param_bytes: int, largest_param: int) -> list[str]:
  lines = ["| optimizer | " + " | ".join(KINDS) + " | update total | of which arrays >= "
           f"{MIN_ELEMENTS} elements | largest op / largest param | whole step | "
           "step - adam's step |",
           "|---|" + "---:|" * (len(KINDS) + 5)]
  adam = next((r.step_total for r in rows if r.name == "optax.adam"), 0)
  for r in rows:
    cells = [f"{r.update[k] / param_bytes:.3f}" for k in KINDS]
    total = sum(r.update.values()) / param_bytes
    flag = " (loop count unknown)" if r.loops_unknown else ""
    lines.append(f"| {r.name}{flag} | " + " | ".join(cells) + f" | **{total:.3f}** | "
                 f"{r.update_large / param_bytes:.3f} | "
                 f"{r.update_largest / largest_param:.2f} | {r.step_total / param_bytes:.3f} | "
                 f"{(r.step_total - adam) / param_bytes:+.3f} |")
  return lines


NOTES = [
    "## Reading the table",
    "",
    "- **Element-wise optimizers** (Lion, AVGrad, MADA, MetaOptimize over Adam, the layerwise "
    "wrapper): no param-shaped collective in the update. What they do move is scalars and "
    "per-layer statistics (MADA's hypergradient inner products, MetaOptimize's meta-gradient, "
    "the per-layer noise norms of `noise_adaptive_layerwise`), which XLA combines into a few "
    "small all-reduces: a fixed number of bytes that looks large only against this model's 11 KB "
    "of params. The layerwise wrapper (and LANTON) also all-gather three 16-element vector leaves "
    "(biases) that are concatenated for a group's norm: O(width) bytes, not O(params).",
    "- **LANTON**: Newton-Schulz runs on matrices that FSDP has split, so XLA partitions its "
    "matmuls and all-reduces partial Gram matrices at every iteration (plus transposes: "
    "all-to-all, collective-permute). The cost is stated, not removed: the owner-computes "
    "alternative of the distributed Muon implementations (gather each momentum matrix once, "
    "~1x its bytes, run Newton-Schulz where it is whole, keep the local slice) has to live in "
    "LANTON's update, which this measurement does not change.",
    "- **MicroAdam**: its top-k blocks are runs of `block_size` (4096) consecutive elements of "
    "the flattened leaf, and a leaf smaller than a block is one block, so every block crosses "
    "the FSDP shard boundaries and XLA all-gathers the accumulator (gradient plus error "
    "feedback, ~2x the param bytes). Blocks aligned to shards (`block_size` dividing a shard, "
    "the leaf split along its first axis) would make it local; that is a change to MicroAdam's "
    "layout, stated here as the cost.",
    "- **Curvature optimizers** (AdaHessian, Krylov cubic Newton): their update evaluates "
    "`obj_fn`, the model's loss, by Hessian-vector products, so its traffic is the model's own "
    "FSDP traffic (parameter all-gathers, gradient reductions) once per HVP: about one extra "
    "forward and backward for AdaHessian, 10 Lanczos HVPs plus the loss evaluations of the "
    "backtracking for Krylov (its backtracking loop has a data-dependent trip count, counted "
    "once).",
]


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", nargs="*", help="registry names to measure (default: all)")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  ex = runpy.run_path(str(EXAMPLE), run_name="sharded_training")
  mesh = ex["make_mesh"]()
  prob = ex["sharded_problem"](mesh)
  leaves = jax.tree.leaves(prob.params)
  param_bytes = sum(x.nbytes for x in leaves)
  largest_param = max(x.nbytes for x in leaves)
  subjects = [("optax.adam", optax.adam(1e-3), ()), ("optax.sgd", optax.sgd(1e-3), ())]
  subjects += [(e.name, ex["make_optimizer"](e, prob.model), e.extra_args)
               for e in registry.ENTRIES if not args.only or e.name in args.only]
  rows = []
  for name, tx, extra in subjects:
    rows.append(measure(name, tx, extra, ex, prob, mesh))
    print(name, {k: v / param_bytes for k, v in rows[-1].update.items()}, flush=True)
  lines = [
      "# Collective traffic per optimizer step",
      "",
      f"Machine: {common.machine_name()}. Mesh: {dict(mesh.shape)} "
      f"({mesh.devices.size} {mesh.devices.flat[0].platform} devices"
      f"{', simulated' if mesh.devices.flat[0].platform == 'cpu' else ''}). "
      f"Model: the nnx transformer of `optzoo.models` ({sum(x.size for x in leaves):,} trainable "
      f"float32 params, {param_bytes:,} bytes), params FSDP-sharded over 'fsdp', batch over "
      "('data', 'fsdp') (`examples/sharded_training.py`).",
      "Generated by `python benchmarks/communication.py` from `jit(...).lower(...).compile()"
      ".as_text()`; deterministic for a given jax/XLA.",
      "",
      "Columns are per-device collective bytes of one call, divided by the bytes of all params "
      "(1.0 = one param-sized collective per param). Kinds: the update alone (grads, state and "
      "params in, new params and state out, all pinned to their shardings). 'largest op / "
      "largest param': the biggest single collective against the biggest param leaf. 'whole "
      "step': forward, backward and update; its difference to `optax.adam`'s whole step is what "
      "the optimizer adds to a training step.",
      "",
      *table(rows, param_bytes, largest_param),
      "",
      *NOTES,
  ]
  common.write("communication.md", "\n".join(lines) + "\n", args.out)
  return rows


if __name__ == "__main__":
  main()
