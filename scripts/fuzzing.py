"""The registry fuzz properties, shared by tests/fuzz_test.py (fast profile) and scripts/fuzz.py
(long profile, on demand).

One example is a registry entry, keyword arguments drawn from ``strategies.RANGES``, a pytree
drawn by ``strategies.pytree_shapes`` (nested dicts, lists and tuples; scalars, zero-size and
1-D to 4-D leaves; float32, bfloat16, float16, and float64 under x64) and a per-leaf scale
(1e-3 to 1e3). :func:`check` runs it and raises ``AssertionError`` naming the property that
fails:

- no exception other than a documented clear error (a ``ValueError``/``TypeError`` at
  construction or ``init``, which :func:`check` returns as its outcome);
- finite updates on finite input (a wrapper's first update may be as non-finite as the
  optimizer it wraps is alone on the same input: MetaOptimize over ``optax.scale_by_adam`` on
  float16 params, whose second moment underflows);
- the state's structure, shapes and dtypes unchanged across steps;
- jitted and eager first updates agree to the dtype's tolerance;
- two runs with the same inputs are bitwise equal;
- the dtype policy: updates have the params' dtypes; a state leaf that mirrors a param (its
  shape) is floating point in the param's dtype or float32 (the optimizers keep 16-bit moments in
  float32 where their docstrings say so), never wider than the widest of those.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from hypothesis import strategies as st

from optzoo import registry, strategies, training

STEPS = 3


@dataclasses.dataclass(frozen=True)
class Example:
  name: str
  kwargs: dict
  shapes: Any
  log_scales: tuple
  seed: int


def examples(name: str, float16: bool = True, max_leaves: int = 4) -> st.SearchStrategy:
  """Fuzz examples for the registry entry ``name``."""
  entry = registry.get(name)
  shapes = strategies.pytree_shapes(dtype=strategies.dtypes(float16=float16),
                                    max_leaves=max_leaves, max_rank=4, max_side=4, min_side=0)
  return st.builds(
      Example, st.just(name), strategies.hyperparameters(entry), shapes,
      st.lists(st.floats(-3.0, 3.0), min_size=max_leaves + 1, max_size=max_leaves + 1).map(tuple),
      st.integers(0, 2**31 - 1))


def problem(ex: Example):
  """``(params, loss)``: leaves ~ N(0, s^2) with the drawn scales s, a separable quartic well
  around targets of the same scale, computed in float32 (float64 for float64 leaves)."""
  leaves, treedef = jax.tree.flatten(ex.shapes)
  rng = np.random.default_rng(ex.seed)
  scales = [10.0 ** ex.log_scales[i % len(ex.log_scales)] for i in range(len(leaves))]
  params = [jnp.asarray(rng.normal(size=l.shape) * s, l.dtype) for l, s in zip(leaves, scales)]
  targets = [jnp.asarray(rng.normal(size=l.shape) * s, jnp.float32) for l, s in zip(leaves, scales)]

  def loss(p):
    total = jnp.zeros([], jnp.float32)
    for x, t, s in zip(jax.tree.leaves(p), targets, scales):
      wide = jnp.float64 if x.dtype == jnp.float64 else jnp.float32
      d = (x.astype(wide) - t.astype(wide)) / s
      total = total + jnp.sum(0.5 * d**2 + 0.05 * d**4).astype(jnp.float32)
    return total

  return jax.tree.unflatten(treedef, params), loss


def _signature(tree):
  return jax.tree.structure(tree), [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(tree)]


def _finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x.astype(jnp.float32) if x.dtype == jnp.bfloat16 else x)))
             for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact))


def _tol(dtype) -> float:
  return 64 * float(jnp.finfo(dtype).eps)


def _close(a, b, dtype) -> bool:
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if a.size == 0:
    return True
  scale = max(float(np.max(np.abs(b))), float(np.max(np.abs(a))))
  return bool(np.all(np.abs(a - b) <= _tol(dtype) * scale + 1e-30))


def _run(tx, params, loss, extra_args):
  step = jax.jit(lambda p, s: _step(tx, loss, extra_args, p, s))
  state = tx.init(params)
  states, updates = [state], []
  for _ in range(STEPS):
    params, state, u = step(params, state)
    states.append(state)
    updates.append(u)
  return states, updates


def _step(tx, loss, extra_args, params, state):
  value, grads = jax.value_and_grad(loss)(params)
  u, state = tx.update(grads, state, params, **training.extra_kwargs(extra_args, loss, value))
  return optax.apply_updates(params, u), state, u


def _mirrors(state, params):
  """State leaves with a param's shape (and the param's dtype); leaves of rank >= 1 only."""
  by_shape = {}
  for x in jax.tree.leaves(params):
    if x.ndim >= 1 and x.size > 0:
      by_shape.setdefault(tuple(x.shape), set()).add(jnp.dtype(x.dtype))
  return [(x, by_shape[tuple(x.shape)]) for x in jax.tree.leaves(state)
          if hasattr(x, "shape") and tuple(x.shape) in by_shape]


def _wrapped_not_finite(entry, kwargs, params, loss) -> bool:
  """Whether a wrapper's wrapped optimizer, alone, gives a non-finite first update here (a
  wrapper's update is its wrapped optimizer's, rescaled: its docstring says so)."""
  if entry.wraps is None or kwargs.get(entry.wraps) is None:
    return False
  inner = kwargs[entry.wraps]
  u, _ = inner.update(jax.grad(loss)(params), inner.init(params), params)
  return not _finite(u)


def check(ex: Example) -> str:
  """Runs one example; returns 'ok', 'clear error: ...' or 'wrapped optimizer not finite: ...';
  AssertionError on a violation."""
  entry = registry.get(ex.name)
  params, loss = problem(ex)
  try:
    tx = entry.factory(**ex.kwargs)
    tx.init(params)
  except (ValueError, TypeError) as e:
    return f"clear error: {type(e).__name__}: {str(e)[:120]}"
  states, updates = _run(tx, params, loss, entry.extra_args)
  sig = _signature(states[0])
  for i, s in enumerate(states[1:], 1):
    assert _signature(s) == sig, f"state structure/shapes/dtypes changed at step {i}"
  if not _finite(updates[0]) and _wrapped_not_finite(entry, ex.kwargs, params, loss):
    return "wrapped optimizer not finite: documented, a wrapper passes its update through"
  for i, u in enumerate(updates):
    assert _finite(u), f"non-finite update at step {i}"
    assert [x.dtype for x in jax.tree.leaves(u)] == [x.dtype for x in jax.tree.leaves(params)], \
        "updates do not have the params' dtypes"
  for x, want in _mirrors(states[0], params):
    allowed = want | {jnp.dtype(jnp.float32)}
    if jnp.issubdtype(x.dtype, jnp.floating):
      assert jnp.dtype(x.dtype) in allowed, f"a state leaf {x.shape} is {x.dtype}, not {allowed}"
  # eager first update equals the jitted one to the dtype's tolerance
  value, grads = jax.value_and_grad(loss)(params)
  u_eager, _ = tx.update(grads, states[0], params,
                         **training.extra_kwargs(entry.extra_args, loss, value))
  for a, b, p in zip(jax.tree.leaves(u_eager), jax.tree.leaves(updates[0]), jax.tree.leaves(params)):
    assert _close(a, b, p.dtype), "eager and jitted updates differ beyond the dtype's tolerance"
  # a second run, from a fresh optimizer, is bitwise equal
  states2, updates2 = _run(entry.factory(**ex.kwargs), params, loss, entry.extra_args)
  for a, b in zip(jax.tree.leaves((states, updates)), jax.tree.leaves((states2, updates2))):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), "two runs are not bitwise equal"
  return "ok"
