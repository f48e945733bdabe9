"""Sphinx configuration for optzoo's API reference.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (``tests/docs_test.py``
runs exactly this, warnings as errors, and checks that every public name is documented).
"""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document the checkout, not whatever optzoo is installed

import optzoo  # noqa: E402

project = "optzoo"
author = "The optzoo authors"
copyright = "The optzoo authors"  # noqa: A001
release = optzoo.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

# autodoc: the objects are re-exported at the root, so each is documented under its public
# name (``optzoo.lion``), never under ``optzoo._src``.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# defaults as their values: optzoo.lanton's signature is derived (it forwards scale_by_lanton's
# keywords), so its source has no default expressions to preserve
autodoc_preserve_defaults = False
python_maximum_signature_line_length = 88
# optax's type aliases stay as written instead of expanding into long unions
autodoc_type_aliases = {
    name: name for name in ("optax.ScalarOrSchedule", "optax.Schedule", "optax.Updates",
                            "optax.Params", "optax.OptState")
}
add_module_names = True

# napoleon: the docstrings are Google style ("Args:", "Returns:", "Raises:", "Attributes:").
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# "Attributes:" as :ivar: fields: a NamedTuple's fields are also autodoc members, and two
# attribute directives for one field would be a duplicate description.
napoleon_use_ivar = True

# MyST (algorithms.md): $...$ and $$...$$ math, ::: fences.
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"optzoo {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "A pure-JAX zoo of research optimizers, each an optax GradientTransformation.",
    "fixed_sidebar": True,
}


def _drop_type_docstring(app, what, name, obj, options, lines):
  """autodoc gives a constant without a ``#:`` doc comment its type's docstring (``tuple``'s,
  ``dict``'s); drop that, the page's own text under the directive describes the constant."""
  del app, name, options
  type_doc = getattr(type(obj), "__doc__", None)
  if what == "data" and type_doc:
    def words(text_lines):
      return [line.strip() for line in text_lines if line.strip()]

    if words(lines) == words(type_doc.splitlines()):
      lines.clear()

