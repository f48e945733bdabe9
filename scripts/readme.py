"""Regenerates the generated parts of README.md from the registry and benchmarks/results.

    python scripts/readme.py          # rewrite README.md in place
    python scripts/readme.py --check  # exit 1 if README.md's registry table is stale

The registry table sits between `<!-- registry-table:start -->` and `<!-- registry-table:end -->`;
measured results are copied from benchmarks/results/*.md between `<!-- results:start -->` and
`<!-- results:end -->` (never typed by hand); the "Papers tested" table between `<!-- papers:start -->`
and `<!-- papers:end -->` is rendered from benchmarks/results/papers.json by the paper scripts' own
table writer (benchmarks/papers/claims.py). It imports optzoo as installed (`pip install -e .`).
"""

from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _replace(text: str, tag: str, body: str) -> str:
  pat = re.compile(rf"(<!-- {tag}:start -->\n).*?(<!-- {tag}:end -->)", re.S)
  if not pat.search(text):
    raise SystemExit(f"README.md has no {tag} markers")
  return pat.sub(lambda m: m.group(1) + body.rstrip() + "\n" + m.group(2), text)


def measured_peaks() -> tuple[dict[str, float], str]:
  """Peak bytes/param per optimizer from benchmarks/results/memory.md's first table (written
  by benchmarks/memory.py), and the column label naming its pytree size."""
  f = ROOT / "benchmarks" / "results" / "memory.md"
  if not f.exists():
    return {}, ""
  text = f.read_text()
  size = re.search(r"Pytree: ([\d,]+) float32 parameters", text)
  rows = [l.split("|") for l in text.splitlines() if l.startswith("| ")]
  if not size or not rows or "peak bytes / param" not in "|".join(rows[0]):
    return {}, ""
  col = [c.strip() for c in rows[0]].index("peak bytes / param")
  peaks = {r[1].strip(): float(r[col]) for r in rows[1:] if r[col].strip()[:1].isdigit()}
  n = int(size.group(1).replace(",", ""))
  return peaks, f"peak bytes/param at {n / 1e6:g}M (memory.md)"


def registry_table() -> str:
  from optzoo import registry

  return registry.markdown_table(*measured_peaks())


def _memory_extras(lines: list[str]) -> str:
  """memory.md beyond its first table: MicroAdam's 100M line and the whole training step
  (its description and table)."""
  out = [l for l in lines if l.startswith("MicroAdam at ")]
  if "## A whole training step" in lines:
    rest = lines[lines.index("## A whole training step") + 1:]
    desc = [l for l in rest if l and not l.startswith("|")][:1]
    table = [l for l in rest if l.startswith("|")]
    out += ["#### A whole training step"] + desc + ["\n".join(table)]
  return "".join("\n\n" + part for part in out)


def results_section() -> str:
  res = ROOT / "benchmarks" / "results"
  parts = []
  for name, title in [("leaderboard.md", "Leaderboard summary (`benchmarks/run.py`)"),
                      ("step_time.md", "Step time against optax (`benchmarks/step_time.py`)"),
                      ("memory.md", "Optimizer-state memory (`benchmarks/memory.py`)"),
                      ("leaderboard_medium.md",
                       "Medium scale (`benchmarks/run.py --scale medium`, opt-in)")]:
    f = res / name
    if not f.exists():
      continue
    lines = f.read_text().splitlines()
    # the header paragraph (machine) and the first table of the file
    head = [l for l in lines[1:]
            if l.startswith(("Machine", "Protocol", "Honesty", "Time", "Generated"))]
    table, started = [], False
    for l in lines:
      if l.startswith("|"):
        table.append(l)
        started = True
      elif started:
        break
    extra = _memory_extras(lines) if name == "memory.md" else ""
    parts.append(f"### {title}\n\n" + "\n\n".join(head) + "\n\n" + "\n".join(table) + extra
                 + f"\n\nFull results: [`benchmarks/results/{name}`](benchmarks/results/{name}).\n")
  return "\n".join(parts) if parts else "Run the benchmarks to fill this section.\n"


def papers_table() -> str:
  import json

  found = ROOT / "benchmarks" / "results" / "papers.json"
  if not found.exists():
    return "Run the scripts in benchmarks/papers/ to fill this table.\n"
  if str(ROOT / "benchmarks" / "papers") not in sys.path:
    sys.path.append(str(ROOT / "benchmarks" / "papers"))
  import claims  # the paper scripts' own table writer

  return claims.summary_table(json.loads(found.read_text()), prefix="benchmarks/results/") + "\n"


def render(text: str) -> str:
  text = _replace(text, "registry-table", registry_table())
  text = _replace(text, "papers", papers_table())
  return _replace(text, "results", results_section())


def table_is_current(text: str) -> bool:
  m = re.search(r"<!-- registry-table:start -->\n(.*?)<!-- registry-table:end -->", text, re.S)
  return bool(m) and m.group(1).strip() == registry_table().strip()


if __name__ == "__main__":
  text = README.read_text()
  if "--check" in sys.argv:
    ok = table_is_current(text)
    print("README table is current" if ok else "README table is stale: run python scripts/readme.py")
    sys.exit(0 if ok else 1)
  README.write_text(render(text))
  print("README.md regenerated")
