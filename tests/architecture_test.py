"""The house rules of optzoo, read from the source with ``ast``.

Layers (an import goes only to a strictly lower rank, so there is no cycle; every module of
``optzoo/`` must have a rank here, so a new module is placed on purpose):

  0  _src.checks, _src.trees, _src.memory,    argument checks, per-leaf plumbing, state bytes,
     _src.masking                              objectives inside optax.masked / partition
  1  compression, curvature, lmo, layouts      building blocks: arrays and pytrees, no optax
     objectives, training, sweep               toy problems; the full-batch training loop;
                                               hyperparameter sweeps in one compilation
  2  _src.alias                                the <name>(learning_rate, ...) alias shape
     models                                    the flax.nnx model suite (objectives over real layers)
  3  _src.<paper>                              one private module per paper
  4  registry, testing                         the catalogue; the conformance kit (neither imports the other)
  5  optzoo (the package root)                 re-exports; never loads the kit or the registry
"""

import ast
import importlib
import pathlib
import re
import types

import pytest

import optzoo

ROOT = pathlib.Path(optzoo.__file__).parent
PAPERS = ("adahessian", "avgrad", "krylov", "lanton", "lion", "mada", "metaoptimize", "microadam")
RANK = {
    "optzoo._src.checks": 0, "optzoo._src.trees": 0, "optzoo._src.memory": 0,
    "optzoo._src.masking": 0,
    "optzoo.compression": 1, "optzoo.curvature": 1, "optzoo.lmo": 1,
    "optzoo.objectives": 1, "optzoo.training": 1, "optzoo.sweep": 1, "optzoo.layouts": 1,
    "optzoo._src.alias": 2, "optzoo.models": 2, "optzoo.workloads": 2,
    **{f"optzoo._src.{p}": 3 for p in PAPERS},
    "optzoo.registry": 4, "optzoo.testing": 4, "optzoo.strategies": 4,
    "optzoo": 5, "optzoo.pytest_plugin": 5, "optzoo.compare": 5, "optzoo._src": 0,
}
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


@pytest.mark.parametrize("name", sorted(MODULES))
def test_functions_are_short_enough_to_read_at_once(name):
  def code_lines(n):  # the def line to the last line, without the docstring
    doc = n.body[0] if n.body and isinstance(n.body[0], ast.Expr) and isinstance(
        getattr(n.body[0], "value", None), ast.Constant) and isinstance(n.body[0].value.value, str) else None
    return n.end_lineno - n.lineno + 1 - (0 if doc is None else doc.end_lineno - doc.lineno + 1)

  long = [f"{n.name} ({code_lines(n)} lines of code)"
          for n in ast.walk(ast.parse(MODULES[name].read_text()))
          if isinstance(n, ast.FunctionDef) and code_lines(n) > 120]
  assert not long, long
