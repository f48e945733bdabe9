"""Every registry entry passes every check of the conformance kit (optzoo.testing)."""

import json
import os
import subprocess
import sys

import pytest
from helpers import SHARDED_FLAGS

from optzoo import registry, testing

IN_PROCESS = [c for c in testing.CHECKS if c != "sharding"]


@pytest.mark.parametrize("check", IN_PROCESS)
@pytest.mark.parametrize("name", registry.names())
def test_conformance(name, check):
  subject = testing.subject_from_entry(registry.get(name))
  reason = testing.skip_reason(check, subject)
  assert testing.run_check(check, subject) == ("ok" if reason is None else f"skipped: {reason}")
  # only the two learning-rate checks may not apply, and only to entries without a learning rate
  assert reason is None or (check in ("constant_schedule", "validation")
                            and registry.get(name).lr_arg is None)


def test_sharding_on_8_simulated_devices():
  """The sharding check for every entry, in one child process with 8 simulated CPU devices
  (LLVM's optimizations turned down as for the sharded example: compiling is most of the run,
  and code generation changes neither shardings nor numerics)."""
  env = dict(os.environ, XLA_FLAGS=SHARDED_FLAGS, JAX_PLATFORMS="cpu")
  child = os.path.join(os.path.dirname(__file__), "sharding_child.py")
  proc = subprocess.run([sys.executable, "-W", "ignore", child], capture_output=True, text=True,
                        env=env, timeout=1200)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("OPTZOO-RESULT ")]
  assert lines, f"child failed (rc {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
  results = json.loads(lines[-1].removeprefix("OPTZOO-RESULT "))
  assert sorted(results) == sorted(registry.names())
  failed = {k: v for k, v in results.items() if v != "ok"}
  assert not failed, failed


def test_kit_catches_a_broken_optimizer():
  """The kit must fail an optimizer that changes its state dtype and ignores clipping."""
  import jax.numpy as jnp
  import optax

  def broken(learning_rate):
    def init(params):
      return optax.tree.zeros_like(params)

    def update(updates, state, params=None):
      new_state = optax.tree.cast(updates, jnp.float16)  # dtype drift
      return optax.tree.scale(-learning_rate, updates), new_state

    return optax.GradientTransformation(init, update)

  with pytest.raises(testing.ConformanceError) as err:
    testing.check_optimizer(broken, {"learning_rate": 0.1}, checks=("dtypes", "validation"))
  assert "dtypes" in str(err.value) and "validation" in str(err.value)
