"""The catalogue: one entry per optimizer.

Tests (``tests/conformance_test.py``), benchmarks (``benchmarks/*.py``), notebooks and the
README table read this module and nothing else, so adding an optimizer to optzoo is one
module plus one :class:`Entry` in ``ENTRIES`` below.

>>> from optzoo import registry
>>> entry = registry.get("lion")
>>> tx = entry.make()            # the optimizer with its toy-suite kwargs
>>> entry.family
'first-order'
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import optax

# Import functions, not modules: optzoo.<name> is the function (it shadows the module).
from optzoo.lion import lion, scale_by_lion


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
    static_args: hyperparameters that fix shapes or Python control flow and so cannot be
      traced by ``optax.inject_hyperparams`` (passed as its ``static_args``).
    lr_arg: name of the learning-rate argument that accepts a schedule (None if none).
    twin: ``() -> optax.GradientTransformation``, the optax baseline this optimizer is timed
      against in ``benchmarks/step_time.py`` (None: no twin).
    twin_name: label of the twin in tables.
    twin_kwargs: kwargs for ``factory`` in the step-time comparison (defaults to toy_kwargs).
    step_time_target: the step-time ratio to the twin that the issue asks for (None: none).
    convergence_steps: steps of the convergence check (at most 30,000).
    convergence_tol: distance to the minimizer the convergence check requires.
    notes: one line for the README table.
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
  static_args: tuple[str, ...] = ()
  lr_arg: str | None = "learning_rate"
  twin: Callable[[], optax.GradientTransformation] | None = None
  twin_name: str | None = None
  twin_kwargs: Mapping[str, Any] | None = None
  step_time_target: float | None = None
  convergence_steps: int = 10_000
  convergence_tol: float = 3e-2
  notes: str = ""

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
        static_args=("mu_dtype", "mask"),
        twin=lambda: optax.lion(1e-3),
        twin_name="optax.lion",
        twin_kwargs={"learning_rate": 1e-3},
        step_time_target=1.02,
        convergence_steps=20_000,
        notes="sign of interpolated momentum; 1 buffer",
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


#: optax baselines that the leaderboard runs beside the zoo (name -> factory(learning_rate)).
BASELINES: Mapping[str, Callable[[float], optax.GradientTransformation]] = {
    "optax.adam": lambda lr: optax.adam(lr),
    "optax.amsgrad": lambda lr: optax.amsgrad(lr),
    "optax.lion": lambda lr: optax.lion(lr, weight_decay=0.0),
}
#: learning rates of the baselines on the toy suite (lion's is smaller, as its paper advises).
BASELINE_LR: Mapping[str, float] = {"optax.adam": 1e-2, "optax.amsgrad": 1e-2, "optax.lion": 1e-3}


def bytes_per_param(entry: Entry, n_params: int = 1_000_000) -> float:
  """Optimizer-state bytes per parameter of ``entry`` (toy kwargs) on an MLP-shaped float32
  pytree of about ``n_params`` parameters, computed abstractly (nothing is allocated)."""
  from optzoo import objectives, testing  # noqa: PLC0415 - keep the registry import light

  return testing.bytes_per_param(entry.make(), objectives.synthetic_params(n_params))


def markdown_table() -> str:
  """The README's table of optimizers, generated from ``ENTRIES`` (see scripts/readme.py)."""
  lines = [
      "| optimizer | paper | family | extra `update` args | state bytes/param | notes |",
      "|---|---|---|---|---:|---|",
  ]
  for e in ENTRIES:
    extra = ", ".join(f"`{a}`" for a in e.extra_args) or "-"
    lines.append(
        f"| `optzoo.{e.name}` | {e.title} ({e.paper}) | {e.family} | {extra} | "
        f"{bytes_per_param(e):.2f} | {e.notes} |"
    )
  return "\n".join(lines)
