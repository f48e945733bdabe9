"""Argument validation shared by every optimizer module (no optax knowledge).

Hyperparameters are validated only when they are concrete numbers: under
``optax.inject_hyperparams`` they arrive as traced arrays, and schedules are
callables; both are accepted silently, exactly as optax does.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def concrete_float(value: Any) -> float | None:
  """Returns ``value`` as a Python float when it is a concrete scalar, else None."""
  if value is None or callable(value) or isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, bool):
    return None
  try:
    arr = np.asarray(value)
  except Exception:  # noqa: BLE001 - anything that is not array-like is not concrete
    return None
  if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
    return None
  return float(arr)


def check_range(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
  """Raises ``ValueError`` naming ``name`` when a concrete ``value`` is out of range.

  The range is ``[low, high]``; ``low_open``/``high_open`` make either end open.
  Traced values and schedules are not checked.
  """
  x = concrete_float(value)
  if x is None:
    return
  lo_br = "(" if low_open else "["
  hi_br = ")" if high_open else "]"
  lo_s = "-inf" if low is None else repr(low)
  hi_s = "inf" if high is None else repr(high)
  bad = math.isnan(x)
  if low is not None:
    bad |= x <= low if low_open else x < low
  if high is not None:
    bad |= x >= high if high_open else x > high
  if bad:
    raise ValueError(
        f"{name}={value!r} is out of range: expected {name} in {lo_br}{lo_s}, {hi_s}{hi_br}."
    )


def check_learning_rate(value: Any, name: str = "learning_rate") -> None:
  """A learning rate must be a non-negative number or a schedule."""
  check_range(name, value, 0.0)


def check_beta(name: str, value: Any) -> None:
  """A decay rate must lie in [0, 1)."""
  check_range(name, value, 0.0, 1.0, high_open=True)


def check_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int:
  """Static integer arguments (shapes, counts): must be a Python int in range."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    hint = ""
    if isinstance(value, jax.core.Tracer) or hasattr(value, "shape"):
      hint = (" It arrived as an array, as optax.inject_hyperparams makes of every numeric "
              "argument: use optzoo.inject_hyperparams(factory), which keeps the shape-fixing "
              "arguments static, or pass static_args=factory.static_args.")
    raise TypeError(
        f"{name} must be a Python int (it fixes a static shape), got {value!r}.{hint}")
  check_range(name, int(value), low, high)
  return int(value)


def check_choice(name: str, value: Any, choices) -> None:
  if value not in choices:
    raise ValueError(f"{name}={value!r} is not one of {sorted(map(repr, choices))}.")


def check_same_structure(updates: Any, params: Any) -> None:
  """Raises a ``ValueError`` naming both tree structures when they differ.

  Called at trace time, so it costs nothing in the compiled step.
  """
  if params is None:
    return
  s_u = jax.tree.structure(updates)
  s_p = jax.tree.structure(params)
  if s_u != s_p:
    raise ValueError(
        "The gradient (updates) and params pytrees have different structures:\n"
        f"  updates: {s_u}\n  params:  {s_p}\n"
        "Pass gradients computed for exactly these params."
    )


def require_obj_fn(who: str, obj_fn: Any, params: Any) -> None:
  """The one error of every optimizer that needs the objective (as ``optax.contrib.sophia``):
  a ``ValueError`` naming ``who`` and the call to make, when ``obj_fn`` or ``params`` is missing.
  """
  if obj_fn is None or params is None:
    missing = "obj_fn" if obj_fn is None else "params"
    raise ValueError(
        f"{who}.update needs {missing}: call tx.update(grads, state, params, obj_fn=loss_fn), "
        "where loss_fn(params) is the scalar loss of the same batch as grads.")


_KEEP_OUT = ("Keep such leaves out of the optimizer, e.g. with "
             "optax.partition({'opt': tx, 'none': optax.set_to_zero()}, labels).")


def check_float_leaves(who: str, params: Any, *, complex_reason: str | None = None,
                       remedy: str = _KEEP_OUT) -> None:
  """A ``TypeError`` naming the first leaf of ``params`` that is not floating point, with
  ``remedy``. Complex leaves pass, unless ``complex_reason`` says why the optimizer needs real
  ones (then the error names the complex leaf with that reason)."""
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    dtype = np.dtype(leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype)
    name = jax.tree_util.keystr(path)
    if np.issubdtype(dtype, np.complexfloating):
      if complex_reason is None:
        continue
      raise TypeError(f"{who}: the leaf {name} is complex ({dtype}). {complex_reason}")
    if not (np.issubdtype(dtype, np.floating)
            or jax.dtypes.issubdtype(dtype, jax.numpy.floating)):  # bfloat16 and other ml_dtypes
      kinds = "floating-point" if complex_reason else "floating-point or complex"
      raise TypeError(f"{who}: the leaf {name} has dtype {dtype}; it needs {kinds} leaves. "
                      + remedy)


def check_leaf_shapes(who: str, updates: Any, reference: Any) -> None:
  """A ``ValueError`` naming the first leaf whose gradient shape differs from the shape the
  state was built for (``reference``: a params-shaped tree of the state). Trace time only."""
  check_same_structure(updates, reference)
  for (path, u), r in zip(jax.tree_util.tree_flatten_with_path(updates)[0],
                          jax.tree.leaves(reference)):
    if tuple(np.shape(u)) != tuple(np.shape(r)):
      raise ValueError(
          f"{who}: the gradient of leaf {jax.tree_util.keystr(path)} has shape {np.shape(u)}, "
          f"but the state was initialized for shape {np.shape(r)}. Pass gradients of exactly "
          "the params given to init.")
