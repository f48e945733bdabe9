"""Which optimizer for *your* model: optzoo's leaderboard protocol on any workload.

:func:`compare` trains your model (a :class:`Workload`: ``init``, ``loss``, batches, an
evaluation, a step budget) with each optimizer under one budget and returns a fair table:

1. The step size is swept over one log grid (default :func:`lr_grid`: 7 points, 1e-4 to 1)
   with one schedule (:func:`schedule`: linear warmup over 5% of the steps, then cosine decay
   to 0), the same steps for everyone, every other hyperparameter at its default. The grid runs
   on seed 0 in one :func:`optzoo.sweep.compile_sweep` compilation.
2. The grid point with the lowest final evaluation ``'loss'`` is re-run on fresh seeds (1, 2,
   ...) through the same compiled program; every reported number comes from those seeds.
3. Reported: the metric (mean +- std over seeds), steps to a target (1.1x the reference
   optimizer's mean), step time relative to the reference (same-shape compiled programs),
   state bytes per parameter and the number of grid points within 10% of the best. Rank = 1 +
   the number of optimizers whose mean is lower by more than the larger of the two seed
   standard deviations: differences below the seed spread are ties (``=k``).

Structural exceptions come from the registry's declarations, never from names: an optimizer
without a step size (``lr_arg`` None) runs one point on the seeds only; one that learns its
step size (``learns_lr``) is swept over its initial value without a schedule; a wrapper
without a step size of its own (``wraps``) wraps ``optax.adam``, whose learning rate is swept
and scheduled; a ``full_batch_only`` optimizer is not run on minibatch workloads (the table
says so). Arguments without a default (MetaOptimize's ``base``) take the registry's toy value.

``identical=[("lion", "optax.lion")]`` states that two contestants compute the same thing: their
numbers must then be bitwise equal, or :class:`NotIdentical` is raised (the honesty rule).

>>> import jax, jax.numpy as jnp, optax
>>> from optzoo import compare
>>> w = compare.Workload("bowl", init=lambda key: jax.random.normal(key, (4,)),
...                      loss=lambda p: jnp.sum((p - 1.0) ** 2), steps=20)
>>> res = compare.compare(w, optimizers=["lion", optax.adam], grid=[1e-2, 1e-1], seeds=2,
...                       progress=False)
>>> sorted(res.rows)
['lion', 'optax.adam']
>>> res.rows["optax.adam"]["best_lr"]
0.1

The command ``python -m optzoo.compare module:workload`` (or ``path/to/file.py:workload``; a
:class:`Workload` or a function returning one) does the same with ``--optimizers``, ``--grid``,
``--seeds``, ``--steps`` and ``--out``; it caches each optimizer's result under ``--out``
(keyed by the protocol's settings: grid, seeds, steps, the optimizer's name and
hyperparameters, the workload's name, parameter shapes and ``info``), so an interrupted run
resumes where it stopped. The key cannot see a change inside your loss or data: use another
``--out`` (or workload name) after changing them.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import numpy as np
import optax

from optzoo import registry
from optzoo import sweep as _sweep
from optzoo._src.base.memory import bytes_per_param as _bytes_per_param
from optzoo.workloads import Workload

__all__ = ["Contestant", "NotIdentical", "Result", "Workload", "compare", "contestant",
           "lr_grid", "machine_name", "main", "ranks", "schedule", "steps_to"]

#: the default step-size grid: GRID_SIZE points, log-spaced from GRID_LOW to GRID_HIGH
GRID_LOW, GRID_HIGH, GRID_SIZE = 1e-4, 1.0, 7
#: the target of steps-to-target: this factor times the reference's mean final metric
TARGET_FACTOR = 1.1
#: interleaved re-runs of the seeds' program on full-batch workloads, for the step time
RETIME = 5
#: absolute floor of the tie rule and of the target on full-batch workloads (float32 rounding)
FLOOR = 1e-7
#: the optax baselines of the default field
OPTAX_BASELINES = ("optax.adam", "optax.adamw", "optax.amsgrad", "optax.lion",
                   "optax.contrib.muon", "optax.contrib.sophia")
#: bumped when the protocol's numbers change (part of the cache key)
PROTOCOL_VERSION = 1


def lr_grid(size: int = GRID_SIZE) -> np.ndarray:
  """The default step-size grid (``size`` log-spaced points, 1e-4 to 1)."""
  return np.logspace(np.log10(GRID_LOW), np.log10(GRID_HIGH), size)


def schedule(steps: int) -> optax.Schedule:
  """The protocol's schedule, a multiplier of the peak step size: linear warmup over 5% of the
  steps, then cosine decay to 0."""
  return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, steps // 20), steps, end_value=0.0)


def machine_name() -> str:
  """The JAX device, the host's cores and architecture, and the jax version."""
  dev = jax.devices()[0]
  return (f"{dev.platform}:{getattr(dev, 'device_kind', dev.platform)} "
          f"({os.cpu_count()} host cores, {platform.machine()}, jax {jax.__version__})")


class NotIdentical(AssertionError):
  """Two contestants declared identical (``identical=``) gave different numbers."""


# ----------------------------------------------------------------------------- contestants
@dataclasses.dataclass(frozen=True)
class Contestant:
  """One optimizer of a comparison and how the protocol sweeps it.

  Attributes:
    name: its name in the tables.
    factory: ``factory(**hparams, **{lr_arg: value}) -> optax.GradientTransformation``.
    lr_arg: the swept step-size argument; None: no step size (one point, seeds only).
    scheduled: whether the protocol's schedule multiplies ``lr_arg``.
    hparams: fixed arguments (everything else at the factory's defaults).
    extra_args: extra ``update`` arguments the sweep supplies (``'obj_fn'``, ``'value'``).
    full_batch_only: not run on minibatch workloads.
    family: a label for the tables.
    note: one line for the tables.
  """

  name: str
  factory: Callable[..., optax.GradientTransformation]
  lr_arg: str | None = "learning_rate"
  scheduled: bool = True
  hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  extra_args: tuple[str, ...] = ()
  full_batch_only: bool = False
  family: str = ""
  note: str = ""


def _wrapping(factory, arg, inner, fixed, learning_rate):
  return factory(**{arg: inner(learning_rate)}, **fixed)


def _required(factory: Callable, skip: Sequence[str]) -> list[str]:
  """The arguments of ``factory`` without a default, but those in ``skip``."""
  return [p.name for p in inspect.signature(factory).parameters.values()
          if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
          and p.name not in skip]


def _from_entry(e: registry.Entry, inner: Callable, hparams: Mapping[str, Any]) -> Contestant:
  """A registry entry as the protocol runs it: the exceptions come from its declarations."""
  skip = [a for a in (e.lr_arg, e.wraps if e.lr_arg is None else None) if a]
  fixed = {k: e.toy_kwargs[k] for k in _required(e.factory, skip) if k in e.toy_kwargs}
  fixed.update(hparams)
  kw = dict(name=e.name, factory=e.factory, lr_arg=e.lr_arg, scheduled=e.lr_arg is not None,
            hparams=fixed, extra_args=e.extra_args, full_batch_only=e.full_batch_only,
            family=e.family)
  if e.lr_arg is None and e.wraps is not None:
    inner_name = _name_of(inner)
    kw.update(factory=functools.partial(_wrapping, e.factory, e.wraps, inner, fixed),
              lr_arg="learning_rate", scheduled=True, hparams={},
              note=f"wraps {inner_name}: its learning rate is swept and scheduled")
  elif e.learns_lr:
    base = "; ".join(f"{k} {_name_of(v)}" for k, v in fixed.items()
                     if isinstance(v, optax.GradientTransformation) or callable(v))
    kw.update(scheduled=False,
              note=(f"{base}; " if base else "") + "grid over the initial step size, no "
                   "schedule (the step size is learned)")
  elif e.lr_arg is None:
    kw["note"] = "no step size: one point, seeds only, no schedule"
  return Contestant(**kw)


def _name_of(obj: Any) -> str:
  """``optax.adam`` for optax's own functions, else the qualified name (or the type's)."""
  if isinstance(obj, optax.GradientTransformation):  # its init's owner: 'scale_by_adam'
    return getattr(obj.init, "__qualname__", "a transformation").split(".")[0]
  if isinstance(obj, functools.partial):
    return _name_of(obj.func)
  name = getattr(obj, "__name__", None)
  if name is None:
    return type(obj).__name__
  for prefix, mod in (("optax", optax), ("optax.contrib", optax.contrib)):
    if getattr(mod, name, None) is obj:
      return f"{prefix}.{name}"
  return name if obj.__module__ in (None, "__main__") else f"{obj.__module__}.{obj.__qualname__}"


def _optax_factory(name: str) -> Callable | None:
  obj: Any = optax
  for part in name.split(".")[1:]:
    obj = getattr(obj, part, None)
  return obj if callable(obj) and not inspect.ismodule(obj) else None


def _from_factory(factory: Callable, name: str | None, hparams: Mapping[str, Any]) -> Contestant:
  """Any factory taking the step size: ``learning_rate`` if it has one, else its first
  argument. Extra ``update`` arguments (``obj_fn``, ``value``) are offered to every
  ``GradientTransformationExtraArgs``, which ignores those it does not use."""
  params = list(inspect.signature(factory).parameters.values())
  names = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
  if not names:
    raise TypeError(f"optimizer {_name_of(factory)}: a factory must take the step size")
  lr_arg = "learning_rate" if "learning_rate" in names else names[0]
  name = name or _name_of(factory)
  tx = factory(**hparams, **{lr_arg: 1e-3})
  extra = ("obj_fn", "value") if isinstance(tx, optax.GradientTransformationExtraArgs) else ()
  family = "optax baseline" if name.startswith("optax.") else "user"
  return Contestant(name, factory, lr_arg, True, dict(hparams), extra, family=family)


def contestant(spec: Any, name: str | None = None, inner: Callable = optax.adam,
               **hparams) -> Contestant:
  """A :class:`Contestant` from a registry name, an optax name (``'optax.adam'``,
  ``'optax.contrib.muon'``), a factory taking the step size, or a :class:`Contestant`.

  Args:
    spec: the optimizer.
    name: its name in the tables (default: the registry or optax name, else the factory's).
    inner: what a registry wrapper without a step size wraps (default ``optax.adam``).
    **hparams: fixed arguments (every other argument keeps its default).
  """
  if isinstance(spec, Contestant):
    return dataclasses.replace(spec, name=name or spec.name,
                               hparams={**spec.hparams, **hparams})
  if isinstance(spec, str):
    if spec in registry.names():
      c = _from_entry(registry.get(spec), inner, hparams)
      return dataclasses.replace(c, name=name or c.name)
    factory = _optax_factory(spec) if spec.startswith("optax.") else None
    if factory is None:
      raise ValueError(f"unknown optimizer {spec!r}: a registry name {registry.names()}, an "
                       "optax name such as 'optax.adam', or a factory taking the step size")
    return _from_factory(factory, name or spec, hparams)
  if callable(spec):
    return _from_factory(spec, name, hparams)
  raise TypeError(f"optimizer {spec!r}: expected a name, a factory or a Contestant")


def _contestants(optimizers: Any) -> list[Contestant]:
  if optimizers is None:
    optimizers = (*registry.names(), *OPTAX_BASELINES)
  if isinstance(optimizers, (str, Contestant)) or callable(optimizers):
    optimizers = [optimizers]
  items = (list(optimizers.items()) if isinstance(optimizers, Mapping)
           else [(None, o) for o in optimizers])
  if not items:
    raise ValueError("optimizers is empty")
  out = [contestant(spec, name=name) for name, spec in items]
  seen = [c.name for c in out]
  dup = sorted({n for n in seen if seen.count(n) > 1})
  if dup:
    raise ValueError(f"optimizers: the names {dup} appear twice; name them with a dict")
  return out


# ----------------------------------------------------------------------------- checks
def _grids(grid: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
  """Each optimizer's step-size grid: the one given, or its own from a dict."""
  if grid is None:
    grid = lr_grid()
  if isinstance(grid, Mapping):
    missing = [n for n in names if n not in grid]
    if missing:
      raise ValueError(f"grid: no step sizes for {missing}")
    out = {n: np.asarray(grid[n], np.float64).reshape(-1) for n in names}
    if len({g.size for g in out.values()}) > 1:
      raise ValueError("grid: every optimizer's grid must have the same size")
    return out
  return {n: np.asarray(grid, np.float64).reshape(-1) for n in names}


def _check_inputs(w: Workload, grids: Mapping[str, np.ndarray], seeds: int) -> None:
  """Bad input gets its error here, before anything compiles (shapes are traced abstractly)."""
  if not isinstance(w, Workload):
    raise TypeError(f"workload must be an optzoo.compare.Workload, got {type(w).__name__}")
  for name, grid in grids.items():
    if grid.size == 0:
      raise ValueError(f"grid is empty (for {name}): give at least one step size")
    if not np.all(np.isfinite(grid)) or np.any(grid <= 0):
      raise ValueError(f"grid must hold positive finite step sizes (for {name}), got "
                       f"{grid.tolist()}")
  if not isinstance(seeds, (int, np.integer)) or seeds < 1:
    raise ValueError(f"seeds must be a positive int, got {seeds!r}")
  key = jax.ShapeDtypeStruct((2,), np.uint32)
  try:
    params = jax.eval_shape(w.init, key)
    args = (params,) if w.full_batch else (params, jax.eval_shape(w.batch_fn, key, 0))
    loss = jax.eval_shape(w.loss, *args)
  except Exception as err:
    raise ValueError(f"workload {w.name!r}: calling init, batch_fn and loss failed: "
                     f"{type(err).__name__}: {err}") from err
  if getattr(loss, "shape", None) != ():
    raise ValueError(f"workload {w.name!r}: loss must return a scalar, got "
                     f"{getattr(loss, 'shape', type(loss).__name__)}")
  if w.eval_fn is not None:
    got = jax.eval_shape(w.eval_fn, params)
    got = got if isinstance(got, Mapping) else {"loss": got}
    if getattr(got.get("loss"), "shape", None) != ():
      raise ValueError(f"workload {w.name!r}: eval_fn must return a scalar or a dict with a "
                       "scalar 'loss'")


def _stable(v: Any) -> Any:
  """A repr of a hyperparameter that is the same in every process (for the cache key)."""
  if isinstance(v, (bool, int, float, str, type(None))):
    return v
  if isinstance(v, (list, tuple)):
    return [_stable(x) for x in v]
  if isinstance(v, Mapping):
    return {str(k): _stable(x) for k, x in v.items()}
  if isinstance(v, (np.ndarray, np.generic, jax.Array)):
    return np.asarray(v).tolist()
  return _name_of(v)


def _cache_key(c: Contestant, w: Workload, grid: np.ndarray, seeds: int) -> str:
  shapes = jax.eval_shape(w.init, jax.ShapeDtypeStruct((2,), np.uint32))
  settings = {
      "protocol": PROTOCOL_VERSION, "workload": w.name, "steps": w.steps,
      "eval_every": w.eval_every, "full_batch": w.full_batch, "info": _stable(w.info),
      "params": [f"{x.dtype}{x.shape}" for x in jax.tree.leaves(shapes)],
      "grid": [float(g) for g in grid], "seeds": int(seeds), "optimizer": c.name,
      "factory": _name_of(c.factory), "lr_arg": c.lr_arg, "scheduled": c.scheduled,
      "hparams": _stable(dict(c.hparams)), "note": c.note, "extra_args": list(c.extra_args),
      "target_factor": TARGET_FACTOR, "jax": jax.__version__, "optax": optax.__version__}
  return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- running
def _run_one(c: Contestant, w: Workload, grid: np.ndarray, seeds: int,
             phase: Callable[[str], None]) -> tuple[dict, Callable[[], float]]:
  """Phase 1 (the grid on seed 0) and phase 2 (the best point on seeds 1..``seeds``) through
  one compiled program; returns the row and a function that re-runs phase 2 (its seconds)."""
  n = len(grid)
  kw = dict(hparams=dict(c.hparams), batch_fn=w.batch_fn, eval_fn=w.evaluate(),
            eval_every=w.eval_every, extra_args=c.extra_args)
  phase("grid")
  if c.lr_arg is None:
    prog = _sweep.compile_sweep(c.factory, w.loss, w.init, w.steps, shape=(1, seeds), **kw)
    phase1, best, chunks = None, None, [({}, [list(range(1, seeds + 1))])]
  else:
    prog = _sweep.compile_sweep(
        c.factory, w.loss, w.init, w.steps, names=(c.lr_arg,), shape=(n, 1),
        schedule=schedule(w.steps) if c.scheduled else None, scheduled=c.lr_arg, **kw)
    phase1 = prog.run({c.lr_arg: grid}, np.zeros((n, 1)))
    best = phase1.best("loss")
    fresh = np.arange(1, seeds + 1)
    fresh = np.concatenate([fresh, np.full(-seeds % n, seeds)])  # pad to whole programs
    chunks = [({c.lr_arg: np.full(n, grid[best])}, part[:, None]) for part in fresh.reshape(-1, n)]
  phase("seeds")
  runs = [prog.run(*args) for args in chunks]
  compilations = prog.compilations + sum(r.compilations for r in [phase1, *runs] if r)
  if compilations != 1:
    raise RuntimeError(f"{c.name} on {w.name}: {compilations} compilations, expected 1")

  def seeds_axis(a):  # phase 2 as (seeds, ...)
    a = a[0] if c.lr_arg is None else np.concatenate([x[:, 0] for x in a])
    return a[:seeds]

  cat = (lambda xs: xs[0]) if c.lr_arg is None else (lambda xs: xs)
  models = [x.seeds.size for x in [phase1, *runs] if x is not None]
  row = {
      "best_index": best,
      "best_lr": None if best is None else float(grid[best]),
      "grid": None if best is None else grid.tolist(),
      "phase1_final": None if phase1 is None else {k: v[:, 0].tolist()
                                                    for k, v in phase1.final.items()},
      "seeds": seeds_axis(cat([r.seeds for r in runs])).tolist(),
      "eval_steps": runs[0].eval_steps.tolist(),
      "evals": {k: seeds_axis(cat([r.evals[k] for r in runs])) for k in runs[0].evals},
      "train_losses": seeds_axis(cat([r.losses for r in runs])),
      "compile_s": prog.compile_seconds,
      # wall times of the runs (grid, seeds), and the models each trained
      "times": [x.run_seconds for x in [phase1, *runs] if x is not None],
      "_models": models,
      "_rerun_models": sum(models[0 if phase1 is None else 1:]),
      "retimes": [],
      "_phase1_losses": None if phase1 is None else phase1.losses,
      "_phase1_evals": None if phase1 is None else phase1.evals,
  }
  params = w.init(jax.random.PRNGKey(0))
  best_kw = dict(c.hparams, **({} if best is None else {c.lr_arg: float(grid[best])}))
  row["bytes_per_param"] = _bytes_per_param(c.factory(**best_kw), params)
  return row, lambda: sum(prog.run(*args).run_seconds for args in chunks)


def _save(path: pathlib.Path, row: dict) -> None:
  """Writes ``row`` to ``path`` (``.npz``) atomically: a killed run leaves no partial file."""
  arrays = {"train_losses": row["train_losses"],
            **{f"evals/{k}": v for k, v in row["evals"].items()}}
  if row["_phase1_losses"] is not None:
    arrays["_phase1_losses"] = row["_phase1_losses"]
    arrays.update({f"_phase1_evals/{k}": v for k, v in row["_phase1_evals"].items()})
  scalars = {k: v for k, v in row.items() if k not in ("train_losses", "evals", "_phase1_losses",
                                                       "_phase1_evals")}
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
  with open(tmp, "wb") as f:
    np.savez(f, _scalars=np.asarray(json.dumps(scalars)), **arrays)
  os.replace(tmp, path)


def _load(path: pathlib.Path) -> dict:
  with np.load(path) as data:
    row = json.loads(str(data["_scalars"]))
    row["train_losses"] = data["train_losses"]
    row["evals"] = {k[6:]: data[k] for k in data.files if k.startswith("evals/")}
    has_p1 = "_phase1_losses" in data.files
    row["_phase1_losses"] = data["_phase1_losses"] if has_p1 else None
    row["_phase1_evals"] = ({k[14:]: data[k] for k in data.files
                             if k.startswith("_phase1_evals/")} if has_p1 else None)
  return row


def _identical(rows: dict, pairs: Sequence[tuple[str, str]], done: list, w: Workload) -> None:
  """Checks every declared pair once both ran: bitwise equal numbers or :class:`NotIdentical`."""
  for a, b in pairs:
    ra, rb = rows.get(a), rows.get(b)
    if (a, b) in done or ra is None or rb is None or "skipped" in ra or "skipped" in rb:
      continue
    got = [(ra["train_losses"], rb["train_losses"]),
           (ra["_phase1_losses"], rb["_phase1_losses"])]
    got += [(ra["evals"][k], rb["evals"].get(k)) for k in ra["evals"]]
    if ra["_phase1_evals"] is not None and rb["_phase1_evals"] is not None:
      got += [(ra["_phase1_evals"][k], rb["_phase1_evals"].get(k)) for k in ra["_phase1_evals"]]
    if not all((x is None and y is None) or (x is not None and y is not None
                                              and np.array_equal(x, y, equal_nan=True))
               for x, y in got):
      raise NotIdentical(f"{a} and {b} are declared identical but differ on {w.name}")
    done.append((a, b))


# ----------------------------------------------------------------------------- statistics
def ranks(means: Mapping[str, float], stds: Mapping[str, float]) -> dict[str, int]:
  """1 + the number of others whose mean is lower by more than the larger of the two stds (and
  than :data:`FLOOR`): differences below the seed spread are ties. NaN means rank last."""
  out = {}
  for a, ma in means.items():
    ma = np.inf if not np.isfinite(ma) else ma
    better = 0
    for b, mb in means.items():
      if b != a and np.isfinite(mb):
        gap = max(stds[a] if np.isfinite(stds[a]) else 0.0, stds[b], FLOOR)
        better += mb < ma - gap
    out[a] = 1 + better
  return out


def steps_to(curve: np.ndarray, steps: np.ndarray, target: float) -> int | None:
  """The first of ``steps`` at which ``curve`` is at or below ``target`` (None: never; NaN
  counts as not reached)."""
  hit = np.nonzero(np.nan_to_num(curve, nan=np.inf) <= target)[0]
  return int(steps[hit[0]]) if hit.size else None


def _summarise(rows: dict, w: Workload, reference: str | None) -> float | None:
  """Adds the statistics to the rows that ran; returns the steps-to-target target."""
  ran = {n: r for n, r in rows.items() if "skipped" not in r}
  for r in ran.values():
    final = r["evals"]["loss"][:, -1]
    r["final"] = final.tolist()
    r["mean"], r["std"] = float(np.mean(final)), float(np.std(final))
    if "accuracy" in r["evals"]:
      acc = r["evals"]["accuracy"][:, -1]
      r["acc_mean"], r["acc_std"] = float(np.mean(acc)), float(np.std(acc))
    if r["phase1_final"] is not None:
      p1 = np.nan_to_num(np.asarray(r["phase1_final"]["loss"]) + w.info.get("f_star", 0.0),
                         nan=np.inf)
      r["sensitivity"] = int(np.sum(p1 <= TARGET_FACTOR * np.min(p1)))
      r["at_edge"] = r["best_index"] in (0, len(r["phase1_final"]["loss"]) - 1)
  ref = ran.get(reference)
  target = None
  if ref is not None and np.isfinite(ref["mean"]):
    target = TARGET_FACTOR * ref["mean"]
    if w.full_batch:
      target = max(target, FLOOR)
  for r in ran.values():
    steps = np.asarray(r["eval_steps"])
    per_seed = ([steps_to(cv, steps, target) for cv in r["evals"]["loss"]]
                if target is not None else [])
    r["steps_to_target"] = per_seed
    hit = [s for s in per_seed if s is not None]
    r["steps_to_target_median"] = float(np.median(hit)) if hit else None
    r["reached"] = len(hit)
  rk = ranks({n: r["mean"] for n, r in ran.items()}, {n: r["std"] for n, r in ran.items()})
  for n, r in ran.items():
    r["rank"] = rk[n]
  return target


def _step_times(rows: dict, w: Workload, reference: str | None) -> None:
  """Milliseconds per model step (fastest run) and the step time over the reference's: the
  median of the paired ratios (last runs first, then the interleaved re-runs)."""
  ran = {n: r for n, r in rows.items() if "skipped" not in r}
  ref = ran.get(reference)
  for r in ran.values():
    per_model = [t / m for t, m in zip(r["times"], r["_models"])]
    per_model += [t / r["_rerun_models"] for t in r["retimes"]]
    r["step_ms"] = float(min(per_model) / w.steps * 1e3)
    if ref is not None:
      pairs = list(zip(r["times"][::-1], ref["times"][::-1])) + list(zip(r["retimes"],
                                                                          ref["retimes"]))
      r["step_ratio"] = float(np.median([a / b for a, b in pairs]))


def _progress(total: int, desc: str, enabled: bool):
  """A tqdm bar if tqdm is installed and ``enabled``, else a silent stand-in."""
  if enabled:
    try:
      from tqdm.auto import tqdm  # noqa: PLC0415
      return tqdm(total=total, desc=desc, unit="optimizer")
    except ImportError:
      pass

  class _Silent:
    def set_postfix_str(self, *_a, **_k):
      pass

    def update(self, *_a):
      pass

    def close(self):
      pass

  return _Silent()


def compare(workload: Workload, optimizers: Any = None,
            grid: Sequence[float] | Mapping[str, Sequence[float]] | None = None,
            seeds: int | None = None, steps: int | None = None, *,
            reference: str | None = None, identical: Sequence[tuple[str, str]] = (),
            cache: str | os.PathLike | None = None, progress: bool = True) -> Result:
  """Runs the protocol (see the module's docstring) on ``workload`` for every optimizer.

  Args:
    workload: the :class:`Workload`.
    optimizers: registry names, optax names (``'optax.adam'``), factories taking the step size,
      :class:`Contestant` objects, or a dict name -> any of those (default: every registry
      optimizer and :data:`OPTAX_BASELINES`).
    grid: the step sizes (default :func:`lr_grid`; positive), or a dict giving each optimizer
      its own grid (all of one size).
    seeds: fresh seeds at the best point (default: as many as grid points, so the grid's
      compiled program runs them at once).
    steps: the step budget (default ``workload.steps``).
    reference: the optimizer of the targets and step-time ratios (default ``'optax.adam'`` if
      present, else the first).
    identical: pairs of contestant names that must produce bitwise-equal numbers
      (:class:`NotIdentical` otherwise).
    cache: a folder; each optimizer's result is stored there, keyed by the protocol's settings,
      and loaded instead of recomputed when present.
    progress: show a progress bar (with tqdm) naming the optimizer and the phase.

  Returns:
    a :class:`Result`.
  """
  t_start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
  w = workload if steps is None or not isinstance(workload, Workload) else (
      workload.with_steps(steps))
  racers = _contestants(optimizers)
  names = [c.name for c in racers]
  grids = _grids(grid, names)
  seeds = len(grids[names[0]]) if seeds is None else seeds
  _check_inputs(w, grids, seeds)
  reference = reference or ("optax.adam" if "optax.adam" in names else names[0])
  if reference not in names:
    raise ValueError(f"the reference {reference!r} is not among the optimizers {names}")
  for pair in identical:
    if len(pair) != 2 or pair[0] not in names or pair[1] not in names:
      raise ValueError(f"identical: {pair} must name two of the optimizers {names}")
  rows, live, cached, done = {}, {}, [], []
  bar = _progress(len(racers), w.name, progress)
  for c in racers:
    if c.full_batch_only and not w.full_batch:
      rows[c.name] = {"skipped": "full-batch only (registry entry): not run on a minibatch "
                                 "workload"}
    else:
      path = None if cache is None else (
          pathlib.Path(cache) / w.name / f"{c.name}-{_cache_key(c, w, grids[c.name], seeds)}.npz")
      if path is not None and path.exists():
        rows[c.name] = _load(path)
        cached.append(c.name)
        bar.set_postfix_str(f"{c.name}: cached")
      else:
        # standard promotion whatever the caller's setting: optax's schedules and Adam mix
        # int32 counts with floats, which strict promotion refuses
        with jax.numpy_dtype_promotion("standard"):
          rows[c.name], live[c.name] = _run_one(
              c, w, grids[c.name], seeds, lambda p, n=c.name: bar.set_postfix_str(f"{n}: {p}"))
        if path is not None:
          _save(path, rows[c.name])
      _identical(rows, identical, done, w)
    bar.update(1)
  target = _summarise(rows, w, reference)
  # step time: the same-shape programs re-run RETIME times, interleaved, on the cheap
  # full-batch workloads (paired samples); then the cache keeps the re-runs too
  for i in range(RETIME if w.full_batch and live else 0):
    for n in (list(live) if i % 2 == 0 else list(live)[::-1]):
      bar.set_postfix_str(f"{n}: timing")
      rows[n]["retimes"].append(live[n]())
  if cache is not None and w.full_batch:
    for n in live:
      key = _cache_key(_by(racers, n), w, grids[n], seeds)
      _save(pathlib.Path(cache) / w.name / f"{n}-{key}.npz", rows[n])
  bar.close()
  _step_times(rows, w, reference)
  shared = all(np.array_equal(grids[n], grids[names[0]]) for n in names)
  meta = {"machine": machine_name(),
          "grid": grids[names[0]].tolist() if shared else {n: g.tolist() for n, g in grids.items()},
          "seeds": seeds,
          "reference": reference, "target_factor": TARGET_FACTOR,
          "identical": [list(p) for p in done], "cached": cached,
          "wall_seconds": round(time.perf_counter() - t_start, 1),
          "process_cpu_seconds": round(time.process_time() - cpu_start, 1),
          "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)]}
  return Result(w, {c.name: c for c in racers}, rows, target, meta)


def _by(racers: Sequence[Contestant], name: str) -> Contestant:
  return next(c for c in racers if c.name == name)


# ----------------------------------------------------------------------------- results
def _fmt(x: Any, digits: int = 3) -> str:
  if x is None or not np.isfinite(x):
    return "nan" if x is not None and np.isnan(x) else "-"
  return f"{x:.{digits}g}"


def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items() if not k.startswith("_")}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, (np.floating, float)):
    return float(x) if np.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  return x


@dataclasses.dataclass
class Result:
  """What :func:`compare` returns.

  Attributes:
    workload: the :class:`Workload` (with the step budget used).
    contestants: name -> :class:`Contestant`, in the order given.
    rows: name -> every number of that optimizer (``mean``, ``std``, ``final`` per seed,
      ``rank``, ``best_lr``, ``evals`` curves ``(seeds, evaluations)``, ``train_losses``,
      ``phase1_final`` (the grid on seed 0), ``steps_to_target``, ``step_ratio``, ``step_ms``,
      ``bytes_per_param``, ...); ``{'skipped': why}`` for an optimizer not run.
    target: the steps-to-target threshold (None without a finite reference).
    meta: machine, grid, seeds, reference, checked identical pairs, cached names, times.
  """

  workload: Workload
  contestants: dict[str, Contestant]
  rows: dict[str, dict]
  target: float | None
  meta: dict

  def ranking(self) -> list[str]:
    """The optimizers that ran, best first (rank, then mean)."""
    ran = {n: r for n, r in self.rows.items() if "skipped" not in r}
    return sorted(ran, key=lambda n: (ran[n]["rank"], np.nan_to_num(ran[n]["mean"], nan=np.inf)))

  def curves(self, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(eval_steps, values)`` of ``name``'s evaluation ``'loss'`` per seed
    (``values``: ``(seeds, evaluations)``)."""
    r = self.rows[name]
    return np.asarray(r["eval_steps"]), np.asarray(r["evals"]["loss"])

  def _metric(self, x: Any, digits: int = 3) -> str:
    """On a full-batch workload, a mean under float32 resolution reads '< 1e-07'."""
    if self.workload.full_batch and x is not None and np.isfinite(x) and x < FLOOR:
      return f"< {FLOOR:.0e}"
    return _fmt(x, digits)

  def _table(self, timing: bool) -> tuple[list[str], list[list[str]]]:
    w, ref = self.workload, self.meta["reference"].split(".")[-1]
    acc = any("acc_mean" in r for r in self.rows.values())
    head = (["rank", "optimizer", "best step size", w.metric] + (["accuracy"] if acc else [])
            + ["steps to target (seeds reaching)"]
            + ([f"step time / {ref}", "ms/step"] if timing else [])
            + ["state bytes/param", "step sizes within 10% of best", "notes"])
    order = self.ranking()
    all_r = [self.rows[n]["rank"] for n in order]
    lines = []
    for n in order:
      r, note = self.rows[n], self.contestants[n].note
      lr = "no step size" if r["best_lr"] is None else (
          f"{r['best_lr']:.2g}" + (" (grid edge)" if r.get("at_edge") else ""))
      stt = ("-" if r["steps_to_target_median"] is None
             else f"{r['steps_to_target_median']:.0f}") + f" ({r['reached']}/{len(r['final'])})"
      sens = ("no step size" if r["best_lr"] is None
              else f"{r['sensitivity']}/{len(r['phase1_final']['loss'])}")
      if not np.isfinite(r["mean"]):
        note = (note + "; " if note else "") + "diverged"
      rank = f"={r['rank']}" if all_r.count(r["rank"]) > 1 else str(r["rank"])
      lines.append([rank, n, lr, f"{self._metric(r['mean'], 4)} +- {_fmt(r['std'], 2)}"]
                   + ([f"{_fmt(r.get('acc_mean'), 3)} +- {_fmt(r.get('acc_std'), 2)}"]
                      if acc else [])
                   + [stt] + ([_fmt(r.get("step_ratio"), 2), _fmt(r.get("step_ms"), 3)]
                              if timing else [])
                   + [_fmt(r.get("bytes_per_param"), 3), sens, note])
    for n, r in self.rows.items():
      if "skipped" in r:
        lines.append(["-", n, "-", "not run"] + (["-"] if acc else [])
                     + ["-"] * (4 if timing else 2) + ["-", r["skipped"]])
    return head, lines

  def markdown(self, timing: bool = True) -> str:
    """The table in markdown (``timing=False`` leaves out the two timing columns)."""
    head, lines = self._table(timing)
    align = ["---:" if h not in ("optimizer", "notes") else "---" for h in head]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
                     + ["| " + " | ".join(cells) + " |" for cells in lines])

  def table(self, timing: bool = True) -> str:
    """The table as aligned text, for a terminal."""
    head, lines = self._table(timing)
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(wd) for c, wd in zip(row, widths)).rstrip()
                     for row in [head, *lines])

  def __str__(self) -> str:
    return self.table()

  def to_json(self) -> dict:
    """Every number (curves included) as JSON-ready data (NaN and inf become None)."""
    w = self.workload
    return _jsonable({
        "name": w.name, "description": w.description, "metric": w.metric, "steps": w.steps,
        "eval_every": w.eval_every, "full_batch": w.full_batch, "info": w.info,
        "target": self.target, "meta": self.meta, "rows": self.rows})

  # --------------------------------------------------------------------------- plots
  def _styles(self, colors, styles):
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = list(self.contestants)
    colors = colors or {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
    styles = styles or {n: "--" if n.startswith("optax") else "-" for n in names}
    return names, colors, styles

  def plot_curves(self, ax, colors: Mapping | None = None, styles: Mapping | None = None):
    """Evaluation curves at each optimizer's best step size: mean over seeds, band =
    min..max; dotted: the target (log scale on full-batch workloads)."""
    names, colors, styles = self._styles(colors, styles)
    finals = []
    for n in names:
      r = self.rows.get(n)
      if r is None or "skipped" in r:
        continue
      steps, cur = self.curves(n)
      cur = np.asarray(cur, np.float64)
      if self.workload.full_batch:
        cur = np.maximum(cur, 1e-9)
      ax.plot(steps, np.mean(cur, 0), styles[n], color=colors[n], lw=1.2, label=n)
      ax.fill_between(steps, np.min(cur, 0), np.max(cur, 0), color=colors[n], alpha=0.15, lw=0)
      finals.append(np.mean(r["final"]))
    if self.target is not None:
      ax.axhline(self.target, color="k", lw=0.6, ls=":")
    finite = [f for f in finals if np.isfinite(f)]
    if self.workload.full_batch:
      ax.set_yscale("log")
    elif finite:
      ax.set_ylim(min(finite) * 0.9, min(finite) * 2.5)
    ax.set_title(f"{self.workload.name}: {self.workload.metric}", fontsize=9)
    ax.set_xlabel("step")
    return ax

  def plot_lr(self, ax, colors: Mapping | None = None, styles: Mapping | None = None):
    """Final metric against the peak step size (the grid, seed 0): robustness to the step."""
    names, colors, styles = self._styles(colors, styles)
    for n in names:
      r = self.rows.get(n)
      if r is None or "skipped" in r or r["phase1_final"] is None:
        continue
      grid = np.asarray(r["grid"])
      y = np.asarray(r["phase1_final"]["loss"], np.float64)
      y = np.where(np.isfinite(y), y, np.nan)
      if self.workload.full_batch:
        y = np.maximum(y, 1e-9)
      ax.plot(grid, y, styles[n], marker="o", ms=3, color=colors[n], lw=1.1, label=n)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"{self.workload.name}: final {self.workload.metric} (seed 0)", fontsize=9)
    ax.set_xlabel("peak step size")
    return ax

  def plot_steps(self, ax, colors: Mapping | None = None, styles: Mapping | None = None):
    """Steps to the target: median over the seeds that reach it (grey: not reached)."""
    names, colors, _ = self._styles(colors, styles)
    ns = [n for n in names if n in self.rows and "skipped" not in self.rows[n]]
    vals = [self.rows[n]["steps_to_target_median"] for n in ns]
    steps = self.workload.steps
    ax.barh(range(len(ns)), [steps if v is None else v for v in vals],
            color=[colors[n] if v is not None else "0.85" for n, v in zip(ns, vals)])
    for i, (n, v) in enumerate(zip(ns, vals)):
      ax.text(steps * 0.01, i, f"{n}  {self.rows[n]['reached']}/{len(self.rows[n]['final'])}"
              + ("" if v is not None else "  (not reached)"), va="center", fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(0, steps)
    ax.invert_yaxis()
    ax.set_title(f"{self.workload.name}: steps to {_fmt(self.target, 3)} (median over seeds "
                 "reaching)", fontsize=9)
    return ax

  def plot(self):
    """One figure: the curves, the step-size robustness and the steps to target."""
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    self.plot_curves(axes[0])
    self.plot_lr(axes[1])
    self.plot_steps(axes[2])
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{self.workload.name} ({self.meta['machine']})", fontsize=8)
    fig.tight_layout()
    return fig

  def save(self, out: str | os.PathLike) -> list[pathlib.Path]:
    """Writes ``<name>.md`` (the table), ``<name>.json`` (every number) and, with matplotlib,
    ``<name>.png`` (:meth:`plot`) to the folder ``out``; returns the paths."""
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    w = self.workload
    paths = [out / f"{w.name}.md", out / f"{w.name}.json"]
    paths[0].write_text(f"# {w.name}\n\n{w.description}\n\nMachine: {self.meta['machine']}.\n\n"
                        f"{self.markdown()}\n")
    paths[1].write_text(json.dumps(self.to_json(), indent=1))
    try:
      import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
      return paths

    fig = self.plot()
    paths.append(out / f"{w.name}.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


# ----------------------------------------------------------------------------- command
def load_workload(spec: str) -> Workload:
  """The workload named by ``'module:attribute'`` or ``'path/to/file.py:attribute'``: a
  :class:`Workload`, or a function of no arguments returning one."""
  target, sep, attr = spec.rpartition(":")
  if not sep or not target or not attr:
    raise ValueError(f"workload {spec!r}: expected module:attribute or path/to/file.py:attribute")
  try:
    if target.endswith(".py"):
      path = pathlib.Path(target).resolve()
      if not path.exists():
        raise FileNotFoundError(f"no file {target}")
      module_spec = importlib.util.spec_from_file_location(path.stem, path)
      module = importlib.util.module_from_spec(module_spec)
      sys.modules.setdefault(path.stem, module)
      module_spec.loader.exec_module(module)
    else:
      module = importlib.import_module(target)
  except Exception as err:
    raise ValueError(f"workload {spec!r} does not import: {type(err).__name__}: {err}") from err
  if not hasattr(module, attr):
    raise ValueError(f"workload {spec!r}: {target} has no attribute {attr!r}")
  got = getattr(module, attr)
  if callable(got) and not isinstance(got, Workload):
    got = got()
  if not isinstance(got, Workload):
    raise ValueError(f"workload {spec!r} is a {type(got).__name__}, not an "
                     "optzoo.compare.Workload")
  return got


def main(argv: Sequence[str] | None = None) -> Result:
  """``python -m optzoo.compare module:workload [--optimizers ...] [--grid ...] [--seeds N]
  [--steps N] [--out DIR]``: prints the table and writes it, the JSON and the plots to
  ``--out``, with each optimizer's result cached under ``--out/cache``."""
  ap = argparse.ArgumentParser(
      prog="python -m optzoo.compare",
      description="Compare optimizers on your workload under optzoo's leaderboard protocol.")
  ap.add_argument("workload", help="module:attribute or path/to/file.py:attribute (a Workload "
                                   "or a function returning one)")
  ap.add_argument("--optimizers", nargs="+", metavar="NAME",
                  help="registry names and optax names such as optax.adam (default: every "
                       "registry optimizer and the optax baselines)")
  ap.add_argument("--grid", nargs="+", type=float, metavar="LR",
                  help=f"step sizes (default {GRID_SIZE} log-spaced, {GRID_LOW:g} to {GRID_HIGH:g})")
  ap.add_argument("--seeds", type=int, help="fresh seeds at the best step size (default: as "
                                            "many as grid points)")
  ap.add_argument("--steps", type=int, help="step budget (default: the workload's)")
  ap.add_argument("--out", default="compare_out", help="folder for the results and the cache "
                                                       "(default ./compare_out)")
  ap.add_argument("--identical", nargs=2, action="append", default=[], metavar=("A", "B"),
                  help="two optimizers that must give bitwise-equal numbers")
  args = ap.parse_args(argv)
  try:
    w = load_workload(args.workload)
    if args.steps is not None and args.steps < 1:
      raise ValueError(f"--steps must be positive, got {args.steps}")
    res = compare(w, args.optimizers, args.grid, args.seeds, args.steps,
                  identical=[tuple(p) for p in args.identical],
                  cache=pathlib.Path(args.out) / "cache")
  except (ValueError, TypeError, NotIdentical) as err:
    ap.exit(2, f"{ap.prog}: error: {err}\n")
  if res.meta["cached"]:
    print(f"cached (not recomputed): {', '.join(res.meta['cached'])}", file=sys.stderr)
  paths = res.save(args.out)
  print(res.table())
  print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
  return res


if __name__ == "__main__":
  main()
