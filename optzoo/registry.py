"""The catalogue: one entry per optimizer.

optzoo's own tests, benchmarks, notebooks and documentation read this module, and so can your
tools: each :class:`Entry` says what an optimizer is (factory, family, paper, the extra
``update`` arguments it needs, the arguments ``optax.inject_hyperparams`` must keep static) and
how to run it on the toy suite.

>>> from optzoo import registry
>>> entry = registry.get("lion")
>>> tx = entry.make()            # the optimizer with its toy-suite kwargs
>>> entry.family
'first-order'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import optax

from optzoo import objectives
from optzoo._src.adahessian import adahessian, scale_by_adahessian
from optzoo._src.avgrad import avgrad, scale_by_avgrad
from optzoo._src.krylov import krylov_cubic_newton, scale_by_krylov_cubic_newton
from optzoo._src.lanton import lanton, scale_by_lanton
from optzoo._src.noise_adaptive_layerwise import noise_adaptive_layerwise
from optzoo._src.lion import lion, scale_by_lion
from optzoo._src.mada import mada, scale_by_mada
from optzoo._src.base.memory import bytes_per_param as _bytes_per_param
from optzoo._src.base.memory import temp_bytes_per_param as _temp_bytes_per_param
from optzoo._src.metaoptimize import metaoptimize
from optzoo._src.microadam import microadam, scale_by_microadam


@dataclasses.dataclass(frozen=True)
class Entry:
  """One optimizer of the zoo.

  Attributes:
    name: public name (``optzoo.<name>``).
    factory: the alias, ``factory(**kwargs) -> optax.GradientTransformation``.
    core: the learning-rate-free ``scale_by_<name>`` (None for wrappers).
    family: 'first-order', 'meta', 'memory-efficient', 'curvature' or 'layerwise'.
    paper: short citation, e.g. 'arXiv 2302.06675'.
    title: the paper's title.
    toy_kwargs: kwargs that work on the whole toy suite (used by conformance, leaderboard,
      notebooks). May contain schedules.
    objective_kwargs: per-objective overrides of ``toy_kwargs`` (objective name -> kwargs).
    extra_args: keywords ``update`` needs besides (updates, state, params); today only
      ``'obj_fn'`` (params -> scalar loss), supplied by the harness from the objective.
    lr_arg: name of the learning-rate argument that accepts a schedule (None if none).
    full_batch_only: True when the method needs the exact objective at every step (a
      minibatch gradient breaks it, e.g. a line search or trust region on the loss); the
      benchmarks then run it only on full-batch workloads and say so.
    learns_lr: True when ``lr_arg`` is only the initial value of a step size the method learns
      (a schedule on it would fight the method): comparisons sweep it without a schedule.
    wraps: the argument that takes the optimizer this one wraps (None if none). With no
      ``lr_arg`` of its own, a comparison sweeps (and schedules) the wrapped optimizer's
      learning rate.
    convergence_steps: steps of the convergence check (at most 30,000).
    convergence_tol: distance to the minimizer the convergence check requires.
    notes: one line for the README table.
    max_peak: the peak bytes per parameter the optimizer must not exceed: its state plus the
      temporaries of its compiled update with the gradients and the state donated, on the
      ``PEAK_PARAMS``-parameter pytree of :func:`peak_bytes_per_param` (compiled for the CPU).
      A test holds every entry to it, so a change that needs more memory is caught; each is
      the measured peak rounded up by a few percent.
  """

  name: str
  factory: Callable[..., optax.GradientTransformation]
  core: Callable[..., optax.GradientTransformation] | None
  family: str
  paper: str
  title: str
  toy_kwargs: Mapping[str, Any]
  objective_kwargs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
  extra_args: tuple[str, ...] = ()
  lr_arg: str | None = "learning_rate"
  full_batch_only: bool = False
  learns_lr: bool = False
  wraps: str | None = None
  convergence_steps: int = 10_000
  convergence_tol: float = 3e-2
  notes: str = ""
  max_peak: float = float("inf")

  @property
  def static_args(self) -> tuple[str, ...]:
    """The factory's declared hyperparameters that fix shapes or Python control flow, so that
    ``optax.inject_hyperparams`` must keep them static (its ``static_args``)."""
    return tuple(getattr(self.factory, "static_args", ()))

  def kwargs_for(self, objective: str | None = None) -> dict[str, Any]:
    """``toy_kwargs`` with the overrides for ``objective`` applied."""
    kw = dict(self.toy_kwargs)
    if objective is not None:
      kw.update(self.objective_kwargs.get(objective, {}))
    return kw

  def make(self, objective: str | None = None, **overrides) -> optax.GradientTransformation:
    """Builds the optimizer with its toy kwargs (for ``objective``), then ``overrides``."""
    return self.factory(**{**self.kwargs_for(objective), **overrides})


ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="lion",
        factory=lion,
        core=scale_by_lion,
        family="first-order",
        paper="arXiv 2302.06675",
        title="Symbolic Discovery of Optimization Algorithms",
        toy_kwargs={"learning_rate": 3e-3, "weight_decay": 0.0},
        objective_kwargs={
            # A sign method moves every coordinate by lr per step, so it needs a decaying
            # schedule to settle inside the tolerance on the curved valley.
            "rosenbrock": {
                "learning_rate": optax.cosine_decay_schedule(1e-2, 20_000, alpha=1e-3),
                "b1": 0.95,
                "b2": 0.98,
            },
        },
        convergence_steps=20_000,
        notes="sign of interpolated momentum; 1 buffer",
        max_peak=12.5,
    ),
    Entry(
        name="avgrad",
        factory=avgrad,
        core=scale_by_avgrad,
        family="first-order",
        paper="arXiv 2401.08893",
        title="MADA: Meta-Adaptive Optimizers through hyper-gradient Descent (AVGrad)",
        toy_kwargs={"learning_rate": 1e-2},
        convergence_steps=10_000,
        notes="AMSGrad with running mean of v instead of max; 3 buffers",
        max_peak=12.5,
    ),
    Entry(
        name="mada",
        factory=mada,
        core=scale_by_mada,
        family="meta",
        paper="arXiv 2401.08893",
        title="MADA: Meta-Adaptive Optimizers through hyper-gradient Descent",
        # the Adam-corner start with all six coefficients learned
        toy_kwargs={"learning_rate": 1e-2, "b2": 0.99, "eps": 1e-8},
        # initial coefficients decide which state arrays exist (trimming), so they are static
        convergence_steps=10_000,
        notes="learns 6 coefficients mixing Adam/AVGrad/Yogi/Adan/Lion by hypergradient",
        max_peak=75.0,
    ),
    Entry(
        name="adahessian",
        factory=adahessian,
        core=scale_by_adahessian,
        family="curvature",
        paper="arXiv 2006.00719",
        title="ADAHESSIAN: An Adaptive Second Order Optimizer for Machine Learning",
        # eps 1e-3 (paper 1e-4): the step divides by |H z| + eps, and an entry where |H z|
        # nearly cancels (1e-5 in the kit's sharding problem) amplifies float reduction-order
        # noise of a sharded HVP past the kit's 1e-6; a larger eps damps it.
        toy_kwargs={"learning_rate": 0.15, "eps": 1e-3},
        objective_kwargs={
            # |H z| carries the large cross-curvature of the valley, so steps along it are
            # small at the paper's lr; a Newton-like lr (k = 1) walks the valley.
            "rosenbrock": {"learning_rate": 2.0},
        },
        extra_args=("obj_fn",),
        # update_every is static: it picks between no lax.cond (1) and a lax.cond refresh (> 1).
        convergence_steps=2_500,
        notes="Hutchinson |Hz| second moment; needs obj_fn; 2 buffers (+1 if update_every > 1)",
        max_peak=9.0,
    ),
    Entry(
        name="krylov_cubic_newton",
        factory=krylov_cubic_newton,
        core=scale_by_krylov_cubic_newton,
        family="curvature",
        paper="arXiv 2401.03058",
        title="Krylov Cubic Regularized Newton: A Subspace Second-Order Method with "
              "Dimension-Free Convergence Rate",
        # The paper's m = 10. Its M_0 = 2e-3 (sigma_0 = 1e-3) suits its logistic losses; on the
        # nonconvex toys a tiny M sends the first steps far along negative curvature, where the
        # step is ill-conditioned (float32 reduction order alone moves it by 2e-5 in the
        # sharding check), so the toys start at M_0 = 1 (M then halves per accepted step).
        # No learning rate: the cubic model fixes the step length.
        toy_kwargs={"subspace_dim": 10, "init_M": 1.0},
        extra_args=("obj_fn",),
        # subspace_dim fixes the basis shape; the others are Python control flow.
        lr_arg=None,
        # the cubic model's backtracking on M compares exact decreases of the objective
        full_batch_only=True,
        convergence_steps=100,
        notes="Lanczos subspace (m HVPs/step) + cubic model with backtracked M; needs obj_fn; "
              "full batch",
        max_peak=58.0,
    ),
    Entry(
        name="metaoptimize",
        factory=metaoptimize,
        core=None,
        family="meta",
        paper="arXiv 2402.02342",
        title="MetaOptimize: A Framework for Optimizing Step Sizes and Other Meta-parameters",
        # Adam direction, log step size learned by Lion meta (paper's default pair), started
        # well below a good fixed step as the paper advises.
        toy_kwargs={"base": optax.scale_by_adam(), "initial_learning_rate": 1e-3},
        lr_arg="initial_learning_rate",
        learns_lr=True,
        wraps="base",
        convergence_steps=5_000,
        notes="wraps any lr-free base; log step size learned by meta-gradient; +1 buffer",
        max_peak=21.0,
    ),
    Entry(
        name="lanton",
        factory=lanton,
        core=scale_by_lanton,
        family="layerwise",
        paper="arXiv 2510.14009",
        title="Noise-Adaptive Layerwise Learning Rates: Accelerating Geometry-Aware Optimization "
              "for Deep Neural Network Training",
        # No decay (exact minimizers). An orthogonalized step has length ~lr whatever the
        # gradient, so the convergence suite needs a decaying schedule to settle.
        toy_kwargs={"learning_rate": 1e-2, "weight_decay": 0.0},
        objective_kwargs={
            name: {"learning_rate": optax.cosine_decay_schedule(3e-2, 2_000, alpha=1e-3)}
            for name in objectives.CONVERGENCE_SUITE
        },
        convergence_steps=2_000,
        notes="Newton-Schulz/sign LMO with per-layer rates from dual-norm gradient noise; 2 buffers",
        max_peak=41.0,
    ),
    Entry(
        name="noise_adaptive_layerwise",
        factory=noise_adaptive_layerwise,
        core=None,
        family="layerwise",
        paper="arXiv 2510.14009",
        title="Noise-Adaptive Layerwise Learning Rates (generic wrapper over any optimizer)",
        # Wraps Adam (with its own schedule) in l1-dual noise rates, all leaves in one group.
        toy_kwargs={
            "inner": optax.adam(optax.cosine_decay_schedule(1e-1, 2_000, alpha=1e-3)),
            "dual_norm": "l1",
        },
        lr_arg=None,
        wraps="inner",
        convergence_steps=2_000,
        notes="layer rates from dual-norm gradient noise on any inner optimizer; +1 buffer",
        max_peak=17.0,
    ),
    Entry(
        name="microadam",
        factory=microadam,
        core=scale_by_microadam,
        family="memory-efficient",
        paper="arXiv 2405.15593",
        title="MicroAdam: Accurate Adaptive Optimization with Low Space Overhead and "
              "Provable Convergence",
        # Paper defaults (density 0.01, m = 10), so the leaderboard shows the real state size.
        toy_kwargs={"learning_rate": 1e-2},
        # Windowed Adam grows |u| up to ~6.5x past the window (global-step bias correction,
        # as the reference), so the convergence suite needs a decaying learning rate to settle.
        objective_kwargs={
            **{name: {"learning_rate": optax.cosine_decay_schedule(1e-2, 20_000, alpha=1e-3)}
               for name in ("parabola", "matrix_parabola", "mixed_pytree")},
            # 2 coordinates, top-1 per step: the error feedback carries the other one.
            "rosenbrock": {
                "learning_rate": optax.cosine_decay_schedule(3e-3, 20_000, alpha=1e-3),
                "b2": 0.99,
            },
        },
        convergence_steps=20_000,
        notes="block top-k + 4-bit error feedback, window of 10 sparse grads; <1 byte/param",
        # the streamed update's chunk-wide temporaries are a fixed few MiB: about 1.5 bytes
        # per parameter at 1M, 0.2 at 10M (microadam_test holds the 2.0 total at 10M)
        max_peak=2.75,
    ),
)

_BY_NAME = {e.name: e for e in ENTRIES}


def names() -> tuple[str, ...]:
  """Names of every registered optimizer, in registry order."""
  return tuple(e.name for e in ENTRIES)


def get(name: str) -> Entry:
  """The entry called ``name``; a ``KeyError`` lists the valid names."""
  try:
    return _BY_NAME[name]
  except KeyError:
    raise KeyError(f"no optimizer {name!r} in the registry; known: {names()}") from None


def bytes_per_param(entry: Entry, n_params: int = 1_000_000) -> float:
  """Optimizer-state bytes per parameter of ``entry`` (toy kwargs) on an MLP-shaped float32
  pytree of about ``n_params`` parameters, computed abstractly (nothing is allocated)."""
  return _bytes_per_param(entry.make(), objectives.synthetic_params(n_params))


_TEMP_BYTES: dict[tuple[int, int], float] = {}


def temp_bytes_per_param(entry: Entry, n_params: int = 1_000_000) -> float:
  """Peak temporary bytes per parameter of ``entry``'s compiled update (toy kwargs), on the
  pytree of :func:`bytes_per_param`, compiled for the CPU (so the figure does not depend on
  the accelerator at hand) with ``obj_fn`` a sum of squares; see
  :func:`optzoo.temp_bytes_per_param`. Compiles once per entry and size (cached)."""
  key = (id(entry), n_params)
  # a measurement: standard promotion whatever the caller's setting (entries built on optax's
  # Adam compute float ** int32, which strict promotion refuses)
  if key not in _TEMP_BYTES:
    with jax.numpy_dtype_promotion("standard"):
      _TEMP_BYTES[key] = _temp_bytes_per_param(
          entry.make(), objectives.synthetic_params(n_params), entry.extra_args,
          device=jax.devices("cpu")[0])
  return _TEMP_BYTES[key]


#: parameters of the pytree on which the declared peaks (``Entry.max_peak``) are held
PEAK_PARAMS = 1_000_000

_PEAK_BYTES: dict[tuple[int, int], float] = {}


def peak_bytes_per_param(entry: Entry, n_params: int = PEAK_PARAMS) -> float:
  """``entry``'s peak bytes per parameter (toy kwargs): state plus the temporaries of its
  update compiled for the CPU with the gradients and the state donated, on the pytree of
  :func:`bytes_per_param`. Compiles once per entry and size (cached)."""
  key = (id(entry), n_params)
  if key not in _PEAK_BYTES:
    with jax.numpy_dtype_promotion("standard"):
      _PEAK_BYTES[key] = bytes_per_param(entry, n_params) + _temp_bytes_per_param(
          entry.make(), objectives.synthetic_params(n_params), entry.extra_args,
          device=jax.devices("cpu")[0], donate=True)
  return _PEAK_BYTES[key]


def markdown_table(measured_peaks: Mapping[str, float] | None = None,
                   measured_label: str = "") -> str:
  """The README's table of optimizers, generated from ``ENTRIES``: state bytes per parameter
  (kept between steps), the update's temporary bytes per parameter (XLA's memory analysis of
  the compiled update on the CPU) and the peak with the gradients and state donated
  (:func:`peak_bytes_per_param`, beside the entry's declared ``max_peak``), all on a
  1M-parameter float32 MLP pytree. ``measured_peaks`` (optimizer name -> bytes/param, e.g.
  measured on a larger pytree; ``optax.adam`` among them) adds a column headed
  ``measured_label`` and a last row for ``optax.adam``."""
  extra_col = bool(measured_peaks)
  lines = [
      "| optimizer | paper | family | extra `update` args | state bytes/param "
      "| update temp bytes/param | peak bytes/param (limit) |"
      + (f" {measured_label} |" if extra_col else "") + " notes |",
      "|---|---|---|---|---:|---:|---:|" + ("---:|" if extra_col else "") + "---|",
  ]
  for e in ENTRIES:
    extra = ", ".join(f"`{a}`" for a in e.extra_args) or "-"
    measured = ""
    if extra_col:
      m = measured_peaks.get(e.name)
      measured = f" {m:.2f} |" if m is not None else " - |"
    lines.append(
        f"| `optzoo.{e.name}` | {e.title} ({e.paper}) | {e.family} | {extra} | "
        f"{bytes_per_param(e):.2f} | {temp_bytes_per_param(e):.2f} | "
        f"{peak_bytes_per_param(e):.2f} ({e.max_peak:g}) |{measured} {e.notes} |"
    )
  if extra_col and "optax.adam" in measured_peaks:
    adam = optax.adam(1e-3)
    params = objectives.synthetic_params(PEAK_PARAMS)
    with jax.numpy_dtype_promotion("standard"):
      state = _bytes_per_param(adam, params)
      temp = _temp_bytes_per_param(adam, params, device=jax.devices("cpu")[0])
      dtemp = _temp_bytes_per_param(adam, params, device=jax.devices("cpu")[0], donate=True)
    lines.append(
        f"| `optax.adam` (baseline) | Adam | first-order | - | {state:.2f} | {temp:.2f} | "
        f"{state + dtemp:.2f} | {measured_peaks['optax.adam']:.2f} | 2 buffers |")
  return "\n".join(lines)
