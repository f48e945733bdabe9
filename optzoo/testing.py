"""The optax conformance kit: checks that any optimizer behaves like an optax one.

Run it on any ``GradientTransformation`` factory, optzoo's or your own:

>>> import optax
>>> from optzoo import testing
>>> report = testing.check_optimizer(optax.adam, {"learning_rate": 1e-2},
...                                  checks=("jit", "abstract_init"))
>>> report
{'jit': 'ok', 'abstract_init': 'ok'}

Each check raises ``AssertionError`` with a message on failure; :func:`check_optimizer`
runs the chosen checks, returns ``{name: 'ok' | 'skipped: why'}`` and raises
:class:`ConformanceError` listing every failure. optzoo runs every check over every registry
entry. The checks (names in :data:`CHECKS`):

1. ``jit``: init and update under ``jax.jit``; a second update does not retrace.
2. ``extra_args``: unknown keyword arguments to ``update`` are ignored.
3. ``inject_hyperparams``: same updates and state (rtol 1e-5) as the plain optimizer.
4. ``constant_schedule``: a constant schedule gives the trajectory of the equal float.
5. ``dtypes``: updates keep the params' dtype (bfloat16, float32, float64); state dtypes and
   shapes never change across steps (``lax.cond`` between old and new state type-checks).
6. ``multisteps``: under ``optax.MultiSteps(every_k_schedule=4)`` the first update is zero.
7. ``chain_clip``: inside ``optax.chain(optax.clip_by_global_norm(1.0), opt)`` it equals the
   optimizer fed clipped gradients.
8. ``abstract_init``: ``init`` on ``jax.ShapeDtypeStruct`` leaves gives the concrete init's
   shapes and dtypes.
9. ``apply_if_finite``: a NaN or Inf gradient leaves params and the inner state unchanged.
10. ``checkpoint``: state serialized mid-run with ``flax.serialization`` and restored continues
    exactly as the uninterrupted run.
11. ``convergence``: reaches each objective's minimizer (``objectives.CONVERGENCE_SUITE``)
    within tolerance in at most 30,000 steps under ``lax.scan``.
12. ``sharding``: with params sharded over a device mesh, every state leaf that mirrors a
    param has its sharding, and results equal the single-device run to 1e-6. Needs at least
    2 devices (``XLA_FLAGS=--xla_force_host_platform_device_count=8``); skipped otherwise.
13. ``validation``: a negative learning rate is a ``ValueError`` naming the argument.
14. ``donation``: donating one ``init``'s state to a jitted step leaves a second ``init``'s
    state usable (no state buffer is shared across inits).
15. ``masked``: inside ``optax.masked`` with a frozen leaf, the frozen leaf stays put and the
    others train as the optimizer on them alone (``obj_fn`` via ``optzoo.frozen_objective``).
16. ``partition``: the same inside ``optax.partition`` with a ``set_to_zero`` partition.
17. ``models``: 50 jitted steps on the ``cnn`` and ``scanned`` ``flax.nnx`` models of
    ``optzoo.models`` (every layer type of the suite between them) give finite params and a
    lower loss (a factory with a ``layouts`` argument gets the model's
    ``optzoo.layouts.from_nnx`` layouts).
18. ``bad_input``: every case of :data:`BAD_INPUT_CASES` (complex parabola, integer leaf,
    empty tree, mismatched gradient shapes, huge and tiny gradients, NaN and Inf gradients with
    and without ``optax.apply_if_finite``) gives a correct result or a clear error, never a
    silent wrong result; :func:`bad_input_outcomes` reports each case. What counts:

    * a *clear error* is a ``TypeError`` or ``ValueError`` (subclasses included) whose message
      names the offending leaf, by its ``jax.tree_util.keystr`` path (``['layer']['n']``) or by
      its names joined with ``/`` (``layer/n``); the bad leaves sit one level down, so a bare
      leaf name does not count;
    * ``complex_parabola``: descending along ``jnp.conj(grad)`` (optax's convention) reaches
      the minimizer of ``0.5 |z - c|^2`` over a complex64 leaf within ``convergence_tol``
      after ``convergence_steps`` steps (kwargs of the ``parabola`` objective), or a clear
      error;
    * ``int_leaf``: a clear error, or three steps that leave the int32 leaf (gradient: int32
      zeros) bitwise unchanged after ``optax.apply_updates`` while the float leaf ends where
      the optimizer takes it without the integer leaf (rtol 1e-5);
    * ``empty_tree``: ``init({})`` and ``update({}, ...)``, eager and jitted, give empty
      updates (no error);
    * ``mismatched_shapes``: a gradient leaf of another shape than its param, transposed
      ``(2, 3)`` for ``(3, 2)`` and broadcastable ``(1, 2)`` for ``(3, 2)``, is a clear error
      (no result can be right);
    * ``huge_gradients`` / ``tiny_gradients``: float32 gradients of size 1e20 / 1e-30 (the
      same at every step: a linear objective scaled by 1e20 / 1e-30) give finite updates and
      params over 3 steps, as ``optax.amsgrad`` does (no error);
    * ``nan_gradients`` / ``inf_gradients`` without a wrapper (one NaN / Inf gradient entry,
      the objective times NaN / Inf, after 2 clean steps): the non-finite value must stay
      visible or be refused: a non-finite update entry or a non-finite float state leaf
      (propagation), an exact skip (zero updates, float state unchanged), or a ``TypeError`` /
      ``ValueError`` / ``FloatingPointError`` mentioning nan, inf or finite. Failing means
      finite updates and a finite, changed state: the NaN or Inf was silently absorbed;
    * ``nan_apply_if_finite`` / ``inf_apply_if_finite``: inside ``optax.apply_if_finite``
      the bad step leaves params and the inner state bitwise unchanged (as check 9).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Mapping, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax

from optzoo import layouts, models, objectives, training
from optzoo._src.base import masking

__all__ = [
    "BAD_INPUT_CASES",
    "CHECKS",
    "ConformanceError",
    "Subject",
    "bad_input_outcomes",
    "check_optimizer",
    "run_check",
    "skip_reason",
    "subject_from_entry",
]

MAX_CONVERGENCE_STEPS = 30_000


# ----------------------------------------------------------------------------- subjects
@dataclasses.dataclass(frozen=True)
class Subject:
  """What the kit checks: a factory and how to call it.

  Attributes:
    factory: ``factory(**kwargs) -> GradientTransformation``.
    kwargs: keyword arguments that work on the toy objectives.
    extra_args: keywords ``update`` needs; ``'obj_fn'`` (params -> loss) and ``'value'``
      (the loss at params) are supplied by the kit.
    static_args: hyperparameters passed to ``optax.inject_hyperparams`` as static.
    lr_arg: the learning-rate argument (None if there is none).
    objective_kwargs: per-objective overrides of ``kwargs`` for the convergence check.
    convergence_steps: steps of the convergence check (at most 30,000).
    convergence_tol: required distance to the minimizer.
    name: label for messages.
  """

  factory: Callable[..., optax.GradientTransformation]
  kwargs: Mapping[str, Any]
  extra_args: tuple[str, ...] = ()
  static_args: tuple[str, ...] = ()
  lr_arg: str | None = "learning_rate"
  objective_kwargs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  convergence_steps: int = 10_000
  convergence_tol: float = 3e-2
  name: str = "optimizer"

  def make(self, objective: str | None = None, **overrides) -> optax.GradientTransformation:
    kw = dict(self.kwargs)
    if objective is not None:
      kw.update(self.objective_kwargs.get(objective, {}))
    kw.update(overrides)
    return self.factory(**kw)


def _extras(extra_args, loss, params) -> dict:
  """The ``update`` keywords ``extra_args`` names for a full-batch ``loss`` at ``params``."""
  value = loss(params) if "value" in extra_args else None
  return training.extra_kwargs(extra_args, loss, value)


def subject_from_entry(entry) -> Subject:
  """The :class:`Subject` for a registry entry."""
  return Subject(
      factory=entry.factory,
      kwargs=dict(entry.toy_kwargs),
      extra_args=tuple(entry.extra_args),
      static_args=tuple(entry.static_args),
      lr_arg=entry.lr_arg,
      objective_kwargs=dict(entry.objective_kwargs),
      convergence_steps=entry.convergence_steps,
      convergence_tol=entry.convergence_tol,
      name=entry.name,
  )


# ----------------------------------------------------------------------------- helpers
def _problem(dtype=jnp.float32):
  """The standard problem of checks 1-10: parabolas over a mixed pytree, plus a coupling."""
  obj = objectives.get("mixed_pytree")
  params = jax.tree.map(lambda x: x.astype(dtype), obj.init())

  def loss(p):
    base = obj.loss(p)
    k = p["dense"]["kernel"]
    # the coupling terms are in the params' dtype, cast explicitly to the loss's (float32 or wider)
    return (base + (0.1 * jnp.sum(jnp.tanh(k) ** 2)).astype(base.dtype)
            + (0.05 * jnp.sum(p["scale"]) * jnp.sum(k[0])).astype(base.dtype))

  return params, loss


def _step_fn(tx, loss, extra_args, **more_extras):
  def step(params, state):
    grads = jax.grad(loss)(params)
    extras = _extras(extra_args, loss, params)
    updates, state = tx.update(grads, state, params, **extras, **more_extras)
    return optax.apply_updates(params, updates), state, updates

  return step


def _run(tx, params, loss, extra_args, steps, state=None):
  step = jax.jit(_step_fn(tx, loss, extra_args))
  if state is None:
    state = tx.init(params)
  updates_seq = []
  for _ in range(steps):
    params, state, updates = step(params, state)
    updates_seq.append(updates)
  return params, state, updates_seq


def _inexact_leaves(tree):
  """Float (and complex) leaves as float64 (complex128) numpy arrays; None elsewhere."""
  def f(x):
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.inexact):
      return None
    return np.asarray(x, np.complex128 if jnp.issubdtype(dtype, jnp.complexfloating) else np.float64)

  return jax.tree.map(f, tree)


def _exact_leaves(tree):
  """Integer, bool and PRNG-key leaves as they are; None in place of float leaves."""
  return jax.tree.map(lambda x: None if jnp.issubdtype(jnp.result_type(x), jnp.inexact) else x,
                      tree)


def _assert_trees_close(a, b, rtol, atol, what):
  """Same structure and leaf shapes; float leaves within ``rtol``/``atol`` (compared in
  float64, so bfloat16 and float32 leaves get the same tolerances); every other leaf (ints,
  bools, PRNG keys) exactly equal. The ``AssertionError`` starts with ``what`` and names the
  leaf's path."""
  try:
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_shapes(a, b)
    chex.assert_trees_all_close(_inexact_leaves(a), _inexact_leaves(b), rtol=rtol, atol=atol)
    chex.assert_trees_all_equal(_exact_leaves(a), _exact_leaves(b))
  except AssertionError as e:
    raise AssertionError(f"{what}: {e}") from None


def _assert_trees_equal(a, b, what):
  """Same structure and leaf shapes, every leaf exactly equal (NaN equals NaN, as in
  ``np.testing.assert_array_equal``)."""
  try:
    chex.assert_trees_all_equal_structs(a, b)
    chex.assert_trees_all_equal_shapes(a, b)
    chex.assert_trees_all_equal(a, b)
  except AssertionError as e:
    raise AssertionError(f"{what}: {e}") from None


def _signature(tree):
  return jax.tree.map(lambda x: (tuple(jnp.shape(x)), jnp.result_type(x)), tree)


# ----------------------------------------------------------------------------- checks
def check_jit(s: Subject) -> None:
  """1. init and update under jit; the second and third updates do not retrace."""
  params, loss = _problem()
  tx = s.make()
  traces = []

  def step(params, state):
    traces.append(1)
    return _step_fn(tx, loss, s.extra_args)(params, state)

  step_j = jax.jit(step)
  state = jax.jit(tx.init)(params)
  for _ in range(3):
    params, state, _ = step_j(params, state)
  assert len(traces) == 1, f"update was traced {len(traces)} times over 3 calls (expected 1)"
  for leaf in jax.tree.leaves(params):
    assert bool(jnp.all(jnp.isfinite(leaf))), "non-finite params after 3 jitted steps"


def check_extra_args(s: Subject) -> None:
  """2. unknown keyword arguments to update are ignored and change nothing."""
  params, loss = _problem()
  tx = s.make()
  state = tx.init(params)
  grads = jax.grad(loss)(params)
  extras = _extras(s.extra_args, loss, params)
  u1, s1 = tx.update(grads, state, params, **extras)
  u2, s2 = tx.update(grads, state, params, **extras, optzoo_unknown_kwarg=3.0, another=None)
  _assert_trees_equal(u1, u2, "updates with unknown extra kwargs")
  _assert_trees_equal(s1, s2, "state with unknown extra kwargs")


def check_inject_hyperparams(s: Subject) -> None:
  """3. optax.inject_hyperparams gives the same updates and state (rtol 1e-5)."""
  params, loss = _problem()
  plain = s.make()
  injected = optax.inject_hyperparams(s.factory, static_args=s.static_args)(**s.kwargs)
  p1, st1, u1 = _run(plain, params, loss, s.extra_args, 5)
  p2, st2, u2 = _run(injected, params, loss, s.extra_args, 5)
  _assert_trees_close(u1, u2, 1e-5, 1e-7, "updates under inject_hyperparams")
  _assert_trees_close(st1, st2.inner_state, 1e-5, 1e-7, "state under inject_hyperparams")
  _assert_trees_close(p1, p2, 1e-5, 1e-7, "params under inject_hyperparams")


def check_constant_schedule(s: Subject) -> None:
  """4. a constant learning-rate schedule gives the trajectory of the equal float."""
  params, loss = _problem()
  lr = s.kwargs.get(s.lr_arg, 1e-2)
  if callable(lr):
    lr = 1e-2
  p1, st1, _ = _run(s.make(**{s.lr_arg: float(lr)}), params, loss, s.extra_args, 5)
  p2, st2, _ = _run(s.make(**{s.lr_arg: optax.constant_schedule(float(lr))}), params, loss,
                    s.extra_args, 5)
  _assert_trees_close(p1, p2, 1e-6, 1e-8, "params: constant schedule vs float")


def check_dtypes(s: Subject) -> None:
  """5. updates keep the params' dtype; state dtypes/shapes never change across steps."""
  for dtype in (jnp.bfloat16, jnp.float32, jnp.float64):
    with jax.enable_x64(dtype == jnp.float64):
      params, loss = _problem(dtype)
      tx = s.make()
      state0 = tx.init(params)
      sig0 = _signature(state0)
      step = jax.jit(_step_fn(tx, loss, s.extra_args))
      state = state0
      for i in range(3):
        params, state, updates = step(params, state)
        for u in jax.tree.leaves(updates):
          assert u.dtype == dtype, f"{jnp.dtype(dtype).name} params gave {u.dtype} updates"
        for p in jax.tree.leaves(params):
          assert p.dtype == dtype, f"{jnp.dtype(dtype).name} params became {p.dtype}"
        sig = _signature(state)
        assert sig == sig0, (
            f"state shapes/dtypes changed at step {i + 1} ({jnp.dtype(dtype).name}):\n"
            f"  init: {sig0}\n  now:  {sig}")
      # old and new states must be interchangeable inside lax.cond
      jax.jit(lambda pred, a, b: jax.lax.cond(pred, lambda: a, lambda: b))(True, state0, state)


def check_multisteps(s: Subject) -> None:
  """6. under optax.MultiSteps(every_k_schedule=4) the first update is exactly zero."""
  params, loss = _problem()
  tx = optax.MultiSteps(s.make(), every_k_schedule=4)
  p, state, updates = _run(tx, params, loss, s.extra_args, 5)
  for u in jax.tree.leaves(updates[0]):
    assert bool(jnp.all(u == 0)), "first MultiSteps update is not zero"
  moved = any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(updates[3]))
  assert moved, "the 4th MultiSteps update (the real step) is zero everywhere"


def check_chain_clip(s: Subject) -> None:
  """7. inside chain(clip_by_global_norm(1.0), opt) it equals opt fed clipped gradients."""
  params, loss = _problem()
  clip = optax.clip_by_global_norm(1.0)
  chained = optax.chain(clip, s.make())
  alone = s.make()
  st_c = chained.init(params)
  st_a = alone.init(params)
  for _ in range(3):
    grads = jax.tree.map(lambda g: 10.0 * g, jax.grad(loss)(params))
    extras = _extras(s.extra_args, loss, params)
    u_c, st_c = chained.update(grads, st_c, params, **extras)
    clipped, _ = clip.update(grads, clip.init(params))
    u_a, st_a = alone.update(clipped, st_a, params, **extras)
    _assert_trees_close(u_c, u_a, 1e-6, 1e-8, "chain(clip, opt) vs opt(clipped grads)")
    params = optax.apply_updates(params, u_c)


#: The models of check 17: between them every layer type of ``optzoo.models.MODEL_SUITE`` (the
#: MLP's and the one-block transformer's layers are all in these two); compiling a training
#: loop per model is most of the check's time.
_CHECKED_MODELS = ("cnn", "scanned")


def check_models(s: Subject) -> None:
  """17. on the ``flax.nnx`` models of ``optzoo.models`` that hold every layer type of the suite
  between them, ``cnn`` and ``scanned`` (the CNN: ``nnx.Conv``, ``nnx.Linear``; the scanned
  stack: ``nnx.Embed``, ``nnx.MultiHeadAttention``, ``nnx.LayerNorm``, a Linear MLP, ``nnx.vmap``
  / ``nnx.scan`` and a tied head), 50 jitted full-batch steps give finite updates and a lower
  loss. An optimizer whose factory takes ``layouts`` gets the model's
  (``optzoo.layouts.from_nnx``)."""
  failures = []
  takes_layouts = _takes(s.factory, "layouts")
  for name in _CHECKED_MODELS:
    prob = models.get(name)
    params = prob.init()
    # a layout-aware optimizer gets the model's layouts, as a user passes layouts.from_nnx(model)
    tx = s.make(layouts=prob.layouts) if takes_layouts else s.make()
    final, losses = training.optimize(tx, prob.loss, params, 50, s.extra_args)
    finite = all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(final))
    if not finite or not float(losses[-1]) < float(losses[0]):
      failures.append(f"{name}: loss {float(losses[0]):.4g} -> {float(losses[-1]):.4g}, "
                      f"finite params: {finite}")
  assert not failures, "; ".join(failures)


def _takes(factory, arg: str) -> bool:
  """Whether ``factory`` has a parameter called ``arg``."""
  try:
    return arg in inspect.signature(factory).parameters
  except (TypeError, ValueError):
    return False


def _frozen_run(tx, params, loss, extra_args, steps):
  """``steps`` jitted steps of ``tx`` whose ``obj_fn`` (if any) is a frozen objective, as a user
  passes it to an optimizer inside optax.masked / optax.partition."""

  def step(p, st):
    extras = _extras(extra_args, loss, p)
    if "obj_fn" in extras:
      extras["obj_fn"] = masking.frozen_objective(loss, p)
    updates, st = tx.update(jax.grad(loss)(p), st, p, **extras)
    return optax.apply_updates(p, updates), st

  step, state = jax.jit(step), tx.init(params)
  for _ in range(steps):
    params, state = step(params, state)
  return params


def _check_frozen(s: Subject, wrap: Callable[[optax.GradientTransformation], Any], what: str):
  """The 'scale' leaf of the standard problem is frozen by ``wrap``; the 'dense' leaves train."""
  params, loss = _problem()
  final = _frozen_run(wrap(s.make()), params, loss, s.extra_args, 4)
  _assert_trees_equal(final["scale"], params["scale"], f"frozen leaf under {what}")

  def restricted(owned):  # the same problem with the frozen leaf held at its value
    return loss({**owned, "scale": params["scale"]})

  alone = _frozen_run(s.make(), {"dense": params["dense"]}, restricted, s.extra_args, 4)
  _assert_trees_close(final["dense"], alone["dense"], 1e-5, 1e-6,
                      f"trained leaves under {what} vs the optimizer on those leaves alone")


def check_masked(s: Subject) -> None:
  """15. in ``chain(masked(opt, m), masked(set_to_zero(), not m))`` frozen leaves stay put and
  the others train exactly as the optimizer on them alone (``obj_fn`` from
  ``optzoo.frozen_objective`` at the outer level)."""
  train = {"dense": True, "scale": False}
  freeze = {"dense": False, "scale": True}
  _check_frozen(s, lambda tx: optax.chain(optax.masked(tx, train),
                                          optax.masked(optax.set_to_zero(), freeze)),
                "optax.masked")


def check_partition(s: Subject) -> None:
  """16. in ``optax.partition({'train': opt, 'freeze': set_to_zero()}, labels)`` frozen leaves
  stay put and the others train exactly as the optimizer on them alone."""
  labels = {"dense": "train", "scale": "freeze"}
  _check_frozen(s, lambda tx: optax.partition({"train": tx, "freeze": optax.set_to_zero()},
                                              labels), "optax.partition")


def check_abstract_init(s: Subject) -> None:
  """8. init from jax.ShapeDtypeStruct leaves works and matches the concrete init."""
  params, _ = _problem()
  abstract = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, p.dtype), params)
  tx = s.make()
  concrete_sig = _signature(tx.init(params))
  via_eval_shape = jax.eval_shape(tx.init, abstract)
  sig = jax.tree.map(lambda x: (tuple(x.shape), x.dtype), via_eval_shape)
  assert sig == concrete_sig, f"eval_shape(init) differs:\n {sig}\n {concrete_sig}"
  direct = tx.init(abstract)
  assert _signature(direct) == concrete_sig, "init(ShapeDtypeStruct) differs from init(params)"


def _check_bad_step_under_apply_if_finite(s: Subject, bad: float) -> None:
  """Two clean steps under ``optax.apply_if_finite``, then one whose gradient and objective are
  multiplied by ``bad`` (NaN or Inf): params and inner state unchanged; then a clean step."""
  params, loss = _problem()
  tx = optax.apply_if_finite(s.make(), max_consecutive_errors=5)
  state = tx.init(params)
  step = jax.jit(_step_fn(tx, loss, s.extra_args))
  for _ in range(2):
    params, state, _ = step(params, state)

  def bad_loss(p):
    return loss(p) * bad

  def bad_step(params, state):
    grads = jax.tree.map(lambda g: g * bad, jax.grad(loss)(params))
    updates, state = tx.update(grads, state, params,
                               **_extras(s.extra_args, bad_loss, params))
    return optax.apply_updates(params, updates), state

  new_params, new_state = jax.jit(bad_step)(params, state)
  _assert_trees_equal(new_params, params, f"params after a {bad} gradient")
  _assert_trees_equal(new_state.inner_state, state.inner_state,
                      f"inner state after a {bad} gradient")
  assert int(new_state.notfinite_count) >= 1
  params, state, _ = step(params, state)
  for leaf in jax.tree.leaves(params):
    assert bool(jnp.all(jnp.isfinite(leaf))), "non-finite params after recovery"


def check_apply_if_finite(s: Subject) -> None:
  """9. under apply_if_finite, NaN/Inf gradients leave params and inner state unchanged."""
  for bad in (jnp.nan, jnp.inf):
    _check_bad_step_under_apply_if_finite(s, bad)


def check_checkpoint(s: Subject) -> None:
  """10. serialize mid-run (flax.serialization), restore, continue: identical trajectory."""
  from flax import serialization  # noqa: PLC0415

  params, loss = _problem()
  tx = s.make()
  p_full, st_full, _ = _run(tx, params, loss, s.extra_args, 6)
  p_half, st_half, _ = _run(tx, params, loss, s.extra_args, 3)
  blob = serialization.to_bytes(st_half)
  template = tx.init(params)
  restored = serialization.from_bytes(template, blob)
  restored = jax.tree.map(jnp.asarray, restored)
  assert _signature(restored) == _signature(st_half), "restored state has other dtypes/shapes"
  p_res, st_res, _ = _run(tx, p_half, loss, s.extra_args, 3, state=restored)
  _assert_trees_equal(p_res, p_full, "params after checkpoint round-trip")
  _assert_trees_equal(st_res, st_full, "state after checkpoint round-trip")


def check_convergence(s: Subject) -> None:
  """11. reaches every convergence-suite minimizer within tolerance under lax.scan."""
  steps = s.convergence_steps
  assert steps <= MAX_CONVERGENCE_STEPS, f"convergence_steps={steps} > {MAX_CONVERGENCE_STEPS}"
  failures = []
  for name in objectives.CONVERGENCE_SUITE:
    obj = objectives.get(name)
    final, _ = training.optimize(s.make(name), obj.loss, obj.init(), steps, s.extra_args)
    dist = float(obj.distance(final))
    if not dist <= s.convergence_tol:
      failures.append(f"{name}: distance {dist:.3g} > {s.convergence_tol} after {steps} steps")
  assert not failures, "; ".join(failures)


def _sharded_problem():
  """Params with distinct shapes, each sharded differently over a 1-D mesh axis 'x'."""
  rng = np.random.default_rng(0)
  params = {
      "kernel": jnp.asarray(rng.normal(size=(16, 24)) * 0.3, jnp.float32),
      "bias": jnp.asarray(rng.normal(size=(24,)) * 0.3, jnp.float32),
      "embed": jnp.asarray(rng.normal(size=(32, 8)) * 0.3, jnp.float32),
  }
  specs = {"kernel": ("x", None), "bias": ("x",), "embed": (None, "x")}

  def loss(p):
    h = jnp.tanh(p["embed"][:16] @ p["embed"][16:].T)  # (16, 16)
    out = h @ p["kernel"] + p["bias"]
    return 0.5 * jnp.mean(out**2) + 0.5 * jnp.sum((p["kernel"] - 0.1) ** 2)

  return params, specs, loss


def check_sharding(s: Subject) -> None:
  """12. sharded params: mirroring state leaves keep their sharding; results match 1 device."""
  from jax.sharding import Mesh, NamedSharding, PartitionSpec  # noqa: PLC0415

  n = jax.device_count()
  n = 8 if n >= 8 else (4 if n >= 4 else 2)
  mesh = Mesh(np.array(jax.devices()[:n]), ("x",))
  params, specs, loss = _sharded_problem()
  shardings = {k: NamedSharding(mesh, PartitionSpec(*v)) for k, v in specs.items()}
  sharded = {k: jax.device_put(v, shardings[k]) for k, v in params.items()}
  tx = s.make()
  by_shape = {tuple(v.shape): k for k, v in params.items()}

  def check_mirrors(state, when):
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
      name = by_shape.get(tuple(getattr(leaf, "shape", ())))
      if name is None or not hasattr(leaf, "sharding"):
        continue
      want = shardings[name]
      assert leaf.sharding.is_equivalent_to(want, leaf.ndim), (
          f"state leaf {jax.tree_util.keystr(path)} {when} mirrors param {name!r} but is "
          f"sharded {leaf.sharding}, not {want}")

  state = tx.init(sharded)
  check_mirrors(state, "after init")
  p_sh, st_sh, _ = _run(tx, sharded, loss, s.extra_args, 3, state=state)
  check_mirrors(st_sh, "after 3 jitted updates")
  single = jax.devices()[0]
  p_one = jax.device_put(params, single)
  p_ref, _, _ = _run(tx, p_one, loss, s.extra_args, 3)
  _assert_trees_close(jax.device_get(p_sh), jax.device_get(p_ref), 1e-6, 1e-6,
                      "sharded vs single-device params")


def check_validation(s: Subject) -> None:
  """13. a negative learning rate is a ValueError naming the argument."""
  try:
    s.make(**{s.lr_arg: -1.0})
  except ValueError as e:
    assert s.lr_arg in str(e), f"ValueError does not name {s.lr_arg!r}: {e}"
  else:
    raise AssertionError(f"{s.lr_arg}=-1.0 was accepted")


def check_donation(s: Subject) -> None:
  """14. donating one init's state to a jitted step leaves another init's state usable.

  Catches state leaves that share a buffer across inits (an array captured when the
  transform was built and returned as is by every ``init``): donation deletes it for all.
  """
  params, loss = _problem()
  tx = s.make()
  step = jax.jit(_step_fn(tx, loss, s.extra_args), donate_argnums=1)
  first, second = tx.init(params), tx.init(params)
  _, _, u1 = step(params, first)
  try:
    _, _, u2 = step(params, second)
  except (RuntimeError, ValueError) as e:  # "Array has been deleted", "Buffer ... donated"
    raise AssertionError(
        f"donating one init's state deleted a leaf of another init's state: {e}") from None
  _assert_trees_equal(u1, u2, "updates from two inits")


# ----------------------------------------------------------------------------- bad inputs
class _Outcome(Exception):
  """A bad-input case's accepted outcome (raised to end the case early)."""


def _leaf_named(message: str, path: tuple) -> bool:
  """Whether ``message`` names the leaf at ``path``: its keystr or its names joined by '/'."""
  return (jax.tree_util.keystr(path) in message
          or "/".join(layouts.path_names(path)) in message)


def _clear_error(e: Exception, path: tuple) -> str:
  """'ok: clear <Type>' when ``e`` is a TypeError/ValueError naming the leaf at ``path``;
  raises AssertionError saying why it is not clear otherwise."""
  where = jax.tree_util.keystr(path)
  if not isinstance(e, (TypeError, ValueError)):
    raise AssertionError(f"raised {type(e).__name__} (not a TypeError/ValueError): "
                         f"{str(e)[:300]}")
  if not _leaf_named(str(e), path):
    raise AssertionError(f"{type(e).__name__} does not name the leaf {where}: {str(e)[:300]}")
  return f"ok: clear {type(e).__name__} naming {where}"


def _jit_update(tx, loss, extra_args):
  """jitted ``(grads, state, params) -> (updates, state)`` with the kit's extra args."""

  def update(grads, state, params):
    return tx.update(grads, state, params, **_extras(extra_args, loss, params))

  return jax.jit(update)


def _all_finite(tree) -> bool:
  return all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(tree)
             if jnp.issubdtype(jnp.result_type(x), jnp.inexact))


_LAYER_TARGET = {"w": np.linspace(-1.0, 1.0, 6).reshape(3, 2), "b": np.array([0.5, -0.25])}


def _layer_problem(scale: float = 1.0):
  """{'layer': {'w': (3, 2), 'b': (2,)}} float32 zeros and ``scale * 0.5 |p - target|^2``."""
  target = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), {"layer": _LAYER_TARGET})
  params = jax.tree.map(jnp.zeros_like, target)

  def loss(p):
    sq = sum(jnp.sum((x - t) ** 2) for x, t in zip(jax.tree.leaves(p), jax.tree.leaves(target)))
    return jnp.float32(scale) * 0.5 * sq

  return params, loss


def _case_complex_parabola(s: Subject) -> str:
  c = jnp.array([1 + 2j, -1 + 0.5j, 0.5 - 1j, 2 + 0j], jnp.complex64)
  params = {"layer": {"z": jnp.zeros(4, jnp.complex64)}}
  path = (jax.tree_util.DictKey("layer"), jax.tree_util.DictKey("z"))

  def loss(p):
    return 0.5 * jnp.sum(jnp.abs(p["layer"]["z"] - c) ** 2)

  try:
    tx = s.make("parabola")
    state = tx.init(params)

    def body(carry, _):
      p, st = carry
      grads = jax.tree.map(jnp.conj, jax.grad(loss)(p))
      updates, st = tx.update(grads, st, p, **_extras(s.extra_args, loss, p))
      return (optax.apply_updates(p, updates), st), None

    run = jax.jit(lambda p, st: jax.lax.scan(body, (p, st), None, s.convergence_steps)[0][0])
    final = run(params, state)
  except Exception as e:  # noqa: BLE001 - classified below
    return _clear_error(e, path)
  z = final["layer"]["z"]
  assert z.dtype == jnp.complex64, f"the complex leaf became {z.dtype}"
  dist = float(jnp.linalg.norm(z - c))
  assert dist <= s.convergence_tol, (
      f"distance {dist:.3g} > {s.convergence_tol} to the complex minimizer after "
      f"{s.convergence_steps} steps along conj(grad)")
  return f"ok: converged (distance {dist:.2g})"


def _case_int_leaf(s: Subject) -> str:
  floats, loss = _layer_problem()
  n = jnp.arange(3, dtype=jnp.int32)
  params = {"layer": {"w": floats["layer"]["w"], "n": n}}
  path = (jax.tree_util.DictKey("layer"), jax.tree_util.DictKey("n"))

  def full_loss(p):
    return loss({"layer": {"w": p["layer"]["w"], "b": floats["layer"]["b"]}})

  def w_loss(p):
    return full_loss(p)

  try:
    tx = s.make()
    state = tx.init(params)
    update = _jit_update(tx, full_loss, s.extra_args)
    p = params
    for _ in range(3):
      g_w = jax.grad(lambda w, p=p: full_loss({"layer": {"w": w, "n": n}}))(p["layer"]["w"])
      grads = {"layer": {"w": g_w, "n": jnp.zeros_like(n)}}
      updates, state = update(grads, state, p)
      p = optax.apply_updates(p, updates)
  except Exception as e:  # noqa: BLE001 - classified below
    return _clear_error(e, path)
  got_n = p["layer"]["n"]
  assert got_n.dtype == n.dtype and bool(jnp.all(got_n == n)), (
      f"the int32 leaf {jax.tree_util.keystr(path)} changed: {n.tolist()} -> {got_n.tolist()} "
      f"({got_n.dtype}), with no error")
  alone = {"layer": {"w": params["layer"]["w"]}}
  final_alone, _, _ = _run(s.make(), alone, w_loss, s.extra_args, 3)
  _assert_trees_close(p["layer"]["w"], final_alone["layer"]["w"], 1e-5, 1e-7,
                      "the float leaf beside an int leaf vs without it")
  return "ok: int leaf unchanged, float leaf trained as without it"


def _case_empty_tree(s: Subject) -> str:
  def loss(p):
    del p
    return jnp.zeros([], jnp.float32)

  tx = s.make()
  for how in ("eager", "jit"):
    try:
      state = tx.init({})
      if how == "eager":
        updates, _ = tx.update({}, state, {}, **_extras(s.extra_args, loss, {}))
      else:
        updates, _ = _jit_update(tx, loss, s.extra_args)({}, state, {})
    except Exception as e:  # noqa: BLE001 - any error fails this case
      raise AssertionError(f"an empty pytree ({how}) raised {type(e).__name__}: "
                           f"{str(e)[:300]}") from None
    assert jax.tree.structure(updates) == jax.tree.structure({}), (
        f"updates for an empty pytree ({how}) are {updates!r}, not {{}}")
  return "ok: empty updates"


def _case_mismatched_shapes(s: Subject) -> str:
  params, loss = _layer_problem()
  path = (jax.tree_util.DictKey("layer"), jax.tree_util.DictKey("w"))
  outcomes, failures = [], []
  for bad_shape in ((2, 3), (1, 2)):  # transposed; broadcastable
    grads = jax.grad(loss)(params)
    grads = {"layer": {**grads["layer"], "w": jnp.ones(bad_shape, jnp.float32)}}
    try:
      tx = s.make()
      state = tx.init(params)
      updates, _ = _jit_update(tx, loss, s.extra_args)(grads, state, params)
    except Exception as e:  # noqa: BLE001 - classified below
      try:
        outcomes.append(_clear_error(e, path))
      except AssertionError as why:
        failures.append(f"{bad_shape}: {why}")
      continue
    shapes = jax.tree.map(jnp.shape, updates)["layer"]["w"]
    failures.append(f"{bad_shape}: a {bad_shape} gradient for the (3, 2) leaf "
                    f"{jax.tree_util.keystr(path)} was accepted (its update has shape {shapes})")
  assert not failures, "; ".join(failures)
  return outcomes[0]


def _scaled_gradients_case(s: Subject, scale: float) -> str:
  params, _ = _layer_problem()
  direction = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), {"layer": _LAYER_TARGET})

  def loss(p):  # linear: the gradient is scale * direction at every step, whatever p becomes
    return jnp.float32(scale) * sum(jnp.sum(d * x) for d, x in
                                    zip(jax.tree.leaves(direction), jax.tree.leaves(p)))

  tx = s.make()
  try:
    state = tx.init(params)
    update = _jit_update(tx, loss, s.extra_args)
    p = params
    for i in range(3):
      updates, state = update(jax.grad(loss)(p), state, p)
      assert _all_finite(updates), f"non-finite updates at step {i + 1} for {scale:g} gradients"
      p = optax.apply_updates(p, updates)
  except AssertionError:
    raise
  except Exception as e:  # noqa: BLE001 - any error fails this case
    raise AssertionError(f"{scale:g} gradients raised {type(e).__name__}: {str(e)[:300]}") from None
  assert _all_finite(p), f"non-finite params after 3 steps with {scale:g} gradients"
  return "ok: finite updates"


def _case_huge_gradients(s: Subject) -> str:
  return _scaled_gradients_case(s, 1e20)


def _case_tiny_gradients(s: Subject) -> str:
  return _scaled_gradients_case(s, 1e-30)


def _nonfinite_case(s: Subject, bad: float) -> str:
  params, loss = _layer_problem()
  tx = s.make()
  state = tx.init(params)
  update = _jit_update(tx, loss, s.extra_args)
  p = params
  for _ in range(2):
    updates, state = update(jax.grad(loss)(p), state, p)
    p = optax.apply_updates(p, updates)
  grads = jax.grad(loss)(p)
  grads = {"layer": {**grads["layer"], "w": grads["layer"]["w"].at[0, 0].set(bad)}}

  def bad_loss(q):
    return loss(q) * bad

  try:
    new_updates, new_state = _jit_update(tx, bad_loss, s.extra_args)(grads, state, p)
  except (TypeError, ValueError, FloatingPointError) as e:
    msg = str(e).lower()
    assert any(w in msg for w in ("nan", "inf", "finite")), (
        f"{type(e).__name__} for a {bad} gradient does not say so: {str(e)[:300]}")
    return f"ok: clear {type(e).__name__}"
  if not _all_finite(new_updates):
    return "ok: propagates to the updates"
  if not _all_finite(new_state):
    return "ok: propagates to the state"
  zero = all(bool(jnp.all(u == 0)) for u in jax.tree.leaves(new_updates))
  floats = lambda t: [x for x in jax.tree.leaves(t)  # noqa: E731
                      if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
  same = all(bool(jnp.all(a == b)) for a, b in zip(floats(state), floats(new_state)))
  if zero and same:
    return "ok: step skipped"
  raise AssertionError(f"a {bad} gradient was silently absorbed: finite updates and a finite, "
                       "changed state (neither propagated, nor refused, nor skipped)")


def _case_nan_gradients(s: Subject) -> str:
  return _nonfinite_case(s, jnp.nan)


def _case_inf_gradients(s: Subject) -> str:
  return _nonfinite_case(s, jnp.inf)


def _case_nan_apply_if_finite(s: Subject) -> str:
  _check_bad_step_under_apply_if_finite(s, jnp.nan)
  return "ok: params and inner state unchanged"


def _case_inf_apply_if_finite(s: Subject) -> str:
  _check_bad_step_under_apply_if_finite(s, jnp.inf)
  return "ok: params and inner state unchanged"


#: The cases of the ``bad_input`` check, in order (see the module docstring for each rule).
BAD_INPUT_CASES: Mapping[str, Callable[[Subject], str]] = {
    "complex_parabola": _case_complex_parabola,
    "int_leaf": _case_int_leaf,
    "empty_tree": _case_empty_tree,
    "mismatched_shapes": _case_mismatched_shapes,
    "huge_gradients": _case_huge_gradients,
    "tiny_gradients": _case_tiny_gradients,
    "nan_gradients": _case_nan_gradients,
    "inf_gradients": _case_inf_gradients,
    "nan_apply_if_finite": _case_nan_apply_if_finite,
    "inf_apply_if_finite": _case_inf_apply_if_finite,
}


def bad_input_outcomes(s: Subject, cases: Sequence[str] | None = None) -> dict[str, str]:
  """Runs the bad-input cases on ``s``: ``{case: 'ok: <what happened>' | 'FAIL: <why>'}``.

  An error that is not clear (another type, or a message that does not name the leaf) and
  any failed expectation are ``'FAIL: ...'``; see the module docstring for each case's rule.
  """
  out = {}
  for name in cases or tuple(BAD_INPUT_CASES):
    try:
      out[name] = BAD_INPUT_CASES[name](s)
    except AssertionError as e:
      out[name] = f"FAIL: {e}"
    except Exception as e:  # noqa: BLE001 - an unexpected error is a failure of the case
      out[name] = f"FAIL: raised {type(e).__name__}: {str(e)[:300]}"
  return out


def check_bad_input(s: Subject) -> None:
  """18. every bad-input case gives a correct result or a clear error (never a silent wrong
  result); the AssertionError lists each failing case."""
  failed = {k: v for k, v in bad_input_outcomes(s).items() if v.startswith("FAIL")}
  assert not failed, "; ".join(f"{k}: {v[len('FAIL: '):]}" for k, v in failed.items())


#: The conformance checks by name, ``{name: check(subject)}``, in the order
#: :func:`check_optimizer` runs them.
CHECKS: Mapping[str, Callable[[Subject], None]] = {
    "jit": check_jit,
    "extra_args": check_extra_args,
    "inject_hyperparams": check_inject_hyperparams,
    "constant_schedule": check_constant_schedule,
    "dtypes": check_dtypes,
    "multisteps": check_multisteps,
    "chain_clip": check_chain_clip,
    "abstract_init": check_abstract_init,
    "apply_if_finite": check_apply_if_finite,
    "checkpoint": check_checkpoint,
    "convergence": check_convergence,
    "sharding": check_sharding,
    "validation": check_validation,
    "donation": check_donation,
    "masked": check_masked,
    "partition": check_partition,
    "models": check_models,
    "bad_input": check_bad_input,
}


class ConformanceError(AssertionError):
  """Raised by :func:`check_optimizer` with every failed check and its message."""


def skip_reason(name: str, subject: Subject) -> str | None:
  """Why check ``name`` does not apply to ``subject`` here (None: it applies).

  ``constant_schedule`` and ``validation`` need a learning-rate argument; ``sharding`` needs at
  least 2 devices (on CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count=8``).
  """
  if name in ("constant_schedule", "validation") and subject.lr_arg is None:
    return "the optimizer takes no learning rate"
  if name == "sharding" and jax.device_count() < 2:
    return "needs >= 2 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)"
  return None


def run_check(name: str, subject: Subject) -> str:
  """Runs one check; returns 'ok', or 'skipped: <reason>' where :func:`skip_reason` says it
  does not apply; raises AssertionError on failure."""
  reason = skip_reason(name, subject)
  if reason is not None:
    return f"skipped: {reason}"
  CHECKS[name](subject)
  return "ok"


def check_optimizer(
    factory: Callable[..., optax.GradientTransformation],
    kwargs: Mapping[str, Any],
    *,
    extra_args: Sequence[str] = (),
    static_args: Sequence[str] = (),
    lr_arg: str | None = "learning_rate",
    objective_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    convergence_steps: int = 10_000,
    convergence_tol: float = 3e-2,
    checks: Sequence[str] | None = None,
) -> dict[str, str]:
  """Runs the conformance checks on ``factory(**kwargs)``.

  Args:
    factory: builds the optimizer, e.g. ``optax.adam`` or ``optzoo.lion``.
    kwargs: arguments that work on the toy objectives.
    extra_args: keywords ``update`` needs ('obj_fn' and/or 'value'); the kit supplies them.
    static_args: hyperparameters ``optax.inject_hyperparams`` must treat as static.
    lr_arg: the learning-rate argument, or None.
    objective_kwargs: per-objective kwarg overrides for the convergence check.
    convergence_steps: steps for the convergence check (<= 30,000).
    convergence_tol: required distance to each minimizer.
    checks: names from :data:`CHECKS` (default: all).

  Returns:
    ``{check: 'ok' | 'skipped: reason'}``.

  Raises:
    ConformanceError: listing every check that failed and why.
  """
  subject = Subject(
      factory=factory, kwargs=dict(kwargs), extra_args=tuple(extra_args),
      static_args=tuple(static_args), lr_arg=lr_arg, objective_kwargs=dict(objective_kwargs or {}),
      convergence_steps=convergence_steps, convergence_tol=convergence_tol,
      name=getattr(factory, "__name__", "optimizer"))
  report: dict[str, str] = {}
  failures: dict[str, str] = {}
  for name in checks or tuple(CHECKS):
    try:
      report[name] = run_check(name, subject)
    except AssertionError as e:
      failures[name] = str(e)
  if failures:
    lines = "\n".join(f"  {k}: {v}" for k, v in failures.items())
    raise ConformanceError(f"{len(failures)} conformance check(s) failed:\n{lines}")
  return report
