"""The registry: every entry is consistent with its factory and with what its readers expect."""

import inspect

import jax
import optax
import pytest

import optzoo
from optzoo import objectives, registry, testing

FAMILIES = {"first-order", "meta", "memory-efficient", "curvature", "layerwise"}
ENTRIES = registry.ENTRIES
IDS = [e.name for e in ENTRIES]


def test_names_are_unique_and_get_finds_each():
  assert len(set(registry.names())) == len(ENTRIES)
  for e in ENTRIES:
    assert registry.get(e.name) is e


def test_unknown_name_lists_the_known_ones():
  with pytest.raises(KeyError, match="lion"):
    registry.get("adamw_but_better")


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_entry_fields_match_the_factory_signature(entry):
  params = inspect.signature(entry.factory).parameters
  assert entry.family in FAMILIES
  assert entry.paper.startswith("arXiv ")
  for name in list(entry.toy_kwargs) + list(entry.static_args):
    assert name in params, f"{entry.name}: {name!r} is not an argument of the factory"
  for obj, kw in entry.objective_kwargs.items():
    assert obj in objectives.TOY_SUITE, f"{entry.name}: unknown objective {obj!r}"
    assert set(kw) <= set(params), f"{entry.name}: bad override keys {set(kw) - set(params)}"
  if entry.lr_arg is not None:
    assert entry.lr_arg in params
  assert set(entry.extra_args) <= {"obj_fn", "value"}
  assert 0 < entry.convergence_steps <= testing.MAX_CONVERGENCE_STEPS


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_entry_builds_transformations(entry):
  for obj in (None, *entry.objective_kwargs):
    assert isinstance(entry.make(obj), optax.GradientTransformation)
  if entry.core is not None:
    assert isinstance(entry.core(), optax.GradientTransformation)


def test_overrides_apply_only_to_their_objective():
  e = registry.get("lion")
  assert e.kwargs_for(None) == dict(e.toy_kwargs)
  assert e.kwargs_for("rosenbrock")["b1"] == e.objective_kwargs["rosenbrock"]["b1"]
  assert "b1" not in e.kwargs_for("parabola")


def test_subject_from_entry_carries_every_field():
  e = registry.get("adahessian")
  s = testing.subject_from_entry(e)
  assert (s.factory, s.extra_args, s.static_args, s.lr_arg, s.convergence_steps) == (
      e.factory, e.extra_args, e.static_args, e.lr_arg, e.convergence_steps)


def test_bytes_per_param_matches_state_bytes():
  params = objectives.synthetic_params(1_000_000)
  lion = registry.get("lion")
  assert registry.bytes_per_param(lion) == 4.0 + 4.0 / 1_000_000  # mu in f32 + int32 count
  state = jax.eval_shape(lion.make().init, params)
  assert registry.bytes_per_param(lion) == optzoo.state_bytes(state) / 1_000_000


def test_markdown_table_has_one_row_per_entry():
  rows = [l for l in registry.markdown_table().splitlines() if l.startswith("| `optzoo.")]
  assert [r.split("`")[1] for r in rows] == [f"optzoo.{n}" for n in registry.names()]


def test_markdown_table_reports_state_and_update_temporaries():
  lines = registry.markdown_table().splitlines()
  assert "| state bytes/param | update temp bytes/param |" in lines[0]
  rows = {l.split("`")[1]: l.split("|") for l in lines if l.startswith("| `optzoo.")}
  krylov = rows["optzoo.krylov_cubic_newton"]
  state, temp = float(krylov[5]), float(krylov[6])
  # no state, but the update holds the m x d Krylov basis (m = 10, float32: 40 B/param) and more
  assert state == 0.0 and temp >= 40.0
  assert float(rows["optzoo.lion"][6]) < 1.0


def test_temp_bytes_per_param():
  params = {"w": jax.ShapeDtypeStruct((300, 200), "float32"), "b": jax.ShapeDtypeStruct((200,), "float32")}
  cpu = jax.devices("cpu")[0]
  krylov = optzoo.temp_bytes_per_param(optzoo.krylov_cubic_newton(subspace_dim=4), params,
                                       ("obj_fn",), device=cpu)
  assert krylov >= 4 * 4.0  # the (4, d) float32 basis at least
  assert optzoo.temp_bytes_per_param(optax.sgd(0.1), params, device=cpu) < 1.0
  with pytest.raises(ValueError, match="noise_grads"):
    optzoo.temp_bytes_per_param(optax.sgd(0.1), params, ("noise_grads",))

def test_full_batch_only_is_declared_where_a_minibatch_breaks_the_method():
  assert registry.get("krylov_cubic_newton").full_batch_only
  assert not any(e.full_batch_only for e in ENTRIES if e.name != "krylov_cubic_newton")


@pytest.mark.parametrize("name", registry.names())
def test_peak_memory_stays_within_the_declared_limit(name):
  """State + donated update temporaries on the PEAK_PARAMS pytree (compiled, not run)."""
  entry = registry.get(name)
  assert entry.max_peak < float("inf"), f"{name} declares no max_peak"
  peak = registry.peak_bytes_per_param(entry)
  assert peak <= entry.max_peak, (
      f"{name}: peak {peak:.3f} bytes/param exceeds its declared max_peak {entry.max_peak}")
