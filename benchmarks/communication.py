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
all params (unsharded), so 1.0 is one param-sized collective per param; the bytes in arrays
under :data:`MIN_ELEMENTS` elements (scalars, per-layer statistics: a fixed amount whatever the
model's size) are also reported on their own, in bytes.

``optax.contrib.muon`` (Newton-Schulz on 2-D leaves, Adam on the rest: the method LANTON's
update extends) and ``optax.contrib.sophia`` (a diagonal-Hessian method taking ``obj_fn``) are
measured beside the registry as peers. A second table measures the update and step of a
:data:`BIG` model, an MLP of 512- and 1024-wide matrices (1.3M params, each matrix FSDP-split
along its first axis, the batch over both mesh axes), compiled only, so that the fixed scalar
traffic no longer looks param-sized and the cost of methods that grow with the matrix width
shows.

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
import functools  # noqa: E402
import inspect  # noqa: E402
import pathlib  # noqa: E402
import re  # noqa: E402
import runpy  # noqa: E402

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402
from typing import Any  # noqa: E402

from optzoo import registry, training  # noqa: E402

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / "examples" / "sharded_training.py"
#: Arrays this small in a collective are scalars or per-layer statistics, not param-shaped: the
#: model's smallest param leaf has 16 elements (its shards 4).
MIN_ELEMENTS = 16
#: The large model: an MLP with these layer widths (input, hidden..., output), 1.3M params.
BIG = (512, 1024, 512, 512)
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
  """Compiles ``tx``'s update and whole step on the example's mesh and counts collectives.
  ``prob`` is the example's problem, or :func:`big_problem`'s (which brings its own loss)."""
  params, frozen, batch = prob.params, prob.frozen, prob.batch
  model_loss = getattr(prob, "loss", None) or functools.partial(ex["loss_fn"], prob.graphdef)
  param_sh = jax.tree.map(lambda p: p.sharding, params)
  state_sh = ex["state_shardings"](tx, params, mesh)
  abstract_state = jax.eval_shape(tx.init, params)
  state = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                       abstract_state, state_sh)
  grads = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype, sharding=p.sharding),
                       params)

  def update(grads, state, params, frozen, batch):
    def loss(p):
      return model_loss(p, frozen, batch)

    value = loss(params) if "value" in extra_args else None
    u, state = tx.update(grads, state, params, **training.extra_kwargs(extra_args, loss, value))
    return optax.apply_updates(params, u), state

  upd = jax.jit(update, out_shardings=(param_sh, state_sh))
  hlo = upd.lower(grads, state, params, frozen, batch).compile().as_text()
  per_kind, large, largest, unknown = collective_bytes(hlo)
  if getattr(prob, "loss", None) is None:
    step = ex["make_step"](tx, prob.graphdef, extra_args,
                           out_shardings=(param_sh, state_sh, None))
  else:
    step = jax.jit(functools.partial(_step, tx, model_loss, extra_args),
                   out_shardings=(param_sh, state_sh, None))
  step_hlo = step.lower(params, state, frozen, batch).compile().as_text()
  step_kinds, _, _, unknown_step = collective_bytes(step_hlo)
  return Row(name, per_kind, large, largest, sum(step_kinds.values()), unknown or unknown_step)


# ----------------------------------------------------------------------------- the large model
@dataclasses.dataclass
class BigProblem:
  """The :data:`BIG` MLP: params FSDP-split along each matrix's first axis (biases by the
  example's rule), a batch of 32 split over both mesh axes, and its loss."""

  params: Any
  frozen: Any
  batch: Any
  loss: Any
  model: Any = None


def _mlp_loss(params, _frozen, batch):
  x, y = batch
  for i in range(len(BIG) - 1):
    x = x @ params[f"w{i}"] + params[f"b{i}"]
    if i < len(BIG) - 2:
      x = jax.nn.gelu(x)
  return jnp.mean((x - y) ** 2)


def _step(tx, loss_fn, extra_args, params, state, frozen, batch):
  """The example's training step, for a loss ``loss_fn(params, frozen, batch)``."""
  return training.step(tx, lambda p: loss_fn(p, frozen, batch), params, state, extra_args)


def big_problem(mesh, ex) -> BigProblem:
  """Builds :class:`BigProblem` in its shardings (a jitted init with ``out_shardings``)."""
  fsdp = mesh.shape["fsdp"]

  def init():
    keys = jax.random.split(jax.random.PRNGKey(0), len(BIG) - 1)
    out = {}
    for i, (k, a, b) in enumerate(zip(keys, BIG[:-1], BIG[1:])):
      out[f"w{i}"] = jax.random.normal(k, (a, b)) / np.sqrt(a)
      out[f"b{i}"] = jnp.zeros((b,))
    return out

  def spec(a):
    return P("fsdp", None) if a.ndim == 2 else ex["fsdp_spec"](a.shape, fsdp)

  shardings = jax.tree.map(lambda a: NamedSharding(mesh, spec(a)), jax.eval_shape(init))
  params = jax.jit(init, out_shardings=shardings)()
  rng = np.random.default_rng(0)
  data = NamedSharding(mesh, P(("data", "fsdp")))
  batch = tuple(jax.device_put(rng.standard_normal((32, n)).astype(np.float32), data)
                for n in (BIG[0], BIG[-1]))
  return BigProblem(params, {}, batch, _mlp_loss)


def subjects(ex, prob, mesh, only):
  """``(name, tx, extra_args)``: optax's Adam and SGD for scale, muon and sophia as peers, and
  the registry's optimizers as the example makes them (``layouts`` from the nnx model where
  there is one, the default rules on the MLP; LANTON with Newton-Schulz on whole matrices over
  the mesh, and again without, on the FSDP shards)."""
  out = [("optax.adam", optax.adam(1e-3), ()), ("optax.sgd", optax.sgd(1e-3), ()),
         ("optax.contrib.muon", optax.contrib.muon(1e-3), ()),
         ("optax.contrib.sophia", optax.contrib.sophia(1e-3), ("obj_fn",))]
  for e in registry.ENTRIES:
    if only and e.name not in only:
      continue
    spreads = "ns_mesh" in inspect.signature(e.factory).parameters
    for m in (mesh, None) if spreads else (None,):
      if prob.model is not None:
        tx = ex["make_optimizer"](e, prob.model, m)
      else:
        tx = e.make(**ex["EXAMPLE_KWARGS"].get(e.name, {}), **({"ns_mesh": m} if m else {}))
      out.append((f"{e.name}, ns_mesh=None" if spreads and m is None else e.name, tx,
                  e.extra_args))
  return out


def table(rows: list[Row], param_bytes: int, largest_param: int) -> list[str]:
  lines = ["| optimizer | " + " | ".join(KINDS) + " | update total | of which arrays >= "
           f"{MIN_ELEMENTS} elements | largest op / largest param | whole step | "
           "step - adam's step | update: arrays < "
           f"{MIN_ELEMENTS} elements (bytes per device) |",
           "|---|" + "---:|" * (len(KINDS) + 6)]
  adam = next((r.step_total for r in rows if r.name == "optax.adam"), 0)
  for r in rows:
    cells = [f"{r.update[k] / param_bytes:.3f}" for k in KINDS]
    total = sum(r.update.values()) / param_bytes
    flag = " (loop count unknown)" if r.loops_unknown else ""
    lines.append(f"| {r.name}{flag} | " + " | ".join(cells) + f" | **{total:.3f}** | "
                 f"{r.update_large / param_bytes:.3f} | "
                 f"{r.update_largest / largest_param:.2f} | {r.step_total / param_bytes:.3f} | "
                 f"{(r.step_total - adam) / param_bytes:+.3f} | "
                 f"{sum(r.update.values()) - r.update_large:,} |")
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
    "- **LANTON**: the example passes the mesh as `ns_mesh`, so each hidden matrix is "
    "all-gathered whole onto every device once per Newton-Schulz (the momentum's and, with the "
    "default `dual_norm='ns'`, the noise's), the iterations run there with no collective, and "
    "each device keeps its slice: two param-sized all-gathers. The row `lanton, ns_mesh=None` "
    "is Newton-Schulz on the FSDP-split matrices, where XLA partitions the matmuls and gathers "
    "the split matrices or all-reduces partial Gram matrices at every iteration; that cost grows "
    "with the matrix width. With `ns_mesh` every device does every matrix's iterations (no "
    "owner-computes split of the matrices across devices).",
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
    "- **Peers**: `optax.contrib.muon` runs Newton-Schulz on every 2-D leaf (Adam on the rest: "
    "on the transformer the 3-D attention kernels and the vectors) with the same FSDP-split "
    "matrices, so XLA gathers or partially reduces them at each iteration too; "
    "`optax.contrib.sophia` estimates its Hessian diagonal by a Hutchinson Hessian-vector "
    "product through `obj_fn` every `update_interval` steps (a `conditional`: both branches "
    "are counted, an upper bound), so it pays the model's own FSDP traffic like AdaHessian.",
    "- **Fixed against param-proportional traffic**: the last column (scalars and per-layer "
    "statistics) grows with the number of layers and scalars, not with their size: a few bytes "
    "to a few KB per device on either model, a vanishing share of the large model's bytes. The "
    "'arrays >= ...' column is the param-proportional traffic; on the large model it separates "
    "the methods whose update is local (0) from those that move whole matrices. For "
    "Newton-Schulz on split matrices it grows with the matrix width, against the params' "
    "bytes: compare LANTON and muon between the two tables.",
]


def measure_all(ex, prob, mesh, only) -> tuple[list[Row], int, int]:
  """Every subject's row on ``prob``, with the params' total and largest leaf bytes."""
  leaves = jax.tree.leaves(prob.params)
  param_bytes = sum(x.nbytes for x in leaves)
  rows = []
  for name, tx, extra in subjects(ex, prob, mesh, only):
    rows.append(measure(name, tx, extra, ex, prob, mesh))
    print(name, {k: v / param_bytes for k, v in rows[-1].update.items()}, flush=True)
  return rows, param_bytes, max(x.nbytes for x in leaves)


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", nargs="*", help="registry names to measure (default: all)")
  ap.add_argument("--no-big", action="store_true", help="skip the large model's table")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  ex = runpy.run_path(str(EXAMPLE), run_name="sharded_training")
  mesh = ex["make_mesh"]()
  prob = ex["sharded_problem"](mesh)
  rows, param_bytes, largest_param = measure_all(ex, prob, mesh, args.only)
  n_params = sum(x.size for x in jax.tree.leaves(prob.params))
  lines = [
      "# Collective traffic per optimizer step",
      "",
      f"Machine: {common.machine_name()}. Mesh: {dict(mesh.shape)} "
      f"({mesh.devices.size} {mesh.devices.flat[0].platform} devices"
      f"{', simulated' if mesh.devices.flat[0].platform == 'cpu' else ''}). "
      f"Model: the nnx transformer of `optzoo.models` ({n_params:,} trainable "
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
      "the optimizer adds to a training step. The last column is the update's fixed traffic: "
      f"bytes in arrays under {MIN_ELEMENTS} elements (scalars, per-layer statistics), which "
      "does not grow with the model; 'of which arrays >= ...' is the param-proportional part.",
      "",
      *table(rows, param_bytes, largest_param),
      "",
  ]
  if not args.no_big:
    big = big_problem(mesh, ex)
    big_rows, big_bytes, big_largest = measure_all(ex, big, mesh, args.only)
    n_big = sum(x.size for x in jax.tree.leaves(big.params))
    lines += [
        f"## A {n_big / 1e6:.1f}M-parameter model",
        "",
        f"The same measurement (compiled only) for an MLP of widths {BIG} ({n_big:,} float32 "
        f"params, {big_bytes:,} bytes; GELU, mean squared error on a batch of 32): each matrix "
        "FSDP-split along its first axis, biases by the example's rule, the state with the "
        "params' shardings. The registry's optimizers at their toy kwargs, LANTON with its "
        "default layout rules (every 2-D leaf a matrix).",
        "",
        *table(big_rows, big_bytes, big_largest),
        "",
    ]
  lines += NOTES
  common.write("communication.md", "\n".join(lines) + "\n", args.out)
  return rows


if __name__ == "__main__":
  main()
