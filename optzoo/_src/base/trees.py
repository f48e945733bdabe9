"""Per-leaf plumbing shared by the optimizer modules (no optax knowledge).

* :func:`leaf_values`: the one resolver from a user's mask / labels / groups argument (None, a
  callable ``tree -> tree`` or a prefix pytree) to one value per leaf.
* :func:`unzip`: per-leaf output tuples back into a tuple of trees.
* :func:`promote`: the dtype JAX's standard promotion gives, to name an explicit cast target.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp


def promote(*dtypes: Any) -> Any:
  """The dtype that JAX's standard promotion gives ``dtypes`` (for example bfloat16 and float32
  give float32), also under ``jax_numpy_dtype_promotion='strict'``: it names the target of an
  explicit cast, so no implicit promotion happens."""
  with jax.numpy_dtype_promotion("standard"):
    return jnp.promote_types(*dtypes) if len(dtypes) == 2 else jnp.result_type(*dtypes)


def _is_none(x: Any) -> bool:
  return x is None


_RAISE = object()


def leaf_values(spec: Any, tree: Any, default: Any = None, *, missing: Any = _RAISE) -> list[Any]:
  """One value per leaf of ``tree`` (in ``jax.tree.leaves`` order) from ``spec``.

  ``spec`` is None (use ``default``), a callable ``tree -> pytree`` (called on ``tree``), or a
  pytree whose structure is ``tree``'s or a prefix of it: each leaf takes the value at the
  longest prefix of its path. ``default`` is a constant for every leaf or, when callable, a
  ``tree -> pytree`` like ``spec``. Lookup is by path, so ``optax.MaskedNode`` leaves (inside
  ``optax.masked`` or ``optax.partition``) are fine. A leaf that ``spec`` does not cover gets
  ``missing`` when given, else it is a ``ValueError`` naming the leaf.

  >>> import jax.numpy as jnp
  >>> leaf_values({"a": "x", "b": {"c": "y", "d": "z"}}, {"a": 1, "b": {"c": 2, "d": 3}})
  ['x', 'y', 'z']
  >>> leaf_values({"a": 0, "b": 1}, {"a": jnp.zeros(2), "b": {"c": 2, "d": 3}})
  [0, 1, 1]
  >>> leaf_values(None, {"a": 1, "b": 2}, default=True)
  [True, True]
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  if spec is None:
    if not callable(default):
      return [default] * len(leaves)
    spec = default
  if callable(spec):
    spec = spec(tree)
  by_path = {tuple(p): v for p, v in
             jax.tree_util.tree_flatten_with_path(spec, is_leaf=_is_none)[0]}
  out = []
  for path, _ in leaves:
    path = tuple(path)
    for k in range(len(path), -1, -1):
      if path[:k] in by_path:
        out.append(by_path[path[:k]])
        break
    else:
      if missing is not _RAISE:
        out.append(missing)
        continue
      raise ValueError(
          f"no value for the leaf {jax.tree_util.keystr(path)} in {spec!r}: pass a pytree with "
          "the params' structure (or a prefix of it), or a callable params -> such a pytree.")
  return out


def unzip(treedef: Any, outputs: Sequence[Sequence[Any]], n: int) -> tuple[Any, ...]:
  """Per-leaf ``n``-tuples ``[(a_0, b_0, ...), (a_1, b_1, ...), ...]`` ->
  ``(tree_a, tree_b, ...)``, ``n`` trees with structure ``treedef`` (also for an empty tree).

  >>> import jax
  >>> unzip(jax.tree.structure({"u": 0, "v": 0}), [(1, 2), (3, 4)], 2)
  ({'u': 1, 'v': 3}, {'u': 2, 'v': 4})
  """
  return tuple(jax.tree.unflatten(treedef, [o[i] for o in outputs]) for i in range(n))


__all__: Sequence[str] = ("leaf_values", "unzip")
