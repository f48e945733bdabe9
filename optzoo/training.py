"""The one gradient step with an optimizer's extra ``update`` arguments (:func:`step`), and a
full-batch training loop under ``lax.scan`` built on it: the runner behind the conformance kit's
convergence check, the sweeps, the leaderboard, the notebooks and many tests.

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

__all__ = ["CompileCounter", "extra_kwargs", "optimize", "optimize_fn", "step"]

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


class CompileCounter:
  """Counts XLA backend compilations inside a ``with`` block (a ``jax.monitoring`` listener):
  the check that a training loop, a sweep or a second ``update`` compiles nothing new.

  >>> import jax, jax.numpy as jnp
  >>> f, x, y = jax.jit(lambda x: x * 2), jnp.ones(3), jnp.ones(4)
  >>> with CompileCounter() as c:
  ...   _ = f(x), f(x), f(y)
  >>> c.count  # one program per input shape
  2
  """

  def __init__(self):
    self.count = 0

  def _listen(self, event, *_args, **_kwargs):
    if event == _COMPILE_EVENT:
      self.count += 1

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)


def extra_kwargs(extra_args: Sequence[str], loss: Callable, value: Any) -> dict[str, Any]:
  """The ``update`` keywords named in ``extra_args`` (a registry entry's ``extra_args``) for the
  step's ``loss`` (params -> scalar; a minibatch step's batch loss) whose value at the current
  params is ``value``: ``'obj_fn'`` is ``loss`` itself, ``'value'`` is ``value``; any other name
  is a ``ValueError``."""
  out: dict[str, Any] = {}
  for name in extra_args:
    if name == "obj_fn":
      out["obj_fn"] = loss
    elif name == "value":
      out["value"] = value
    else:
      raise ValueError(f"the training step cannot supply the extra update argument {name!r}")
  return out


def step(tx: optax.GradientTransformation, loss: Callable, params: Any, state: Any,
         extra_args: Sequence[str] = ()) -> tuple[Any, Any, jax.Array]:
  """One gradient step on ``loss`` (params -> scalar): ``value_and_grad``, ``tx.update`` with the
  extra arguments ``extra_args`` names (:func:`extra_kwargs`), ``optax.apply_updates``.

  Returns ``(params, state, value)``, ``value`` the loss before the step.

  >>> import jax.numpy as jnp, optax
  >>> tx = optax.sgd(0.25)
  >>> p, s, v = step(tx, lambda x: jnp.sum(x ** 2), jnp.ones(2), tx.init(jnp.ones(2)))
  >>> p.tolist(), float(v)
  ([0.5, 0.5], 2.0)
  """
  value, grads = jax.value_and_grad(loss)(params)
  updates, state = tx.update(grads, state, params, **extra_kwargs(extra_args, loss, value))
  return optax.apply_updates(params, updates), state, value


def optimize_fn(tx: optax.GradientTransformation, loss: Callable, steps: int,
                extra_args: Sequence[str] = ()) -> Callable:
  """``run(params) -> (final_params, losses)``: ``steps`` full-batch steps under ``lax.scan``.

  ``losses`` has ``steps + 1`` entries: the loss before each step, then at the end. Not
  jitted, so callers can ``jax.jit(...).lower(params).compile()`` it to time the run alone.
  """

  def body(carry, _):
    p, st, value = step(tx, loss, *carry, extra_args)
    return (p, st), value

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
