"""The house rules of optzoo, read from the source with ``ast``.

Layers (an import goes only to a strictly lower rank, so there is no cycle; every module of
``optzoo/`` must have a rank here, so a new module is placed on purpose; each folder is one
layer: ``_src/base/`` rank 0, ``_src/`` the optimizer layer, ranks 2-3):

  0  _src.base: checks, trees, memory,         argument checks, per-leaf plumbing, state bytes,
     masking                                   objectives inside optax.masked / partition
  1  compression, curvature, lmo, layouts      building blocks: arrays and pytrees, no optax
     objectives, training                      toy problems; the one step with extra update
                                               arguments and the full-batch training loop
  2  _src.alias, _src.layer_rates              the <name>(learning_rate, ...) alias shape; the
                                               layer-rate machinery LANTON and its wrapper share
     sweep, workloads                          hyperparameter sweeps in one compilation; the
                                               Workload description and the built-in workloads
     models                                    the flax.nnx model suite (objectives over real layers)
  3  _src.<paper>                              one private module per optimizer
  4  registry, testing, strategies             the catalogue; the conformance kit (neither imports
                                               the other); Hypothesis strategies
  5  optzoo (the package root), pytest_plugin  re-exports; never loads the kit or the registry
     compare                                   the leaderboard protocol on any workload
"""

import ast
import importlib
import pathlib
import re
import types

import pytest

import optzoo

ROOT = pathlib.Path(optzoo.__file__).parent
#: One private module per optimizer (the registry's entries; LANTON and its generic wrapper are
#: two optimizers of one paper).
PAPERS = ("adahessian", "avgrad", "krylov", "lanton", "lion", "mada", "metaoptimize", "microadam",
          "noise_adaptive_layerwise")
BASE = ("checks", "trees", "memory", "masking")
RANK = {
    "optzoo._src.base": 0, **{f"optzoo._src.base.{m}": 0 for m in BASE},
    "optzoo.compression": 1, "optzoo.curvature": 1, "optzoo.lmo": 1,
    "optzoo.objectives": 1, "optzoo.training": 1, "optzoo.layouts": 1, "optzoo.sweep": 2,
    "optzoo._src.alias": 2, "optzoo._src.layer_rates": 2, "optzoo.models": 2,
    "optzoo.workloads": 2,
    **{f"optzoo._src.{p}": 3 for p in PAPERS},
    "optzoo.registry": 4, "optzoo.testing": 4, "optzoo.strategies": 4,
    "optzoo": 5, "optzoo.pytest_plugin": 5, "optzoo.compare": 5, "optzoo._src": 0,
}
#: Each folder one layer: the ranks its modules may have.
FOLDER_RANKS = {"optzoo._src.base": {0}, "optzoo._src": {2, 3}}
PUBLIC_MODULES = ("compare", "compression", "curvature", "layouts", "lmo", "models", "objectives",
                  "registry", "sweep", "testing", "training", "workloads")


def _module_name(path: pathlib.Path) -> str:
  parts = ("optzoo",) + path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
  rel = pathlib.Path(*name.split(".")[1:])
  return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def _imports(path: pathlib.Path) -> set[str]:
  """optzoo modules that ``path`` imports anywhere (module level or inside functions)."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name.split(".")[0] == "optzoo"}
    elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "optzoo":
      for a in node.names:
        sub = f"{node.module}.{a.name}"
        out.add(sub if _is_module(sub) else node.module)
  return out


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def test_every_module_has_a_rank():
  assert sorted(set(MODULES) - set(RANK)) == []


def test_each_folder_is_one_layer():
  for name in MODULES:
    folder = name.rsplit(".", 1)[0]
    if folder in FOLDER_RANKS and name not in FOLDER_RANKS:  # the folder's own __init__ aside
      assert RANK[name] in FOLDER_RANKS[folder], f"{name} (rank {RANK[name]}) in {folder}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down_the_layers(name):
  bad = [f"{name} (rank {RANK[name]}) imports {dep} (rank {RANK[dep]})"
         for dep in sorted(_imports(MODULES[name])) if dep != name and RANK[dep] >= RANK[name]]
  assert not bad, "\n".join(bad)


def test_no_private_optax_anywhere():
  offenders = [str(p) for p in ROOT.rglob("*.py") if "optax._src" in p.read_text()]
  assert not offenders


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_public_modules_are_modules(name):
  assert isinstance(importlib.import_module(f"optzoo.{name}"), types.ModuleType)
  assert isinstance(getattr(optzoo, name, None) or importlib.import_module(f"optzoo.{name}"),
                    types.ModuleType)


def test_no_public_name_shadows_a_module():
  clash = [n for n in optzoo.__all__ if _is_module(f"optzoo.{n}")]
  assert not clash
  for n in optzoo.__all__:
    assert not isinstance(getattr(optzoo, n), types.ModuleType), n


def test_root_does_not_load_the_kit():
  import subprocess
  import sys
  code = "import sys, optzoo; print(sorted(m for m in ('optzoo.testing', 'optzoo.registry') if m in sys.modules))"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


# Files and notes a user of the installed package does not have: docstrings must not send them there.
_UNREACHABLE = re.compile(r"specs?/|\bspecs? (section|§)|\w+\.md\b|DESIGN\.md|\bsection \d|pitfall P\d|\bP\d\b|tests/|"
                          r"benchmarks/|scripts/|\[reconstructed\]", re.IGNORECASE)


def _docstrings(path):
  tree = ast.parse(path.read_text())
  for node in [tree, *ast.walk(tree)]:
    if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
      doc = ast.get_docstring(node)
      if doc:
        yield getattr(node, "name", "<module>"), doc


@pytest.mark.parametrize("name", sorted(MODULES))
def test_docstrings_name_nothing_a_user_does_not_have(name):
  bad = [f"{name}.{obj}: {m.group(0)!r}" for obj, doc in _docstrings(MODULES[name])
         for m in [_UNREACHABLE.search(doc)] if m]
  assert not bad, bad


#: Every Python file of the package, the benchmarks and the scripts, by its path from the repo.
ALL_FILES = {str(p.relative_to(ROOT.parent)): p
             for folder in ("optzoo", "benchmarks", "scripts")
             for p in sorted((ROOT.parent / folder).rglob("*.py"))}


@pytest.mark.parametrize("name", sorted(ALL_FILES))
def test_functions_are_short_enough_to_read_at_once(name):
  def code_lines(n):  # the def line to the last line, without the docstring
    doc = n.body[0] if n.body and isinstance(n.body[0], ast.Expr) and isinstance(
        getattr(n.body[0], "value", None), ast.Constant) and isinstance(n.body[0].value.value, str) else None
    return n.end_lineno - n.lineno + 1 - (0 if doc is None else doc.end_lineno - doc.lineno + 1)

  long = [f"{n.name} ({code_lines(n)} lines of code)"
          for n in ast.walk(ast.parse(ALL_FILES[name].read_text()))
          if isinstance(n, ast.FunctionDef) and code_lines(n) > 120]
  assert not long, long


# ----------------------------------------------------------------------------- adding an optimizer
REPO = ROOT.parent
README = (REPO / "README.md").read_text()


def _places(entry) -> dict[str, bool]:
  """Every place a registry entry must touch, and whether it does (the README's list)."""
  module = entry.factory.__module__.rsplit(".", 1)[-1]
  api = REPO / "docs" / "api" / f"{entry.family.replace('-', '_')}.rst"
  return {
      "optzoo/_src/<module>.py": (ROOT / "_src" / f"{module}.py").exists(),
      "optzoo/__init__.py": getattr(optzoo, entry.name, None) is entry.factory,
      "optzoo/registry.py": entry.factory.__module__ == f"optzoo._src.{module}",
      "tests/<module>_test.py": (REPO / "tests" / f"{module}_test.py").exists(),
      "tests/architecture_test.py": module in PAPERS,
      "docs/api/<family>.rst": api.exists() and f"autofunction:: optzoo.{entry.name}\n"
                               in api.read_text(),
      "docs/algorithms.md": f"(reconstructed-{entry.name})="
                            in (REPO / "docs" / "algorithms.md").read_text(),
  }


def test_every_optimizer_touches_every_place_and_the_readme_lists_them():
  from optzoo import registry  # noqa: PLC0415

  adding = README[README.index("Adding an optimizer touches"):]
  adding = adding[:adding.index("\n\n")]
  for entry in registry.ENTRIES:
    missing = [place for place, ok in _places(entry).items() if not ok]
    assert not missing, f"{entry.name} is missing from {missing}"
  unlisted = [place for place in _places(registry.ENTRIES[0]) if f"`{place}`" not in adding]
  assert not unlisted, f"README's 'Adding an optimizer' does not name {unlisted}"


def test_the_readme_layer_map_lists_every_module():
  layout = README[README.index("Layers, lowest first"):]
  layout = layout[:layout.index("Adding an optimizer")]
  missing = [name for name, path in MODULES.items()
             if path.name != "__init__.py" or name == "optzoo"
             if (path.name if name.rsplit(".", 1)[-1] not in PAPERS else name.rsplit(".", 1)[-1])
             not in layout]
  assert not missing, f"modules missing from the README's layer map: {missing}"

