"""The API reference (docs/, Sphinx): it builds without a warning, and every public name is in it.

The build is ``sphinx-build -W --keep-going -b html docs <tmp>``, exactly what a docs deploy
would run; ``--keep-going`` still writes every page and the object inventory, so the coverage
checks below run on the build even when it has warnings, and the warning test lists all of
them at once.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re
import subprocess
import sys
import zlib

import pytest

import optzoo

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
PUBLIC_MODULES = sorted(p.stem for p in (REPO / "optzoo").glob("*.py")
                        if not p.stem.startswith("_"))
WARNING = re.compile(r"\b(WARNING|ERROR|SEVERE|CRITICAL)\b:")


@pytest.fixture(scope="session")
def build(tmp_path_factory):
  """(sphinx-build's return code, its warning lines, the html directory)."""
  out = tmp_path_factory.mktemp("docs") / "html"
  proc = subprocess.run(
      [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
       "-d", str(out.parent / "doctrees"), str(DOCS), str(out)],
      cwd=REPO, capture_output=True, text=True, timeout=600)
  warnings = [line for line in (proc.stdout + proc.stderr).splitlines() if WARNING.search(line)]
  assert (out / "objects.inv").exists(), f"no inventory written:\n{proc.stderr[-4000:]}"
  return proc.returncode, warnings, out


def _inventory(html: pathlib.Path) -> dict[str, str]:
  """{object name: 'domain:role'} from Sphinx's objects.inv (format version 2)."""
  raw = (html / "objects.inv").read_bytes()
  header, _, body = raw.partition(b"compressed using zlib.\n")
  assert header.startswith(b"# Sphinx inventory version 2"), header[:40]
  out = {}
  for line in zlib.decompress(body).decode().splitlines():
    m = re.match(r"(.+?)\s+(\S+:\S+)\s+-?\d+\s", line)
    if m:
      out[m.group(1)] = m.group(2)
  return out


def _public_names(module) -> list[str]:
  """``__all__``, or else the functions and classes the module defines without a leading _."""
  if hasattr(module, "__all__"):
    return list(module.__all__)
  return [name for name, obj in vars(module).items()
          if not name.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj))
          and obj.__module__ == module.__name__]


def test_docs_build_without_warnings(build):
  returncode, warnings, _ = build
  assert not warnings and returncode == 0, (
      f"sphinx-build -W reported {len(warnings)} warning(s) (exit {returncode}):\n"
      + "\n".join(warnings))


def test_every_root_name_is_documented(build):
  _, _, html = build
  inventory = _inventory(html)
  missing = [n for n in optzoo.__all__ if f"optzoo.{n}" not in inventory]
  assert not missing, (
      f"names in optzoo.__all__ missing from the API reference (add them to their family's "
      f"page in docs/api/): {missing}")


def test_every_root_callable_has_a_docstring():
  no_doc = []
  for name in optzoo.__all__:
    obj = getattr(optzoo, name)
    if inspect.isfunction(obj) or inspect.isclass(obj):
      doc = (obj.__doc__ or "").strip()
      if not doc or doc.startswith(f"{obj.__name__}("):  # NamedTuple's generated docstring
        no_doc.append(name)
  assert not no_doc, f"public names without a docstring: {no_doc}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_module_and_its_names_are_documented(build, module_name):
  _, _, html = build
  inventory = _inventory(html)
  full = f"optzoo.{module_name}"
  assert inventory.get(full) == "py:module", f"{full} is not documented (automodule in docs/api/)"
  module = importlib.import_module(full)
  missing = [n for n in _public_names(module) if f"{full}.{n}" not in inventory]
  assert not missing, (
      f"public names of {full} missing from the API reference (a docstring, or a '#:' "
      f"comment for data, makes automodule pick them up): {missing}")


def test_every_benchmark_plot_is_on_a_page(build):
  _, _, html = build
  plots = sorted((REPO / "benchmarks" / "results").glob("*.png"))
  pages = "\n".join(p.read_text() for p in DOCS.rglob("*.rst"))
  missing = [p.name for p in plots if f"benchmarks/results/{p.name}" not in pages]
  assert not missing, f"plots in benchmarks/results/ on no docs page: {missing}"
  copied = {p.name for p in (html / "_images").glob("*.png")}
  assert {p.name for p in plots} <= copied, sorted({p.name for p in plots} - copied)


def test_algorithms_page_has_a_section_per_family_and_optimizer():
  from optzoo import registry  # noqa: PLC0415

  text = (DOCS / "algorithms.md").read_text()
  headings = re.findall(r"^#+ (.+)$", text, flags=re.M)
  for family in sorted({e.family for e in registry.ENTRIES}):
    title = family[0].upper() + family[1:]
    assert title in headings, f"no '{title}' section in docs/algorithms.md: {headings}"
  for entry in registry.ENTRIES:
    label = f"(reconstructed-{entry.name})="
    assert re.search(rf"^{re.escape(label)}\n#+ ", text, flags=re.M), (
        f"no section labelled {label} in docs/algorithms.md")
