"""State-size accounting: the bytes an optimizer keeps between steps (no optax knowledge)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def state_bytes(state: Any) -> int:
  """Bytes held by every array leaf of ``state`` (works on concrete or abstract states).

  A PRNG key counts 8 bytes per key; a Python scalar leaf counts 8 bytes.

  >>> import jax.numpy as jnp, optax, optzoo
  >>> optzoo.state_bytes(optax.adam(1e-3).init(jnp.zeros(1000)))
  8004
  """
  total = 0
  for leaf in jax.tree.leaves(state):
    if hasattr(leaf, "shape") and hasattr(leaf, "dtype"):
      dtype = leaf.dtype
      if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        total += int(np.prod(leaf.shape)) * 8
      else:
        total += int(np.prod(leaf.shape)) * np.dtype(dtype).itemsize
    elif isinstance(leaf, (int, float, bool, np.number)):
      total += 8
  return total


def bytes_per_param(tx: Any, params: Any) -> float:
  """State bytes per parameter of the optimizer ``tx`` on ``params``, computed abstractly
  with ``jax.eval_shape(tx.init, ...)`` (nothing is allocated).

  >>> import jax, optax, optzoo
  >>> optzoo.bytes_per_param(optax.adam(1e-3), {"w": jax.ShapeDtypeStruct((1000,), "float32")})
  8.004
  """
  abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract))
  return state_bytes(jax.eval_shape(tx.init, abstract)) / n
