"""No hidden recompilation: over 1,000 jitted steps, every registry optimizer (inside
``optzoo.inject_hyperparams``, its learning rate a warmup + cosine schedule) compiles nothing
after its first step, and a second ``init`` of the same shapes compiles nothing either
(MetaOptimize's probe of its base is cached per base and shapes).

Counted two ways: JAX's compile events (``/jax/core/compile/backend_compile_duration``), and the
jitted step's own cache, which grows on a retrace even where the session's persistent
compilation cache would answer the compile without an event.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from helpers import jitted_step, scheduled_optimizer, small_problem
from optzoo import registry
from optzoo.training import CompileCounter

STEPS = 1_000
pytestmark = pytest.mark.standard_promotion(
    "optax.warmup_cosine_decay_schedule computes float * int32 (and lanton, metaoptimize and "
    "noise_adaptive_layerwise are built on optax's Adam: float ** int32)")


@pytest.mark.parametrize("name", registry.names())
def test_no_compilation_after_the_first_step(name):
  entry = registry.get(name)
  params, loss = small_problem()
  tx = scheduled_optimizer(entry)
  step = jitted_step(tx, loss, entry.extra_args)
  state = tx.init(params)
  params, state = step(params, state)
  with CompileCounter() as later:
    for _ in range(STEPS - 1):
      params, state = step(params, state)
    again = tx.init(params)
    jax.block_until_ready((params, state, again))
  assert later.count == 0, f"{later.count} compilations after the first step"
  assert step._cache_size() == 1, "the step was traced again"  # noqa: SLF001
  assert int(state.count) == STEPS  # inject_hyperparams' step count
  assert all(bool(np.all(np.isfinite(np.asarray(x)))) for x in jax.tree.leaves(params))
