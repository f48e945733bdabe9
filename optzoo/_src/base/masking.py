"""Curvature objectives inside ``optax.masked`` / ``optax.partition``.

Inside those wrappers an optimizer sees params with ``optax.MaskedNode`` where a leaf is frozen
or owned by another optimizer, while the user's ``obj_fn`` wants the full params.
:func:`frozen_objective` bridges the two: it fills the missing leaves with their values, so the
objective sees the full params and the Hessian-vector products cover only the owned leaves.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import optax

#: Why a curvature optimizer (AdaHessian, Krylov cubic Newton) refuses complex leaves.
REAL_HVP_REASON = ("This optimizer works with real leaves only (its Hessian-vector product "
                   "algebra is real). Optimize the real and imaginary parts as two float leaves "
                   "(params (re, im), and z = re + 1j * im inside the loss).")
#: How to keep non-float leaves out of a curvature optimizer.
FROZEN_REMEDY = ("Hessian-vector products need floating-point leaves. Keep such leaves out of "
                 "the optimizer with optax.partition({'opt': tx, 'frozen': optax.set_to_zero()}, "
                 "labels) and pass obj_fn=optzoo.frozen_objective(loss_fn, params) to its update "
                 "(the objective then sees every leaf).")


def _is_masked(x: Any) -> bool:
  return isinstance(x, optax.MaskedNode)


def has_masked_nodes(tree: Any) -> bool:
  """Whether ``tree`` holds an ``optax.MaskedNode`` (it was masked by optax.masked/partition)."""
  return any(_is_masked(x) for x in jax.tree.leaves(tree, is_leaf=_is_masked))


def fill_masked(partial: Any, full: Any) -> Any:
  """``partial``'s leaves, and ``full``'s where ``partial`` has an ``optax.MaskedNode``."""
  return jax.tree.map(lambda f, p: f if _is_masked(p) else p, full, partial)


class FrozenObjective:
  """``obj_fn`` for an optimizer inside ``optax.masked`` / ``optax.partition``: called with the
  optimizer's (masked) params, it evaluates ``loss_fn`` on the full params with the leaves the
  optimizer does not own held at their values in ``params``. Built by :func:`frozen_objective`."""

  def __init__(self, loss_fn: Callable[[Any], Any], params: Any):
    self.loss_fn, self.params = loss_fn, params

  def __call__(self, params: Any) -> Any:
    return self.loss_fn(fill_masked(params, self.params))


def frozen_objective(loss_fn: Callable[[Any], Any], params: Any) -> FrozenObjective:
  """Wraps a full-params ``loss_fn`` for a curvature optimizer that sits inside ``optax.masked``
  or ``optax.partition``: pass ``obj_fn=optzoo.frozen_objective(loss_fn, params)`` at the outer
  ``update``. It also works on full params, so it is safe to use everywhere.

  >>> import jax, jax.numpy as jnp, optax, optzoo
  >>> params = {"w": jnp.ones(3), "frozen": jnp.full(2, 5.0)}
  >>> loss = lambda p: jnp.sum(p["w"] ** 2) + jnp.sum(p["frozen"] ** 2)
  >>> tx = optax.partition({"train": optzoo.adahessian(0.1), "freeze": optax.set_to_zero()},
  ...                      {"w": "train", "frozen": "freeze"})
  >>> state = tx.init(params)
  >>> grads = jax.grad(loss)(params)
  >>> updates, state = tx.update(grads, state, params,
  ...                            obj_fn=optzoo.frozen_objective(loss, params))
  >>> updates["frozen"].tolist()
  [0.0, 0.0]
  """
  return FrozenObjective(loss_fn, params)


def check_objective(who: str, obj_fn: Any, params: Any) -> None:
  """A ``ValueError`` saying what to do when params are masked but ``obj_fn`` is a plain
  full-params function (it would fail on the ``MaskedNode`` leaves)."""
  if isinstance(obj_fn, FrozenObjective) or not has_masked_nodes(params):
    return
  raise ValueError(
      f"{who} is inside optax.masked or optax.partition, so its params have optax.MaskedNode "
      "leaves and a plain obj_fn cannot be evaluated on them. Pass "
      "obj_fn=optzoo.frozen_objective(loss_fn, params) (the full params) at the outer update: "
      "the objective then sees the full params and the curvature covers the owned leaves only.")


def select_like(tree: Any, full: Any) -> Any:
  """The leaves of ``full`` at the paths of ``tree``'s leaves, in ``tree``'s structure: an
  unmasked extra argument (e.g. LANTON's ``noise_grads``) cut to a masked gradient tree."""
  by_path = {tuple(p): x for p, x in jax.tree_util.tree_flatten_with_path(full)[0]}
  paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
  try:
    return jax.tree.unflatten(treedef, [by_path[tuple(p)] for p, _ in paths])
  except KeyError as e:
    raise ValueError(f"the extra argument has no leaf at {jax.tree_util.keystr(e.args[0])}, "
                     "where the gradients have one.") from None
