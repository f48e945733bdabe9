"""README.md keeps the registry table current and exactly two commands."""

import pathlib
import re

import readme

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_registry_table_matches_registry():
  assert readme.table_is_current((ROOT / "README.md").read_text()), (
      "README.md's optimizer table drifted from optzoo/registry.py: run python scripts/readme.py")


def test_table_check_detects_drift():
  text = (ROOT / "README.md").read_text()
  stale = text.replace("| `optzoo.lion` |", "| `optzoo.lion_old` |")
  assert not readme.table_is_current(stale)


def test_readme_has_the_two_commands():
  text = (ROOT / "README.md").read_text()
  blocks = {}
  for tag in ("main-command", "test-command"):
    m = re.search(rf"<!-- {tag} -->\n```bash\n(.*?)\n```", text, re.S)
    assert m, tag
    blocks[tag] = m.group(1)
  assert "benchmarks/run.py" in blocks["main-command"]
  assert "pytest" in blocks["test-command"]


def test_every_registry_entry_is_exported():
  import optzoo
  from optzoo import registry

  for e in registry.ENTRIES:
    assert getattr(optzoo, e.name) is e.factory, e.name
    assert e.name in optzoo.__all__
    if e.core is not None:
      assert e.core.__name__ in optzoo.__all__


def test_papers_table_matches_the_results():
  text = (ROOT / "README.md").read_text()
  m = re.search(r"<!-- papers:start -->\n(.*?)<!-- papers:end -->", text, re.S)
  assert m, "README.md has no papers markers"
  assert m.group(1).strip() == readme.papers_table().strip(), (
      "README.md's 'Papers tested' table drifted from benchmarks/results/papers.json: run "
      "python scripts/readme.py")
