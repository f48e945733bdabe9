"""Toy objectives with known minimizers, shared by tests, benchmarks and notebooks.

Every objective is deterministic (fixed seeds), small enough for a CPU, and
exposes ``init()`` (the start), ``loss(params)`` (a scalar) and, where known,
``minimizer`` (a pytree like ``init()``) and ``min_loss``.

>>> from optzoo import objectives
>>> obj = objectives.get("rosenbrock")
>>> float(obj.loss(obj.minimizer))
0.0
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

Params = Any


@dataclasses.dataclass(frozen=True)
class Objective:
  """A toy problem: ``loss(params) -> scalar`` from ``init()``.

  Attributes:
    name: registry-style name.
    init: returns the starting params (a fresh pytree each call, float32).
    loss: params -> scalar loss; pure and jittable.
    minimizer: the exact minimizer as a pytree like ``init()``, or None if unknown.
    min_loss: loss at the minimizer (None if unknown).
    description: one line for tables and plots.
  """

  name: str
  init: Callable[[], Params]
  loss: Callable[[Params], jax.Array]
  minimizer: Params | None
  min_loss: float | None
  description: str

  def distance(self, params: Params) -> jax.Array:
    """Euclidean distance from ``params`` to the minimizer (over all leaves)."""
    if self.minimizer is None:
      raise ValueError(f"objective {self.name!r} has no known minimizer")
    sq = jax.tree.map(
        lambda p, m: jnp.sum((p.astype(jnp.float32) - m.astype(jnp.float32)) ** 2),
        params,
        self.minimizer,
    )
    return jnp.sqrt(sum(jax.tree.leaves(sq)))


# --------------------------------------------------------------------------- parabola
def _parabola() -> Objective:
  center = jnp.asarray(np.linspace(-1.0, 2.0, 5), jnp.float32)

  def loss(x):
    return 0.5 * jnp.sum((x - center) ** 2)

  return Objective(
      "parabola",
      lambda: jnp.zeros(5, jnp.float32),
      loss,
      center,
      0.0,
      "0.5 ||x - c||^2 in R^5",
  )


# --------------------------------------------------------------------------- rosenbrock
def _rosenbrock() -> Objective:
  def loss(x):
    return (1.0 - x[0]) ** 2 + 100.0 * (x[1] - x[0] ** 2) ** 2

  return Objective(
      "rosenbrock",
      lambda: jnp.array([-1.2, 1.0], jnp.float32),
      loss,
      jnp.array([1.0, 1.0], jnp.float32),
      0.0,
      "(1-x)^2 + 100 (y-x^2)^2 from (-1.2, 1)",
  )


# --------------------------------------------------------------------------- matrix parabola
def _matrix_parabola() -> Objective:
  rng = np.random.default_rng(1)
  target = jnp.asarray(rng.uniform(-1.0, 1.0, size=(4, 3)), jnp.float32)
  weights = jnp.asarray(rng.uniform(1.0, 3.0, size=(4, 3)), jnp.float32)

  def loss(w):
    return 0.5 * jnp.sum(weights * (w - target) ** 2)

  return Objective(
      "matrix_parabola",
      lambda: jnp.zeros((4, 3), jnp.float32),
      loss,
      target,
      0.0,
      "0.5 sum D * (W - W*)^2, one (4, 3) leaf",
  )


# --------------------------------------------------------------------------- mixed pytree
def _mixed_pytree() -> Objective:
  rng = np.random.default_rng(2)
  target = {
      "dense": {
          "kernel": jnp.asarray(rng.uniform(-1, 1, (6, 4)), jnp.float32),
          "bias": jnp.asarray(rng.uniform(-1, 1, (4,)), jnp.float32),
      },
      "scale": jnp.asarray(rng.uniform(0.5, 1.5, (3,)), jnp.float32),
  }
  curv = {"dense": {"kernel": 1.0, "bias": 2.0}, "scale": 0.5}

  def term(x, t, c):
    dt = jnp.float64 if x.dtype == jnp.float64 else jnp.float32  # x and t (float32) promoted
    return 0.5 * c * jnp.sum((x.astype(dt) - t.astype(dt)) ** 2)

  def loss(p):
    terms = jax.tree.map(term, p, target, curv)
    return sum(jax.tree.leaves(terms))

  def init():
    return {
        "dense": {"kernel": jnp.zeros((6, 4), jnp.float32), "bias": jnp.zeros((4,), jnp.float32)},
        "scale": jnp.ones((3,), jnp.float32),
    }

  return Objective(
      "mixed_pytree", init, loss, target, 0.0, "parabolas over a nested dict of 1-D and 2-D leaves"
  )


# --------------------------------------------------------------------------- ill-conditioned
def _ill_conditioned() -> Objective:
  dim = 20
  rng = np.random.default_rng(3)
  q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  eig = np.logspace(0.0, 4.0, dim)
  hess = (q * eig) @ q.T
  x_star = rng.uniform(-1.0, 1.0, size=dim)
  hess_j = jnp.asarray(hess, jnp.float32)
  x_star_j = jnp.asarray(x_star, jnp.float32)

  def loss(x):
    d = x - x_star_j
    return 0.5 * d @ (hess_j @ d)

  return Objective(
      "ill_conditioned",
      lambda: jnp.zeros(dim, jnp.float32),
      loss,
      x_star_j,
      0.0,
      "rotated quadratic in R^20, condition number 1e4",
  )


# --------------------------------------------------------------------------- logistic regression
def logistic_data(n: int = 512, d: int = 20, seed: int = 4, label_noise: float = 0.1):
  """Synthetic binary data that is not linearly separable (labels flipped at random)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float64)
  w_true = rng.normal(size=d)
  y = (x @ w_true + 0.5 * rng.normal(size=n) > 0).astype(np.float64)
  flip = rng.uniform(size=n) < label_noise
  y = np.where(flip, 1.0 - y, y)
  return x, y


def logistic_loss_fn(x, y, l2: float):
  """L2-regularised mean logistic loss ``params -> scalar`` on fixed data (jittable)."""
  xj = jnp.asarray(x)
  yj = jnp.asarray(y)

  def loss(w):
    z = xj.astype(w.dtype) @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - yj.astype(w.dtype) * z) + 0.5 * l2 * jnp.sum(w**2)

  return loss


def _newton_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> np.ndarray:
  """The exact minimizer by Newton's method in float64 NumPy (strongly convex, so it converges)."""
  n, d = x.shape
  w = np.zeros(d)
  for _ in range(50):
    p = 1.0 / (1.0 + np.exp(-(x @ w)))
    grad = x.T @ (p - y) / n + l2 * w
    hess = (x.T * (p * (1 - p))) @ x / n + l2 * np.eye(d)
    step = np.linalg.solve(hess, grad)
    w -= step
    if np.max(np.abs(step)) < 1e-14:
      break
  return w


def _logistic() -> Objective:
  l2 = 1e-2
  x, y = logistic_data()
  w_star = _newton_logistic(x, y, l2)
  loss = logistic_loss_fn(x.astype(np.float32), y.astype(np.float32), l2)
  loss64 = logistic_loss_fn(x, y, l2)
  with jax.enable_x64(True):
    min_loss = float(loss64(jnp.asarray(w_star)))
  return Objective(
      "logistic",
      lambda: jnp.zeros(x.shape[1], jnp.float32),
      loss,
      jnp.asarray(w_star, jnp.float32),
      min_loss,
      "L2-regularised logistic regression, n=512, d=20, 10% label noise",
  )


# --------------------------------------------------------------------------- flax MLP
def mlp_data(n: int = 512, features: int = 16, classes: int = 4, seed: int = 5):
  """Gaussian blobs for a small classifier (float32 inputs, int32 labels)."""
  rng = np.random.default_rng(seed)
  centers = rng.normal(scale=1.5, size=(classes, features))
  labels = rng.integers(0, classes, size=n)
  xs = centers[labels] + rng.normal(size=(n, features))
  return xs.astype(np.float32), labels.astype(np.int32)


@functools.cache
def mlp_model(hidden: int = 32, classes: int = 4, depth: int = 2):
  """A ``flax.linen`` MLP: ``depth`` ReLU layers of ``hidden`` units and a linear head to
  ``classes`` (flax is imported lazily, so it is only needed here)."""
  import flax.linen as nn  # noqa: PLC0415

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      for _ in range(depth):
        x = nn.relu(nn.Dense(hidden)(x))
      return nn.Dense(classes)(x)

  return MLP()


def _mlp() -> Objective:
  import optax  # noqa: PLC0415

  xs, ys = mlp_data()
  model = mlp_model()
  xj, yj = jnp.asarray(xs), jnp.asarray(ys)

  def init():
    return model.init(jax.random.PRNGKey(0), xj[:1])["params"]

  def loss(params):
    logits = model.apply({"params": params}, xj.astype(jax.tree.leaves(params)[0].dtype))
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), yj).mean()

  return Objective(
      "mlp", init, loss, None, None, "Flax MLP (16-32-32-4) on 512 Gaussian-blob samples"
  )


_BUILDERS = {
    "parabola": _parabola,
    "rosenbrock": _rosenbrock,
    "matrix_parabola": _matrix_parabola,
    "mixed_pytree": _mixed_pytree,
    "ill_conditioned": _ill_conditioned,
    "logistic": _logistic,
    "mlp": _mlp,
}

#: Objectives every registry optimizer must converge on (conformance check 11).
CONVERGENCE_SUITE = ("parabola", "rosenbrock", "matrix_parabola", "mixed_pytree")
#: The whole toy suite, in leaderboard order.
TOY_SUITE = tuple(_BUILDERS)


@functools.cache
def get(name: str) -> Objective:
  """Returns the named objective (built once, cached)."""
  try:
    return _BUILDERS[name]()
  except KeyError:
    raise ValueError(f"unknown objective {name!r}; choose from {sorted(_BUILDERS)}") from None


def synthetic_params(
    n_params: int, width: int = 1024, dtype=jnp.float32, abstract: bool = True, seed: int = 0
) -> dict:
  """An MLP-shaped pytree of about ``n_params`` parameters: (width, width) kernels and biases.

  With ``abstract=True`` the leaves are ``jax.ShapeDtypeStruct`` (nothing allocated), which is
  all ``jax.eval_shape(opt.init, params)`` and :func:`optzoo.testing.state_bytes` need.
  """
  shapes: dict[str, tuple[int, ...]] = {}
  left = n_params
  i = 0
  while left > 0:
    rows = min(width, left // width - 1)  # kernel (rows, width) + bias (width,) must fit
    if rows < 1:  # the tail: a vector leaf takes what is left
      shapes[f"tail_{i}"] = (left,)
      break
    shapes[f"layer_{i}/kernel"] = (rows, width)
    shapes[f"layer_{i}/bias"] = (width,)
    left -= rows * width + width
    i += 1
  if abstract:
    return {k: jax.ShapeDtypeStruct(s, dtype) for k, s in shapes.items()}
  keys = jax.random.split(jax.random.PRNGKey(seed), len(shapes))
  return {
      k: (jax.random.normal(key, s, jnp.float32) * 0.02).astype(dtype)
      for key, (k, s) in zip(keys, shapes.items())
  }
