"""The README's quick start runs as pasted, and its notebook list matches notebooks/."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_quick_start_runs_as_pasted():
  text = (ROOT / "README.md").read_text()
  code = re.search(r"<!-- quickstart -->\n```python\n(.*?)\n```", text, re.S).group(1)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd="/")
  assert out.returncode == 0, out.stderr[-3000:]
  final = float(re.search(r"final loss ([0-9.]+)", out.stdout).group(1))
  assert final < 1e-3, out.stdout


def test_readme_names_only_notebooks_that_exist():
  text = (ROOT / "README.md").read_text()
  for name in re.findall(r"notebooks/(\w+\.ipynb)", text):
    assert (ROOT / "notebooks" / name).exists(), name
