"""Sharded training of a flax.nnx transformer with every optzoo optimizer.

Params and optimizer state live on a 2-D device mesh ``('data', 'fsdp')``: the batch is split
over both axes (data parallel, as FSDP / ZeRO-3 does), and every parameter is split FSDP-style
over ``'fsdp'`` along its largest axis that the axis size divides (replicated over ``'data'``).
For each registry optimizer the script

1. builds the params directly in their shardings (``jax.jit(..., out_shardings=...)``, so no host
   ever holds a whole unsharded copy),
2. initializes the optimizer state with ``jax.jit(tx.init, out_shardings=...)(params)``, the
   state shardings read off ``jax.eval_shape(tx.init, params)``: a state leaf that mirrors a
   param (a momentum, a second moment) gets that param's sharding (:func:`state_shardings`),
3. runs a few jitted steps (no sharding annotations: XLA propagates them; LANTON's outputs are
   pinned, see :func:`make_optimizer`), and checks that
   every state leaf that mirrors a param has that param's sharding after ``init`` and after the
   updates, and that params match the same steps on one device to ``--tol`` (1e-5; see
   :data:`EXAMPLE_KWARGS` for the one optimizer run at another setting than its toy kwargs, and
   why).

On a CPU-only machine the script asks XLA for 8 host devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=8``, set below unless already set)::

    python examples/sharded_training.py                  # every optimizer, 3 steps
    python examples/sharded_training.py --only lion lanton --steps 5

Across hosts, start the same script on every host with ``--distributed`` (it calls
``jax.distributed.initialize()``; ``--coordinator``, ``--num-processes`` and ``--process-id``
where the cluster's environment does not say them; see the README's "Sharded training"
section). The mesh is then global (``jax.devices()`` lists every host's devices); each host
builds only its own shards of the params and the batch, and the one-device comparison gathers
the shards with ``process_allgather``::

    python examples/sharded_training.py --distributed --coordinator host0:1234 \
        --num-processes 2 --process-id 0 --mesh 2 4     # and --process-id 1 on the other host

Prints one ``OPTZOO-SHARDED {json}`` line per optimizer and exits non-zero if any check fails.
"""

from __future__ import annotations

import os

# Before jax is imported: 8 simulated CPU devices (no effect on GPUs/TPUs, or if already set).
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: E402

from optzoo import layouts, models, registry, training  # noqa: E402


#: Settings this example uses instead of an entry's toy kwargs, and why. AdaHessian divides by
#: |H z| + eps; at its toy eps (1e-3) the step's sensitivity to the Hessian diagonal,
#: lr |g| / (|H z| + eps)^2, is in the thousands where |H z| is small (the attention key
#: kernel), so the float32 reduction-order noise of a sharded Hessian-vector product (~1e-6,
#: sums in another order) grows to 2e-3..4e-3 after 3 steps, and by how much changes from run
#: to run with the threads' scheduling. At eps 1e-1 the same sharded steps equal one device to
#: ~6e-7 (measured on 8 simulated CPU devices), so the comparison tests the sharding and not the
#: conditioning of the toy setting.
EXAMPLE_KWARGS = {"adahessian": {"eps": 1e-1}}


# ----------------------------------------------------------------------------- mesh and rules
def make_mesh(data: int = 2, fsdp: int = 4) -> jax.sharding.Mesh:
  """A ``(data, fsdp)`` mesh over the first ``data * fsdp`` devices (every host's, when
  distributed); on a machine with fewer accelerators, over its simulated CPU devices."""
  n = data * fsdp
  devices = jax.devices()
  if len(devices) < n:
    devices = jax.devices("cpu")
  if len(devices) < n:
    raise SystemExit(f"need {n} devices, have {len(devices)}: set "
                     "XLA_FLAGS=--xla_force_host_platform_device_count=8 before jax starts")
  return jax.sharding.Mesh(np.asarray(devices[:n]).reshape(data, fsdp), ("data", "fsdp"),
                           axis_types=(jax.sharding.AxisType.Auto,) * 2)


def fsdp_spec(shape: tuple[int, ...], fsdp: int) -> P:
  """FSDP rule: split the largest axis that ``fsdp`` divides over 'fsdp'; replicate the rest
  (and leaves with no such axis)."""
  axes = [i for i, d in enumerate(shape) if d % fsdp == 0 and d >= fsdp]
  if not axes:
    return P()
  best = max(axes, key=lambda i: (shape[i], -i))
  return P(*[("fsdp" if i == best else None) for i in range(len(shape))])


# ----------------------------------------------------------------------------- problem
def build_model():
  return models.transformer(nnx.Rngs(0))


def trainable(path, value) -> bool:
  """An ``nnx`` filter: every ``nnx.Param`` except the attention's key bias. Softmax is
  invariant to adding the same vector to every key, so that bias has no gradient: what autodiff
  returns for it is rounding noise (about 1e-9), which a sign or Adam-like step turns into a step
  of about the learning rate that differs with the order of the sharded reductions. It stays
  at its initial value (the loss does not depend on it)."""
  return isinstance(value, nnx.Param) and tuple(path[-2:]) != ("key", "bias")


def loss_fn(graphdef, params, frozen, batch):
  """Mean next-token cross-entropy of the model ``(graphdef, params, frozen)`` on ``batch``."""
  tokens, targets = batch
  logits = nnx.merge(graphdef, params, frozen)(tokens)
  return optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets).mean()


@dataclasses.dataclass
class Problem:
  """The model split into trainable ``params`` and ``frozen`` state, both built in their FSDP
  shardings, and one batch split over both mesh axes."""

  model: Any
  graphdef: Any
  params: Any
  frozen: Any
  batch: tuple[jax.Array, jax.Array]


def sharded_problem(mesh) -> Problem:
  """Builds the :class:`Problem` on ``mesh``. Every host runs this and holds only its own
  shards: params are created by a jitted init with ``out_shardings``, the batch by
  ``jax.make_array_from_callback`` (a host materializes only the rows of its devices)."""
  fsdp = mesh.shape["fsdp"]
  graphdef, abstract, abstract_frozen = nnx.split(nnx.eval_shape(build_model), trainable, ...)

  def rule(tree):
    return jax.tree.map(lambda a: NamedSharding(mesh, fsdp_spec(a.shape, fsdp)), tree)

  def init():
    return nnx.split(build_model(), trainable, ...)[1:]

  params, frozen = jax.jit(init, out_shardings=(rule(abstract), rule(abstract_frozen)))()
  tokens, targets = (np.asarray(x) for x in models.sequence_data(32))
  data_sharding = NamedSharding(mesh, P(("data", "fsdp")))
  batch = tuple(jax.make_array_from_callback(x.shape, data_sharding, lambda idx, x=x: x[idx])
                for x in (tokens, targets))
  return Problem(build_model(), graphdef, params, frozen, batch)


def make_optimizer(entry, model, mesh=None):
  """The entry's optimizer with its toy kwargs (and :data:`EXAMPLE_KWARGS`); LANTON gets the
  model's layouts (its factory takes ``layouts=``) and, given the ``mesh``, runs Newton-Schulz
  on whole matrices over it (``ns_mesh=``) instead of on the FSDP shards. Its step then needs
  its ``out_shardings`` pinned to the params' and state's (the production recipe anyway): the
  whole matrices' layout would otherwise propagate into the momentum."""
  extra = {}
  takes = inspect.signature(entry.factory).parameters
  if "layouts" in takes:
    extra["layouts"] = layouts.from_nnx(model)
  if "ns_mesh" in takes and mesh is not None:
    extra["ns_mesh"] = mesh
  return entry.make(**extra, **EXAMPLE_KWARGS.get(entry.name, {}))


def make_step(tx, graphdef, extra_args, out_shardings=None):
  """One jitted training step ``(params, state, frozen, batch) -> (params, state, loss)``.
  Curvature optimizers get ``obj_fn``: the full-batch loss of this step's batch. With
  ``out_shardings=None`` XLA propagates the input shardings; in production pin them,
  ``(param shardings, state shardings, None)``, so that no step ever reshards its outputs."""

  def step(params, state, frozen, batch):
    def loss(p):
      return loss_fn(graphdef, p, frozen, batch)

    return training.step(tx, loss, params, state, extra_args)

  return jax.jit(step, out_shardings=out_shardings)


# ----------------------------------------------------------------------------- state shardings
def mirrors(state, params):
  """``(state path, state leaf, param path, param)`` for every state leaf that mirrors a param:
  its key path ends with the param's key path and it has the param's shape."""
  by_path = {tuple(p): x for p, x in jax.tree_util.tree_leaves_with_path(params)}
  out = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(state):
    for ppath, param in by_path.items():
      if len(path) >= len(ppath) and tuple(path[-len(ppath):]) == ppath \
          and tuple(getattr(leaf, "shape", ())) == tuple(param.shape):
        out.append((path, leaf, ppath, param))
        break
  return out


def state_shardings(tx, params, mesh):
  """Shardings for ``tx.init(params)``: a state leaf that mirrors a param gets that param's
  sharding; any other leaf (step counts, per-layer rates, MicroAdam's windows) the FSDP rule
  for its shape. Computed from ``jax.eval_shape``: nothing is allocated."""
  abstract = jax.eval_shape(tx.init, params)
  own = {tuple(path): param.sharding for path, _, _, param in mirrors(abstract, params)}
  return jax.tree_util.tree_map_with_path(
      lambda path, leaf: own.get(tuple(path))
      or NamedSharding(mesh, fsdp_spec(leaf.shape, mesh.shape["fsdp"])), abstract)


def init_state(tx, params, mesh):
  """The recipe: ``jax.jit(tx.init, out_shardings=state_shardings(...))(params)``. Plain
  ``jax.jit(tx.init)(params)`` is not enough: a state leaf such as ``zeros_like(p)`` does not
  depend on ``p``'s values, so XLA has no sharding to propagate to it."""
  return jax.jit(tx.init, out_shardings=state_shardings(tx, params, mesh))(params)


# ----------------------------------------------------------------------------- checks
def sharding_errors(state, params, when: str) -> list[str]:
  """Mirroring state leaves whose sharding is not their param's."""
  errors = []
  for path, leaf, ppath, param in mirrors(state, params):
    if not leaf.sharding.is_equivalent_to(param.sharding, leaf.ndim):
      errors.append(f"{jax.tree_util.keystr(path)} {when}: {leaf.sharding.spec}, its param "
                    f"{jax.tree_util.keystr(ppath)} has {param.sharding.spec}")
  return errors


def to_host(tree):
  """Whole arrays as NumPy on this host: ``jax.device_get`` on one host; with several, every
  host gathers every shard (``process_allgather``), since no host holds a global array."""
  if jax.process_count() == 1:
    return jax.device_get(tree)
  from jax.experimental import multihost_utils  # noqa: PLC0415

  return multihost_utils.process_allgather(tree, tiled=True)


def worst_leaf(a, b) -> tuple[float, str]:
  """The largest ``|a - b|`` over all leaves, and the leaf where it is."""
  rows = [(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)))),
           jax.tree_util.keystr(path))
          for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b))]
  return max(rows)


def run_one(entry, prob: Problem, mesh, steps: int, tol: float, compare: bool = True) -> dict:
  """Trains ``entry`` sharded (and on one device when ``compare``); returns the checks."""
  t0 = time.perf_counter()
  tx = make_optimizer(entry, prob.model, mesh)
  pinned = None
  if "ns_mesh" in inspect.signature(entry.factory).parameters:
    # LANTON gathers each matrix whole for Newton-Schulz; unpinned, XLA would propagate that
    # whole layout back into its momentum (see make_optimizer)
    pinned = (jax.tree.map(lambda p: p.sharding, prob.params),
              state_shardings(tx, prob.params, mesh), None)
  step = make_step(tx, prob.graphdef, entry.extra_args, out_shardings=pinned)

  state = init_state(tx, prob.params, mesh)
  errors = sharding_errors(state, prob.params, "after jit(init)")
  p, st = prob.params, state
  for _ in range(steps):
    p, st, _ = step(p, st, prob.frozen, prob.batch)
  errors += sharding_errors(st, p, f"after {steps} jitted updates")
  errors += [f"param {jax.tree_util.keystr(path)} changed sharding to {x.sharding.spec}"
             for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(p),
                                     jax.tree.leaves(prob.params))
             if not x.sharding.is_equivalent_to(y.sharding, x.ndim)]
  row = {"name": entry.name, "example_kwargs": EXAMPLE_KWARGS.get(entry.name, {}),
         "mirroring_leaves": len(mirrors(state, prob.params)), "sharding_errors": errors}
  if compare:
    q, sq, frozen, batch = jax.device_put(
        to_host((prob.params, state, prob.frozen, prob.batch)), jax.local_devices()[0])
    # the same optimizer on one device (LANTON without a mesh to run Newton-Schulz over)
    one = make_step(make_optimizer(entry, prob.model), prob.graphdef, entry.extra_args)
    for _ in range(steps):
      q, sq, _ = one(q, sq, frozen, batch)
    diff, leaf = worst_leaf(to_host(p), jax.device_get(q))
    row.update(max_abs_diff=diff, worst_leaf=leaf, tol=tol, equal=diff <= tol)
  row["ok"] = not errors and row.get("equal", True)
  row["seconds"] = round(time.perf_counter() - t0, 1)
  return row


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", nargs="*", help="registry names to run (default: all)")
  ap.add_argument("--steps", type=int, default=3, help="jitted steps per optimizer (3)")
  ap.add_argument("--tol", type=float, default=1e-5, help="max |sharded - one device| (1e-5)")
  ap.add_argument("--no-compare", action="store_true",
                  help="skip the one-device run that the sharded results are compared with")
  ap.add_argument("--mesh", type=int, nargs=2, default=(2, 4), metavar=("DATA", "FSDP"))
  ap.add_argument("--distributed", action="store_true",
                  help="call jax.distributed.initialize() first (one process per host)")
  ap.add_argument("--coordinator", help="host:port of process 0 (else JAX_COORDINATOR_ADDRESS "
                  "or the cluster's environment: SLURM, Open MPI, Cloud TPU, Kubernetes)")
  ap.add_argument("--num-processes", type=int, help="processes in all (else auto-detected)")
  ap.add_argument("--process-id", type=int, help="this process's index (else auto-detected)")
  args = ap.parse_args(argv)
  if args.distributed:
    jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
  mesh = make_mesh(*args.mesh)
  # --no-compare: skip the one-device run (on many hosts, it gathers every shard to each).
  compare = not args.no_compare
  prob = sharded_problem(mesh)
  failed = []
  for entry in registry.ENTRIES:
    if args.only and entry.name not in args.only:
      continue
    row = run_one(entry, prob, mesh, args.steps, args.tol, compare)
    print("OPTZOO-SHARDED " + json.dumps(row), flush=True)
    if not row["ok"]:
      failed.append(entry.name)
  print(f"mesh {dict(mesh.shape)} on {mesh.devices.flat[0].platform}; "
        f"failed: {failed or 'none'}", flush=True)
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
