"""The one shape every ``<name>(learning_rate, ..., weight_decay, mask)`` alias shares.

``decoupled_alias(core, learning_rate, weight_decay, mask)`` validates the two scalars and
returns ``optax.chain(core, optax.add_decayed_weights(weight_decay, mask),
optax.scale_by_learning_rate(learning_rate))``: updates ``-lr_t (u_t + wd_t theta)``, with
schedules for both evaluated at the step count before the update (DESIGN.md, Conventions).
"""

from __future__ import annotations

from typing import Any

import optax

from optzoo._src import checks


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
