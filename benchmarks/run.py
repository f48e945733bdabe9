"""The main job: which optimizer should I use? A tuned, multi-seed benchmark on real data.

Every registry optimizer and the optax baselines (adam, adamw, amsgrad, lion,
``optax.contrib.muon``, ``optax.contrib.sophia``) get the same budget on four workloads
(``common.py``): a CNN on scikit-learn's digits, a character-level transformer LM on the Python
standard library's source, L2-regularised logistic regression on the breast-cancer data (exact
optimum, so the suboptimality is exact) and the 2-D Rosenbrock function.

Protocol, the same for everyone (the budget rule of ``common.py``):

1. The step-size argument is swept over one log grid (``common.lr_grid()``: 7 points from 1e-4
   to 1) with one schedule (linear warmup over 5% of the steps, then cosine decay to 0), the
   same step budget per workload, every other hyperparameter at its documented default. The
   whole grid is one ``optzoo.sweep`` compilation, run on seed 0.
2. The grid point with the lowest final validation loss (``f - f*`` on the optimisation
   workloads) is re-run on 7 fresh seeds (1..7) through the same compiled program (no second
   compilation); every reported number comes from those seeds (mean +- std).
3. Reported per workload: the metric (and accuracy), steps to a target (1.1x optax.adam's mean
   final metric), step time relative to optax.adam (wall time of the same-shape compiled
   program: 7 models vmapped, evaluation included; median of the ratios of its two runs, plus
   5 interleaved re-runs on the cheap full-batch workloads), state bytes per parameter, and
   step-size sensitivity (grid points within 10% of the best). Rank = 1 + the number of
   optimizers whose mean is lower by more than the larger of the two seed standard deviations,
   so differences below the seed spread are ties.

Exceptions, structural and stated in the output: ``krylov_cubic_newton`` has no step size (one
point, the seeds only) and is full-batch only (its registry entry), so it runs on the two
full-batch workloads; ``metaoptimize`` learns its step size, so the grid is over its initial
step size and no schedule is applied; ``noise_adaptive_layerwise`` wraps an optimizer, here
``optax.adam``, whose learning rate is swept and scheduled.

Honesty check: ``optzoo.lion`` and ``optax.lion`` run with the same explicit settings and must
produce bitwise-identical numbers on every workload; the run stops with an error otherwise.

    python benchmarks/run.py                  # default; writes benchmarks/out/ (git-ignored)
    python benchmarks/run.py --quick          # 5 optimizers, short runs, 3-point grid
    python benchmarks/run.py --write-results  # refresh the committed benchmarks/results/

Writes ``leaderboard.md``, ``leaderboard.json`` (every number, curves included) and the plots
``leaderboard_curves.png``, ``leaderboard_lr.png``, ``leaderboard_steps.png`` and
``leaderboard_rosenbrock.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from typing import Any, Callable

import common
import jax
import numpy as np
import optax

import optzoo
from optzoo import registry
from optzoo import sweep as sweeps

QUICK_GRID = (1e-3, 1e-2, 1e-1)
QUICK_OPTIMIZERS = ("optax.adam", "lion", "optax.lion", "adahessian", "krylov_cubic_newton")
REFERENCE = "optax.adam"
TARGET_FACTOR = 1.1
#: interleaved re-runs of the seeds' program on the full-batch workloads, for the step time
RETIME = 5
#: absolute floor of the tie rule and of the target on the f - f* workloads (float32 rounding)
FLOOR = 1e-7
#: the settings both Lion implementations get, explicitly (optax.lion's defaults)
LION = {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}


def workloads(quick: bool) -> list[common.Workload]:
  if quick:
    return [common.digits_workload(steps=60, eval_every=20),
            common.charlm_workload(steps=60, eval_every=20),
            common.logistic_workload(steps=60),
            common.rosenbrock_workload(steps=100)]
  return [common.digits_workload(), common.charlm_workload(), common.logistic_workload(),
          common.rosenbrock_workload()]


@dataclasses.dataclass(frozen=True)
class Contestant:
  """One optimizer of the benchmark and how it is swept."""

  name: str
  family: str
  factory: Callable[..., optax.GradientTransformation]
  lr_arg: str | None  # the swept step size; None: no step size
  scheduled: bool
  hparams: dict = dataclasses.field(default_factory=dict)
  extra_args: tuple[str, ...] = ()
  full_batch_only: bool = False
  note: str = ""


def _inner_adam(learning_rate):
  return optzoo.noise_adaptive_layerwise(optax.adam(learning_rate))


def contestants() -> list[Contestant]:
  out = []
  for e in registry.ENTRIES:
    kw = dict(name=e.name, family=e.family, factory=e.factory, lr_arg=e.lr_arg,
              scheduled=e.lr_arg is not None, extra_args=e.extra_args,
              full_batch_only=e.full_batch_only)
    if e.name == "lion":
      kw["hparams"] = dict(LION)
    elif e.name == "noise_adaptive_layerwise":
      kw.update(factory=_inner_adam, lr_arg="learning_rate", scheduled=True,
                note="wraps optax.adam: its learning rate is swept and scheduled")
    elif e.name == "metaoptimize":
      kw.update(hparams={"base": optax.scale_by_adam()}, scheduled=False,
                note="base scale_by_adam; grid over the initial step size, no schedule "
                     "(the step size is learned)")
    elif e.lr_arg is None:
      kw["note"] = "no step size: one point, seeds only, no schedule"
    out.append(Contestant(**kw))
  base = dict(family="optax baseline", lr_arg="learning_rate", scheduled=True)
  out += [
      Contestant("optax.adam", factory=optax.adam, **base),
      Contestant("optax.adamw", factory=optax.adamw, **base),
      Contestant("optax.amsgrad", factory=optax.amsgrad, **base),
      Contestant("optax.lion", factory=optax.lion, hparams=dict(LION), **base),
      Contestant("optax.contrib.muon", factory=optax.contrib.muon, **base),
      Contestant("optax.contrib.sophia", factory=optax.contrib.sophia, extra_args=("obj_fn",),
                 **base),
  ]
  return out


# ----------------------------------------------------------------------------- running
def run_one(c: Contestant, w: common.Workload, grid: np.ndarray) -> dict:
  """Phase 1 (grid, seed 0) and phase 2 (best point, fresh seeds) in one compilation."""
  n = len(grid)
  common_kw = dict(hparams=c.hparams, batch_fn=w.batch_fn, eval_fn=w.eval_fn,
                   eval_every=w.eval_every, extra_args=c.extra_args)
  if c.lr_arg is None:
    prog = sweeps.compile_sweep(c.factory, w.loss, w.init, w.steps, shape=(1, n), **common_kw)
    phase1, best = None, None
    phase2_args = ({}, [list(range(1, n + 1))])
    phase2 = prog.run(*phase2_args)
  else:
    prog = sweeps.compile_sweep(
        c.factory, w.loss, w.init, w.steps, names=(c.lr_arg,), shape=(n, 1),
        schedule=common.schedule(w.steps) if c.scheduled else None, scheduled=c.lr_arg, **common_kw)
    phase1 = prog.run({c.lr_arg: grid}, np.zeros((n, 1)))
    best = phase1.best("loss")
    phase2_args = ({c.lr_arg: np.full(n, grid[best])}, np.arange(1, n + 1)[:, None])
    phase2 = prog.run(*phase2_args)
  compilations = prog.compilations + (phase1.compilations if phase1 else 0) + phase2.compilations
  if compilations != 1:
    raise RuntimeError(f"{c.name} on {w.name}: {compilations} compilations, expected 1")

  def seeds_axis(a):  # phase 2 as (seeds, ...)
    return a[0] if c.lr_arg is None else a[:, 0]

  evals = {k: seeds_axis(v) for k, v in phase2.evals.items()}
  return {
      "best_index": best,
      "best_lr": None if best is None else float(grid[best]),
      "phase1_final": None if phase1 is None else {k: v[:, 0].tolist()
                                                    for k, v in phase1.final.items()},
      "phase1_raw": phase1,
      "seeds": seeds_axis(phase2.seeds).tolist(),
      "eval_steps": phase2.eval_steps.tolist(),
      "evals": evals,
      "train_losses": seeds_axis(phase2.losses),
      "compile_s": prog.compile_seconds,
      # wall times of the runs (grid, seeds): the same program shape for every optimizer
      "times": ([phase1.run_seconds] if phase1 else []) + [phase2.run_seconds],
      "retimes": [],
      # re-runs the seeds through the compiled program (no compilation): its wall time
      "rerun": lambda: prog.run(*phase2_args).run_seconds,
  }


def honest(rows: dict, workload: str) -> bool:
  """True once both Lions ran on ``workload`` and agree bitwise; raises if they differ."""
  a, b = rows.get("lion"), rows.get("optax.lion")
  if a is None or b is None or "skipped" in a or "skipped" in b:
    return False
  pairs = [(a["train_losses"], b["train_losses"]), (a["phase1_raw"].losses,
                                                    b["phase1_raw"].losses)]
  pairs += [(a["evals"][k], b["evals"][k]) for k in a["evals"]]
  pairs += [(a["phase1_raw"].evals[k], b["phase1_raw"].evals[k]) for k in a["evals"]]
  if not all(np.array_equal(x, y, equal_nan=True) for x, y in pairs):
    raise SystemExit(f"HONESTY CHECK FAILED on {workload}: optzoo.lion and optax.lion differ "
                     f"at identical settings {LION}")
  return True


def steps_to(curve: np.ndarray, steps: np.ndarray, target: float) -> int | None:
  hit = np.nonzero(np.nan_to_num(curve, nan=np.inf) <= target)[0]
  return int(steps[hit[0]]) if hit.size else None


def ranks(means: dict[str, float], stds: dict[str, float]) -> dict[str, int]:
  """1 + the number of others whose mean is lower by more than the larger std (ties)."""
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


def fmt(x: float, digits: int = 3) -> str:
  if x is None or not np.isfinite(x):
    return "nan" if x is not None and np.isnan(x) else "-"
  return f"{x:.{digits}g}"


def fmt_metric(x: float, full_batch: bool, digits: int = 3) -> str:
  """A mean metric; on the f - f* workloads values under float32 resolution read '< 1e-07'."""
  if full_batch and x is not None and np.isfinite(x) and x < FLOOR:
    return f"< {FLOOR:.0e}"
  return fmt(x, digits)


def fmt_rank(r: int, all_ranks: list[int]) -> str:
  return f"={r}" if all_ranks.count(r) > 1 else str(r)


# ----------------------------------------------------------------------------- main
def main(argv=None):
  ap = argparse.ArgumentParser(description="optzoo's tuned, multi-seed benchmark on real data")
  ap.add_argument("--quick", action="store_true",
                  help=f"{len(QUICK_OPTIMIZERS)} optimizers, short runs, a 3-point grid")
  ap.add_argument("--only", nargs="*", help="optimizer names (default: all)")
  ap.add_argument("--workloads", nargs="*", help="workload names (default: all)")
  ap.add_argument("--out", default=str(common.OUT),
                  help="output folder (default benchmarks/out, git-ignored)")
  ap.add_argument("--write-results", action="store_true",
                  help="write the committed reference results (benchmarks/results/)")
  args = ap.parse_args(argv)
  if args.write_results:
    if args.quick or args.only or args.workloads:
      ap.error("--write-results refreshes the reference results: the full default run only")
    args.out = str(common.RESULTS)
  t_start, cpu_start = time.perf_counter(), time.process_time()
  load_start = os.getloadavg()[0]

  grid = np.asarray(QUICK_GRID) if args.quick else common.lr_grid()
  names = args.only or (QUICK_OPTIMIZERS if args.quick else None)
  racers = [c for c in contestants() if names is None or c.name in names]
  if names is not None and REFERENCE not in [c.name for c in racers]:
    ap.error(f"{REFERENCE} is the reference of targets and step times: include it")
  loads = [c for c in workloads(args.quick) if not args.workloads or c.name in args.workloads]

  try:
    from tqdm import tqdm  # noqa: PLC0415
  except ImportError:  # tqdm is in the [dev] extra; run without a bar otherwise
    def tqdm(it, **_):
      return it

  results: dict[str, dict] = {}
  honesty: list[str] = []
  jobs = [(w, c) for w in loads for c in racers]
  bar = tqdm(jobs, desc="benchmark", unit="run")
  for w, c in bar:
    if hasattr(bar, "set_postfix_str"):
      bar.set_postfix_str(f"{w.name}: {c.name}")
    wres = results.setdefault(w.name, {"workload": w, "rows": {}})
    if c.full_batch_only and not w.full_batch:
      wres["rows"][c.name] = {"skipped": "full-batch only (registry entry): not run on a "
                                         "minibatch workload"}
      continue
    wres["rows"][c.name] = run_one(c, w, grid)
    if w.name not in honesty and honest(wres["rows"], w.name):
      honesty.append(w.name)

  # per-workload statistics, targets, step times, state bytes
  for wname, wres in results.items():
    w: common.Workload = wres["workload"]
    rows = {n: r for n, r in wres["rows"].items() if "skipped" not in r}
    for r in rows.values():
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
        r["at_edge"] = r["best_index"] in (0, len(grid) - 1)
    ref = rows.get(REFERENCE)
    target = None
    if ref is not None and np.isfinite(ref["mean"]):
      target = TARGET_FACTOR * ref["mean"]
      if w.full_batch:
        target = max(target, FLOOR)
    wres["target"] = target
    steps_axis = np.asarray(next(iter(rows.values()))["eval_steps"]) if rows else None
    for r in rows.values():
      per_seed = ([steps_to(cv, steps_axis, target) for cv in r["evals"]["loss"]]
                  if target is not None else [])
      r["steps_to_target"] = per_seed
      hit = [s for s in per_seed if s is not None]
      r["steps_to_target_median"] = float(np.median(hit)) if hit else None
      r["reached"] = len(hit)
    rk = ranks({n: r["mean"] for n, r in rows.items()}, {n: r["std"] for n, r in rows.items()})
    for n, r in rows.items():
      r["rank"] = rk[n]
    # step time: the same-shape compiled program's wall time against the reference's; the
    # cheap full-batch programs are re-run RETIME times, interleaved, for paired samples
    for i in range(RETIME if w.full_batch else 0):
      for n in (list(rows) if i % 2 == 0 else list(rows)[::-1]):
        rows[n]["retimes"].append(rows[n]["rerun"]())
    for n, r in rows.items():
      c = next(c for c in racers if c.name == n)
      kw = dict(c.hparams)
      if r["best_lr"] is not None:
        kw[c.lr_arg] = r["best_lr"]
      r["bytes_per_param"] = optzoo.bytes_per_param(c.factory(**kw),
                                                    w.init(jax.random.PRNGKey(0)))
      n_models = len(r["final"])
      r["step_ms"] = float(min(r["times"] + r["retimes"]) / (n_models * w.steps) * 1e3)
      if ref is not None:
        pairs = list(zip(r["times"][::-1], ref["times"][::-1])) + list(zip(r["retimes"],
                                                                            ref["retimes"]))
        r["step_ratio"] = float(np.median([a / b for a, b in pairs]))

  wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
  load_end = os.getloadavg()[0]
  meta = {
      "machine": common.machine_name(),
      "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
      "wall_seconds": round(wall, 1), "process_cpu_seconds": round(cpu, 1),
      "load_average_start_end": [round(load_start, 2), round(load_end, 2)],
      "grid": grid.tolist(), "seeds": len(grid), "reference": REFERENCE,
      "target_factor": TARGET_FACTOR, "honesty_check": honesty, "lion_settings": LION,
  }
  write_outputs(args.out, results, racers, meta, args.quick)
  return results, meta


# ----------------------------------------------------------------------------- outputs
def _jsonable(x: Any) -> Any:
  if isinstance(x, dict):
    return {k: _jsonable(v) for k, v in x.items()
            if k not in ("workload", "phase1_raw", "rerun")}
  if isinstance(x, (list, tuple)):
    return [_jsonable(v) for v in x]
  if isinstance(x, np.ndarray):
    return _jsonable(x.tolist())
  if isinstance(x, (np.floating, float)):
    return float(x) if np.isfinite(x) else None
  if isinstance(x, np.integer):
    return int(x)
  return x


def timing_noise(rows: dict) -> str:
  """The step-time ratio of lion to optax.lion: identical programs, so its distance from 1 is
  the timing noise of this run."""
  a, b = rows.get("lion", {}), rows.get("optax.lion", {})
  if a.get("step_ratio") is None or b.get("step_ratio") is None:
    return ""
  return (f" Timing noise: lion / optax.lion step time {a['step_ratio'] / b['step_ratio']:.2f} "
          "(identical programs).")


def write_outputs(out, results, racers, meta, quick):
  names = [c.name for c in racers]
  by_name = {c.name: c for c in racers}
  order = list(results)
  protocol = (
      f"Protocol: every optimizer gets the same {len(meta['grid'])}-point log grid of its step "
      f"size ({meta['grid'][0]:.0e} to {meta['grid'][-1]:.0e}), linear warmup (5%) then cosine "
      "decay to 0, the same step budget, defaults elsewhere; the best grid point on seed 0 "
      f"(final validation loss, or f - f*) is re-run on {meta['seeds']} fresh seeds, which give "
      "every number below (mean +- std). Rank = 1 + the number of optimizers better by more than "
      "the larger seed std (=k: a tie). Step time / adam: wall time of the same compiled "
      "program shape (the seeds' models vmapped, evaluation included) over optax.adam's, median "
      "of paired runs.")
  honesty = ("Honesty check: optzoo.lion and optax.lion (settings "
             f"{meta['lion_settings']}) are bitwise identical on "
             f"{', '.join(meta['honesty_check']) or 'no workload (not both run)'}.")
  timing = (f"Time: {meta['wall_seconds']:.0f} s wall, {meta['process_cpu_seconds']:.0f} s CPU, "
            f"load average {meta['load_average_start_end'][0]} at the start and "
            f"{meta['load_average_start_end'][1]} at the end (other jobs share the machine "
            "when it exceeds the core count).")
  lines = ["# optzoo leaderboard", "",
           f"Machine: {meta['machine']}.",
           protocol, honesty, timing,
           f"Generated by `{meta['command']}`.", "",
           "## Summary", ""]
  head = "| optimizer | family | " + " | ".join(
      f"{w} {'f - f*' if results[w]['workload'].full_batch else 'val loss'} (rank)"
      for w in order) + " | state bytes/param | step time / adam |"
  lines += [head, "|---|---|" + "---:|" * (len(order) + 2)]
  for n in names:
    cells = []
    ratios, bytes_ = [], None
    for w in order:
      r = results[w]["rows"].get(n)
      if r is None:
        cells.append("-")
      elif "skipped" in r:
        cells.append("not run")
      else:
        all_r = [x["rank"] for x in results[w]["rows"].values() if "rank" in x]
        fb = results[w]["workload"].full_batch
        cells.append(f"{fmt_metric(r['mean'], fb)} +- {fmt(r['std'], 2)} "
                     f"({fmt_rank(r['rank'], all_r)})")
        if r.get("step_ratio") is not None:
          ratios.append((results[w]["workload"].full_batch, r["step_ratio"]))
        if bytes_ is None or w == "charlm" or "charlm" not in order:
          bytes_ = r.get("bytes_per_param")
    # the model workloads time real networks; the full-batch ones are microseconds per step
    timed = [x for fb, x in ratios if not fb] or [x for _, x in ratios]
    lines.append(f"| {n} | {by_name[n].family} | " + " | ".join(cells)
                 + f" | {fmt(bytes_)} | {fmt(np.median(timed), 2) if timed else '-'} |")
  lines += ["", "State bytes per parameter on the char-LM model (else on the first workload the "
            "optimizer ran on); step time / adam: median over the model workloads (digits, "
            "charlm), else over the full-batch ones, whose steps take microseconds and whose "
            "timing noise is large (see each section's 'Timing noise').", ""]

  for w in order:
    wres = results[w]
    wl: common.Workload = wres["workload"]
    acc = any("acc_mean" in r for r in wres["rows"].values())
    tgt = wres["target"]
    lines += [f"## {w}: {wl.description}", "",
              f"Metric: {wl.metric}, after {wl.steps} steps. Target for steps-to-target: "
              f"{fmt(tgt, 4)} ({TARGET_FACTOR}x {REFERENCE}'s mean final metric"
              f"{', floored at 1e-7' if wl.full_batch else ''}), checked every "
              f"{wl.eval_every} steps."
              + (" Data: " + ", ".join(f"{k} {v}" for k, v in wl.info.items() if k != "files")
                 + "." if wl.info else "")
              + timing_noise(wres["rows"]), "",
              "| rank | optimizer | best step size | " + wl.metric + " | "
              + ("accuracy | " if acc else "")
              + "steps to target (seeds reaching) | step time / adam | ms/step | "
                "state bytes/param | step sizes within 10% of best | notes |",
              "|---:|---|---:|---:|" + ("---:|" if acc else "") + "---:|---:|---:|---:|---:|---|"]
    ran = {n: r for n, r in wres["rows"].items() if "skipped" not in r}
    all_r = [r["rank"] for r in ran.values()]
    for n in sorted(ran, key=lambda n: (ran[n]["rank"], np.nan_to_num(ran[n]["mean"], nan=np.inf))):
      r = ran[n]
      c = by_name[n]
      lr = "no step size" if r["best_lr"] is None else (
          f"{r['best_lr']:.2g}" + (" (grid edge)" if r.get("at_edge") else ""))
      stt = ("-" if r["steps_to_target_median"] is None
             else f"{r['steps_to_target_median']:.0f}") + f" ({r['reached']}/{len(r['final'])})"
      sens = ("no step size" if r["best_lr"] is None
              else f"{r['sensitivity']}/{len(r['phase1_final']['loss'])}")
      note = c.note
      if not np.isfinite(r["mean"]):
        note = (note + "; " if note else "") + "diverged"
      lines.append(
          f"| {fmt_rank(r['rank'], all_r)} | {n} | {lr} | "
          f"{fmt_metric(r['mean'], wl.full_batch, 4)} +- "
          f"{fmt(r['std'], 2)} | "
          + (f"{fmt(r.get('acc_mean'), 3)} +- {fmt(r.get('acc_std'), 2)} | " if acc else "")
          + f"{stt} | {fmt(r.get('step_ratio'), 2)} | {fmt(r.get('step_ms'), 3)} | "
          f"{fmt(r.get('bytes_per_param'), 3)} | {sens} | {note} |")
    for n, r in wres["rows"].items():
      if "skipped" in r:
        lines.append(f"| - | {n} | - | not run | " + ("- | " if acc else "")
                     + f"- | - | - | - | - | {r['skipped']} |")
    lines.append("")
  common.write("leaderboard.md", "\n".join(lines), out)
  start = lines.index("## Summary")
  print("\n".join(lines[start: start + 4 + len(names)]))

  payload = {"meta": meta, "workloads": {}}
  for w in order:
    wl = results[w]["workload"]
    payload["workloads"][w] = {
        "description": wl.description, "metric": wl.metric, "steps": wl.steps,
        "eval_every": wl.eval_every, "full_batch": wl.full_batch, "info": wl.info,
        "target": results[w]["target"], "rows": _jsonable(results[w]["rows"])}
  common.write("leaderboard.json", json.dumps(_jsonable(payload), indent=1), out)
  plots(out, results, names, meta)


def plots(out, results, names, meta):
  plt = common.pyplot()
  order = list(results)
  colors = {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
  style = {n: "--" if n.startswith("optax") else "-" for n in names}
  log_metric = {w: results[w]["workload"].full_batch for w in order}

  def grid_axes(k):
    cols = min(k, 2)
    rows = -(-k // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.2 * rows), squeeze=False)
    for ax in list(axes.flat)[k:]:
      ax.axis("off")
    return fig, list(axes.flat)

  def legend(fig, axes):
    handles = {}
    for ax in axes:
      for h, lab in zip(*ax.get_legend_handles_labels()):
        handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=5, fontsize=8)

  # validation curves with seed bands
  fig, axes = grid_axes(len(order))
  for ax, w in zip(axes, order):
    for n in names:
      r = results[w]["rows"].get(n)
      if r is None or "skipped" in r:
        continue
      steps = np.asarray(r["eval_steps"])
      cur = np.asarray(r["evals"]["loss"], np.float64)
      if log_metric[w]:
        cur = np.maximum(cur, 1e-9)
      mean, lo, hi = np.mean(cur, 0), np.min(cur, 0), np.max(cur, 0)
      ax.plot(steps, mean, style[n], color=colors[n], lw=1.2, label=n)
      ax.fill_between(steps, lo, hi, color=colors[n], alpha=0.15, lw=0)
    if results[w]["target"] is not None:
      ax.axhline(results[w]["target"], color="k", lw=0.6, ls=":")
    if log_metric[w]:
      ax.set_yscale("log")
    else:
      finite = [np.mean(results[w]["rows"][n]["final"]) for n in names
                if n in results[w]["rows"] and "final" in results[w]["rows"][n]]
      finite = [f for f in finite if np.isfinite(f)]
      if finite:
        ax.set_ylim(min(finite) * 0.9, min(finite) * 2.5)
    ax.set_title(f"{w}: {results[w]['workload'].metric}", fontsize=9)
    ax.set_xlabel("step")
  legend(fig, axes)
  fig.suptitle("Best step size per optimizer: mean over seeds, band = min..max; dotted: target "
               f"({meta['machine']})", fontsize=8)
  fig.tight_layout(rect=(0, 0.1, 1, 0.96))
  common.savefig(fig, "leaderboard_curves.png", out)

  # final metric against the step size (seed 0)
  fig, axes = grid_axes(len(order))
  grid = np.asarray(meta["grid"])
  for ax, w in zip(axes, order):
    for n in names:
      r = results[w]["rows"].get(n)
      if r is None or "skipped" in r or r["phase1_final"] is None:
        continue
      y = np.asarray(r["phase1_final"]["loss"], np.float64)
      y = np.where(np.isfinite(y), y, np.nan)
      if log_metric[w]:
        y = np.maximum(y, 1e-9)
      ax.plot(grid, y, style[n], marker="o", ms=3, color=colors[n], lw=1.1, label=n)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_title(f"{w}: final {results[w]['workload'].metric} (seed 0)", fontsize=9)
    ax.set_xlabel("peak step size")
  legend(fig, axes)
  fig.suptitle(f"Robustness to the step size ({meta['machine']})", fontsize=8)
  fig.tight_layout(rect=(0, 0.1, 1, 0.96))
  common.savefig(fig, "leaderboard_lr.png", out)

  # steps to target
  fig, axes = grid_axes(len(order))
  for ax, w in zip(axes, order):
    rows = results[w]["rows"]
    ns = [n for n in names if n in rows and "skipped" not in rows[n]]
    vals = [rows[n]["steps_to_target_median"] for n in ns]
    steps = results[w]["workload"].steps
    ax.barh(range(len(ns)), [steps if v is None else v for v in vals],
            color=[colors[n] if v is not None else "0.85" for n, v in zip(ns, vals)])
    for i, (n, v) in enumerate(zip(ns, vals)):
      ax.text(steps * 0.01, i, f"{n}  {rows[n]['reached']}/{len(rows[n]['final'])}"
              + ("" if v is not None else "  (not reached)"), va="center", fontsize=7)
    ax.set_yticks([])
    ax.set_xlim(0, steps)
    ax.invert_yaxis()
    ax.set_title(f"{w}: steps to {fmt(results[w]['target'], 3)} (median over seeds reaching)",
                 fontsize=9)
  fig.suptitle(f"Steps to target ({meta['machine']})", fontsize=8)
  fig.tight_layout(rect=(0, 0, 1, 0.96))
  common.savefig(fig, "leaderboard_steps.png", out)

  # Rosenbrock trajectories
  if "rosenbrock" in results:
    fig, ax = plt.subplots(figsize=(7.5, 6))
    xs, ys = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
    f = (1 - xs) ** 2 + 100 * (ys - xs**2) ** 2
    ax.contour(xs, ys, np.log10(f + 1e-3), levels=20, colors="0.8", linewidths=0.5)
    for n in names:
      r = results["rosenbrock"]["rows"].get(n)
      if r is None or "skipped" in r:
        continue
      px, py = np.asarray(r["evals"]["x"][0]), np.asarray(r["evals"]["y"][0])
      ax.plot(px, py, style[n], color=colors[n], lw=1.0, label=n)
    ax.plot([-1.2], [1.0], "ko", ms=4)
    ax.plot([1.0], [1.0], "k*", ms=9)
    ax.set_xlim(-2, 2)
    ax.set_ylim(-1, 3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"Rosenbrock from (-1.2, 1), best step size, seed 1 ({meta['machine']})",
                 fontsize=8)
    common.savefig(fig, "leaderboard_rosenbrock.png", out)


if __name__ == "__main__":
  main()
