"""benchmarks/run.py, the main job: the quick run end to end, the honesty check, clean clones."""

import json
import pathlib
import subprocess
import time

import numpy as np
import pytest

import common
import run

ROOT = pathlib.Path(__file__).resolve().parents[1]

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
  check_two_minutes_of_cpu(quick)


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
    a, b = w["rows"]["lion"], w["rows"]["optax.lion"]
    assert a["final"] == b["final"] and a["rank"] == b["rank"]


def check_full_batch_only_optimizers_skipped_with_a_reason(quick):
  out, results, _, _ = quick
  assert "full-batch only" in results["digits"]["rows"]["krylov_cubic_newton"]["skipped"]
  assert "final" in results["logistic"]["rows"]["krylov_cubic_newton"]
  assert "not run" in (out / "leaderboard.md").read_text()


def check_two_minutes_of_cpu(quick):
  # CPU time, not wall time: other jobs on a shared machine stretch the wall clock
  *_, cpu = quick
  assert cpu < 120, f"--quick took {cpu:.0f} s of CPU"


def test_every_contestant_runs_through_the_main_jobs_own_code():
  """run.run_one, the main job's path (one compilation, checked there), for every contestant on
  logistic regression (full batch, so every contestant runs; the cheapest compile) with a tiny
  budget: a contestant that crashes the default run fails here (--quick runs five)."""
  load = common.logistic_workload(steps=4)
  names = []
  for c in run.contestants():
    row = run.run_one(c, load, np.asarray([1e-3, 1e-2]))
    assert np.all(np.isfinite(row["train_losses"])), c.name
    names.append(c.name)
  assert {"metaoptimize", "krylov_cubic_newton", "optax.contrib.sophia"} <= set(names)


def test_honesty_check_fails_loudly():
  def row(x):
    res = type("R", (), {"losses": np.zeros(3), "evals": {"loss": np.zeros(2)}})()
    return {"train_losses": np.full(3, x), "evals": {"loss": np.zeros(2)}, "phase1_raw": res}

  assert run.honest({"lion": row(1.0), "optax.lion": row(1.0)}, "w")
  assert not run.honest({"lion": row(1.0)}, "w")
  with pytest.raises(SystemExit, match="HONESTY CHECK FAILED"):
    run.honest({"lion": row(1.0), "optax.lion": row(np.nextafter(1.0, 2.0))}, "w")


def test_ties_below_the_seed_spread():
  r = run.ranks({"a": 1.0, "b": 1.05, "c": 2.0}, {"a": 0.1, "b": 0.01, "c": 0.0})
  assert r == {"a": 1, "b": 1, "c": 3}


def test_default_output_is_git_ignored_and_results_need_the_full_run():
  assert common.OUT == ROOT / "benchmarks" / "out"
  ignored = subprocess.run(["git", "check-ignore", "-q", "benchmarks/out/leaderboard.md"],
                           cwd=ROOT)
  assert ignored.returncode == 0
  with pytest.raises(SystemExit):
    run.main(["--quick", "--write-results"])
