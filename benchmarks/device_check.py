"""The GPU rows in one call: what only an accelerator can answer, in about 8 minutes on one GPU.

1. ``step_time.py`` at 100M parameters (a child process: its optzoo/optax pairs, MADA and
   MicroAdam included, and AdaHessian's MLP steps), with the GPU targets it declares;
2. every registry optimizer's update against ``optax.adam``'s at 100M parameters (the curvature
   optimizers with a separable quadratic ``obj_fn``, so the HVPs are element-wise);
3. the fused bandwidth of Lion and Adam-like steps: the least bytes a step must move (read
   params, grads and state, write params and state) over its time, against the measured copy
   bandwidth of the device;
4. AdaHessian's whole training step (value_and_grad plus its Hessian-vector product) against
   ``value_and_grad`` plus ``optax.adam`` on an ``nnx`` transformer;
5. the peaks of ``memory.py`` compiled for the GPU (its memory scheduler is not XLA:CPU's):
   every optimizer's state + donated update temporaries at 10M parameters, and the whole
   training step of the ~10M-parameter char-level transformer, in ``memory.md``'s table form.
6. on a machine with more than one local device, one ``optzoo.sweep`` (Adam on an MLP, 8 runs
   per device) spread over all of them (``mesh=jax.local_devices()``) against the same sweep on
   one device.

Writes ``benchmarks/results/device_check.md`` with the device named (``--out`` elsewhere).

    python benchmarks/device_check.py                 # on the GPU machine, everything
    python benchmarks/device_check.py --dry-run       # tiny sizes, any device, to a temp folder
"""

from __future__ import annotations

import os

# Before JAX starts: no up-front grab of 75% of the GPU's memory, so that the step_time.py child
# process and this one can each take what they use.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import argparse  # noqa: E402
import pathlib  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import common  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import optzoo  # noqa: E402
from optzoo import models, objectives, registry, sweep  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent


# ----------------------------------------------------------------------------- helpers
def _update_step(tx, grads, extra):
  def step(carry):
    p, st = carry
    u, st = tx.update(grads, st, p, **extra)
    return optax.apply_updates(p, u), st

  return jax.jit(step, donate_argnums=0)


def _fresh(params):
  return jax.tree.map(jnp.copy, params)


def _pair(a, b, pairs: int) -> dict:
  """Paired timing of two ``(step, carry)``; medians in ms and the paired ratio."""
  t, _ = common.paired_times({"a": a[0], "b": b[0]}, {"a": a[1], "b": b[1]}, pairs, warmup=2)
  return {"ms": float(np.median(t["a"]) * 1e3), "twin_ms": float(np.median(t["b"]) * 1e3),
          "ratio": float(np.median(t["a"] / t["b"]))}


def _quadratic(params):
  """A separable quadratic ``obj_fn`` for the curvature optimizers' update-only rows."""
  return lambda p: 0.5 * sum(jnp.sum(jnp.square(x - 0.01)) for x in jax.tree.leaves(p))


# ----------------------------------------------------------------------------- 1. step_time.py
def step_time_rows(n_params: int, pairs: int, out: pathlib.Path) -> list[str]:
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), env.get("PYTHONPATH", "")])
  cmd = [sys.executable, str(HERE / "step_time.py"), "--params", str(n_params), "--pairs",
         str(pairs), "--out", str(out)]
  proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
  print(proc.stdout[-3000:], proc.stderr[-3000:] if proc.returncode else "", flush=True)
  if proc.returncode:
    return [f"`step_time.py` failed (exit {proc.returncode}):", "", "```",
            proc.stderr[-1500:], "```"]
  text = (out / "step_time.md").read_text().splitlines()
  return [f"## `step_time.py --params {n_params:.0e}`: optzoo against its optax twins"] + text[1:]


# ----------------------------------------------------------------------------- 2. registry
def registry_rows(n_params: int, pairs: int) -> list[str]:
  params = objectives.synthetic_params(n_params, abstract=False)
  grads = jax.tree.map(lambda p: jnp.sin(p * 37.0) * 1e-2, params)
  adam = optax.adam(1e-3)
  lines = ["## Every registry optimizer's update against optax.adam",
           "", f"{n_params:,} float32 params (MLP-shaped), fixed gradients, update + "
           "apply_updates jitted with the params donated; registry toy kwargs; the curvature "
           "optimizers get a separable quadratic `obj_fn`. Median of "
           f"{pairs} paired steps.", "",
           "| optimizer | ms | optax.adam ms | ratio |", "|---|---:|---:|---:|"]
  for entry in registry.ENTRIES:
    tx = entry.make()
    extra = {"obj_fn": _quadratic(params)} if "obj_fn" in entry.extra_args else {}
    try:
      p1, p2 = _fresh(params), _fresh(params)
      r = _pair((_update_step(tx, grads, extra), (p1, tx.init(p1))),
                (_update_step(adam, grads, {}), (p2, adam.init(p2))), pairs)
      lines.append(f"| {entry.name} | {r['ms']:.2f} | {r['twin_ms']:.2f} | {r['ratio']:.3f} |")
    except Exception as e:  # noqa: BLE001 - one failing row must not lose the others
      lines.append(f"| {entry.name} | failed: {type(e).__name__}: {str(e)[:120]} | | |")
    print(lines[-1], flush=True)
  return lines


# ----------------------------------------------------------------------------- 3. bandwidth
def bandwidth_rows(n_params: int, pairs: int) -> list[str]:
  x = jnp.ones((n_params,), jnp.float32)
  copy = jax.jit(lambda v: v * 1.0001, donate_argnums=0)
  t, _ = common.paired_times({"copy": copy}, {"copy": x}, max(pairs, 10), warmup=3)
  copy_bw = 2 * 4 * n_params / float(np.min(t["copy"]))
  params = objectives.synthetic_params(n_params, abstract=False)
  grads = jax.tree.map(lambda p: jnp.sin(p * 37.0) * 1e-2, params)
  pbytes = sum(p.nbytes for p in jax.tree.leaves(params))
  lines = ["## Fused bandwidth of element-wise steps", "",
           f"Copy bandwidth (read + write of a {4 * n_params / 1e6:.0f} MB float32 array, best "
           f"of {max(pairs, 10)}): **{copy_bw / 1e9:.0f} GB/s**. A step must at least read "
           "params, grads and state and write params and state: 3 P + 2 S bytes (P: params', "
           "S: state's, `optzoo.state_bytes`). Fused bandwidth = that / median step time.", "",
           "| step | state bytes/param | ms | GB/s | of copy bandwidth |",
           "|---|---:|---:|---:|---:|"]
  steps = {"optzoo.lion": optzoo.lion(1e-4), "optax.lion": optax.lion(1e-4),
           "optzoo.avgrad": optzoo.avgrad(1e-3), "optax.amsgrad": optax.amsgrad(1e-3),
           "optax.adam": optax.adam(1e-3), "optzoo.mada": optzoo.mada(1e-3)}
  for name, tx in steps.items():
    p = _fresh(params)
    t, _ = common.paired_times({name: _update_step(tx, grads, {})}, {name: (p, tx.init(p))},
                               pairs, warmup=2)
    sbytes = optzoo.state_bytes(jax.eval_shape(tx.init, params))
    ms = float(np.median(t[name])) * 1e3
    bw = (3 * pbytes + 2 * sbytes) / (ms / 1e3)
    lines.append(f"| {name} | {sbytes / (pbytes / 4):.2f} | {ms:.2f} | {bw / 1e9:.0f} | "
                 f"{bw / copy_bw:.0%} |")
    print(lines[-1], flush=True)
  return lines


# ----------------------------------------------------------------------------- 4. transformer
def _transformer(width: int, layers: int, heads: int, vocab: int, seq: int):
  """The leaderboard's char-level LM with ``layers`` blocks and a tied head."""
  from flax import nnx  # noqa: PLC0415

  return models.char_lm(nnx.Rngs(0), vocab=vocab, width=width, heads=heads, seq=seq,
                        layers=layers, tied=True)


def adahessian_rows(width: int, layers: int, seq: int, batch: int, pairs: int) -> list[str]:
  from flax import nnx  # noqa: PLC0415

  heads, vocab = max(width // 64, 1), 8192
  model = _transformer(width, layers, heads, vocab, seq)
  graphdef, params = nnx.split(model, nnx.Param)
  n = sum(x.size for x in jax.tree.leaves(params))
  key = jax.random.PRNGKey(0)
  tokens = jax.random.randint(key, (batch, seq + 1), 0, vocab)

  def loss_fn(p):
    logits = nnx.merge(graphdef, p)(tokens[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), tokens[:, 1:]).mean()

  def make(tx, needs_obj_fn, window):
    def one(carry):
      p, st = carry
      g = jax.grad(loss_fn)(p)
      u, st = tx.update(g, st, p, **({"obj_fn": loss_fn} if needs_obj_fn else {}))
      return optax.apply_updates(p, u), st

    one = jax.jit(one, donate_argnums=0)

    def step(carry):
      for _ in range(window):
        carry = one(carry)
      return carry

    return step

  lines = ["## AdaHessian's training step on a transformer", "",
           f"`nnx` transformer: width {width}, {layers} blocks, {heads} heads, vocabulary {vocab}, "
           f"tied head; {n / 1e6:.1f}M params; batch {batch} x {seq} tokens. Whole step "
           "(value_and_grad, update, apply) against `value_and_grad` + `optax.adam`; median of "
           f"{pairs} paired samples.", "",
           "| AdaHessian | ms | adam step ms | ratio |", "|---|---:|---:|---:|"]
  adam = optax.adam(1e-3)
  for label, every, window in (("update_every=1 (HVP every step)", 1, 1),
                               ("update_every=10, 10-step windows", 10, 10)):
    tx = optzoo.adahessian(1e-3, update_every=every)
    p1, p2 = _fresh(params), _fresh(params)
    try:
      r = _pair((make(tx, True, window), (p1, tx.init(p1))),
                (make(adam, False, window), (p2, adam.init(p2))), pairs)
      lines.append(f"| {label} | {r['ms']:.2f} | {r['twin_ms']:.2f} | {r['ratio']:.3f} |")
    except Exception as e:  # noqa: BLE001
      lines.append(f"| {label} | failed: {type(e).__name__}: {str(e)[:120]} | | |")
    print(lines[-1], flush=True)
  return lines


def memory_rows(n_params: int, quick: bool) -> list[str]:
  """``memory.py``'s tables measured on this device (compiled only: nothing is allocated), run
  as its own process (the benchmark scripts share only ``common``)."""
  with tempfile.TemporaryDirectory() as tmp:
    size = ["--quick"] if quick else ["--params", str(n_params)]
    subprocess.run([sys.executable, str(HERE / "memory.py"), "--out", tmp, *size], check=True,
                   cwd=HERE)
    text = (pathlib.Path(tmp) / "memory.md").read_text()
  return ["## Peak memory (benchmarks/memory.py on this device)", ""] + text.splitlines()[2:]


# ----------------------------------------------------------------------------- 5. sweep
def sweep_rows(width: int, steps: int, repeats: int) -> list[str]:
  """One sweep, 8 runs per local device, on all local devices against one device: the
  compiled program's run time (median of ``repeats``), and the largest loss difference."""
  devices = jax.local_devices()
  if len(devices) < 2:
    return ["## A sweep over all local devices", "",
            f"Skipped: one local device ({devices[0].platform})."]
  n_runs = 8 * len(devices)
  x = jax.random.normal(jax.random.PRNGKey(0), (256, width))
  y = jnp.sin(x[:, :1])

  def init(key):
    k1, k2 = jax.random.split(key)
    return {"w1": jax.random.normal(k1, (width, width)) / np.sqrt(width),
            "w2": jax.random.normal(k2, (width, 1)) / np.sqrt(width)}

  def loss(p):
    return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)

  lrs = np.geomspace(1e-4, 1e-1, n_runs // 4)
  seeds = [[0, 1, 2, 3]] * len(lrs)
  times, losses = {}, {}
  for label, mesh in (("one device", None), (f"{len(devices)} devices", devices)):
    prog = sweep.compile_sweep(optax.adam, loss, init, steps, names=("learning_rate",),
                               shape=(len(lrs), 4), mesh=mesh)
    runs = [prog.run({"learning_rate": lrs}, seeds) for _ in range(repeats)]
    times[label] = float(np.median([r.run_seconds for r in runs]))
    losses[label] = runs[0].losses
  (one, t1), (many, tn) = times.items()
  diff = float(np.max(np.abs(losses[one] - losses[many])) / np.max(np.abs(losses[one])))
  return ["## A sweep over all local devices", "",
          f"`optzoo.sweep.compile_sweep` of Adam on a {width}-wide MLP: {len(lrs)} learning "
          f"rates x 4 seeds = {n_runs} runs of {steps} full-batch steps, one compilation each; "
          f"run time (median of {repeats}) on one device and split over all {len(devices)} "
          "local devices (`mesh=jax.local_devices()`).", "",
          "| sweep | run s | one device / this |", "|---|---:|---:|",
          f"| {one} | {t1:.3f} | 1.00 |", f"| {many} | {tn:.3f} | {t1 / tn:.2f} |", "",
          f"Largest loss difference, relative to the largest loss: {diff:.2g}."]


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--params", type=float, default=1e8, help="params of the update rows (100M)")
  ap.add_argument("--pairs", type=int, default=30, help="paired timed steps per row (30)")
  ap.add_argument("--transformer", type=int, nargs=4, default=(1024, 8, 512, 16),
                  metavar=("WIDTH", "LAYERS", "SEQ", "BATCH"),
                  help="AdaHessian's transformer (default 1024 8 512 16: 109M params)")
  ap.add_argument("--skip", nargs="*", default=(),
                  choices=("step_time", "registry", "bandwidth", "adahessian", "memory", "sweep"))
  ap.add_argument("--memory-params", type=float, default=1e7,
                  help="params of the peak-memory table (10M, as memory.md)")
  ap.add_argument("--dry-run", action="store_true",
                  help="tiny sizes on any device, results to a temporary folder")
  common.add_out_argument(ap)
  args = ap.parse_args(argv)
  if args.dry_run:
    args.params, args.pairs, args.transformer = 1e5, 3, (64, 1, 16, 2)
    args.memory_params = 1e5
    args.out = tempfile.mkdtemp(prefix="device_check_")
  elif not common.on_gpu():
    print("device_check.py measures a GPU, and JAX sees none "
          f"({jax.devices()[0].platform}); use --dry-run to try it here", file=sys.stderr)
    return 2
  t0 = time.perf_counter()
  n = int(args.params)
  sections: list[list[str]] = []
  with tempfile.TemporaryDirectory() as tmp:
    if "step_time" not in args.skip:
      sections.append(step_time_rows(n, args.pairs, pathlib.Path(tmp)))
  if "registry" not in args.skip:
    sections.append(registry_rows(n, args.pairs))
  if "bandwidth" not in args.skip:
    sections.append(bandwidth_rows(n, args.pairs))
  if "adahessian" not in args.skip:
    sections.append(adahessian_rows(*args.transformer, pairs=args.pairs))
  if "memory" not in args.skip:
    sections.append(memory_rows(int(args.memory_params), quick=args.dry_run))
  if "sweep" not in args.skip:
    sections.append(sweep_rows(*((32, 20, 2) if args.dry_run else (1024, 200, 5))))
  lines = ["# Device check", "",
           f"Machine: {common.machine_name()}. Generated by `python benchmarks/device_check.py`"
           f"{' --dry-run (tiny sizes: not a measurement)' if args.dry_run else ''} in "
           f"{time.perf_counter() - t0:.0f} s."]
  for section in sections:
    lines += [""] + section
  common.write("device_check.md", "\n".join(lines) + "\n", args.out)
  return 0


if __name__ == "__main__":
  sys.exit(main())
