"""A full-batch training loop under ``lax.scan``: the runner behind the conformance kit's
convergence check, the leaderboard, the notebooks and many tests.

>>> import jax.numpy as jnp, optax
>>> from optzoo import training
>>> p, losses = training.optimize(optax.sgd(0.5), lambda x: jnp.sum((x - 3.0) ** 2),
...                               jnp.zeros(2), 20)
>>> p.round(4).tolist(), losses.shape
([3.0, 3.0], (21,))
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import optax

__all__ = ["extra_kwargs", "optimize", "optimize_fn"]


def extra_kwargs(extra_args: Sequence[str], loss: Callable, params: Any) -> dict[str, Any]:
  """The ``update`` keywords named in ``extra_args`` for a full-batch ``loss`` at ``params``:
  ``'obj_fn'`` is ``loss`` itself, ``'value'`` is ``loss(params)``; any other name is a
  ``ValueError``."""
  out: dict[str, Any] = {}
  for name in extra_args:
    if name == "obj_fn":
      out["obj_fn"] = loss
    elif name == "value":
      out["value"] = loss(params)
    else:
      raise ValueError(f"the training loop cannot supply the extra argument {name!r}")
  return out


def optimize_fn(tx: optax.GradientTransformation, loss: Callable, steps: int,
                extra_args: Sequence[str] = ()) -> Callable:
  """``run(params) -> (final_params, losses)``: ``steps`` full-batch steps under ``lax.scan``.

  ``losses`` has ``steps + 1`` entries: the loss before each step, then at the end. Not
  jitted, so callers can ``jax.jit(...).lower(params).compile()`` it to time the run alone.
  """

  def body(carry, _):
    p, st = carry
    value, grads = jax.value_and_grad(loss)(p)
    updates, st = tx.update(grads, st, p, **extra_kwargs(extra_args, loss, p))
    return (optax.apply_updates(p, updates), st), value

  def run(params):
    (p, _), losses = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return p, jnp.concatenate([losses, loss(p)[None]])

  return run


def optimize(tx: optax.GradientTransformation, loss: Callable, params: Any, steps: int,
             extra_args: Sequence[str] = ()) -> tuple[Any, jax.Array]:
  """Minimizes ``loss`` from ``params`` for ``steps`` jitted full-batch steps.

  Returns ``(final_params, losses)`` as :func:`optimize_fn`. ``extra_args`` names the
  ``update`` keywords to supply (``'obj_fn'``, ``'value'``), as a registry entry's
  ``extra_args`` does.
  """
  return jax.jit(optimize_fn(tx, loss, steps, extra_args))(params)
