"""Helpers shared by the test files: ``from helpers import run, assert_trees_close``.

pytest puts tests/ on ``sys.path`` (the default ``prepend`` import mode inserts the directory of
tests/conftest.py and of every test module), under pytest-xdist too. The name matches neither
``*_test.py`` nor ``test_*.py``, so pytest does not collect it as a test module.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


# XLA_FLAGS of the child processes that need 8 simulated CPU devices (XLA reads the device count
# when it starts). LLVM's optimizations are turned down there: those children check shardings
# and numerics, which code generation does not change, and compiling is most of their run.
SHARDED_FLAGS = ("--xla_force_host_platform_device_count=8 --xla_backend_optimization_level=0 "
                 "--xla_llvm_disable_expensive_passes=true")


# ----------------------------------------------------------------------------- long-run setups
def scheduled_optimizer(entry) -> optax.GradientTransformation:
  """A registry entry's toy optimizer inside ``optzoo.inject_hyperparams``, its learning rate a
  warmup + cosine schedule (of the entries without a learning rate, noise_adaptive_layerwise's
  inner Adam has its own schedule; Krylov cubic Newton has no step size to schedule)."""
  import optzoo  # noqa: PLC0415

  kwargs = dict(entry.toy_kwargs)
  if entry.lr_arg is not None:
    peak = kwargs[entry.lr_arg]
    kwargs[entry.lr_arg] = optax.warmup_cosine_decay_schedule(0.1 * peak, peak, 3, 50)
  return optzoo.inject_hyperparams(entry.factory, static_args=entry.static_args)(**kwargs)


def small_problem() -> tuple[Any, Callable[[Any], jax.Array]]:
  """``(params, full-batch loss)``: float32 leaves of rank 1 to 4 (sizes that 4 divides and
  sizes it does not, for sharding), a nonconvex loss coupling them."""
  import jax.numpy as jnp  # noqa: PLC0415

  rng = np.random.default_rng(0)
  params = {
      "dense": {"kernel": rng.normal(size=(16, 8)) * 0.3, "bias": rng.normal(size=(8,)) * 0.1},
      "embed": rng.normal(size=(12, 4)) * 0.3,
      "conv": rng.normal(size=(3, 3, 4, 8)) * 0.2,
      "scale": np.ones((5,)),
  }
  params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
  x = jnp.asarray(rng.normal(size=(32, 16)), jnp.float32)

  def loss(p):
    h = jnp.tanh(x @ p["dense"]["kernel"] + p["dense"]["bias"][None, :])   # (32, 8)
    e = jnp.tanh(p["embed"] @ p["conv"].sum(axis=(0, 1)))                  # (12, 8)
    return (jnp.mean((h @ e.T) ** 2) + 0.1 * jnp.sum((p["scale"] - 0.5) ** 2)
            + 0.01 * jnp.sum(p["conv"] ** 2))

  return params, loss


def jitted_step(tx: optax.GradientTransformation, loss: Callable, extra_args=()) -> Callable:
  """``jax.jit((params, state) -> (params, state))``: one full-batch step, ``obj_fn`` supplied
  when ``extra_args`` names it."""
  from optzoo import training  # noqa: PLC0415

  def step(params, state):
    return training.step(tx, loss, params, state, extra_args)[:2]

  return jax.jit(step)


class Run(NamedTuple):
  """What :func:`run` records."""

  params: list   # the params after each step (``steps`` entries)
  updates: list  # the update of each step (``steps`` entries)
  states: list   # the state before the first step, then after each step (``steps + 1``)


def run(tx: optax.GradientTransformation, params: Any, steps: int, *,
        loss: Callable[[Any], jax.Array] | None = None,
        grads: Callable[[Any, jax.Array], Any] | None = None,
        obj_fn: bool = False,
        extra_args: Callable[[Any], dict[str, Any]] | None = None) -> Run:
  """Runs ``tx`` for ``steps`` steps from ``params``; one jitted call per step.

  Each step is ``tx.update(g, state, params, **extras)`` then ``optax.apply_updates``, with
  ``g = jax.grad(loss)(params)`` or ``g = grads(params, t)`` (``t = 0, 1, ...``, a traced int32),
  ``extras = extra_args(params)`` plus ``obj_fn=loss`` when ``obj_fn`` is true.
  """
  if (loss is None) == (grads is None):
    raise ValueError("pass exactly one of loss= and grads=")
  if obj_fn and loss is None:
    raise ValueError("obj_fn=True needs loss=")
  grad_fn = grads if grads is not None else (lambda p, t: jax.grad(loss)(p))

  @jax.jit
  def step(p, s, t):
    extras = {} if extra_args is None else dict(extra_args(p))
    if obj_fn:
      extras["obj_fn"] = loss
    u, s = tx.update(grad_fn(p, t), s, p, **extras)
    return optax.apply_updates(p, u), u, s

  state = tx.init(params)
  out = Run([], [], [state])
  for t in range(steps):
    params, u, state = step(params, state, t)
    out.params.append(params)
    out.updates.append(u)
    out.states.append(state)
  return out


def _check_same_structure(actual, desired):
  sa, sd = jax.tree.structure(actual), jax.tree.structure(desired)
  assert sa == sd, f"different tree structures:\n  {sa}\n  {sd}"


def assert_trees_close(actual, desired, *, rtol: float, atol: float = 0.0, err_msg: str = ""):
  """``np.testing.assert_allclose`` on every pair of leaves of two same-structure trees."""
  _check_same_structure(actual, desired)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(desired)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol,
                               err_msg=f"{err_msg} leaf {jax.tree_util.keystr(path)}".strip())


def assert_trees_equal(actual, desired, *, err_msg: str = ""):
  """``np.testing.assert_array_equal`` (bitwise up to NaNs) on every pair of leaves."""
  _check_same_structure(actual, desired)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(actual), jax.tree.leaves(desired)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b),
                                  err_msg=f"{err_msg} leaf {jax.tree_util.keystr(path)}".strip())


def with_standard_promotion(tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """``tx`` with its ``init`` and ``update`` traced under JAX's standard dtype promotion.

  For optax's own optimizers used as references: optax's bias correction (``scale_by_adam`` and
  everything built on it) computes ``decay ** count`` with a Python float and an int32 count,
  which strict promotion rejects. Only the wrapped transformation is exempt; the optimizer under
  test next to it stays strict.
  """

  def init(params):
    with jax.numpy_dtype_promotion("standard"):
      return tx.init(params)

  def update(updates, state, params=None, **extra_args):
    with jax.numpy_dtype_promotion("standard"):
      return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init, update)


#: Registry entries whose default optimizer runs optax's Adam (a vector optimizer or a base), and
#: why that needs JAX's standard promotion.
OPTAX_ADAM_INSIDE = {
    name: "built on optax's Adam, whose bias correction computes float ** int32"
    for name in ("lanton", "metaoptimize", "noise_adaptive_layerwise")}


def registry_names_marked() -> list[Any]:
  """``registry.names()`` as pytest params, those of :data:`OPTAX_ADAM_INSIDE` marked
  ``standard_promotion`` with the reason."""
  import pytest  # noqa: PLC0415

  from optzoo import registry  # noqa: PLC0415

  return [pytest.param(n, marks=pytest.mark.standard_promotion(OPTAX_ADAM_INSIDE[n]))
          if n in OPTAX_ADAM_INSIDE else n for n in registry.names()]


# ----------------------------------------------------------------------------- child pytest runs
REPO = pathlib.Path(__file__).resolve().parents[1]


def repo_env() -> dict[str, str]:
  """This environment with the checkout first on ``PYTHONPATH``, for child processes."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
  return env


def _plugin_args() -> list[str]:
  """``-p optzoo.pytest_plugin`` unless an installed optzoo already registers it (pytest11)."""
  import importlib.metadata  # noqa: PLC0415

  installed = importlib.metadata.entry_points(group="pytest11")
  return [] if any(ep.value == "optzoo.pytest_plugin" for ep in installed) else [
      "-p", "optzoo.pytest_plugin"]


def run_pytest(path: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
  """pytest on the test file ``path`` in a child process, with optzoo's plugin loaded, as a
  user's project runs it: on this machine's own devices (no simulated host devices from an
  ``XLA_FLAGS`` that this process inherited or a module it imported set)."""
  env = repo_env()
  env.pop("XLA_FLAGS", None)
  return subprocess.run(
      [sys.executable, "-m", "pytest", *_plugin_args(), "-p", "no:cacheprovider",
       "-q", "-rs", str(path), *args],
      capture_output=True, text=True, env=env, cwd=path.parent, timeout=900)


# ----------------------------------------------------------------------------- layer-rate fixtures
def noisy_grads(params, key, stds):
  """Gradient of 0.5||X||^2 plus Gaussian noise of std stds[path-key] per leaf."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  # in float32 (the noise's dtype) whatever the params' dtype, then back to it
  return treedef.unflatten([(p.astype(jnp.float32) + s * jax.random.normal(k, p.shape))
                            .astype(p.dtype)
                            for p, k, s in zip(leaves, keys, treedef.flatten_up_to(stds))])


def three_layers():
  """Three (6, 8) float32 matrices l0, l1, l2 (a LANTON group of equal layers)."""
  rng = np.random.default_rng(1)
  return {k: jnp.asarray(rng.normal(size=(6, 8)), jnp.float32) for k in ("l0", "l1", "l2")}
