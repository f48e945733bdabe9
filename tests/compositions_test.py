"""optzoo inside optax's wrappers, the way users compose it: inject_hyperparams the documented
way, frozen objectives inside optax.masked / optax.partition, and the errors that name the remedy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import optzoo
from optzoo import objectives, registry, training

# lanton, metaoptimize and noise_adaptive_layerwise run optax's Adam inside them (toy settings)
pytestmark = pytest.mark.standard_promotion(
    "optax's Adam (inside lanton, metaoptimize, noise_adaptive_layerwise) computes float ** int32")

ENTRIES = registry.ENTRIES
IDS = [e.name for e in ENTRIES]


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_inject_hyperparams_the_documented_way_equals_the_plain_optimizer(entry):
  obj = objectives.get("mixed_pytree")
  kw = dict(entry.toy_kwargs)
  plain, _ = training.optimize(entry.factory(**kw), obj.loss, obj.init(), 3, entry.extra_args)
  injected, _ = training.optimize(optzoo.inject_hyperparams(entry.factory)(**kw), obj.loss,
                                  obj.init(), 3, entry.extra_args)
  for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(injected)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_plain_optax_inject_hyperparams_error_names_the_remedy():
  tx = optax.inject_hyperparams(optzoo.microadam)(learning_rate=1e-3)
  with pytest.raises(TypeError, match=r"optzoo\.inject_hyperparams"):
    tx.init({"w": jnp.zeros(8)})


def test_injected_learning_rate_is_a_state_field_users_can_change():
  tx = optzoo.inject_hyperparams(optzoo.lanton)(learning_rate=1e-2)
  state = tx.init({"w": jnp.ones((4, 4))})
  state.hyperparams["learning_rate"] = jnp.asarray(0.0)
  updates, _ = tx.update({"w": jnp.ones((4, 4))}, state, {"w": jnp.ones((4, 4))})
  assert float(jnp.max(jnp.abs(updates["w"]))) == 0.0
