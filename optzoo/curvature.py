"""Curvature building blocks on pytrees (no optax): Hessian-vector products and friends.

Used by AdaHessian (Hutchinson diagonal) and Krylov cubic Newton (Lanczos).
"""

from __future__ import annotations

from typing import Any, Callable

import jax

PyTree = Any


def hvp(obj_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree) -> PyTree:
  """Hessian-vector product ``H(params) @ v`` by forward-over-reverse differentiation.

  >>> import jax.numpy as jnp
  >>> hvp(lambda x: jnp.sum(x ** 3), jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0])).tolist()
  [6.0, 12.0]
  """
  return jax.jvp(jax.grad(obj_fn), (params,), (v,))[1]


def grad_and_hvp(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree
) -> tuple[PyTree, PyTree]:
  """``(grad(params), H(params) @ v)`` from one forward-over-reverse pass."""
  return jax.jvp(jax.grad(obj_fn), (params,), (v,))


def value_grad_and_hvp(
    obj_fn: Callable[[PyTree], jax.Array], params: PyTree, v: PyTree
) -> tuple[jax.Array, PyTree, PyTree]:
  """``(loss, grad, H @ v)`` in one forward-over-reverse pass."""

  def value_and_grad(p):
    val, g = jax.value_and_grad(obj_fn)(p)
    return g, val

  g, hv, val = jax.jvp(value_and_grad, (params,), (v,), has_aux=True)
  return val, g, hv
