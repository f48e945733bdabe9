"""optzoo as a package: the declared dependencies, the built wheel and sdist, a clean install.

The build tests copy the checkout to a temporary directory, run ``python -m build
--no-isolation`` there (the sdist, then the wheel built from the unpacked sdist), check what
both archives hold, then install the wheel (no editable install, no dev extra) into a fresh
virtual environment and take one jitted step with one optimizer of each family. The runtime
dependencies come from the package registry (or pip's cache); nothing else is downloaded.
"""

from __future__ import annotations

import ast
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import tomllib
import zipfile

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "optzoo"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())

# distribution name -> the top-level module it is imported as (when they differ)
IMPORT_NAME = {"jaxlib": "jax", "scikit-learn": "sklearn"}

# each optional extra -> the opt-in modules that may import it
EXTRA_USERS = {"testing": {"optzoo/strategies.py", "optzoo/pytest_plugin.py"},
               "compare": {"optzoo/compare.py", "optzoo/workloads.py"}}


def _import_names(requirements: list[str]) -> dict[str, str]:
  """{distribution: import name} for a list of requirement strings."""
  out = {}
  for req in requirements:
    dist = re.match(r"[A-Za-z0-9._-]+", req).group(0).lower().replace("_", "-")
    out[dist] = IMPORT_NAME.get(dist, dist.replace("-", "_"))
  return out


def _declared_runtime_deps() -> dict[str, str]:
  """{distribution: import name} for ``[project] dependencies``."""
  return _import_names(PYPROJECT["project"]["dependencies"])


def _third_party_imports() -> dict[str, list[str]]:
  """{top-level module: ['path:line', ...]} of every absolute non-stdlib, non-optzoo import
  in optzoo/, at module level or inside functions."""
  found: dict[str, list[str]] = {}
  for path in sorted(PACKAGE.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
      else:
        continue
      for name in names:
        top = name.split(".")[0]
        if top in ("optzoo", "__future__") or top in sys.stdlib_module_names:
          continue
        found.setdefault(top, []).append(f"{path.relative_to(REPO)}:{node.lineno}")
  return found


def test_every_import_is_declared_and_every_dependency_is_imported():
  declared = _declared_runtime_deps()
  assert set(declared) == {"jax", "jaxlib", "optax", "chex", "flax", "numpy"}, declared
  imported = _third_party_imports()
  # an opt-in module (optzoo.strategies, optzoo.compare, ...) may import its own extra
  extras = PYPROJECT["project"]["optional-dependencies"]

  def optional(module, where):
    return any(module in _import_names(extras[extra]).values()
               and all(w.split(":")[0] in users for w in where)
               for extra, users in EXTRA_USERS.items())

  undeclared = {m: where for m, where in imported.items()
                if m not in declared.values() and not optional(m, where)}
  assert not undeclared, f"imported by optzoo/ but not a runtime dependency: {undeclared}"
  unused = sorted(d for d, m in declared.items() if m not in imported)
  assert not unused, f"runtime dependencies optzoo/ never imports: {unused}"


def test_license_and_typing_marker_are_in_the_tree():
  assert PYPROJECT["project"]["license"] == "Apache-2.0"
  assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
  text = (REPO / "LICENSE").read_text()
  assert "Apache License" in text and "Version 2.0, January 2004" in text
  assert "END OF TERMS AND CONDITIONS" in text
  assert (PACKAGE / "py.typed").exists()
  assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["optzoo"]
  classifiers = PYPROJECT["project"]["classifiers"]
  for c in ("Programming Language :: Python :: 3.11", "Programming Language :: Python :: 3.12",
            "Operating System :: OS Independent", "Typing :: Typed",
            "Topic :: Scientific/Engineering :: Artificial Intelligence"):
    assert c in classifiers, c


# ----------------------------------------------------------------------------- the build
_NOT_COPIED = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
               ".hypothesis", ".ipynb_checkpoints", "_build")


def _run_command(cmd, *, cwd, timeout, env=None):
  """Runs a command (not an optimizer) and asserts it exits 0."""
  proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
  assert proc.returncode == 0, (
      f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
      f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
  return proc


def _clean_env() -> dict[str, str]:
  """The environment without anything that would put the checkout on ``sys.path``."""
  env = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONSAFEPATH")}
  env["PYTHONNOUSERSITE"] = "1"
  env.setdefault("JAX_PLATFORMS", "cpu")
  return env


@pytest.fixture(scope="session")
def dists(tmp_path_factory):
  """(wheel, sdist) built from a copy of the checkout."""
  tmp = tmp_path_factory.mktemp("build")
  src = tmp / "src"
  shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(*_NOT_COPIED))
  out = tmp / "dist"
  _run_command([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
               cwd=tmp, timeout=300, env=_clean_env())
  wheels = sorted(out.glob("optzoo-*.whl"))
  sdists = sorted(out.glob("optzoo-*.tar.gz"))
  assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
  return wheels[0], sdists[0]


def _expected_modules() -> list[str]:
  return sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py"))


def test_wheel_contents(dists):
  import optzoo  # noqa: PLC0415

  wheel, _ = dists
  assert wheel.name == f"optzoo-{optzoo.__version__}-py3-none-any.whl"
  with zipfile.ZipFile(wheel) as zf:
    names = set(zf.namelist())
    info = f"optzoo-{optzoo.__version__}.dist-info"
    metadata = zf.read(f"{info}/METADATA").decode()
    license_text = zf.read(f"{info}/licenses/LICENSE").decode()
  missing = [m for m in _expected_modules() if m not in names]
  assert not missing, f"modules missing from the wheel: {missing}"
  assert any(n.startswith("optzoo/_src/") for n in names)
  assert "optzoo/py.typed" in names
  assert license_text == (REPO / "LICENSE").read_text()
  assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "docs/", "scripts/"))]
  assert "License-Expression: Apache-2.0" in metadata
  assert "License-File: LICENSE" in metadata
  assert "Classifier: Typing :: Typed" in metadata
  requires = sorted(line.split(": ", 1)[1] for line in metadata.splitlines()
                    if line.startswith("Requires-Dist:") and "extra ==" not in line)
  assert requires == sorted(PYPROJECT["project"]["dependencies"]), requires


def test_sdist_contents(dists):
  import optzoo  # noqa: PLC0415

  _, sdist = dists
  root = f"optzoo-{optzoo.__version__}"
  with tarfile.open(sdist) as tf:
    names = {n.removeprefix(root + "/") for n in tf.getnames()}
  for f in ("LICENSE", "README.md", "pyproject.toml", "PKG-INFO", "optzoo/py.typed",
            *_expected_modules()):
    assert f in names, f"{f} missing from the sdist"


_SMOKE = textwrap.dedent("""
    import pathlib, site, sys
    import jax, jax.numpy as jnp, optax
    import optzoo
    from optzoo import testing

    here = pathlib.Path(optzoo.__file__).resolve()
    prefix = pathlib.Path(sys.prefix).resolve()
    site_dirs = [pathlib.Path(p).resolve() for p in site.getsitepackages()]
    assert any(here.is_relative_to(d) for d in site_dirs), (here, site_dirs)
    assert here.is_relative_to(prefix), (here, prefix)
    assert (here.parent / "py.typed").exists()
    assert (here.parent / "_src" / "lion.py").exists()

    params = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.full((4,), 0.5)}

    def loss(p):
      return jnp.sum(jnp.tanh(p["w"]) ** 2) + jnp.sum((p["b"] - 0.1) ** 2)

    one_per_family = {
        "first-order": (optzoo.lion(1e-3), ()),
        "meta": (optzoo.mada(1e-3), ()),
        "curvature": (optzoo.adahessian(1e-2), ("obj_fn",)),
        "layerwise": (optzoo.lanton(1e-3), ()),
        "memory-efficient": (optzoo.microadam(1e-3), ()),
    }
    for family, (tx, extra) in one_per_family.items():
      @jax.jit
      def step(params, state, tx=tx, extra=extra):
        grads = jax.grad(loss)(params)
        kwargs = {"obj_fn": loss} if "obj_fn" in extra else {}
        updates, state = tx.update(grads, state, params, **kwargs)
        return optax.apply_updates(params, updates), state, updates

      new_params, _, updates = step(params, tx.init(params))
      leaves = jax.tree.leaves(updates)
      assert leaves and all(bool(jnp.all(jnp.isfinite(u))) for u in leaves), family
      assert any(bool(jnp.any(u != 0)) for u in leaves), f"{family}: zero update"
      assert jax.tree.structure(new_params) == jax.tree.structure(params)
      print(family, "ok")

    # the kit (chex, flax) from the installed wheel
    print(testing.check_optimizer(optzoo.lion, {"learning_rate": 1e-2},
                                  checks=("extra_args", "checkpoint")))
    print("installed at", here)
""")


def test_wheel_installs_into_a_fresh_venv_and_trains(dists, tmp_path):
  wheel, _ = dists
  venv = tmp_path / "venv"
  env = _clean_env()
  env.pop("VIRTUAL_ENV", None)
  try:
    # no pip inside (ensurepip is slow); this interpreter's pip installs into it (--python)
    _run_command([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path,
                 timeout=120, env=env)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run_command([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                  "--no-compile", "--disable-pip-version-check", str(wheel)],
                 cwd=tmp_path, timeout=600, env=env)
    script = tmp_path / "smoke.py"
    script.write_text(_SMOKE)
    proc = _run_command([str(python), "-I", str(script)], cwd=tmp_path, timeout=300, env=env)
  finally:
    shutil.rmtree(venv, ignore_errors=True)  # ~0.8 GB of jax, jaxlib, flax, ...
  for family in ("first-order", "meta", "curvature", "layerwise", "memory-efficient"):
    assert f"{family} ok" in proc.stdout, proc.stdout
  assert "{'extra_args': 'ok', 'checkpoint': 'ok'}" in proc.stdout, proc.stdout
