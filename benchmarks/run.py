"""The main job: which optimizer should I use? A tuned, multi-seed benchmark on real data.

Every registry optimizer and the optax baselines (adam, adamw, amsgrad, lion,
``optax.contrib.muon``, ``optax.contrib.sophia``) get the same budget on four workloads
(``common.py``): a CNN on scikit-learn's digits, a character-level transformer LM on the Python
standard library's source, L2-regularised logistic regression on the breast-cancer data (exact
optimum, so the suboptimality is exact) and the 2-D Rosenbrock function.

The protocol is ``optzoo.compare`` (this script is its caller on the four workloads of
``optzoo.workloads``), the same for everyone:

1. The step-size argument is swept over one log grid (``compare.lr_grid()``: 7 points from 1e-4
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

Exceptions, structural, decided by ``optzoo.compare`` from the registry's declarations and stated
in the output: ``krylov_cubic_newton`` has no step size (``lr_arg`` None: one point, the seeds
only) and is ``full_batch_only``, so it runs on the two full-batch workloads; ``metaoptimize``
learns its step size (``learns_lr``), so the grid is over its initial step size and no schedule
is applied; ``noise_adaptive_layerwise`` ``wraps`` an optimizer, here ``optax.adam``, whose
learning rate is swept and scheduled.

Honesty check: ``optzoo.lion`` and ``optax.lion`` run with the same explicit settings and must
produce bitwise-identical numbers on every workload (``compare(identical=...)``); the run stops
with an error otherwise.

``--scale medium`` (opt-in) runs the character-level transformer at about 1M parameters for 2,000
steps, every registry optimizer and the optax baselines, on a narrower grid: each optimizer's best
small-scale step size (from ``benchmarks/results/leaderboard.json``) times 1/sqrt(10), 1 and
sqrt(10), and 3 seeds; it writes ``leaderboard_medium.md`` and ``leaderboard_medium.json``.

    python benchmarks/run.py                  # default; writes benchmarks/out/ (git-ignored)
    python benchmarks/run.py --quick          # 5 optimizers, short runs, 3-point grid
    python benchmarks/run.py --write-results  # refresh the committed benchmarks/results/
    python benchmarks/run.py --scale medium   # the larger char-LM (opt-in)

Writes ``leaderboard.md``, ``leaderboard.json`` (every number, curves included) and the plots
``leaderboard_curves.png``, ``leaderboard_lr.png``, ``leaderboard_steps.png`` and
``leaderboard_rosenbrock.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import time

import common
import numpy as np

from optzoo import compare, registry
from optzoo import workloads as builtin

QUICK_GRID = (1e-3, 1e-2, 1e-1)
QUICK_OPTIMIZERS = ("optax.adam", "lion", "optax.lion", "adahessian", "krylov_cubic_newton")
REFERENCE = "optax.adam"
#: the settings both Lion implementations get, explicitly (optax.lion's defaults)
LION = {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}
#: the pair the honesty check holds to bitwise-identical numbers
IDENTICAL = (("lion", "optax.lion"),)
#: --scale medium: the char-LM at about 1M parameters, its budget, grid factors and seeds
MEDIUM = {"steps": 2000, "width": 288, "heads": 4, "eval_every": 100}
MEDIUM_FACTORS = (10 ** -0.5, 1.0, 10 ** 0.5)
MEDIUM_SEEDS = 3


def workloads(quick: bool) -> list[compare.Workload]:
  if quick:
    return [builtin.digits(steps=60, eval_every=20), builtin.charlm(steps=60, eval_every=20),
            builtin.logistic(steps=60), builtin.rosenbrock(steps=100)]
  return [builtin.digits(), builtin.charlm(), builtin.logistic(), builtin.rosenbrock()]


def contestants() -> list[compare.Contestant]:
  """Every registry optimizer and the optax baselines, as ``optzoo.compare`` runs them; the two
  Lions with the same explicit settings."""
  names = (*registry.names(), *compare.OPTAX_BASELINES)
  return [compare.contestant(n, **(LION if n in ("lion", "optax.lion") else {})) for n in names]


def run_workload(w: compare.Workload, racers, grid, seeds=None, **kw) -> compare.Result:
  """``optzoo.compare`` on one workload, the honesty check (on the pairs both run) a hard stop."""
  names = {c.name for c in racers}
  pairs = [p for p in IDENTICAL if set(p) <= names]
  try:
    return compare.compare(w, racers, grid, seeds, reference=REFERENCE, identical=pairs, **kw)
  except compare.NotIdentical as err:
    raise SystemExit(f"HONESTY CHECK FAILED: {err} (settings {LION})") from err


def medium_grid(racers, reference: str | os.PathLike = common.RESULTS / "leaderboard.json"):
  """Each optimizer's best char-LM step size at the small scale times MEDIUM_FACTORS (the
  default grid's middle for one without a committed best)."""
  rows = json.loads(open(reference).read())["workloads"]["charlm"]["rows"]
  mid = float(compare.lr_grid()[compare.GRID_SIZE // 2])
  return {c.name: [(rows.get(c.name, {}).get("best_lr") or mid) * f for f in MEDIUM_FACTORS]
          for c in racers}


def main(argv=None):
  ap = argparse.ArgumentParser(description="optzoo's tuned, multi-seed benchmark on real data")
  ap.add_argument("--quick", action="store_true",
                  help=f"{len(QUICK_OPTIMIZERS)} optimizers, short runs, a 3-point grid")
  ap.add_argument("--scale", choices=("small", "medium"), default="small",
                  help="medium: the char-LM at ~1M parameters, 2,000 steps (opt-in, long)")
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
  if args.scale == "medium":
    return medium(args)
  t_start, cpu_start = time.perf_counter(), time.process_time()
  load_start = os.getloadavg()[0]
  grid = np.asarray(QUICK_GRID) if args.quick else compare.lr_grid()
  names = args.only or (QUICK_OPTIMIZERS if args.quick else None)
  racers = [c for c in contestants() if names is None or c.name in names]
  if names is not None and REFERENCE not in [c.name for c in racers]:
    ap.error(f"{REFERENCE} is the reference of targets and step times: include it")
  loads = [w for w in workloads(args.quick) if not args.workloads or w.name in args.workloads]
  results = {w.name: run_workload(w, racers, grid) for w in loads}
  wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
  meta = {
      "machine": compare.machine_name(),
      "command": "python benchmarks/run.py" + (" --quick" if args.quick else ""),
      "wall_seconds": round(wall, 1), "process_cpu_seconds": round(cpu, 1),
      "load_average_start_end": [round(load_start, 2), round(os.getloadavg()[0], 2)],
      "grid": grid.tolist(), "seeds": len(grid), "reference": REFERENCE,
      "target_factor": compare.TARGET_FACTOR,
      "honesty_check": [w for w, r in results.items() if r.meta["identical"]],
      "lion_settings": LION,
  }
  write_outputs(args.out, results, racers, meta)
  return results, meta


def medium(args):
  """--scale medium: the larger char-LM, a narrower grid around each optimizer's small-scale
  best, MEDIUM_SEEDS seeds; writes leaderboard_medium.md and .json."""
  t_start, cpu_start, load_start = time.perf_counter(), time.process_time(), os.getloadavg()[0]
  racers = [c for c in contestants() if not args.only or c.name in args.only]
  w = builtin.charlm(**MEDIUM)
  res = run_workload(w, racers, medium_grid(racers), MEDIUM_SEEDS)
  wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
  small = json.loads((common.RESULTS / "leaderboard.json").read_text())["workloads"]["charlm"]
  lines = [
      "# optzoo leaderboard, medium scale (opt-in)", "",
      f"Machine: {res.meta['machine']}.",
      f"Workload: {w.description}, {w.steps} steps. Grid: each optimizer's best step size on the "
      "small char-LM (benchmarks/results/leaderboard.json) times "
      f"{', '.join(f'{f:.3g}' for f in MEDIUM_FACTORS)}, narrower than the small scale's "
      f"{compare.GRID_SIZE} points; the best re-run on {MEDIUM_SEEDS} fresh seeds; the rest of "
      "the protocol as the main job's.",
      f"Time: {wall:.0f} s wall, {cpu:.0f} s CPU, load average {load_start:.2f} at the start and "
      f"{os.getloadavg()[0]:.2f} at the end.",
      "Generated by `python benchmarks/run.py --scale medium`.", "", res.markdown(), "",
      "## Does the small-scale ranking hold?", "",
      "| optimizer | small-scale rank | medium-scale rank |", "|---|---:|---:|"]
  for n in res.ranking():
    lines.append(f"| {n} | {small['rows'].get(n, {}).get('rank', '-')} | {res.rows[n]['rank']} |")
  common.write("leaderboard_medium.md", "\n".join(lines) + "\n", args.out)
  common.write("leaderboard_medium.json", json.dumps(res.to_json(), indent=1), args.out)
  print(res.table())
  return {w.name: res}, res.meta


# ----------------------------------------------------------------------------- outputs
def timing_noise(rows: dict) -> str:
  """The step-time ratio of lion to optax.lion: identical programs, so its distance from 1 is
  the timing noise of this run."""
  a, b = rows.get("lion", {}), rows.get("optax.lion", {})
  if a.get("step_ratio") is None or b.get("step_ratio") is None:
    return ""
  return (f" Timing noise: lion / optax.lion step time {a['step_ratio'] / b['step_ratio']:.2f} "
          "(identical programs).")


def summary(results: dict[str, compare.Result], racers) -> list[str]:
  """The summary table: each optimizer's mean (rank) on every workload."""
  order = list(results)
  head = "| optimizer | family | " + " | ".join(
      f"{w} {'f - f*' if results[w].workload.full_batch else 'val loss'} (rank)"
      for w in order) + " | state bytes/param | step time / adam |"
  lines = [head, "|---|---|" + "---:|" * (len(order) + 2)]
  for c in racers:
    cells, ratios, bytes_ = [], [], None
    for w in order:
      res = results[w]
      r = res.rows.get(c.name)
      if r is None:
        cells.append("-")
      elif "skipped" in r:
        cells.append("not run")
      else:
        all_r = [x["rank"] for x in res.rows.values() if "rank" in x]
        rank = f"={r['rank']}" if all_r.count(r["rank"]) > 1 else str(r["rank"])
        cells.append(f"{res._metric(r['mean'])} +- {compare._fmt(r['std'], 2)} ({rank})")
        if r.get("step_ratio") is not None:
          ratios.append((res.workload.full_batch, r["step_ratio"]))
        if bytes_ is None or w == "charlm" or "charlm" not in order:
          bytes_ = r.get("bytes_per_param")
    # the model workloads time real networks; the full-batch ones are microseconds per step
    timed = [x for fb, x in ratios if not fb] or [x for _, x in ratios]
    lines.append(f"| {c.name} | {c.family} | " + " | ".join(cells)
                 + f" | {compare._fmt(bytes_)} | "
                 f"{compare._fmt(np.median(timed), 2) if timed else '-'} |")
  return lines


def write_outputs(out, results: dict[str, compare.Result], racers, meta):
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
  lines = ["# optzoo leaderboard", "", f"Machine: {meta['machine']}.", protocol, honesty, timing,
           f"Generated by `{meta['command']}`.", "", "## Summary", ""]
  table = summary(results, racers)
  lines += table
  lines += ["", "State bytes per parameter on the char-LM model (else on the first workload the "
            "optimizer ran on); step time / adam: median over the model workloads (digits, "
            "charlm), else over the full-batch ones, whose steps take microseconds and whose "
            "timing noise is large (see each section's 'Timing noise').", ""]
  for w, res in results.items():
    wl = res.workload
    lines += [f"## {w}: {wl.description}", "",
              f"Metric: {wl.metric}, after {wl.steps} steps. Target for steps-to-target: "
              f"{compare._fmt(res.target, 4)} ({compare.TARGET_FACTOR}x {REFERENCE}'s mean "
              f"final metric{', floored at 1e-7' if wl.full_batch else ''}), checked every "
              f"{wl.eval_every} steps."
              + (" Data: " + ", ".join(f"{k} {v}" for k, v in wl.info.items() if k != "files")
                 + "." if wl.info else "")
              + timing_noise(res.rows), "", res.markdown(), ""]
  common.write("leaderboard.md", "\n".join(lines), out)
  print("\n".join(table))
  payload = {"meta": meta, "workloads": {}}
  for w, res in results.items():
    data = res.to_json()
    payload["workloads"][w] = {k: data[k] for k in ("description", "metric", "steps",
                                                    "eval_every", "full_batch", "info",
                                                    "target", "rows")}
  # every number at full resolution to the git-ignored folder; the results file at the
  # resolution the plots use, small enough to diff and review
  full = common.OUT if pathlib.Path(out).resolve() == common.RESULTS.resolve() else out
  common.write("leaderboard_full.json", json.dumps(payload), full)
  common.write("leaderboard.json", dump_light(payload), out)
  plots(out, results, [c.name for c in racers], meta)


#: Longest curve kept in the results file (points), and its significant digits.
CURVE_POINTS, CURVE_DIGITS = 100, 4


def light(x):
  """``x`` at the resolution the plots use: the per-step training losses left out (the plots
  draw the evaluation curves), every list of more than 32 numbers (a curve) thinned to at most
  ``CURVE_POINTS`` evenly spaced points, the last kept, and rounded to ``CURVE_DIGITS``
  significant digits; single numbers and short lists as they are."""
  if isinstance(x, dict):
    return {k: light(v) for k, v in x.items() if k != "train_losses"}
  if isinstance(x, list) and len(x) > 32 and all(isinstance(v, (int, float)) or v is None
                                                 for v in x):
    idx = sorted(set(np.linspace(0, len(x) - 1, min(len(x), CURVE_POINTS)).round().astype(int)))
    return [None if x[i] is None else float(f"{x[i]:.{CURVE_DIGITS}g}") for i in idx]
  if isinstance(x, list):
    return [light(v) for v in x]
  return x


def dump_light(payload) -> str:
  """:func:`light` as indented JSON with each curve on one line."""
  text = json.dumps(light(payload), indent=1)
  return re.sub(r"\[\s+([-+0-9eE.,\snul]+?)\s+\]",
                lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def plots(out, results: dict[str, compare.Result], names, meta):
  plt = common.pyplot()
  colors = {n: plt.cm.tab20(i % 20) for i, n in enumerate(names)}
  styles = {n: "--" if n.startswith("optax") else "-" for n in names}

  def figure(draw, file, title, legend=True):
    k = len(results)
    cols = min(k, 2)
    fig, axes = plt.subplots(-(-k // cols), cols, figsize=(6.4 * cols, 4.2 * -(-k // cols)),
                             squeeze=False)
    axes = list(axes.flat)
    for ax in axes[k:]:
      ax.axis("off")
    for ax, res in zip(axes, results.values()):
      getattr(res, draw)(ax, colors, styles)
    if legend:
      handles = {}
      for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
          handles.setdefault(lab, h)
      fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=5, fontsize=8)
    fig.suptitle(f"{title} ({meta['machine']})", fontsize=8)
    fig.tight_layout(rect=(0, 0.1 if legend else 0, 1, 0.96))
    common.savefig(fig, file, out)

  figure("plot_curves", "leaderboard_curves.png", "Best step size per optimizer: mean over "
         "seeds, band = min..max; dotted: target")
  figure("plot_lr", "leaderboard_lr.png", "Robustness to the step size")
  figure("plot_steps", "leaderboard_steps.png", "Steps to target", legend=False)
  if "rosenbrock" in results:
    rosenbrock_plot(out, results["rosenbrock"], colors, styles, meta)


def rosenbrock_plot(out, res: compare.Result, colors, styles, meta):
  """Rosenbrock trajectories (seed 1) over the function's contours."""
  plt = common.pyplot()
  fig, ax = plt.subplots(figsize=(7.5, 6))
  xs, ys = np.meshgrid(np.linspace(-2, 2, 300), np.linspace(-1, 3, 300))
  f = (1 - xs) ** 2 + 100 * (ys - xs**2) ** 2
  ax.contour(xs, ys, np.log10(f + 1e-3), levels=20, colors="0.8", linewidths=0.5)
  for n in colors:
    r = res.rows.get(n)
    if r is None or "skipped" in r:
      continue
    px, py = np.asarray(r["evals"]["x"][0]), np.asarray(r["evals"]["y"][0])
    ax.plot(px, py, styles[n], color=colors[n], lw=1.0, label=n)
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
