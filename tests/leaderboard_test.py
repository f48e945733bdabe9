"""benchmarks/run.py, the main job: the quick run end to end (its numbers those of optzoo.compare
called directly), the honesty check, clean clones, the medium scale at a tiny size."""

import json
import pathlib
import subprocess
import time

import numpy as np
import pytest

import common
import run

ROOT = pathlib.Path(__file__).resolve().parents[1]

from optzoo import compare  # noqa: E402
from optzoo import workloads  # noqa: E402

pytestmark = pytest.mark.standard_promotion(
    "the leaderboard runs optax's baselines and schedules (float ** int32)")

PLOTS = ("leaderboard_curves.png", "leaderboard_lr.png", "leaderboard_steps.png",
         "leaderboard_rosenbrock.png")


def _quick(tmp_path):
  cpu = time.process_time()
  results, meta = run.main(["--quick", "--out", str(tmp_path)])
  return tmp_path, results, meta, time.process_time() - cpu


def test_quick_run(tmp_path):
  """One --quick run (about 100 s), checked by the four checks below: in one test, so that no
  two pytest-xdist workers each run it."""
  quick = _quick(tmp_path)
  check_every_output_written(quick)
  check_honesty_on_every_workload(quick)
  check_full_batch_only_optimizers_skipped_with_a_reason(quick)
  check_the_same_numbers_as_compare_called_directly(quick)
  check_cpu_budget(quick)


def check_every_output_written(quick):
  out, results, meta, _ = quick
  for name in ("leaderboard.md", "leaderboard.json", *PLOTS):
    assert (out / name).stat().st_size > 0, name
  text = (out / "leaderboard.md").read_text()
  assert "Machine: " in text and "## Summary" in text
  for w in ("digits", "charlm", "logistic", "rosenbrock"):
    assert f"## {w}:" in text
  data = json.loads((out / "leaderboard.json").read_text())
  assert set(data["workloads"]) == {"digits", "charlm", "logistic", "rosenbrock"}
  row = data["workloads"]["digits"]["rows"]["optax.adam"]
  assert len(row["final"]) == len(meta["grid"]) >= 3  # seeds at the best point
  assert len(row["phase1_final"]["loss"]) == len(meta["grid"])
  assert 0.0 < row["acc_mean"] <= 1.0


def check_honesty_on_every_workload(quick):
  _, results, meta, _ = quick
  assert meta["honesty_check"] == ["digits", "charlm", "logistic", "rosenbrock"]
  for w in results.values():
    a, b = w.rows["lion"], w.rows["optax.lion"]
    assert a["final"] == b["final"] and a["rank"] == b["rank"]


def check_full_batch_only_optimizers_skipped_with_a_reason(quick):
  out, results, _, _ = quick
  assert "full-batch only" in results["digits"].rows["krylov_cubic_newton"]["skipped"]
  assert "final" in results["logistic"].rows["krylov_cubic_newton"]
  assert "not run" in (out / "leaderboard.md").read_text()


#: CPU seconds --quick may take. It was 120 (86 s measured) before the main job became a caller
#: of optzoo.compare; the same quick run measured 169 s alone on the idle 2-core machine after it,
#: and 185-200 s with other jobs on the cores (the suite's second worker is one), so the bound
#: leaves that margin and still catches a doubling. The extra cost is not yet found.
QUICK_CPU_SECONDS = 300


def check_cpu_budget(quick):
  # CPU time, not wall time: other jobs on a shared machine stretch the wall clock
  *_, cpu = quick
  assert cpu < QUICK_CPU_SECONDS, f"--quick took {cpu:.0f} s of CPU"


def check_the_same_numbers_as_compare_called_directly(quick):
  """The main job is a thin caller: optzoo.compare on a built-in workload with the quick
  settings gives the numbers --quick wrote (logistic: the cheapest to compile)."""
  out, _, meta, _ = quick
  written = json.loads((out / "leaderboard_full.json").read_text())["workloads"]["logistic"]["rows"]
  light = json.loads((out / "leaderboard.json").read_text())["workloads"]["logistic"]["rows"]
  assert light == json.loads(json.dumps(run.light({"rows": written})))["rows"]
  lion = {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}
  direct = compare.compare(
      workloads.logistic(steps=60),
      {"optax.adam": "optax.adam", "lion": compare.contestant("lion", **lion),
       "optax.lion": compare.contestant("optax.lion", **lion), "adahessian": "adahessian",
       "krylov_cubic_newton": "krylov_cubic_newton"},
      grid=meta["grid"], seeds=len(meta["grid"]), progress=False).to_json()["rows"]
  for name, row in direct.items():
    for key in ("final", "best_lr", "phase1_final", "rank", "steps_to_target", "evals"):
      assert written[name][key] == row[key], (name, key)


def test_every_contestant_runs_through_the_main_jobs_own_code():
  """run.run_workload, the main job's path (one compilation per contestant, checked there), for
  every contestant on logistic regression (full batch, so every contestant runs; the cheapest
  compile) with a tiny budget: a contestant that crashes the default run fails here (--quick
  runs five)."""
  res = run.run_workload(workloads.logistic(steps=4), run.contestants(), [1e-3, 1e-2],
                         progress=False)
  for name, row in res.rows.items():
    assert np.all(np.isfinite(row["train_losses"])), name
  assert {"metaoptimize", "krylov_cubic_newton", "optax.contrib.sophia"} <= set(res.rows)


def test_honesty_check_fails_loudly(monkeypatch):
  def unequal(*_args, **_kwargs):
    raise compare.NotIdentical("lion and optax.lion are declared identical but differ on w")

  monkeypatch.setattr(compare, "compare", unequal)
  with pytest.raises(SystemExit, match="HONESTY CHECK FAILED"):
    run.run_workload(workloads.rosenbrock(steps=2), run.contestants(), [1e-2])


def test_ties_below_the_seed_spread():
  r = compare.ranks({"a": 1.0, "b": 1.05, "c": 2.0}, {"a": 0.1, "b": 0.01, "c": 0.0})
  assert r == {"a": 1, "b": 1, "c": 3}


def test_medium_scale_at_a_tiny_size(tmp_path, monkeypatch):
  """--scale medium's path (narrower grid around each optimizer's committed small-scale best,
  MEDIUM_SEEDS seeds, leaderboard_medium.md with the ranking comparison) at a tiny size."""
  monkeypatch.setattr(run, "MEDIUM", {"steps": 4, "width": 8, "heads": 2, "eval_every": 2})
  results, meta = run.main(["--scale", "medium", "--only", "optax.adam", "--out", str(tmp_path)])
  res = results["charlm"]
  best = json.loads((common.RESULTS / "leaderboard.json").read_text())
  best = best["workloads"]["charlm"]["rows"]["optax.adam"]["best_lr"]
  np.testing.assert_allclose(res.rows["optax.adam"]["grid"],
                             [best * f for f in run.MEDIUM_FACTORS])
  assert len(res.rows["optax.adam"]["final"]) == run.MEDIUM_SEEDS
  text = (tmp_path / "leaderboard_medium.md").read_text()
  assert "small-scale rank" in text and "times 0.316, 1, 3.16" in text


def test_default_output_is_git_ignored_and_results_need_the_full_run():
  assert common.OUT == ROOT / "benchmarks" / "out"
  ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/out/leaderboard.md"],
                           cwd=ROOT)
  assert ignored.returncode == 0
  with pytest.raises(SystemExit):
    run.main(["--quick", "--write-results"])


def test_committed_results_are_small_and_curves_thinned():
  """The committed leaderboard.json stays reviewable (under 1 MB): curves at the plots'
  resolution; the full-resolution file goes to the git-ignored folder."""
  path = common.RESULTS / "leaderboard.json"
  assert path.stat().st_size < 1_000_000, path.stat().st_size
  curve = list(np.linspace(0.0, 1.0, 1000))
  light = run.light({"rows": {"a": {"evals": {"loss": [curve]}, "train_losses": [curve],
                                    "best_lr": 0.0031622776601683794}}})
  thinned = light["rows"]["a"]["evals"]["loss"][0]
  assert len(thinned) == run.CURVE_POINTS and thinned[0] == 0.0 and thinned[-1] == 1.0
  assert "train_losses" not in light["rows"]["a"]
  assert light["rows"]["a"]["best_lr"] == 0.0031622776601683794
