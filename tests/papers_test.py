"""benchmarks/papers/: every paper script's --quick mode end to end, and the collected results."""

import importlib.util
import json
import pathlib
import sys
import time

import claims  # benchmarks/papers/ is on pytest's pythonpath, after benchmarks/
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAPERS = ROOT / "benchmarks" / "papers"

pytestmark = pytest.mark.standard_promotion(
    "the paper scripts run optax's baselines and schedules (float ** int32)")


def _load(name):
  """A script as a module named papers_<name> (the names stay apart from optzoo's and the benchmarks')."""
  spec = importlib.util.spec_from_file_location(f"papers_{name}", PAPERS / f"{name}.py")
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("key", claims.PAPERS)
def test_quick_mode(key, tmp_path):
  """The script's --quick mode end to end: its section, summary row and figure (one test per
  script, so that xdist spreads them; compilations are most of each)."""
  cpu = time.process_time()
  claim = _load(key).main(["--quick", "--out", str(tmp_path)])
  print(f"{key} --quick: {time.process_time() - cpu:.0f} s CPU")
  assert claim.key == key and claim.verdict in claims.VERDICTS
  assert (tmp_path / "papers" / f"{key}.png").stat().st_size > 0
  section = (tmp_path / "papers" / f"{key}.md").read_text()
  assert claims.read_row(tmp_path / "papers" / f"{key}.md")["verdict"] == claim.verdict
  assert "QUICK MODE" in section and claim.claim in section
  rows = json.loads((tmp_path / "papers.json").read_text())
  assert [r["key"] for r in rows] == [key]
  assert f"![{key}](papers/{key}.png)" in (tmp_path / "papers.md").read_text()


def test_sections_do_not_overwrite_each_other(tmp_path):
  a = claims.Claim("avgrad", "P1", "c1", "e1", "r1", "reproduced")
  b = claims.Claim("lion", "P2", "c2", "e2", "r2", "not reproduced")
  claims.write(b, claims.Timer(), tmp_path, quick=True)
  claims.write(a, claims.Timer(), tmp_path, quick=True)
  rows = json.loads((tmp_path / "papers.json").read_text())
  assert [(r["key"], r["verdict"]) for r in rows] == [("avgrad", "reproduced"),
                                                      ("lion", "not reproduced")]
  claims.write(claims.Claim("avgrad", "P1", "c1", "e1", "r1b", "partly"), claims.Timer(),
               tmp_path, quick=True)
  text = (tmp_path / "papers.md").read_text()
  assert "r1b" in text and "r2" in text and "**partly**" in text
  assert text.index("![avgrad]") < text.index("![lion]")  # the order of claims.PAPERS


def test_a_verdict_outside_the_three_is_refused():
  with pytest.raises(ValueError, match="verdict"):
    claims.Claim("avgrad", "P", "c", "e", "r", "mostly")


def test_committed_results_have_every_paper():
  rows = json.loads((ROOT / "benchmarks" / "results" / "papers.json").read_text())
  assert [r["key"] for r in rows] == list(claims.PAPERS)
  assert not any(r["quick"] for r in rows), "a --quick run was committed as a result"
  for r in rows:
    assert (ROOT / "benchmarks" / "results" / r["figure"]).exists(), r["figure"]
