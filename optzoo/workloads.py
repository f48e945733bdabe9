"""Training problems described for :mod:`optzoo.compare`, and the four built-in ones.

A :class:`Workload` is what the comparison protocol needs to train a model: ``init(key)``, a
``loss``, the step budget, minibatches (or none: full batch) and an optional evaluation. Write
one for your own model and data in a few lines::

    Workload("mine", init=lambda key: model_init(key), loss=lambda p, b: loss_fn(p, b),
             steps=500, batch_fn=lambda key, step: sample_batch(key), eval_fn=val_loss)

The built-in workloads (real data, nothing downloaded) are those of optzoo's leaderboard:
:func:`digits` (a CNN on scikit-learn's handwritten digits), :func:`charlm` (a character-level
transformer on the Python standard library's own source), :func:`logistic` (L2-regularised
logistic regression on scikit-learn's breast-cancer data, with its exact optimum) and
:func:`rosenbrock`. The first and third need scikit-learn (``pip install scikit-learn``; it is
in optzoo's ``dev`` extra, not a run-time dependency), imported only when they are built.

>>> from optzoo import workloads
>>> w = workloads.rosenbrock(steps=10)
>>> w.full_batch, w.steps, w.eval_every
(True, 10, 1)
"""

from __future__ import annotations

import dataclasses
import pathlib
import platform
from typing import Any, Callable

import jax
import numpy as np

__all__ = ["CORPUS_FILES", "Workload", "charlm", "conv_via_patches", "corpus", "digits",
           "logistic", "rosenbrock"]

#: Standard-library modules whose source is the character-level corpus, in this order.
CORPUS_FILES = ("textwrap.py", "string.py", "heapq.py", "bisect.py", "fnmatch.py", "shlex.py",
                "calendar.py", "functools.py", "contextlib.py", "fractions.py", "statistics.py",
                "difflib.py", "dataclasses.py", "enum.py", "argparse.py")


def _default_eval_every(steps: int) -> int:
  """The largest divisor of ``steps`` that is at most ``max(1, steps // 10)``."""
  want = max(1, steps // 10)
  return max(d for d in range(1, want + 1) if steps % d == 0)


@dataclasses.dataclass(frozen=True)
class Workload:
  """A training problem: what :func:`optzoo.compare.compare` trains with every optimizer.

  Attributes:
    name: short name (tables, files, the cache of the ``optzoo.compare`` command).
    init: ``init(key) -> params``, the initialisation of one seed.
    loss: ``loss(params, batch) -> scalar`` (minibatches), or ``loss(params) -> scalar`` when
      ``batch_fn`` is None (full batch: every step sees all the data).
    steps: the step budget (the same for every optimizer).
    batch_fn: ``batch_fn(key, step) -> batch``; None for full batch.
    eval_fn: ``eval_fn(params)`` -> a scalar, or a dict with a scalar ``'loss'`` (and any other
      metrics: accuracy, coordinates, ...). ``'loss'`` decides the best step size and the
      ranking: a validation loss, or ``f - f*`` for an optimisation problem. Default: the loss
      itself (full batch), or the loss on one fixed batch, ``batch_fn(PRNGKey(0), 0)``.
    eval_every: steps between evaluations; must divide ``steps`` (default: the largest divisor
      of ``steps`` up to a tenth of it).
    description: one line for the reports.
    metric: what ``eval_fn``'s ``'loss'`` is, for the tables.
    info: facts for the report (data sizes, a corpus hash, ...).
  """

  name: str
  init: Callable[[Any], Any]
  loss: Callable[..., Any]
  steps: int
  batch_fn: Callable[[Any, Any], Any] | None = None
  eval_fn: Callable[[Any], Any] | None = None
  eval_every: int | None = None
  description: str = ""
  metric: str = ""
  info: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name:
      raise ValueError(f"Workload name must be a non-empty string, got {self.name!r}")
    for field in ("init", "loss"):
      if not callable(getattr(self, field)):
        raise TypeError(f"Workload {self.name!r}: {field} must be callable")
    if not isinstance(self.steps, (int, np.integer)) or self.steps < 1:
      raise ValueError(f"Workload {self.name!r}: steps must be a positive int, got {self.steps!r}")
    every = _default_eval_every(self.steps) if self.eval_every is None else self.eval_every
    if not isinstance(every, (int, np.integer)) or every < 1 or self.steps % every:
      raise ValueError(f"Workload {self.name!r}: eval_every={every!r} must divide "
                       f"steps={self.steps}")
    object.__setattr__(self, "eval_every", int(every))
    if not self.metric:
      metric = ("validation loss" if self.eval_fn is not None
                else "loss" if self.batch_fn is None else "loss on a fixed batch")
      object.__setattr__(self, "metric", metric)

  @property
  def full_batch(self) -> bool:
    """True when every step sees all the data (no ``batch_fn``)."""
    return self.batch_fn is None

  def evaluate(self) -> Callable[[Any], Any]:
    """The evaluation the protocol runs: ``eval_fn``, or its default (see ``eval_fn``)."""
    if self.eval_fn is not None:
      return self.eval_fn
    if self.batch_fn is None:
      return self.loss
    batch = self.batch_fn(jax.random.PRNGKey(0), 0)
    return lambda params: self.loss(params, batch)

  def with_steps(self, steps: int) -> "Workload":
    """This workload with another step budget (``eval_every`` kept if it divides ``steps``,
    else the default)."""
    every = self.eval_every if steps % self.eval_every == 0 else None
    return dataclasses.replace(self, steps=steps, eval_every=every)


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


def digits(steps: int = 300, batch: int = 64, eval_every: int = 25) -> Workload:
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
      "digits", init, loss, steps, batch_fn, eval_fn, eval_every,
      "CNN (3.8k params) on scikit-learn digits: 1,437 train / 360 validation, batch "
      f"{batch}", "validation loss", {"train": len(tr), "validation": len(va), "batch": batch})


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


def charlm(steps: int = 300, batch: int = 16, seq: int = 32, width: int = 32,
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
      "charlm", init, window_loss, steps, batch_fn, eval_fn, eval_every,
      f"transformer LM ({n_params / 1e3:.0f}k params, 1 block, width {width}) on "
      f"{len(text) // 1000} kB of Python stdlib source, batch {batch} x {seq} bytes",
      "validation loss (nats/byte)", {"bytes": len(text), "files": files, "sha256": hashlib.sha256(text).hexdigest()[:16],
       "python": platform.python_version(), "train_bytes": split,
       "validation_bytes": len(tokens) - split, "params": n_params})


def logistic(steps: int = 300, l2: float = 1e-3, eval_every: int = 1) -> Workload:
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
      "logistic", init, loss, steps, None, eval_fn, eval_every,
      f"L2-regularised (1e-3) logistic regression on breast-cancer data ({n} x {d}), full batch",
      "f - f* (exact f* by Newton)", {"n": n, "d": d, "l2": l2, "f_star": f_star})


def rosenbrock(steps: int = 500, eval_every: int = 1) -> Workload:
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

  return Workload("rosenbrock", init, loss, steps, None, eval_fn, eval_every,
                  "2-D Rosenbrock from (-1.2, 1), full batch (f* = 0)", "f - f*")
