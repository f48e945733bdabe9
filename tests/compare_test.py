"""optzoo.compare: the leaderboard protocol on a workload defined here, through the API and the
command (killed mid-run and resumed), its structural exceptions, the honesty rule, bad input."""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from optzoo import compare, registry
from optzoo import sweep as sweeps
from optzoo.training import CompileCounter

ROOT = pathlib.Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.standard_promotion(
    "optax's adam and schedules compute float ** int32 and min(int32, float)")

_X = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
_Y = (_X @ np.asarray([1.0, -2.0, 0.5], np.float32)).astype(np.float32)


def _init(key):
  return {"w": 0.1 * jax.random.normal(key, (3,))}


def _loss(params, batch):
  xb, yb = batch
  return jnp.mean((xb @ params["w"] - yb) ** 2)


def _batch(key, _step):
  i = jax.random.randint(key, (16,), 0, 64)
  return jnp.asarray(_X)[i], jnp.asarray(_Y)[i]


def _eval(params):
  return {"loss": _loss(params, (jnp.asarray(_X), jnp.asarray(_Y)))}


#: a user's workload: least squares on minibatches of 16 (the command imports it from this file)
TINY = compare.Workload("tiny", _init, _loss, steps=20, batch_fn=_batch, eval_fn=_eval,
                        eval_every=5)
#: not a workload (the command's error names it)
LION = {"b1": 0.9, "b2": 0.99, "weight_decay": 1e-3}
GRID = [1e-2, 1e-1]


FIELD = ["optax.adam", "lion", "avgrad", "optax.amsgrad", "krylov_cubic_newton"]


@pytest.fixture(scope="module")
def direct():
  """optzoo.compare called directly on TINY (the API test and the command test share it)."""
  with jax.numpy_dtype_promotion("standard"):
    return compare.compare(TINY, FIELD, GRID, seeds=3, progress=False)


def test_the_api_runs_the_protocol_on_a_users_workload(direct):
  res = direct
  assert "full-batch only" in res.rows["krylov_cubic_newton"]["skipped"]
  adam = res.rows["optax.adam"]
  assert len(adam["final"]) == 3 and adam["seeds"] == [1, 2, 3]
  # the best grid point on seed 0, re-run on seeds 1..3: what a plain sweep of that point gives
  grid_run = sweeps.sweep(optax.adam, _loss, _init, 20, grid={"learning_rate": GRID}, seeds=[0],
                          schedule=compare.schedule(20), batch_fn=_batch, eval_fn=_eval,
                          eval_every=5)
  best = float(GRID[grid_run.best("loss")])
  assert adam["best_lr"] == best
  again = sweeps.sweep(optax.adam, _loss, _init, 20, grid={"learning_rate": [best]},
                       seeds=[1, 2, 3], schedule=compare.schedule(20), batch_fn=_batch,
                       eval_fn=_eval, eval_every=5)
  np.testing.assert_allclose(adam["final"], again.final["loss"][0], rtol=1e-5)
  # the outputs: text and markdown tables, JSON, curves, plots
  assert res.table().splitlines()[0].startswith("rank") and "optax.adam" in res.table()
  assert res.markdown().count("\n") == 1 + len(res.rows)  # header, rule, a row each
  assert "ms/step" not in res.markdown(timing=False)
  data = json.loads(json.dumps(res.to_json()))
  assert data["rows"]["optax.adam"]["final"] == adam["final"]
  steps, values = res.curves("lion")
  assert steps.tolist() == [0, 5, 10, 15, 20] and values.shape == (3, 5)
  fig = res.plot()
  assert len(fig.axes) == 3
  import matplotlib.pyplot as plt  # noqa: PLC0415
  plt.close(fig)


def test_exceptions_come_from_registry_declarations_not_names():
  meta = compare.contestant("metaoptimize")
  assert meta.lr_arg == "initial_learning_rate" and not meta.scheduled
  assert "base" in meta.hparams  # required, from the registry's toy kwargs
  wrapper = compare.contestant("noise_adaptive_layerwise")
  assert wrapper.lr_arg == "learning_rate" and wrapper.scheduled and "optax.adam" in wrapper.note
  assert compare.contestant("krylov_cubic_newton").lr_arg is None
  # the same declarations on another entry give the same treatment
  avgrad = registry.get("avgrad")
  learned = compare._from_entry(dataclasses.replace(avgrad, learns_lr=True), optax.adam, {})
  assert not learned.scheduled and "learned" in learned.note
  no_lr = compare._from_entry(dataclasses.replace(avgrad, lr_arg=None), optax.adam, {})
  assert no_lr.lr_arg is None and "no step size" in no_lr.note


def test_the_honesty_rule_holds_identical_pairs_bitwise():
  twins = {"lion": compare.contestant("lion", **LION),
           "optax.lion": compare.contestant(optax.lion, **LION), "optax.adam": "optax.adam"}
  res = compare.compare(TINY, twins, [1e-2], seeds=1, identical=[("lion", "optax.lion")],
                        progress=False)
  assert res.meta["identical"] == [["lion", "optax.lion"]]
  with pytest.raises(compare.NotIdentical, match="optax.adam and lion"):
    compare.compare(TINY, twins, [1e-2], seeds=1, identical=[("optax.adam", "lion")],
                    progress=False)


@pytest.mark.parametrize("kwargs, match", [
    ({"optimizers": ["optax.adam", "no_such_optimizer"]}, "unknown optimizer 'no_such_optimizer'"),
    ({"grid": []}, "grid is empty"),
    ({"grid": [1e-2, 0.0]}, "positive finite step sizes"),
    ({"grid": [-1e-2]}, "positive finite step sizes"),
    ({"workload": dataclasses.replace(TINY, loss=lambda p, b: (b[0] @ p["w"] - b[1]) ** 2)},
     "loss must return a scalar"),
])
def test_bad_input_gets_its_error_before_any_compilation(kwargs, match):
  kw = {"workload": TINY, "optimizers": ["optax.adam"], "grid": GRID, **kwargs}
  with CompileCounter() as counter, pytest.raises(ValueError, match=match):
    compare.compare(progress=False, **kw)
  assert counter.count == 0


def test_the_command_names_a_workload_that_does_not_import(capsys):
  for spec, match in (("no_such_module_xyz:w", "does not import"),
                      ("tests/compare_test.py:NOPE", "has no attribute 'NOPE'"),
                      ("tests/compare_test.py:LION", "not an optzoo.compare.Workload")):
    with pytest.raises(SystemExit) as exc:
      compare.main([spec])
    assert exc.value.code == 2
    assert match in capsys.readouterr().err


def _command(out):
  return [sys.executable, "-m", "optzoo.compare", "tests/compare_test.py:TINY", "--optimizers",
          *FIELD, "--grid", *map(str, GRID), "--seeds", "3", "--out", str(out)]


def test_the_command_resumes_after_a_kill_and_prints_the_same_table(tmp_path, direct):
  env = {**os.environ, "PYTHONPATH": str(ROOT)}
  cache = tmp_path / "cache" / "tiny"
  proc = subprocess.Popen(_command(tmp_path), cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  deadline = time.time() + 120
  while not list(cache.glob("*.npz")) and proc.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.communicate()
  finished = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz")}
  assert finished and proc.returncode == -signal.SIGKILL  # killed mid-run
  resumed = subprocess.run(_command(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True,
                           check=True)
  names = [n for n in FIELD if any(f.rsplit("-", 1)[0] == n for f in finished)]
  assert f"cached (not recomputed): {', '.join(names)}" in resumed.stderr
  assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npz") if p.name in finished} == \
      finished  # the finished ones were not rewritten
  assert "avgrad: grid" in resumed.stderr  # the progress bar names optimizer and phase
  again = subprocess.run(_command(tmp_path), cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
  assert again.stdout == resumed.stdout  # every optimizer cached: the same table
  # the same numbers as the API called directly
  data = json.loads((tmp_path / "tiny.json").read_text())
  for name, row in direct.rows.items():
    if "skipped" in row:
      assert data["rows"][name] == row, name
      continue
    assert data["rows"][name]["final"] == row["final"], name
    assert data["rows"][name]["rank"] == row["rank"], name
