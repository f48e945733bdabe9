"""The one shape every ``<name>(learning_rate, ..., weight_decay, mask)`` alias shares.

``decoupled_alias(core, learning_rate, weight_decay, mask)`` validates the two scalars and
returns ``optax.chain(core, optax.add_decayed_weights(weight_decay, mask),
optax.scale_by_learning_rate(learning_rate))``: updates ``-lr_t (u_t + wd_t theta)``, with
schedules for both evaluated at the step count before the update (optax's convention).
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import optax

from optzoo._src.base import checks


def decoupled_alias(
    core: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    weight_decay: optax.ScalarOrSchedule = 0.0,
    mask: Any | None = None,
) -> optax.GradientTransformationExtraArgs:
  """``chain(core, add_decayed_weights(weight_decay, mask), scale_by_learning_rate(lr))``.

  Raises ``ValueError`` naming ``learning_rate`` or ``weight_decay`` when a concrete value is
  negative; traced values and schedules pass unchecked.
  """
  checks.check_learning_rate(learning_rate)
  checks.check_range("weight_decay", weight_decay, 0.0)
  return optax.chain(
      core,
      optax.add_decayed_weights(weight_decay, mask),
      optax.scale_by_learning_rate(learning_rate),
  )


def static_args(*names: str):
  """Declares the arguments of an optimizer factory that fix shapes or Python control flow, so
  that ``optax.inject_hyperparams`` must keep them static (read by :func:`inject_hyperparams`
  and the registry). Used as a decorator: ``@static_args("num_grads", "mask")``."""

  def mark(factory):
    factory.static_args = tuple(names)
    return factory

  return mark


def forwarding_signature(alias_fn, core, names: Sequence[str]) -> inspect.Signature:
  """The signature of an alias that forwards ``**options`` to ``core``: its own parameters, then
  ``core``'s keyword-only parameters ``names`` (defaults and annotations as ``core`` declares
  them), so that ``inspect.signature``, ``optax.inject_hyperparams`` and a reader see every
  argument while the alias states only its own."""
  own = [p for p in inspect.signature(alias_fn).parameters.values() if p.kind is not p.VAR_KEYWORD]
  taken = {p.name for p in own}
  core_params = inspect.signature(core).parameters
  return inspect.Signature(
      own + [core_params[n] for n in names if n not in taken],
      return_annotation=inspect.signature(alias_fn).return_annotation)


def inject_hyperparams(factory, static_args: Sequence[str] = (), hyperparam_dtype: Any = None):
  """``optax.inject_hyperparams`` with the factory's shape-fixing arguments kept static.

  ``optzoo.inject_hyperparams(optzoo.microadam)(learning_rate=1e-3)`` works where
  ``optax.inject_hyperparams(optzoo.microadam)(learning_rate=1e-3)`` fails (it would trace
  ``num_grads``, which fixes the window's shape). Every optzoo factory lists those arguments in
  its ``static_args`` attribute; ``static_args`` here adds more. Any other factory (e.g.
  ``optax.adam``) works too.

  >>> import jax.numpy as jnp, optzoo
  >>> tx = optzoo.inject_hyperparams(optzoo.microadam)(learning_rate=1e-3)
  >>> state = tx.init({"w": jnp.zeros(4)})
  >>> round(float(state.hyperparams["learning_rate"]), 6)
  0.001
  """
  names = tuple(getattr(factory, "static_args", ())) + tuple(static_args)
  return optax.inject_hyperparams(factory, static_args=names, hyperparam_dtype=hyperparam_dtype)
