"""How a parameter leaf is viewed: a matrix, a stack of matrices, a vector or an embedding.

Layout-aware optimizers (LANTON's Newton-Schulz step and layer rates, the noise-adaptive
wrapper's layer rates, AdaHessian's spatial averaging) read one shared description of every
leaf, in the spirit of optax's ``MuonDimensionNumbers``:

* ``reduction_axes``: the axes flattened into the rows of the matrix view (the fan-in);
* ``output_axes``: the axes flattened into its columns (the fan-out);
* ``batch_axes``: axes that index independent layers (a scanned stack of blocks): one matrix,
  one layer rate per index;
* ``window_axes``: a convolution's window axes (part of the reduction axes), the axes AdaHessian
  averages its curvature over.

The default (:func:`default_layout`) is right for standard Flax ``nnx`` and ``linen`` layers:

============================================  ==========================  ==================================
leaf                                          shape                       view
============================================  ==========================  ==================================
Dense / Linear kernel                         ``(in, out)``               one ``(in, out)`` matrix
Conv kernel (a path name contains "conv")     ``(*window, in, out)``      one ``(window*in, out)`` matrix
attention query/key/value kernel              ``(in, heads, head_dim)``   one ``(in, heads*head_dim)``
attention output kernel (``out``)             ``(heads, head_dim, out)``  one ``(heads*head_dim, out)``
biases, norm scales, any ``ndim < 2``         any                         vector
embedding / output head (by path)             ``(vocab, features)``       embedding
============================================  ==========================  ==================================

A leaf under ``stack_axes`` (for example ``{"blocks": 1}`` for an ``nnx.scan`` stack whose
leaves carry one leading layer axis) gets those leading axes as batch axes and the rule of its
remaining shape. A leaf of three or more axes that no rule identifies (a 1-D conv kernel and a
stack of dense layers look alike) is an error naming the leaf, never a guess: mark the stack,
use :func:`from_nnx` (which reads the module types of an ``nnx`` model), or override it.

>>> import jax.numpy as jnp
>>> from optzoo import layouts
>>> params = {"attn": {"query": {"kernel": jnp.zeros((16, 2, 8)), "bias": jnp.zeros((2, 8))}},
...           "conv": {"kernel": jnp.zeros((3, 3, 4, 8))}}
>>> print(layouts.describe(params))
| leaf | shape | kind | matrix view | layers | window axes |
|---|---|---|---|---:|---|
| attn/query/bias | (2, 8) | vector | - | 1 | - |
| attn/query/kernel | (16, 2, 8) | matrix | 16 x 16 | 1 | - |
| conv/kernel | (3, 3, 4, 8) | matrix | 36 x 8 | 1 | (0, 1) |
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, Literal, Sequence

import jax
import jax.numpy as jnp

from optzoo._src.base import trees

Kind = Literal["matrix", "vector", "embedding"]

_EMBED_NAMES = ("embed", "wte", "lm_head")
_QKV_NAMES = ("query", "key", "value", "qkv")


@dataclasses.dataclass(frozen=True)
class LeafLayout:
  """How one leaf is viewed (see the module docstring). Axes are non-negative and disjoint.

  Attributes:
    kind: 'matrix' (a hidden weight), 'vector' (elementwise: biases, norm scales) or
      'embedding' (an input embedding or output head, viewed as a matrix but treated apart).
    reduction_axes: axes flattened into the rows (empty for vectors).
    output_axes: axes flattened into the columns (empty for vectors).
    batch_axes: leading axes of independent layers (a stack).
    window_axes: a convolution's window axes (a subset of ``reduction_axes``).
  """

  kind: Kind
  reduction_axes: tuple[int, ...] = ()
  output_axes: tuple[int, ...] = ()
  batch_axes: tuple[int, ...] = ()
  window_axes: tuple[int, ...] = ()

  def num_layers(self, shape: Sequence[int]) -> int:
    """Independent layers in a leaf of ``shape`` (the product of the batch axes)."""
    return math.prod(shape[a] for a in self.batch_axes)

  def matrix_shape(self, shape: Sequence[int]) -> tuple[int, int] | None:
    """(rows, cols) of one layer's matrix view, or None for a vector."""
    if self.kind == "vector":
      return None
    return (math.prod(shape[a] for a in self.reduction_axes),
            math.prod(shape[a] for a in self.output_axes))

  def shifted(self, n: int) -> "LeafLayout":
    """This layout under ``n`` new leading stack axes (which become batch axes)."""
    sh = lambda axes: tuple(a + n for a in axes)  # noqa: E731
    return LeafLayout(self.kind, sh(self.reduction_axes), sh(self.output_axes),
                      tuple(range(n)) + sh(self.batch_axes), sh(self.window_axes))


VECTOR = LeafLayout("vector")


def dense() -> LeafLayout:
  """A Dense / Linear kernel ``(in, out)``."""
  return LeafLayout("matrix", (0,), (1,))


def conv(ndim: int) -> LeafLayout:
  """A convolution kernel ``(*window, in, out)`` of ``ndim`` axes: one ``(window*in, out)``
  matrix, averaged over the window by AdaHessian."""
  window = tuple(range(ndim - 2))
  return LeafLayout("matrix", window + (ndim - 2,), (ndim - 1,), (), window)


def general(n_in: int, n_out: int, kind: Kind = "matrix") -> LeafLayout:
  """A ``LinearGeneral`` kernel with ``n_in`` input axes then ``n_out`` output axes (attention
  query/key/value: ``general(1, 2)``; attention output: ``general(2, 1)``)."""
  return LeafLayout(kind, tuple(range(n_in)), tuple(range(n_in, n_in + n_out)))


def path_names(path: Sequence[Any]) -> tuple[str, ...]:
  """The names along a ``jax.tree_util`` key path, without the trailing ``.value`` of an
  ``nnx.Variable`` (so pure dicts and ``nnx.State`` give the same names)."""
  names = []
  for k in path:
    for attr in ("key", "name", "idx"):
      if hasattr(k, attr):
        names.append(str(getattr(k, attr)))
        break
    else:
      names.append(str(k))
  if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and names[-1] == "value":
    names.pop()
  return tuple(names)


def _is_embed_path(names: Sequence[str]) -> bool:
  """An input embedding or output head, by path: a name containing 'embed', 'wte' or
  'lm_head' (any case), or a leaf called 'embedding'."""
  lower = [n.lower() for n in names]
  return any(s in n for n in lower for s in _EMBED_NAMES) or (bool(lower) and lower[-1] == "embedding")


class AmbiguousLayoutError(ValueError):
  """A leaf whose layout no rule identifies (see :func:`default_layout`)."""


def default_layout(names: Sequence[str], shape: Sequence[int]) -> LeafLayout:
  """The default layout of a leaf from its path ``names`` and ``shape`` (rules in the module
  docstring). Raises :class:`AmbiguousLayoutError` naming the leaf when none applies."""
  lower = [n.lower() for n in names]
  ndim = len(shape)
  if ndim < 2 or (lower and lower[-1] in ("bias", "scale")):
    return VECTOR
  if _is_embed_path(names):
    if ndim == 2:
      return LeafLayout("embedding", (0,), (1,))
  elif any(n in _QKV_NAMES for n in lower[:-1]) and ndim >= 3:
    return general(1, 2).shifted(ndim - 3) if ndim > 3 else general(1, 2)
  elif "out" in lower[:-1] and any("att" in n for n in lower) and ndim >= 3:
    return general(2, 1).shifted(ndim - 3) if ndim > 3 else general(2, 1)
  elif any("conv" in n for n in lower) and ndim >= 3:
    return conv(ndim)
  elif ndim == 2:
    return dense()
  raise AmbiguousLayoutError(
      f"the leaf {'/'.join(names) or '<root>'} of shape {tuple(shape)} has no unambiguous "
      "layout: it could be a convolution kernel (*window, in, out) or a stack of layers. "
      "Mark stacked layers with stack_axes (e.g. stack_axes={'blocks': 1}), build the "
      "layouts from the model with optzoo.layouts.from_nnx(model), or pass this leaf's "
      "layout in layouts= (e.g. optzoo.layouts.conv(ndim) or optzoo.layouts.dense().shifted(1)).")


LayoutSpec = Any  # None | pytree of LeafLayout/None | callable (names, shape) -> LeafLayout | None


def infer(params: Any, layouts: LayoutSpec = None, stack_axes: Any = None) -> list[LeafLayout]:
  """The layout of every leaf of ``params`` (in ``jax.tree.leaves`` order).

  Args:
    params: the parameter pytree (a dict, ``nnx.State``, or abstract leaves with ``.shape``).
    layouts: overrides: a pytree with ``params``' structure (or a prefix of it) whose leaves are
      :class:`LeafLayout` or None, or a callable ``(names, shape) -> LeafLayout | None`` such as
      the one :func:`from_nnx` returns. None (default, also per leaf) uses the default rule.
    stack_axes: the number of leading stack (layer) axes, as an int for every leaf or a
      pytree of ints over some subtrees (e.g. ``{"blocks": 1}``; leaves outside them have
      none); applied to default layouts only.
  """
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  if layouts is None or callable(layouts):
    given = [None] * len(leaves)
  else:
    given = trees.leaf_values(layouts, params)
  stacks = trees.leaf_values(stack_axes, params, default=0, missing=0)
  out = []
  for (path, leaf), lay, k in zip(leaves, given, stacks):
    names, shape = path_names(path), tuple(leaf.shape)
    if lay is None and callable(layouts):
      lay = layouts(names, shape)
    if lay is None:
      lay = default_layout(names, shape[k:]).shifted(k) if k else default_layout(names, shape)
    _check(lay, names, shape)
    out.append(lay)
  return out


def _check(lay: LeafLayout, names: Sequence[str], shape: tuple[int, ...]) -> None:
  axes = lay.reduction_axes + lay.output_axes + lay.batch_axes
  ok = len(set(axes)) == len(axes) and all(0 <= a < len(shape) for a in axes)
  ok &= set(lay.window_axes) <= set(lay.reduction_axes)
  if lay.kind != "vector":
    ok &= bool(lay.reduction_axes) and bool(lay.output_axes)
    ok &= set(axes) == set(range(len(shape)))
  if not ok:
    raise ValueError(f"layout {lay} does not fit the leaf {'/'.join(names)} of shape {shape}.")


def to_matrices(x: jax.Array, lay: LeafLayout) -> jax.Array:
  """``x`` as a stack ``(layers, rows, cols)`` of its matrix views (see :func:`from_matrices`).

  >>> x = jnp.arange(24.0).reshape(2, 3, 4)      # attention query: (in, heads, head_dim)
  >>> to_matrices(x, general(1, 2)).shape
  (1, 2, 12)
  """
  perm = lay.batch_axes + lay.reduction_axes + lay.output_axes
  rows, cols = lay.matrix_shape(x.shape)
  return jnp.transpose(x, perm).reshape(lay.num_layers(x.shape), rows, cols)


def from_matrices(m: jax.Array, lay: LeafLayout, shape: Sequence[int]) -> jax.Array:
  """Inverse of :func:`to_matrices` for a leaf of ``shape``."""
  perm = lay.batch_axes + lay.reduction_axes + lay.output_axes
  x = m.reshape(tuple(shape[a] for a in perm))
  return jnp.transpose(x, tuple(perm.index(a) for a in range(len(shape))))


def from_nnx(model: Any) -> Callable[[Sequence[str], Sequence[int]], LeafLayout | None]:
  """Layouts read from the module types of a ``flax.nnx`` model, for ``layouts=``.

  ``nnx.Linear`` -> dense, ``nnx.Conv`` -> conv, ``nnx.LinearGeneral`` (attention projections)
  -> its input and output axes, ``nnx.Embed`` -> embedding, norms -> vector. A leaf with more
  axes than its module makes (a stack built with ``nnx.vmap``/``nnx.scan``) gets the extra
  leading axes as batch axes. Leaves of other modules fall back to :func:`default_layout`.
  """
  from flax import nnx  # noqa: PLC0415 - flax is needed only here

  rules: dict[tuple[str, ...], Callable[[str], tuple[LeafLayout, int]]] = {}
  for path, node in nnx.iter_graph(model):
    names = tuple(str(p) for p in path)
    if isinstance(node, nnx.Conv):
      nd = len(node.kernel_size) + 2
      rules[names] = lambda p, nd=nd: (conv(nd), nd) if p == "kernel" else (VECTOR, 1)
    elif isinstance(node, nnx.LinearGeneral):
      a, b = len(node.in_features), len(node.out_features)
      rules[names] = lambda p, a=a, b=b: (general(a, b), a + b) if p == "kernel" else (VECTOR, b)
    elif isinstance(node, nnx.Linear):
      kind = "embedding" if _is_embed_path(names) else "matrix"
      lay = LeafLayout(kind, (0,), (1,))
      rules[names] = lambda p, lay=lay: (lay, 2) if p == "kernel" else (VECTOR, 1)
    elif isinstance(node, nnx.Embed):
      rules[names] = lambda p: (LeafLayout("embedding", (0,), (1,)), 2)
    elif isinstance(node, (nnx.LayerNorm, nnx.RMSNorm, nnx.BatchNorm, nnx.GroupNorm)):
      rules[names] = lambda p: (VECTOR, 1)

  def layout(names: Sequence[str], shape: Sequence[int]) -> LeafLayout | None:
    rule = rules.get(tuple(names[:-1]))
    if rule is None:
      return None
    lay, nd = rule(names[-1])
    extra = len(shape) - nd
    if extra < 0:
      raise ValueError(f"the leaf {'/'.join(names)} of shape {tuple(shape)} has fewer axes than "
                       f"its module's parameter ({nd}).")
    return lay.shifted(extra) if extra else lay

  return layout


def describe(params: Any, layouts: LayoutSpec = None, stack_axes: Any = None) -> "Treatment":
  """How every leaf of ``params`` will be viewed: a :class:`Treatment` (a list of rows) that
  prints as a markdown table (leaf, shape, kind, matrix view, layers, window axes)."""
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  rows = []
  for (path, leaf), lay in zip(leaves, infer(params, layouts, stack_axes)):
    shape = tuple(leaf.shape)
    ms = lay.matrix_shape(shape)
    rows.append({
        "leaf": "/".join(path_names(path)), "shape": shape, "kind": lay.kind,
        "matrix": "-" if ms is None else f"{ms[0]} x {ms[1]}",
        "layers": lay.num_layers(shape), "window_axes": lay.window_axes, "layout": lay,
    })
  return Treatment(rows)


class Treatment(list):
  """Rows of :func:`describe`; ``str()`` is a markdown table."""

  def __str__(self) -> str:
    lines = ["| leaf | shape | kind | matrix view | layers | window axes |",
             "|---|---|---|---|---:|---|"]
    for r in self:
      lines.append(f"| {r['leaf']} | {r['shape']} | {r['kind']} | {r['matrix']} | {r['layers']} "
                   f"| {r['window_axes'] or '-'} |")
    return "\n".join(lines)
