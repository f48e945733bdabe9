"""What the benchmark scripts share: the machine's name, the paired-timing loop, the results
folder and writing to it, matplotlib for files, the Flax MLP two scripts measure, the budget rule
(step-size grid and schedule) and the real-data workloads of the main job and the per-family
studies.

Each script imports it as ``import common`` (``python benchmarks/<script>.py`` puts this folder
on ``sys.path``), imports optzoo as installed (``pip install -e .``) and no other script.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import platform
import time
from typing import Any, Callable, Mapping

import jax
import numpy as np

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
#: where the main job writes by default (git-ignored, so a run leaves the clone clean)
OUT = pathlib.Path(__file__).resolve().parent / "out"


# ----------------------------------------------------------------------------- machine
def machine_name() -> str:
  """The JAX device, the host's cores and architecture, and the jax version."""
  dev = jax.devices()[0]
  return (f"{dev.platform}:{getattr(dev, 'device_kind', dev.platform)} "
          f"({os.cpu_count()} host cores, {platform.machine()}, jax {jax.__version__})")


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
  """A Flax MLP ``in_features -> width x depth -> 10`` on one synthetic batch.

  Returns ``(xs, ys, params, loss_fn)`` with ``loss_fn(params, x, y)`` the mean softmax
  cross-entropy. The AdaHessian pairs of ``step_time.py`` time it; ``adahessian_flops.py``
  counts its flops.
  """
  import flax.linen as nn  # noqa: PLC0415
  import optax  # noqa: PLC0415

  class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
      for _ in range(depth):
        x = nn.relu(nn.Dense(width)(x))
      return nn.Dense(10)(x)

  model = MLP()
  kx, ky, kp = jax.random.split(jax.random.PRNGKey(0), 3)
  xs = jax.random.normal(kx, (batch, in_features))
  ys = jax.random.randint(ky, (batch,), 0, 10)
  params = model.init(kp, xs[:1])["params"]

  def loss_fn(p, x, y):
    logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  return xs, ys, params, loss_fn


# ----------------------------------------------------------------------------- budget rule
# What every optimizer gets in the main job and in the per-family studies: one log grid of the
# step size (the same size for everyone), one schedule, the workload's step budget, fresh seeds
# at the chosen point.

#: the step-size grid: GRID_SIZE points, log-spaced from GRID_LOW to GRID_HIGH
GRID_LOW, GRID_HIGH, GRID_SIZE = 1e-4, 1.0, 7


def lr_grid(size: int = GRID_SIZE) -> np.ndarray:
  """The step-size grid of the budget rule (``size`` log-spaced points, 1e-4 to 1)."""
  return np.logspace(np.log10(GRID_LOW), np.log10(GRID_HIGH), size)


def schedule(steps: int):
  """The schedule of the budget rule, a multiplier of the peak step size: linear warmup over
  5% of the steps, then cosine decay to 0."""
  import optax  # noqa: PLC0415

  return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, steps // 20), steps, end_value=0.0)


# ----------------------------------------------------------------------------- workloads
# The real-data workloads of the main job (run.py) and of the per-family studies. Nothing is
# downloaded: the digits and breast-cancer data ship with scikit-learn (the [dev] extra), the
# text is the running interpreter's own standard library.

#: Standard-library modules whose source is the character-level corpus, in this order.
CORPUS_FILES = ("textwrap.py", "string.py", "heapq.py", "bisect.py", "fnmatch.py", "shlex.py",
                "calendar.py", "functools.py", "contextlib.py", "fractions.py", "statistics.py",
                "difflib.py", "dataclasses.py", "enum.py", "argparse.py")


@dataclasses.dataclass(frozen=True)
class Workload:
  """A training problem for ``optzoo.sweep.sweep``.

  Attributes:
    name: short name (tables, files).
    description: one line for tables.
    full_batch: True when every step sees all the data (no ``batch_fn``).
    init: ``init(key) -> params`` (per-seed initialisation).
    loss: ``loss(params, batch)`` (minibatch) or ``loss(params)`` (full batch).
    batch_fn: ``batch_fn(key, step) -> batch``, None when full batch.
    eval_fn: ``params -> {'loss': ...}`` (plus ``'accuracy'``, coordinates, ...); 'loss' is
      the validation loss, or the suboptimality ``f - f*`` for the optimisation problems.
    metric: what ``eval_fn()['loss']`` is, for the tables ('validation loss' or 'f - f*').
    steps: the step budget (the same for every optimizer).
    eval_every: steps between evaluations.
    info: facts for the report (data sizes, corpus hash, ...).
  """

  name: str
  description: str
  full_batch: bool
  init: Callable[[Any], Any]
  loss: Callable[..., Any]
  batch_fn: Callable[[Any, Any], Any] | None
  eval_fn: Callable[[Any], dict]
  metric: str
  steps: int
  eval_every: int
  info: dict = dataclasses.field(default_factory=dict)


def _nnx_init(build: Callable):
  """(graphdef, init(key) -> nnx.State of the params) for a model ``build(rngs)``.

  ``init`` redraws every random leaf of the model's default initialisation as a normal with
  that leaf's standard deviation, from one ``jax.random.normal`` call (constant leaves, such as
  biases and LayerNorm scales, keep their value). The distribution is nnx's up to truncation;
  one draw instead of one per leaf compiles several times faster, and every sweep compiles it.
  """
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  graphdef, template = nnx.split(build(nnx.Rngs(0)), nnx.Param)
  leaves, treedef = jax.tree.flatten(template)
  stds = [float(np.std(np.asarray(x))) for x in leaves]
  sizes = [int(np.prod(x.shape)) for x in leaves]
  n_random = int(sum(n for n, s in zip(sizes, stds) if s > 0))

  def init(key):
    flat = jax.random.normal(key, (n_random,), jnp.float32)
    out, at = [], 0
    for x, s, n in zip(leaves, stds, sizes):
      if s > 0:
        out.append((flat[at:at + n] * s).reshape(x.shape).astype(x.dtype))
        at += n
      else:
        out.append(jnp.asarray(x))
    return jax.tree.unflatten(treedef, out)

  return graphdef, init


def _xent(logits, labels):
  import optax  # noqa: PLC0415

  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def conv_via_patches(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                     dimension_numbers=None, feature_group_count=1, precision=None, **_):
  """``lax.conv_general_dilated`` for NHWC inputs, HWIO kernels and 'SAME' padding, written as
  shifted slices times a matrix (``nnx.Conv(..., conv_general_dilated=conv_via_patches)``):
  the same numbers, but ``vmap`` over the kernel (a sweep over models) stays a batched matmul,
  where XLA:CPU's batched-kernel convolution is about 20x slower."""
  del dimension_numbers, feature_group_count, precision
  if padding != "SAME" or any(d not in (None, 1) for d in (*(lhs_dilation or ()),
                                                          *(rhs_dilation or ()))):
    raise NotImplementedError("conv_via_patches: SAME padding, no dilation")
  import jax.numpy as jnp  # noqa: PLC0415

  kh, kw, cin, cout = rhs.shape
  sh, sw = window_strides
  n, h, w, _ = lhs.shape
  oh, ow = -(-h // sh), -(-w // sw)
  ph, pw = max((oh - 1) * sh + kh - h, 0), max((ow - 1) * sw + kw - w, 0)
  x = jnp.pad(lhs, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
  cols = [x[:, i:i + (oh - 1) * sh + 1:sh, j:j + (ow - 1) * sw + 1:sw, :]
          for i in range(kh) for j in range(kw)]  # (kh, kw, cin) order, like the kernel
  return jnp.concatenate(cols, -1) @ rhs.reshape(kh * kw * cin, cout)


def digits_workload(steps: int = 300, batch: int = 64, eval_every: int = 25) -> Workload:
  """A small CNN on scikit-learn's handwritten digits (1,797 8x8 images, 10 classes).

  Fixed split (seed 0): 1,437 training images, 360 validation images. Model (flax.nnx): 3x3
  conv 1->8, ReLU, 3x3 conv 8->16 with stride 2, ReLU, linear 256->10 (3.8k parameters).
  Minibatches of ``batch`` drawn with replacement, per seed.
  """
  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415
  from sklearn.datasets import load_digits  # noqa: PLC0415

  data = load_digits()
  x = (data.images / 16.0).astype(np.float32)[..., None]
  y = data.target.astype(np.int32)
  perm = np.random.default_rng(0).permutation(len(y))
  tr, va = perm[:1437], perm[1437:]
  xt, yt, xv, yv = (jnp.asarray(a) for a in (x[tr], y[tr], x[va], y[va]))

  class CNN(nnx.Module):
    def __init__(self, rngs):
      self.conv1 = nnx.Conv(1, 8, (3, 3), conv_general_dilated=conv_via_patches, rngs=rngs)
      self.conv2 = nnx.Conv(8, 16, (3, 3), strides=2, conv_general_dilated=conv_via_patches,
                            rngs=rngs)
      self.head = nnx.Linear(4 * 4 * 16, 10, rngs=rngs)

    def __call__(self, h):
      h = jax.nn.relu(self.conv2(jax.nn.relu(self.conv1(h))))
      return self.head(h.reshape(h.shape[0], -1))

  graphdef, init = _nnx_init(CNN)

  def logits(params, xs):
    return nnx.merge(graphdef, params)(xs)

  def loss(params, b):
    return _xent(logits(params, b[0]), b[1])

  def batch_fn(key, _step):
    i = jax.random.randint(key, (batch,), 0, xt.shape[0])
    return xt[i], yt[i]

  def eval_fn(params):
    out = logits(params, xv)
    return {"loss": _xent(out, yv), "accuracy": jnp.mean(jnp.argmax(out, -1) == yv)}

  return Workload(
      "digits", "CNN (3.8k params) on scikit-learn digits: 1,437 train / 360 validation, batch "
      f"{batch}", False, init, loss, batch_fn, eval_fn, "validation loss", steps, eval_every,
      {"train": len(tr), "validation": len(va), "batch": batch})


def corpus(budget: int = 200_000) -> tuple[bytes, list[str]]:
  """The first ``budget`` bytes of ``CORPUS_FILES`` read from this interpreter's standard
  library (files that are missing are skipped), and the files used."""
  import sysconfig  # noqa: PLC0415

  root = pathlib.Path(sysconfig.get_paths()["stdlib"])
  parts, used, size = [], [], 0
  for name in CORPUS_FILES:
    path = root / name
    if not path.exists() or size >= budget:
      continue
    parts.append(path.read_bytes())
    used.append(name)
    size += len(parts[-1])
  text = b"".join(parts)[:budget]
  if len(text) < budget // 2:
    raise RuntimeError(f"standard library at {root} too small for the corpus ({len(text)} B)")
  return text, used


def charlm_workload(steps: int = 300, batch: int = 16, seq: int = 32, width: int = 32,
                    heads: int = 2, budget: int = 200_000, eval_every: int = 25) -> Workload:
  """A character-level transformer LM on the Python standard library's own source.

  Corpus: :func:`corpus` (bytes; non-ASCII bytes map to 0, vocabulary 128), the first 90% for
  training and the last 10% for validation. Model (flax.nnx): token embedding + learned
  positions, one pre-norm block (``nnx.MultiHeadAttention`` with a causal mask, LayerNorm, MLP
  4x with GELU), final LayerNorm, untied head. Minibatches of ``batch`` random windows of
  ``seq`` + 1 bytes, per seed; the validation loss is the mean next-byte cross-entropy (nats)
  over 64 fixed evenly spaced validation windows.
  """
  import hashlib  # noqa: PLC0415

  import jax.numpy as jnp  # noqa: PLC0415
  from flax import nnx  # noqa: PLC0415

  text, files = corpus(budget)
  tokens = np.frombuffer(text, np.uint8).astype(np.int32)
  tokens = np.where(tokens < 128, tokens, 0)
  split = int(0.9 * len(tokens))
  train, val = jnp.asarray(tokens[:split]), tokens[split:]
  starts = np.linspace(0, len(val) - seq - 2, 64).astype(int)
  val_windows = jnp.asarray(np.stack([val[s:s + seq + 1] for s in starts]))
  vocab = 128

  class CharLM(nnx.Module):
    def __init__(self, rngs):
      self.embed = nnx.Embed(vocab, width, rngs=rngs)
      self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (seq, width)))
      self.ln1, self.ln2 = nnx.LayerNorm(width, rngs=rngs), nnx.LayerNorm(width, rngs=rngs)
      self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=width, decode=False,
                                         rngs=rngs)
      self.up = nnx.Linear(width, 4 * width, rngs=rngs)
      self.down = nnx.Linear(4 * width, width, rngs=rngs)
      self.ln_f = nnx.LayerNorm(width, rngs=rngs)
      self.head = nnx.Linear(width, vocab, rngs=rngs)

    def __call__(self, toks):
      h = self.embed(toks) + self.pos[...][None, : toks.shape[1]]
      mask = nnx.make_causal_mask(toks)
      h = h + self.attn(self.ln1(h), mask=mask)
      h = h + self.down(jax.nn.gelu(self.up(self.ln2(h))))
      return self.head(self.ln_f(h))

  graphdef, init = _nnx_init(CharLM)

  def window_loss(params, windows):
    out = nnx.merge(graphdef, params)(windows[:, :-1])
    return _xent(out.reshape(-1, vocab), windows[:, 1:].reshape(-1))

  def batch_fn(key, _step):
    s = jax.random.randint(key, (batch,), 0, train.shape[0] - seq - 1)
    return jax.vmap(lambda i: jax.lax.dynamic_slice(train, (i,), (seq + 1,)))(s)

  def eval_fn(params):
    return {"loss": window_loss(params, val_windows)}

  n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(
      jax.eval_shape(init, jax.random.PRNGKey(0))))
  return Workload(
      "charlm", f"transformer LM ({n_params / 1e3:.0f}k params, 1 block, width {width}) on "
      f"{len(text) // 1000} kB of Python stdlib source, batch {batch} x {seq} bytes", False, init,
      window_loss, batch_fn, eval_fn, "validation loss (nats/byte)", steps, eval_every,
      {"bytes": len(text), "files": files, "sha256": hashlib.sha256(text).hexdigest()[:16],
       "python": platform.python_version(), "train_bytes": split,
       "validation_bytes": len(tokens) - split, "params": n_params})


def logistic_workload(steps: int = 300, l2: float = 1e-3, eval_every: int = 1) -> Workload:
  """L2-regularised logistic regression on scikit-learn's breast-cancer data (569 x 30,
  features standardised), full batch: ``mean(log(1 + e^z) - y z) + l2/2 ||w||^2`` with
  ``z = X w + b`` (bias not regularised). The exact optimum comes from Newton's method in
  float64, so the reported quantity is the suboptimality ``f - f*``. Seeds draw the start
  ``w ~ N(0, 1/30)``."""
  import jax.numpy as jnp  # noqa: PLC0415
  from sklearn.datasets import load_breast_cancer  # noqa: PLC0415

  data = load_breast_cancer()
  x = (data.data - data.data.mean(0)) / data.data.std(0)
  y = data.target.astype(np.float64)
  n, d = x.shape
  xa = np.concatenate([x, np.ones((n, 1))], 1)
  reg = np.r_[np.full(d, l2), 0.0]
  w = np.zeros(d + 1)
  for _ in range(100):  # Newton, float64
    z = xa @ w
    p = 1.0 / (1.0 + np.exp(-z))
    step = np.linalg.solve((xa.T * (p * (1 - p))) @ xa / n + np.diag(reg),
                           xa.T @ (p - y) / n + reg * w)
    w -= step
    if np.max(np.abs(step)) < 1e-15:
      break
  z = xa @ w
  f_star = float(np.mean(np.logaddexp(0, z) - y * z) + 0.5 * l2 * np.sum(w[:d] ** 2))
  xj, yj = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)

  def objective(params):
    z = xj @ params["w"] + params["b"]
    return jnp.mean(jnp.logaddexp(0.0, z) - yj * z) + 0.5 * l2 * jnp.sum(params["w"] ** 2)

  def loss(params):
    return objective(params) - f_star

  def init(key):
    return {"w": jax.random.normal(key, (d,)) / np.sqrt(d), "b": jnp.zeros(())}

  def eval_fn(params):
    return {"loss": loss(params)}

  return Workload(
      "logistic", f"L2-regularised (1e-3) logistic regression on breast-cancer data "
      f"({n} x {d}), full batch", True, init, loss, None, eval_fn, "f - f* (exact f* by Newton)",
      steps, eval_every, {"n": n, "d": d, "l2": l2, "f_star": f_star})


def rosenbrock_workload(steps: int = 500, eval_every: int = 1) -> Workload:
  """The 2-D Rosenbrock function ``(1-x)^2 + 100 (y-x^2)^2`` from the classic start
  (-1.2, 1), full batch; the start is the same for every seed (so seeds agree unless the
  optimizer draws random numbers). ``eval_fn`` also records the coordinates."""
  import jax.numpy as jnp  # noqa: PLC0415

  def loss(p):
    return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2

  def init(_key):
    return jnp.array([-1.2, 1.0], jnp.float32)

  def eval_fn(p):
    return {"loss": loss(p), "x": p[0], "y": p[1]}

  return Workload("rosenbrock", "2-D Rosenbrock from (-1.2, 1), full batch (f* = 0)", True,
                  init, loss, None, eval_fn, "f - f*", steps, eval_every, {})
