"""benchmarks/long_runs.py --quick (20 steps of MetaOptimize and LANTON, float32 and bfloat16
params, on the char-level transformer) writes its table and curves, and its checks hold; plus
the bounds check on made-up traces."""

import numpy as np
import pytest

import long_runs
from optzoo import registry


@pytest.mark.standard_promotion("the benchmark runs user code: optax's Adam and schedules "
                                "compute float ** int32")
def test_quick_run_writes_results_and_holds(tmp_path, capsys):
  assert long_runs.main(["--quick", "--out", str(tmp_path)]) == 0
  text = (tmp_path / "long_runs_quick.md").read_text()
  assert (tmp_path / "long_runs_quick.png").stat().st_size > 0
  for name in long_runs.QUICK:
    row = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    assert row.rstrip(" |").endswith("yes"), row
  assert "step size in [" in text and "rates in [" in text


def test_bounds_check_flags_a_rate_outside_its_clip():
  lanton = registry.get("lanton")
  inside = np.array([[0.05, 1.0], [0.2, 0.7]])
  assert long_runs.bounds_ok(lanton, inside)[0]
  assert not long_runs.bounds_ok(lanton, np.array([[0.01, 1.0]]))[0]
  meta = registry.get("metaoptimize")
  assert long_runs.bounds_ok(meta, np.array([[1e-4, 2e-3]]))[0]
  assert not long_runs.bounds_ok(meta, np.array([[0.0, 2e-3]]))[0]       # collapsed to 0
  assert not long_runs.bounds_ok(meta, np.array([[1e-4, np.inf]]))[0]    # blew up
  assert long_runs.bounds_ok(registry.get("lion"), np.full((3, 2), np.nan)) == (True, "-")
