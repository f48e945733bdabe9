"""What the benchmark scripts share: the machine's name, the paired-timing loop, the results
folder and writing to it, matplotlib for files and the Flax MLP two scripts measure. The budget
rule (step-size grid and schedule) and the machine's name are ``optzoo.compare``'s, re-exported
here; the real-data workloads of the main job and the per-family studies are
``optzoo.workloads``.

Each script imports it as ``import common`` (``python benchmarks/<script>.py`` puts this folder
on ``sys.path``), imports optzoo as installed (``pip install -e .``) and no other script.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

from optzoo.compare import GRID_SIZE, lr_grid, machine_name, schedule  # noqa: F401

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
#: where the main job writes by default (git-ignored, so a run leaves the clone clean)
OUT = pathlib.Path(__file__).resolve().parent / "out"


# ----------------------------------------------------------------------------- machine
def on_gpu() -> bool:
  return jax.devices()[0].platform == "gpu"


# ----------------------------------------------------------------------------- timing
def paired_times(steps: Mapping[str, Callable[[Any], Any]], carries: Mapping[str, Any],
                 n_pairs: int, warmup: int = 3) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
  """Wall time of jitted steps run interleaved in this process.

  Every step is ``carry -> carry`` (it may donate its argument). After ``warmup`` untimed calls
  of each, ``n_pairs`` rounds call every step once, each timed to ``block_until_ready``; the
  order flips every round so that drift in machine load hits all steps alike. Returns the
  seconds per step (arrays of ``n_pairs``, aligned by round, so ``np.median(t[a] / t[b])`` is
  a paired ratio) and the last carries.
  """
  carries = dict(carries)
  names = list(steps)
  for _ in range(warmup):
    for n in names:
      carries[n] = jax.block_until_ready(steps[n](carries[n]))
  times = {n: [] for n in names}
  for i in range(n_pairs):
    for n in names if i % 2 == 0 else names[::-1]:
      t0 = time.perf_counter()
      carries[n] = jax.block_until_ready(steps[n](carries[n]))
      times[n].append(time.perf_counter() - t0)
  return {n: np.asarray(t) for n, t in times.items()}, carries


# ----------------------------------------------------------------------------- results
def add_out_argument(ap: argparse.ArgumentParser) -> None:
  ap.add_argument("--out", default=str(RESULTS),
                  help="folder for the result files (default benchmarks/results)")


def write(name: str, text: str, out: str | os.PathLike = RESULTS) -> pathlib.Path:
  """Writes ``text`` to ``out/name`` (making the folder) and says so."""
  path = pathlib.Path(out) / name
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)
  print(f"wrote {path}")
  return path


def pyplot():
  """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
  import matplotlib  # noqa: PLC0415

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # noqa: PLC0415

  return plt


def savefig(fig, name: str, out: str | os.PathLike = RESULTS, **kwargs) -> pathlib.Path:
  """Saves ``fig`` to ``out/name`` at 110 dpi, closes it and says so."""
  path = pathlib.Path(out) / name
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110, **kwargs)
  pyplot().close(fig)
  print(f"wrote {path}")
  return path


# ----------------------------------------------------------------------------- problems
def mlp_problem(batch: int = 128, width: int = 1024, depth: int = 3, in_features: int = 512):
  """The Flax MLP of ``objectives.mlp_model``, ``in_features -> width x depth -> 10``, on one
  synthetic batch.

  Returns ``(xs, ys, params, loss_fn)`` with ``loss_fn(params, x, y)`` the mean softmax
  cross-entropy. The AdaHessian pairs of ``step_time.py`` time it; ``adahessian_flops.py``
  counts its flops.
  """
  import optax  # noqa: PLC0415

  from optzoo import objectives  # noqa: PLC0415

  model = objectives.mlp_model(hidden=width, classes=10, depth=depth)
  kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  xs = jax.random.normal(kx, (batch, in_features))
  ys = jax.random.randint(ky, (batch,), 0, 10)
  params = model.init(kp, xs[:1])["params"]

  def loss_fn(p, x, y):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return xs, ys, params, loss_fn
