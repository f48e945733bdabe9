"""Hyperparameter sweeps in one compilation: one model per grid point and seed, vmapped.

A new learning rate under ``jax.jit`` is normally a new compilation (optax issues #577, #932).
:func:`sweep` instead traces the hyperparameters: it builds the optimizer with
``optax.inject_hyperparams`` *inside* a function that trains one model (a ``lax.scan`` over the
steps), vmaps that function (``jax.vmap``) over the grid points and over the seeds, and
compiles it once. Any hyperparameter the factory lets ``optax.inject_hyperparams`` trace can be
swept: learning rate, betas, weight decay, MADA's ``hyper_lr``, MetaOptimize's initial step
size, ...; static ones (shapes, Python control flow; a factory's ``static_args``) cannot.

>>> import jax.numpy as jnp, optax
>>> from optzoo import sweep
>>> res = sweep.sweep(optax.adam, lambda p: jnp.sum((p - 3.0) ** 2), jnp.zeros(4), steps=50,
...                   grid={"learning_rate": [1e-3, 1e-1, 1.0]}, seeds=2)
>>> res.losses.shape                      # (grid points, seeds, steps)
(3, 2, 50)
>>> res.compilations                      # the whole grid, both seeds: one compilation
1
>>> res.point(res.best())                 # lowest final loss (mean over seeds)
{'learning_rate': 1.0}

**What one run is.** For seed ``s`` the sweep draws ``init_key, data_key =
jax.random.split(jax.random.PRNGKey(s))``; params are ``init_params(init_key)`` (or the given
pytree); step ``t`` (from 0) uses the batch ``batch_fn(jax.random.fold_in(data_key, t), t)``,
takes ``loss, grads = value_and_grad(loss_fn)(params, batch)`` and
``tx.update(grads, state, params, **extra)``, where ``extra`` holds what ``extra_args`` names:
``obj_fn`` is the loss of *that step's batch* (``lambda p: loss_fn(p, batch)``), ``value`` its
value. ``losses[g, s, t]`` is that step's loss, before the update. ``tx`` is the factory called
with ``hparams`` and the grid point; so each point reproduces outside the sweep with a plain
loop, to float32 rounding (XLA may fuse a batched program differently).

**Schedules.** ``schedule(t)`` multiplies one hyperparameter (``scheduled``, by default the
learning rate): at step ``t`` the optimizer sees ``value * schedule(t)``, where ``value`` is the
grid point's (or ``hparams``') value, i.e. exactly ``factory(learning_rate=lambda t: value *
schedule(t))``. Sweeping the *peak* of a warmup-cosine schedule is then one grid over
``learning_rate`` with ``schedule=optax.warmup_cosine_decay_schedule(0.0, 1.0, 50, 1000)``.

**Nested optimizers.** To sweep an argument of an optimizer nested in another (the learning
rate of ``noise_adaptive_layerwise``'s ``inner`` optimizer), give a factory that takes it::

    factory = lambda learning_rate: optzoo.noise_adaptive_layerwise(optax.adam(learning_rate))

A registry entry (anything with ``.factory``, and optionally ``.static_args``, ``.extra_args``
and ``.lr_arg``) may stand in for the factory.

**Re-running without compiling.** :func:`compile_sweep` returns the compiled program of a fixed
shape; :meth:`CompiledSweep.run` takes any values and seeds of that shape (a grid on seed 0,
then the best point on fresh seeds, as optzoo's own benchmark does).

**Over many devices.** With ``mesh=`` (a ``jax.sharding.Mesh``, or a sequence of devices that
becomes a one-axis mesh) the ``G x S`` runs are laid out on one flat axis (point-major, so run
``g * S + s``) and split evenly over every device of the mesh (all of its axes); it is still one
compilation, and each device trains its share of the models. When the device count does not
divide ``G x S``, the last run is repeated to fill the devices and the copies are dropped: the
result has exactly ``G x S`` runs. The results come back replicated (one all-gather at the end
of the program), so every process reads them. Under ``jax.distributed`` every process calls the
sweep with the same arguments and a mesh of the global devices (``jax.devices()``)::

    res = sweep.sweep(optax.adam, loss_fn, init_fn, 1000, grid=grid, seeds=8,
                      mesh=jax.devices())      # or a jax.sharding.Mesh

Each point equals the one-device sweep to float32 rounding (XLA fuses a smaller batch of runs
per device differently).
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import time
from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jax.sharding import NamedSharding, PartitionSpec

from optzoo import training

__all__ = ["CompiledSweep", "SweepResult", "compile_sweep", "sweep"]


@dataclasses.dataclass(frozen=True)
class SweepResult:
  """What :func:`sweep` returns (NumPy arrays; ``G`` grid points, ``S`` seeds).

  Attributes:
    points: the swept hyperparameters, name -> array of ``G`` values (the cartesian product
      of the grid, first name slowest).
    seeds: ``(G, S)``, the seed of each run.
    losses: ``(G, S, steps)``, the training loss of each step's batch, before the update.
    eval_steps: ``(E,)``, the steps after which ``eval_fn`` ran (0, ``eval_every``, ...,
      ``steps``).
    evals: metric name -> ``(G, S, E, ...)``, the values of ``eval_fn`` and ``state_fn``
      (empty without them).
    params: the final params with leading ``(G, S)`` axes (only with ``return_params``).
    compile_seconds: wall time of lowering and compiling.
    run_seconds: wall time of the compiled run (to ``block_until_ready``).
    compilations: XLA compilations during the call (``jax.monitoring``); 1 when all went well.
    devices: the devices the runs were split over (1 without a mesh).
  """

  points: dict[str, np.ndarray]
  seeds: np.ndarray
  losses: np.ndarray
  eval_steps: np.ndarray
  evals: dict[str, np.ndarray]
  params: Any
  compile_seconds: float
  run_seconds: float
  compilations: int
  devices: int = 1

  @property
  def final(self) -> dict[str, np.ndarray]:
    """Metric name -> ``(G, S)``: every eval metric after the last step, and ``'train_loss'``
    (the last step's training loss)."""
    out = {k: v[..., -1] for k, v in self.evals.items()}
    out["train_loss"] = self.losses[..., -1]
    return out

  def best(self, metric: str | None = None, reduce: Callable = np.mean) -> int:
    """Index of the grid point with the lowest ``reduce`` over seeds of ``final[metric]``
    (default: the first eval metric, else ``'train_loss'``); NaN counts as +inf."""
    if metric is None:
      metric = next(iter(self.evals), "train_loss")
    score = reduce(np.nan_to_num(self.final[metric], nan=np.inf), axis=1)
    return int(np.argmin(score))

  def point(self, index: int) -> dict[str, float]:
    """The hyperparameters of grid point ``index`` as Python numbers."""
    return {k: v[index].item() for k, v in self.points.items()}


def _grid_points(grid: Mapping[str, Sequence[Any]]) -> dict[str, np.ndarray]:
  names = list(grid)
  values = [list(np.asarray(grid[n]).reshape(-1)) for n in names]
  for n, v in zip(names, values):
    if not v:
      raise ValueError(f"grid[{n!r}] is empty")
  rows = list(itertools.product(*values)) if names else [()]
  out = {}
  for i, n in enumerate(names):
    col = np.asarray([r[i] for r in rows])
    out[n] = col.astype(np.int32 if np.issubdtype(col.dtype, np.integer) else np.float32)
  return out


def _injectable(factory: Callable, fixed: Mapping[str, Any], names: Sequence[str]) -> Callable:
  """``factory`` with ``fixed`` bound, taking exactly ``names`` (keyword-only), so that
  ``optax.inject_hyperparams`` injects those and leaves every other argument a Python value."""

  def inner(**kwargs):
    return factory(**fixed, **kwargs)

  inner.__signature__ = inspect.Signature(
      [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in names])
  return inner


def _as_mesh(mesh: Any) -> jax.sharding.Mesh:
  """``mesh`` as a ``jax.sharding.Mesh``: a mesh as it is, devices as a one-axis mesh."""
  if isinstance(mesh, jax.sharding.Mesh):
    return mesh
  devices = list(mesh) if isinstance(mesh, (list, tuple, np.ndarray)) else None
  if not devices or not all(isinstance(d, jax.Device) for d in np.ravel(devices)):
    raise TypeError(f"mesh must be a jax.sharding.Mesh or a non-empty sequence of devices "
                    f"(jax.devices()), got {mesh!r}")
  return jax.sharding.Mesh(np.asarray(devices).reshape(-1), ("runs",))


@dataclasses.dataclass(frozen=True)
class _Spread:
  """How ``runs`` (``G x S``) runs lie on a mesh: one flat axis, point-major, split over all
  the mesh's axes and padded with copies of the last run to a multiple of the device count."""

  mesh: jax.sharding.Mesh
  runs: int

  @property
  def padded(self) -> int:
    return -(-self.runs // self.mesh.size) * self.mesh.size

  @property
  def split(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(tuple(self.mesh.axis_names)))

  @property
  def whole(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec())

  def place(self, tree, sharding):
    """Host values as global arrays; each process builds only its own devices' shards, so
    this works the same under ``jax.distributed``."""
    def one(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])
    return jax.tree.map(one, tree)

  def inputs(self, values: Mapping[str, np.ndarray], seeds: np.ndarray):
    """Points ``(G,)`` and seeds ``(G, S)`` as flat, padded arrays split over the mesh."""
    def pad(x):
      return np.concatenate([x, np.repeat(x[-1:], self.padded - self.runs, axis=0)])
    s = seeds.shape[1]
    flat = {n: pad(np.repeat(v, s)) for n, v in values.items()}
    return self.place(flat, self.split), self.place(pad(seeds.reshape(-1)), self.split)

  def program(self, one_run: Callable):
    """``one_run`` vmapped over the flat axis; each device trains its share, and the results
    are gathered at the end of the same program (replicated: every process reads them)."""
    def program(values, seeds, init_tree):
      out = jax.vmap(one_run, in_axes=(0, 0, None))(values, seeds, init_tree)
      return jax.lax.with_sharding_constraint(out, self.split)
    return jax.jit(program, in_shardings=(self.split, self.split, self.whole),
                   out_shardings=self.whole)

  def outputs(self, out, shape: tuple[int, int]):
    """The results as ``(G, S, ...)`` NumPy arrays, the padding dropped."""
    g, s = shape
    return jax.tree.map(
        lambda x: np.asarray(x.addressable_data(0))[:g * s].reshape(g, s, *x.shape[1:]), out)


def _lowered(one_run: Callable, spread: _Spread | None, shape, dtypes, init_tree):
  """The sweep program, lowered: nested vmaps on one device, else :meth:`_Spread.program`.
  Returns it with the ``init_tree`` it is to be called with."""
  g, s = shape
  if spread is None:
    program = jax.jit(jax.vmap(jax.vmap(one_run, in_axes=(None, 0, None)),
                               in_axes=(0, 0, None)))
    points, seeds = (g,), (g, s)
  else:
    program = spread.program(one_run)
    points, seeds = (spread.padded,), (spread.padded,)
    init_tree = spread.place(init_tree, spread.whole)
  abstract = {n: jax.ShapeDtypeStruct(points, d) for n, d in dtypes.items()}
  return program.lower(abstract, jax.ShapeDtypeStruct(seeds, np.uint32), init_tree), init_tree


@dataclasses.dataclass(frozen=True)
class CompiledSweep:
  """A compiled sweep program of fixed shape, from :func:`compile_sweep`.

  Call :meth:`run` with any values of the swept hyperparameters (``G`` each) and any seeds
  (``(G, S)``, one row per point) as often as needed: no further compilation. The main
  benchmark runs its learning-rate grid on seed 0, then the best point ``G`` times on seeds
  1..G through the same program.

  Attributes:
    names: the swept hyperparameters, in order.
    shape: ``(G, S)``.
    compile_seconds: wall time of lowering and compiling.
    compilations: XLA compilations while compiling (1).
  """

  names: tuple[str, ...]
  shape: tuple[int, int]
  steps: int
  eval_every: int
  compile_seconds: float
  compilations: int
  _compiled: Any = dataclasses.field(repr=False)
  _dtypes: dict[str, Any] = dataclasses.field(repr=False)
  _init_tree: Any = dataclasses.field(repr=False)
  _spread: _Spread | None = dataclasses.field(default=None, repr=False)

  @property
  def devices(self) -> int:
    """How many devices the runs are split over (1 without a mesh)."""
    return 1 if self._spread is None else self._spread.mesh.size

  def cost(self) -> dict[str, float]:
    """XLA's cost analysis of the compiled program (``'flops'``, ``'bytes accessed'``, ...;
    per device on a mesh), or ``{}`` where the backend gives none."""
    got = self._compiled.cost_analysis()
    return dict(got or {}) if not isinstance(got, list) else dict(got[0] if got else {})

  def run(self, points: Mapping[str, Sequence[Any]], seeds: Any) -> SweepResult:
    """Trains the ``G x S`` models: point ``g`` with the hyperparameters ``points[name][g]``
    and the seeds ``seeds[g]`` (shape ``(G, S)``, or ``(S,)`` for the same seeds everywhere)."""
    g, s = self.shape
    if set(points) != set(self.names):
      raise ValueError(f"points must give exactly {self.names}, got {tuple(points)}")
    vals = {}
    for n in self.names:
      v = np.asarray(points[n], self._dtypes[n]).reshape(-1)
      if v.shape != (g,):
        raise ValueError(f"points[{n!r}] must have {g} values, got {v.shape}")
      vals[n] = v
    seed_arr = np.broadcast_to(np.asarray(seeds), (g, s)).astype(np.uint32)
    args = (vals, seed_arr) if self._spread is None else self._spread.inputs(vals, seed_arr)
    with training.CompileCounter() as counter:
      t0 = time.perf_counter()
      out = jax.block_until_ready(self._compiled(*args, self._init_tree))
      run_seconds = time.perf_counter() - t0
    if self._spread is None:
      losses, evals, params = jax.device_get(out)
    else:
      losses, evals, params = self._spread.outputs(out, (g, s))
    return SweepResult(
        points=vals, seeds=np.asarray(seed_arr), losses=np.asarray(losses),
        eval_steps=np.arange(self.steps // self.eval_every + 1) * self.eval_every,
        evals={k: np.asarray(v) for k, v in evals.items()}, params=params,
        compile_seconds=0.0, run_seconds=run_seconds, compilations=counter.count,
        devices=self.devices)


def compile_sweep(
    optimizer: Any,
    loss_fn: Callable[..., jax.Array],
    init_params: Any,
    steps: int,
    *,
    names: Sequence[str] = (),
    shape: tuple[int, int] = (1, 1),
    dtypes: Mapping[str, Any] | None = None,
    hparams: Mapping[str, Any] | None = None,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    scheduled: str | None = None,
    batch_fn: Callable[[jax.Array, jax.Array], Any] | None = None,
    eval_fn: Callable[[Any], Any] | None = None,
    state_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    extra_args: Sequence[str] | None = None,
    static_args: Sequence[str] | None = None,
    return_params: bool = False,
    mesh: Any = None,
) -> CompiledSweep:
  """Compiles, once, the program that trains ``G x S`` models (``shape``) sweeping ``names``.

  The arguments are those of :func:`sweep`, except that the grid is replaced by the names of
  the swept hyperparameters (``dtypes``: name -> dtype, default float32) and the shape; the
  values and seeds come with each :meth:`CompiledSweep.run`.
  """
  factory = getattr(optimizer, "factory", optimizer)
  is_entry = factory is not optimizer
  if extra_args is None:
    extra_args = tuple(getattr(optimizer, "extra_args", ()))
  static = set(getattr(factory, "static_args", ()))
  static |= set(static_args if static_args is not None else getattr(optimizer, "static_args", ()))
  if scheduled is None and schedule is not None:
    scheduled = getattr(optimizer, "lr_arg", None) if is_entry else "learning_rate"
    if scheduled is None:
      raise ValueError("this optimizer has no learning-rate argument: name the scheduled "
                       "hyperparameter with scheduled=")
  hparams = dict(hparams or {})
  names = tuple(names)
  dtypes = {n: np.dtype((dtypes or {}).get(n, np.float32)) for n in names}
  g, s = (int(x) for x in shape)
  eval_every = steps if eval_every is None else int(eval_every)
  if steps < 1 or eval_every < 1 or steps % eval_every:
    raise ValueError(f"eval_every={eval_every} must divide steps={steps} (both >= 1)")
  if g < 1 or s < 1:
    raise ValueError(f"shape must be positive, got {shape}")

  # what is traced: the swept names and the scheduled one
  injected = list(names)
  if schedule is not None and scheduled not in injected:
    if scheduled not in hparams:
      raise ValueError(f"the scheduled hyperparameter {scheduled!r} is neither swept nor in "
                       "hparams")
    injected.append(scheduled)
  params_of_factory = inspect.signature(factory).parameters
  takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params_of_factory.values())
  for name in injected:
    if name in static:
      raise ValueError(f"{name!r} is a static argument of the factory: it fixes shapes or "
                       "control flow, so each value needs its own compilation (one sweep each)")
    if name not in params_of_factory and not takes_kwargs:
      raise ValueError(f"{name!r} is not an argument of {getattr(factory, '__name__', factory)}")
  fixed = {k: v for k, v in hparams.items() if k not in injected}
  const = {k: hparams[k] for k in injected if k not in names}  # the scheduled, if not swept
  build = optax.inject_hyperparams(_injectable(factory, fixed, injected))
  init_is_fn = callable(init_params)
  n_chunks = steps // eval_every

  def evaluate(params, state):
    out = {}
    if eval_fn is not None:
      got = eval_fn(params)
      out.update(dict(got) if isinstance(got, Mapping) else {"loss": got})
    if state_fn is not None:
      out.update(state_fn(state))
    return out

  def one_run(values, seed, init_tree):
    init_key, data_key = jax.random.split(jax.random.PRNGKey(seed))
    params = init_params(init_key) if init_is_fn else init_tree
    kw = {**const, **values}
    if schedule is not None:
      peak = kw[scheduled]
      kw[scheduled] = lambda t: peak * schedule(t)
    tx = build(**kw)
    state = tx.init(params)

    def step(carry, t):
      params, state = carry
      if batch_fn is None:
        obj = loss_fn
      else:
        batch = batch_fn(jax.random.fold_in(data_key, t), t)
        obj = lambda p: loss_fn(p, batch)  # noqa: E731
      params, state, value = training.step(tx, obj, params, state, extra_args)
      return (params, state), value

    def chunk(carry, c):
      carry, losses = jax.lax.scan(step, carry, c * eval_every + jnp.arange(eval_every))
      return carry, (losses, evaluate(*carry))

    first = evaluate(params, state)
    (params, _), (losses, evals) = jax.lax.scan(chunk, (params, state), jnp.arange(n_chunks))
    evals = {k: jnp.concatenate([jnp.asarray(first[k])[None], v]) for k, v in evals.items()}
    return losses.reshape(-1), evals, (params if return_params else None)

  # one device: points (G,), seeds (G, S); on a mesh: both flat (see _Spread)
  spread = None if mesh is None else _Spread(_as_mesh(mesh), g * s)
  with training.CompileCounter() as counter:
    t0 = time.perf_counter()
    lowered, init_tree = _lowered(one_run, spread, (g, s), dtypes,
                                  None if init_is_fn else init_params)
    compiled = lowered.compile()
    seconds = time.perf_counter() - t0
  return CompiledSweep(names=names, shape=(g, s), steps=steps, eval_every=eval_every,
                       compile_seconds=seconds, compilations=counter.count,
                       _compiled=compiled, _dtypes=dtypes, _init_tree=init_tree, _spread=spread)


def sweep(
    optimizer: Any,
    loss_fn: Callable[..., jax.Array],
    init_params: Any,
    steps: int,
    *,
    grid: Mapping[str, Sequence[Any]] | None = None,
    seeds: int | Sequence[int] = 1,
    hparams: Mapping[str, Any] | None = None,
    schedule: Callable[[jax.Array], jax.Array] | None = None,
    scheduled: str | None = None,
    batch_fn: Callable[[jax.Array, jax.Array], Any] | None = None,
    eval_fn: Callable[[Any], Any] | None = None,
    state_fn: Callable[[Any], Mapping[str, Any]] | None = None,
    eval_every: int | None = None,
    extra_args: Sequence[str] | None = None,
    static_args: Sequence[str] | None = None,
    return_params: bool = False,
    mesh: Any = None,
) -> SweepResult:
  """Trains one model per (grid point, seed), all vmapped in a single compilation.

  Args:
    optimizer: the factory, ``factory(**kwargs) -> optax.GradientTransformation``, or a
      registry entry (anything with ``.factory``; its ``extra_args``, ``static_args`` and
      ``lr_arg`` then fill the arguments below left as None).
    loss_fn: ``loss_fn(params, batch) -> scalar`` with ``batch_fn``, else ``loss_fn(params)``.
    init_params: a params pytree (the same start for every seed) or ``init(key) -> params``.
    steps: optimizer steps per run.
    grid: hyperparameter name -> values; the sweep runs their cartesian product (first name
      slowest). ``None`` or ``{}``: one point, ``hparams`` alone.
    seeds: a number of seeds (0, 1, ...) or the seeds themselves.
    hparams: fixed keyword arguments of the factory (Python values, never traced unless
      scheduled, so static arguments belong here).
    schedule: ``schedule(step) -> multiplier`` applied to ``scheduled`` (see the module
      docstring), or None.
    scheduled: the hyperparameter ``schedule`` multiplies; default the entry's ``lr_arg``,
      else ``'learning_rate'``. Its value comes from the grid or from ``hparams``.
    batch_fn: ``batch_fn(key, step) -> batch`` (per-seed minibatches), or None (full batch).
    eval_fn: ``eval_fn(params) -> scalar or dict of scalars`` (validation loss, accuracy, a
      coordinate, ...), run before the first step and every ``eval_every`` steps.
    state_fn: ``state_fn(opt_state) -> dict of arrays``, recorded with ``eval_fn`` (a learned
      step size, layer rates, MADA's coefficients; ``optax.tree.get(opt_state, name)`` finds
      a field through the ``inject_hyperparams`` wrapper).
    eval_every: steps between evaluations; must divide ``steps``. Default ``steps``.
    extra_args: ``update`` keywords to supply: ``'obj_fn'`` (the step's batch loss as a
      function of params) and ``'value'``. Default the entry's, else none.
    static_args: factory arguments that cannot be traced; sweeping one is a ``ValueError``.
      Default the entry's, plus the factory's ``static_args`` attribute.
    return_params: also return the final params (``(G, S, ...)`` leaves).
    mesh: None (one device), a ``jax.sharding.Mesh`` or a sequence of devices: the ``G x S``
      runs are split evenly over all of its devices (padded with copies of the last run, which
      the result never shows), in one compilation. Under ``jax.distributed``, the global
      devices, with every process calling the sweep alike.

  Returns:
    A :class:`SweepResult`.

  Raises:
    ValueError: a swept or scheduled name is static or not an argument of the factory,
      ``eval_every`` does not divide ``steps``, or an extra argument is unknown.
    TypeError: ``mesh`` is neither a mesh nor a sequence of devices.
  """
  points = _grid_points(grid or {})
  n_points = len(next(iter(points.values()))) if points else 1
  seed_list = np.arange(seeds) if isinstance(seeds, (int, np.integer)) else np.asarray(seeds)
  program = compile_sweep(
      optimizer, loss_fn, init_params, steps, names=tuple(points),
      shape=(n_points, len(seed_list)), dtypes={k: v.dtype for k, v in points.items()},
      hparams=hparams, schedule=schedule, scheduled=scheduled, batch_fn=batch_fn,
      eval_fn=eval_fn, state_fn=state_fn, eval_every=eval_every, extra_args=extra_args,
      static_args=static_args, return_params=return_params, mesh=mesh)
  res = program.run(points, seed_list)
  return dataclasses.replace(res, compile_seconds=program.compile_seconds,
                             compilations=program.compilations + res.compilations)
