"""Hypothesis strategies for property tests of optimizers: toy objectives with known minimizers
and valid hyperparameters.

Needs `hypothesis <https://hypothesis.readthedocs.io>`_, which optzoo does not depend on at run
time: ``pip install "optzoo[testing]"``. Each drawn objective is an
:class:`optzoo.objectives.Objective` (``init()``, ``loss``, ``minimizer``, ``distance``) with
its dtype and a description of the draw:

>>> import optax
>>> from hypothesis import given, settings
>>> from optzoo import strategies, training
>>> @settings(max_examples=3, deadline=None, database=None)
... @given(strategies.quadratics(max_condition=10.0))
... def test_adam_converges(obj):
...     params, _ = training.optimize(optax.adam(0.05), obj.loss, obj.init(), 1000)
...     assert obj.distance(params) < 1e-2
>>> test_adam_converges()

Strategies: :func:`pytree_shapes` (random pytree structures of ``jax.ShapeDtypeStruct``),
:func:`dtypes`, :func:`condition_numbers`, :func:`quadratics` (rotated or diagonal, any
condition number), :func:`rosenbrocks` (shifted, scaled Rosenbrock valleys),
:func:`logistic_regressions` (on drawn data, minimizer by Newton's method in float64),
:func:`objectives` (any of the three) and :func:`hyperparameters` (keyword arguments for a
registry entry, or your own optimizer, drawn from the ranges of :data:`RANGES`).

JAX compiles on the first call of every new shape, which takes longer than Hypothesis's default
deadline of 200 ms: use ``deadline=None`` (or ``pytest --hypothesis-profile=optzoo``, a profile
this module registers: no deadline, 10 examples).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from optzoo import objectives as _objectives
from optzoo._src.base import trees

try:
  from hypothesis import HealthCheck, settings
  from hypothesis import strategies as st
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError(
      "optzoo.strategies needs hypothesis, which optzoo does not install by default: "
      'pip install "optzoo[testing]" (or pip install hypothesis)') from e

__all__ = [
    "RANGES",
    "Choice",
    "DrawnObjective",
    "Int",
    "Log",
    "Uniform",
    "condition_numbers",
    "dtypes",
    "hyperparameters",
    "logistic_regressions",
    "objectives",
    "pytree_shapes",
    "quadratics",
    "rosenbrocks",
]

settings.register_profile("optzoo", deadline=None, max_examples=10,
                          suppress_health_check=[HealthCheck.too_slow])

_KEYS = ("w", "b", "kernel", "bias", "scale", "embed")


@dataclasses.dataclass(frozen=True)
class DrawnObjective(_objectives.Objective):
  """A drawn :class:`optzoo.objectives.Objective`: ``init()`` gives the start (params of
  ``dtype``), ``loss`` is computed in at least float32, ``minimizer`` is exact (for
  :func:`logistic_regressions`, Newton's float64 solution cast to ``dtype``), ``min_loss`` its
  loss.

  Attributes:
    dtype: the params' dtype.
    condition: the Hessian's condition number at the minimizer where the draw fixes it
      (quadratics), else None.
  """

  dtype: Any = jnp.float32
  condition: float | None = None


# ----------------------------------------------------------------------------- building blocks
def dtypes(float16: bool = False) -> st.SearchStrategy:
  """Float dtypes for params: float32 and bfloat16 (and float16 when ``float16``), and float64
  when x64 is enabled."""
  options = [jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)]
  if float16:
    options.append(jnp.dtype(jnp.float16))
  if jax.config.read("jax_enable_x64"):
    options.append(jnp.dtype(jnp.float64))
  return st.sampled_from(options)


def condition_numbers(low: float = 1.0, high: float = 1e3) -> st.SearchStrategy[float]:
  """Condition numbers drawn log-uniformly in ``[low, high]`` (``low >= 1``)."""
  if not 1.0 <= low <= high:
    raise ValueError(f"need 1 <= low <= high, got low={low}, high={high}")
  lo, hi = math.log10(low), math.log10(high)
  return st.floats(lo, hi).map(lambda e: float(10.0 ** e))


def _as_strategy(value, default: st.SearchStrategy) -> st.SearchStrategy:
  if value is None:
    return default
  return value if isinstance(value, st.SearchStrategy) else st.just(value)


def pytree_shapes(dtype=jnp.float32, max_leaves: int = 4, max_rank: int = 2,
                  max_side: int = 6, min_side: int = 1) -> st.SearchStrategy:
  """Random pytrees (nested dicts, lists and tuples, or a bare leaf) of ``jax.ShapeDtypeStruct``
  leaves: 1 to ``max_leaves`` leaves of rank 0 to ``max_rank`` and sides ``min_side`` (1; 0
  draws zero-size leaves too) to ``max_side``, all of ``dtype`` (a dtype, or a strategy of them
  such as :func:`dtypes`). No container is empty."""
  def tree(dt):
    leaf = st.lists(st.integers(min_side, max_side), max_size=max_rank).map(
        lambda s: jax.ShapeDtypeStruct(tuple(s), jnp.dtype(dt)))
    return st.recursive(
        leaf,
        lambda children: st.one_of(
            st.dictionaries(st.sampled_from(_KEYS), children, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3),
            st.lists(children, min_size=1, max_size=3).map(tuple)),
        max_leaves=max_leaves)

  return _as_strategy(dtype, dtypes()).flatmap(tree)


def _seeds():
  return st.integers(0, 2**32 - 1)


def _fill(shapes, values: np.ndarray):
  """The pytree of ``shapes`` filled, in leaf order, from the flat ``values``."""
  leaves, treedef = jax.tree.flatten(shapes)
  out, i = [], 0
  for s in leaves:
    n = int(np.prod(s.shape, dtype=int))
    out.append(jnp.asarray(values[i:i + n].reshape(s.shape), s.dtype))
    i += n
  return jax.tree.unflatten(treedef, out)


def _flat32(params) -> jax.Array:
  leaves = [jnp.ravel(x).astype(trees.promote(x.dtype, jnp.float32))
            for x in jax.tree.leaves(params)]
  return jnp.concatenate(leaves)


def _size(shapes) -> int:
  return sum(int(np.prod(s.shape, dtype=int)) for s in jax.tree.leaves(shapes))


# ----------------------------------------------------------------------------- quadratics
def quadratics(shapes=None, condition=None, rotated=None, max_condition: float = 1e3,
               dtype=jnp.float32) -> st.SearchStrategy[DrawnObjective]:
  """Quadratics ``0.5 (x - x*)^T H (x - x*)`` over a pytree, ``x`` its leaves flattened.

  ``H``'s eigenvalues are log-spaced from 1 to ``condition`` (so its condition number is exactly
  that; 1 when the tree holds one number), in a random orthonormal basis when ``rotated`` (else
  ``H`` is diagonal, in random order). ``x*`` is drawn in [-1, 1] and rounded to the dtype, so
  it is the exact minimizer; the start is drawn in [-2, 2].

  Args:
    shapes: a pytree of ``jax.ShapeDtypeStruct`` or a strategy of them (default
      :func:`pytree_shapes` of ``dtype``).
    condition: a float or a strategy (default :func:`condition_numbers` up to
      ``max_condition``); 1 is a well-conditioned round bowl.
    rotated: bool or a strategy of them (default: drawn).
    max_condition: the largest condition number drawn when ``condition`` is None.
    dtype: the params' dtype when ``shapes`` is None: a dtype or a strategy such as
      :func:`dtypes`. Default float32.
  """
  shapes_st = _as_strategy(shapes, pytree_shapes(dtype))
  cond_st = _as_strategy(condition, condition_numbers(1.0, max_condition))
  rot_st = _as_strategy(rotated, st.booleans())
  return st.builds(_quadratic, shapes_st, cond_st, rot_st, _seeds())


def _quadratic(shapes, condition: float, rotated: bool, seed: int) -> DrawnObjective:
  rng = np.random.default_rng(seed)
  n = _size(shapes)
  condition = float(condition) if n > 1 else 1.0  # one coordinate: a round bowl
  eig = np.logspace(0.0, math.log10(condition), n)
  if rotated and n > 1:
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    hess = (q * eig) @ q.T
  else:
    hess = np.diag(rng.permutation(eig))
  minimizer = _fill(shapes, rng.uniform(-1.0, 1.0, n))
  start = rng.uniform(-2.0, 2.0, n)
  x_star = _flat32(minimizer)
  h = jnp.asarray(hess, x_star.dtype)

  def loss(params):
    d = _flat32(params) - x_star
    return 0.5 * d @ (h @ d)

  dt = jax.tree.leaves(shapes)[0].dtype
  return DrawnObjective(
      "quadratic", lambda: _fill(shapes, start), loss, minimizer, 0.0,
      f"{'rotated' if rotated else 'diagonal'} quadratic, {n} params in "
      f"{jax.tree.structure(shapes)}, condition {condition:.3g}, {jnp.dtype(dt).name}",
      dtype=jnp.dtype(dt), condition=float(condition))


# ----------------------------------------------------------------------------- rosenbrock
def rosenbrocks(dims=None, scale=None, dtype=jnp.float32) -> st.SearchStrategy[DrawnObjective]:
  """Shifted Rosenbrock valleys ``sum_i (1 - y_i)^2 + b (y_{i+1} - y_i^2)^2``, ``y = x - c + 1``:
  the minimizer is ``x = c`` (drawn in [-1, 1]), the only one for 2 or 3 dimensions (the
  default draws), and the start ``c + (-2.2, 0, ...)`` plus a jitter (the classic (-1.2, 1)).

  Args:
    dims: number of coordinates, an int or a strategy (default 2 or 3; from 4 to 7 the valley
      has a second local minimum).
    scale: ``b``, a float or a strategy (default log-uniform in [10, 100]).
    dtype: the params' dtype, or a strategy of them. Default float32.
  """
  return st.builds(_rosenbrock, _as_strategy(dims, st.integers(2, 3)),
                   _as_strategy(scale, st.floats(1.0, 2.0).map(lambda e: float(10.0 ** e))),
                   _as_strategy(dtype, dtypes()), _seeds())


def _rosenbrock(dims: int, scale: float, dtype, seed: int) -> DrawnObjective:
  rng = np.random.default_rng(seed)
  dtype = jnp.dtype(dtype)
  center = jnp.asarray(rng.uniform(-1.0, 1.0, dims), dtype)
  offset = np.zeros(dims)
  offset[0] = -2.2
  start = jnp.asarray(np.asarray(center, np.float64) + offset
                      + rng.uniform(-0.1, 0.1, dims), dtype)
  c32 = center.astype(trees.promote(dtype, jnp.float32))

  def loss(x):
    y = x.astype(c32.dtype) - c32 + 1.0
    return jnp.sum((1.0 - y[:-1]) ** 2 + scale * (y[1:] - y[:-1] ** 2) ** 2)

  return DrawnObjective("rosenbrock", lambda: jnp.array(start), loss, center, 0.0,
                        f"shifted Rosenbrock, {dims} dims, b = {scale:.3g}, {dtype.name}",
                        dtype=dtype)


# ----------------------------------------------------------------------------- logistic
def logistic_regressions(samples=None, features=None, l2=None, label_noise=None,
                         dtype=jnp.float32) -> st.SearchStrategy[DrawnObjective]:
  """L2-regularised logistic regression ``mean(log(1 + e^z) - y z) + l2/2 (|w|^2 + b^2)``,
  ``z = X w + b``, on drawn Gaussian features with labels from a random linear rule, a fraction
  flipped. Params ``{'w': (features,), 'b': ()}`` from zero; the minimizer is Newton's method's
  in float64 (strongly convex: unique), cast to ``dtype``.

  Args:
    samples: rows, int or strategy (default 16 to 128).
    features: columns, int or strategy (default 2 to 8).
    l2: the ridge weight, float or strategy (default log-uniform in [1e-3, 1e-1]).
    label_noise: fraction of labels flipped, float or strategy (default 0 to 0.3).
    dtype: the params' dtype, or a strategy of them. Default float32.
  """
  return st.builds(
      _logistic, _as_strategy(samples, st.integers(16, 128)),
      _as_strategy(features, st.integers(2, 8)),
      _as_strategy(l2, st.floats(-3.0, -1.0).map(lambda e: float(10.0 ** e))),
      _as_strategy(label_noise, st.floats(0.0, 0.3)), _as_strategy(dtype, dtypes()), _seeds())


def _newton(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
  w = np.zeros(x.shape[1])
  for _ in range(100):
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    grad = x.T @ (p - y) / len(y) + l2 * w
    hess = (x.T * (p * (1.0 - p))) @ x / len(y) + l2 * np.eye(len(w))
    step = np.linalg.solve(hess, grad)
    w -= step
    if np.max(np.abs(step)) < 1e-15:
      break
  return w


def _logistic(samples: int, features: int, l2: float, label_noise: float, dtype,
              seed: int) -> DrawnObjective:
  rng = np.random.default_rng(seed)
  dtype = jnp.dtype(dtype)
  x = rng.normal(size=(samples, features))
  y = (x @ rng.normal(size=features) + 0.5 * rng.normal(size=samples) > 0).astype(np.float64)
  y = np.where(rng.uniform(size=samples) < label_noise, 1.0 - y, y)
  sol = _newton(np.concatenate([x, np.ones((samples, 1))], axis=1), y, l2)
  ct = trees.promote(dtype, jnp.float32)
  xj, yj = jnp.asarray(x, ct), jnp.asarray(y, ct)

  def loss(params):
    w, b = params["w"].astype(ct), params["b"].astype(ct)
    z = xj @ w + b
    return jnp.mean(jnp.logaddexp(0.0, z) - yj * z) + 0.5 * l2 * (jnp.sum(w**2) + b**2)

  minimizer = {"w": jnp.asarray(sol[:-1], dtype), "b": jnp.asarray(sol[-1], dtype)}
  return DrawnObjective(
      "logistic", lambda: {"w": jnp.zeros(features, dtype), "b": jnp.zeros((), dtype)}, loss,
      minimizer, float(loss(minimizer)),
      f"logistic regression, {samples} x {features}, l2 {l2:.3g}, "
      f"{label_noise:.0%} labels flipped, {dtype.name}", dtype=dtype)


def objectives(dtype=jnp.float32, max_condition: float = 1e3) -> st.SearchStrategy[DrawnObjective]:
  """Any of :func:`quadratics`, :func:`rosenbrocks` and :func:`logistic_regressions`."""
  return st.one_of(quadratics(dtype=dtype, max_condition=max_condition), rosenbrocks(dtype=dtype),
                   logistic_regressions(dtype=dtype))


# ----------------------------------------------------------------------------- hyperparameters
@dataclasses.dataclass(frozen=True)
class Log:
  """A float drawn log-uniformly in ``[low, high]`` (``0 < low``)."""

  low: float
  high: float

  def strategy(self) -> st.SearchStrategy:
    return st.floats(math.log(self.low), math.log(self.high)).map(
        lambda e: float(min(max(math.exp(e), self.low), self.high)))


@dataclasses.dataclass(frozen=True)
class Uniform:
  """A float drawn in ``[low, high]``."""

  low: float
  high: float

  def strategy(self) -> st.SearchStrategy:
    return st.floats(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Int:
  """An int drawn in ``[low, high]``."""

  low: int
  high: int

  def strategy(self) -> st.SearchStrategy:
    return st.integers(self.low, self.high)


@dataclasses.dataclass(frozen=True)
class Choice:
  """One of ``values``."""

  values: tuple

  def __init__(self, *values):
    object.__setattr__(self, "values", tuple(values))

  def strategy(self) -> st.SearchStrategy:
    return st.sampled_from(self.values)


_BETA1 = Uniform(0.5, 0.95)
_BETA2 = Uniform(0.9, 0.999)
_EPS = Log(1e-10, 1e-6)
_DECAY = Uniform(0.0, 0.1)

#: The ranges :func:`hyperparameters` draws from, per registry name: every numeric (and a few
#: categorical) arguments a user would tune, within what the paper and optzoo's checks allow.
#: Arguments not listed keep the entry's toy value (or the factory's default).
RANGES: Mapping[str, Mapping[str, Log | Uniform | Int | Choice]] = {
    "lion": {"learning_rate": Log(1e-5, 1e-2), "b1": _BETA1, "b2": Uniform(0.9, 0.999),
             "weight_decay": _DECAY},
    "avgrad": {"learning_rate": Log(1e-5, 1e-1), "b1": Uniform(0.0, 0.95), "b2": _BETA2,
               "eps": _EPS, "weight_decay": _DECAY},
    "mada": {"learning_rate": Log(1e-5, 1e-1), "b1": _BETA1, "b2": Uniform(0.9, 0.99),
             "b3": Uniform(0.0, 0.9), "rho": Uniform(0.0, 1.0), "c": Uniform(0.0, 1.0),
             "gamma": Uniform(0.0, 1.0), "eps": _EPS},
    "adahessian": {"learning_rate": Log(1e-4, 0.3), "b1": _BETA1, "b2": _BETA2,
                   "eps": Log(1e-6, 1e-2), "hessian_power": Uniform(0.5, 1.0),
                   "update_every": Int(1, 4), "weight_decay": _DECAY},
    "krylov_cubic_newton": {"subspace_dim": Int(2, 10), "init_M": Log(1e-2, 10.0),
                            "shrink": Uniform(0.2, 0.8), "grow": Uniform(1.5, 4.0)},
    "metaoptimize": {"initial_learning_rate": Log(1e-5, 1e-2),
                     "meta_learning_rate": Log(1e-5, 1e-2), "gamma": Uniform(0.9, 1.0),
                     "meta": Choice("lion", "adam", "rmsprop", "sgd"),
                     "granularity": Choice("scalar", "per_leaf", "per_weight")},
    "lanton": {"learning_rate": Log(1e-5, 1e-1), "b1": Uniform(0.5, 0.99), "b2": _BETA2,
               "ns_steps": Int(1, 6), "weight_decay": _DECAY, "r_min": Uniform(0.01, 0.5),
               "warmup_steps": Int(0, 20), "dual_norm": Choice("ns", "gram", "fro_bound"),
               "normalize": Choice("min", "mean", "max", "none")},
    "noise_adaptive_layerwise": {"b2": _BETA2, "r_min": Uniform(0.01, 0.5),
                                 "warmup_steps": Int(0, 20), "dual_norm": Choice("l1", "l2"),
                                 "normalize": Choice("min", "mean", "max", "none")},
    "microadam": {"learning_rate": Log(1e-5, 1e-1), "b1": _BETA1, "b2": _BETA2, "eps": _EPS,
                  "num_grads": Int(1, 10), "density": Uniform(0.01, 1.0),
                  "block_size": Choice(16, 64, 256, 4096), "weight_decay": _DECAY},
}


def hyperparameters(entry: Any, ranges: Mapping[str, Any] | None = None,
                    **fixed: Any) -> st.SearchStrategy[dict[str, Any]]:
  """Keyword arguments for ``entry``'s factory: its toy kwargs, every argument of its ranges
  drawn, then ``fixed``.

  Args:
    entry: an :class:`optzoo.registry.Entry` (its ``name`` picks the ranges in :data:`RANGES`,
      its ``toy_kwargs`` fill the rest), or an :class:`optzoo.testing.Subject` for your own
      optimizer (its ``kwargs`` fill the rest; give ``ranges``).
    ranges: ``{argument: Log | Uniform | Int | Choice | strategy | value}``; default
      ``RANGES[entry.name]``.
    **fixed: arguments to hold at a value (overrides both).

  >>> from hypothesis import given, settings
  >>> from optzoo import registry, strategies
  >>> @settings(max_examples=5, database=None)
  ... @given(strategies.hyperparameters(registry.get("lion")))
  ... def test_lion_hyperparameters(kw):
  ...     assert 1e-5 <= kw["learning_rate"] <= 1e-2
  ...     registry.get("lion").factory(**kw)
  >>> test_lion_hyperparameters()
  """
  if ranges is None:
    name = getattr(entry, "name", None)
    if name not in RANGES:
      raise KeyError(f"no declared ranges for {name!r} (known: {sorted(RANGES)}); pass ranges=")
    ranges = RANGES[name]
  base = dict(getattr(entry, "toy_kwargs", None) or getattr(entry, "kwargs", None) or {})
  drawn = {k: (v.strategy() if hasattr(v, "strategy") else _as_strategy(v, st.just(v)))
           for k, v in ranges.items() if k not in fixed}
  return st.fixed_dictionaries(drawn).map(lambda d: {**base, **d, **fixed})
