"""Memory accounting (no optax knowledge): the bytes an optimizer keeps between steps (its
state) and the temporary bytes its compiled update needs while it runs."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
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


def _sum_of_squares(params: Any) -> jax.Array:
  return 0.5 * sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(params))


def temp_bytes_per_param(tx: Any, params: Any, extra_args: Any = (), loss_fn: Any = None,
                         device: Any = None, donate: bool = False) -> float:
  """Peak temporary bytes per parameter of the optimizer's compiled ``update``.

  ``jax.jit(tx.update)`` is lowered and compiled for ``params``' shapes and dtypes (abstract:
  nothing is allocated or run) and XLA's memory analysis gives its scratch memory
  (``compiled.memory_analysis().temp_size_in_bytes``): the buffers live only during the
  update, beyond its inputs (gradients, state, params) and outputs (updates, new state). With
  :func:`bytes_per_param` (the state) it is the optimizer's share of peak memory; a method
  with no state can still need many temporaries (Krylov bases, Hessian-vector products).

  Args:
    tx: the optimizer (anything with ``init`` and ``update``).
    params: a pytree of arrays or ``jax.ShapeDtypeStruct``.
    extra_args: ``update`` keywords to supply: ``'obj_fn'`` (``loss_fn``) and ``'value'``
      (``loss_fn(params)``); any other name is a ``ValueError``.
    loss_fn: the objective for ``extra_args``. Default: ``0.5 * sum of squares`` of the
      params, so the figure is the optimizer's own temporaries, not a model's activations
      (a real model's HVP adds those of its forward and backward passes).
    device: compile for this device (for example the first CPU device); default: the default
      device. The figure depends on the backend and the XLA version.
    donate: donate the gradients and the state to the update (``donate_argnums``), as a
      training step does: outputs may then reuse their buffers, and the figure plus the state
      is the update's peak. Default False.

  Returns:
    ``temp_size_in_bytes`` divided by the number of parameters.

  >>> import jax, optax, optzoo
  >>> params = {"w": jax.ShapeDtypeStruct((1000, 1000), "float32")}
  >>> optzoo.temp_bytes_per_param(optax.sgd(1e-3), params) < 1.0
  True
  """
  abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  n = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(abstract))
  loss = loss_fn if loss_fn is not None else _sum_of_squares
  names = tuple(extra_args)
  for name in names:
    if name not in ("obj_fn", "value"):
      raise ValueError(f"extra_args: cannot supply {name!r} (only 'obj_fn' and 'value').")

  def update(grads, state, p):
    extras = {}
    if "obj_fn" in names:
      extras["obj_fn"] = loss
    if "value" in names:
      extras["value"] = loss(p)
    return tx.update(grads, state, p, **extras)

  def compile_():
    state = jax.eval_shape(tx.init, abstract)
    jitted = jax.jit(update, donate_argnums=(0, 1) if donate else ())
    return jitted.lower(abstract, state, abstract).compile()

  if device is None:
    compiled = compile_()
  else:
    with jax.default_device(device):
      compiled = compile_()
  stats = compiled.memory_analysis()
  if stats is None:
    raise RuntimeError("this backend gives no memory analysis of compiled programs.")
  return stats.temp_size_in_bytes / max(n, 1)
