"""Krylov cubic regularized Newton (arXiv 2401.03058): logistic regression against full cubic
Newton and a random-subspace method (SSCN), suboptimality against iterations and wall time.

Data: scikit-learn's digits (1,797 images of 64 pixels, pixels standardized), lifted by a fixed
random-feature map to d = 5,000 features, ``cos(X W + b)`` with ``W ~ N(0, 1/64)`` and
``b ~ U[0, 2 pi)`` (seed 0), rows scaled to unit norm; label = the digit is odd. Objective:
L2-regularised logistic loss (l2 = 1e-4), float64. Methods, all with the same adaptive-M
backtracking (``benchmarks/cubic_newton.py``'s steps, imported): optzoo's Krylov CRN (m = 10, the
paper's), SSCN (cubic Newton on m random coordinates per step, m = 10 and m = 100) and full
cubic Newton (dense Hessian). f* = the smallest value any method evaluated.

    python benchmarks/papers/krylov.py [--quick]
"""

from __future__ import annotations

import time

import claims
import common
import jax
import jax.numpy as jnp
import numpy as np

import cubic_newton as kr  # benchmarks/cubic_newton.py: the SSCN and full cubic-Newton steps, the loop
import optzoo

#: (d, with full cubic Newton): one full step at d = 5,000 (a dense Hessian and its
#: eigendecomposition, ~10^12 flops) takes tens of minutes on the shared machine, so full cubic
#: Newton runs at d = 1,000 with the others, and d = 5,000 has Krylov and SSCN only
DIMS, QUICK_DIMS = ((1000, True), (5000, False)), ((300, True),)
L2, M = 1e-4, 10
TARGET = 1e-6
MAX_TIME, QUICK_MAX_TIME = 30.0, 2.0


def digits_features(d: int):
  """(A, y): digits lifted to ``d`` random cosine features, unit rows; y = digit is odd."""
  from sklearn.datasets import load_digits  # noqa: PLC0415

  data = load_digits()
  x = data.data.astype(np.float64)
  x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-8)
  rng = np.random.default_rng(0)
  w = rng.normal(size=(x.shape[1], d)) / np.sqrt(x.shape[1])
  b = rng.uniform(0, 2 * np.pi, size=d)
  a = np.cos(x @ w + b)
  a /= np.linalg.norm(a, axis=1, keepdims=True)
  return a, (data.target % 2).astype(np.float64)


def objective(a, y):
  a, y = jnp.asarray(a), jnp.asarray(y)

  def f(w):
    z = a @ w
    return jnp.mean(jnp.logaddexp(0.0, z) - y * z) + 0.5 * L2 * jnp.vdot(w, w)

  return f


def run_all(d: int, max_time: float, full: bool) -> dict:
  """name -> (iterations, seconds, values) for every method."""
  a, y = digits_features(d)
  fun = objective(a, y)
  x0 = jnp.zeros(d, jnp.float64)
  runs = {}
  _, info = optzoo.krylov_cubic_newton_minimize(fun, x0, subspace_dim=M, max_iters=200,
                                                tol=1e-9)
  runs[f"Krylov CRN (optzoo, m={M})"] = (np.arange(len(info.values)),
                                         np.concatenate([[0.0], info.times])[:len(info.values)],
                                         np.asarray(info.values))
  for m in (M, 10 * M):
    hv, ts, vs = kr.run_subspace(fun, x0, kr.subspace_cubic_step(fun, kr.coordinate_basis(m), m),
                                 m, np.inf, max_time, stop_value=float(np.min(info.values)))
    runs[f"SSCN (random coordinates, m={m})"] = (hv // m, ts, vs)
  if full:
    runs["full cubic Newton"] = run_full(fun, x0, max_time)
  return runs


def run_full(fun, x0, max_time: float):
  """Full cubic Newton's steps until ``max_time`` (at least one): compiled ahead of time rather
  than warmed up by running (``kr.run_subspace`` runs two untimed steps first, and one step at
  d = 5,000 -- a dense Hessian and its eigendecomposition -- takes minutes on this machine)."""
  M, key = jnp.asarray(2e-3, x0.dtype), jax.random.PRNGKey(0)
  step = kr.full_cubic_step(fun).lower(x0, M, key).compile()
  x, ts, vs = x0, [], []
  t0 = time.perf_counter()
  while not ts or ts[-1] < max_time:
    x, M, f, gnorm = step(x, M, key)
    vs.append(float(f))
    ts.append(time.perf_counter() - t0)
    if float(gnorm) <= 1e-9:
      break
  # as kr.run_subspace: f(x_i) with the time at which step i + 1 (which evaluates it) ended
  return np.arange(len(vs)), np.asarray(ts), np.asarray(vs)


def main(argv=None):
  args = claims.parse(__doc__, argv)
  timer = claims.Timer()
  dims = QUICK_DIMS if args.quick else DIMS
  max_time = QUICK_MAX_TIME if args.quick else MAX_TIME
  x64 = jax.config.jax_enable_x64
  jax.config.update("jax_enable_x64", True)
  try:
    by_d = {d: run_all(d, max_time, full) for d, full in dims}
  finally:
    jax.config.update("jax_enable_x64", x64)

  plt = common.pyplot()
  fig, axes = plt.subplots(len(dims), 2, figsize=(11, 4 * len(dims)), squeeze=False)
  rows, reach = [], {}
  for (d, _), ax_row in zip(dims, axes):
    runs = by_d[d]
    f_star = min(float(np.min(v)) for _, _, v in runs.values())
    for name, (its, ts, vs) in runs.items():
      sub = np.maximum(vs - f_star, 1e-16)
      ax_row[0].semilogy(its, sub, label=name)
      ax_row[1].semilogy(ts, sub, label=name)
      reach[d, name] = (kr.first_below(its, sub, TARGET), kr.first_below(ts, sub, TARGET))
      rows.append(f"| {d} | {name} | {len(vs) - 1} | {ts[-1]:.3g} | "
                  f"{ts[-1] / max(len(vs) - 1, 1):.3g} | {sub[-1]:.2e} | "
                  f"{claims.fmt(reach[d, name][0])} | {claims.fmt(reach[d, name][1])} |")
    for ax in ax_row:
      ax.axhline(TARGET, color="gray", lw=0.8, ls=":")
      ax.set_ylabel(f"d = {d}: f(x) - f*")
      ax.grid(alpha=0.3)
    ax_row[0].set_xlabel("iteration")
    ax_row[0].set_xscale("symlog", linthresh=10)
    ax_row[1].set_xlabel("wall time (s, compilation excluded)")
    ax_row[0].legend(fontsize=7)
  fig.suptitle("L2 logistic regression on digits lifted to d random features (n = 1797, "
               "float64)", fontsize=8)
  fig.tight_layout()
  common.savefig(fig, "papers/krylov.png", args.out)

  k = f"Krylov CRN (optzoo, m={M})"
  others = [(d, n) for d in by_d for n in by_d[d] if n != k]
  beaten = [(d, n) for d, n in others
            if reach[d, k][1] is not None and (reach[d, n][1] is None or reach[d, n][1] > reach[d, k][1])]
  # the rule, fixed before the run: reproduced if Krylov CRN reaches f - f* <= 1e-6 first in
  # wall time against every other method at every d; partly if it beats some; not reproduced
  # otherwise
  verdict = ("reproduced" if len(beaten) == len(others) else
             "partly" if beaten else "not reproduced")
  d_txt = " and ".join(str(d) for d in by_d)
  details = "\n".join([
      f"Settings: d = {d_txt} random features of the 1,797 digits (our lift: no real dataset "
      "with d >= 5,000 ships offline), l2 = 1e-4, float64, start 0; Krylov CRN at the paper's "
      f"m = {M}, run to |grad| <= 1e-9; SSCN and full cubic Newton stop at {max_time:g} s (wall) "
      "or once they reach Krylov's best value. M starts at 2e-3 for all and is halved each step, "
      "doubled while the cubic model fails (at most 20 trials). Iterations are not equally "
      "expensive: Krylov and SSCN(m) cost m Hessian-vector products per step, full cubic "
      "Newton a dense d x d Hessian and its eigendecomposition. Full cubic Newton is not run at "
      "d = 5,000: one step there (~10^12 flops) takes tens of minutes on this shared machine "
      "(decided before the d = 5,000 run, after a first attempt that had not finished its "
      "warm-up in 15 minutes). Wall times are on a machine shared with other jobs (load in "
      "the time line below), so they are noisy. Verdict rule, fixed before the run: reproduced "
      "if Krylov CRN reaches 1e-6 first in wall time against every other method at every d; "
      "partly if against some.", "",
      "| d | method | iterations | seconds | s / iteration | final f - f* | iterations to 1e-6 | "
      "seconds to 1e-6 |", "|---:|---|---:|---:|---:|---:|---:|---:|", *rows, "",
      "`benchmarks/results/krylov.md` has the HVP-count comparison on synthetic sparse data up "
      "to d = 100,000."])
  claim = claims.Claim(
      key="krylov",
      paper="Krylov cubic regularized Newton (arXiv 2401.03058)",
      claim="On logistic regression Krylov CRN (an m-dimensional Krylov subspace per step) "
            "reaches a given suboptimality in less time than full cubic Newton (whose steps "
            "need the whole Hessian) and than random-subspace cubic Newton SSCN (which needs "
            "many more iterations): the paper's logistic-regression figures.",
      experiment=f"L2 logistic regression, digits lifted to d = {d_txt} random cosine features, "
                 "float64; suboptimality vs iterations and vs wall time",
      result="seconds to 1e-6: " + "; ".join(
          f"d = {d}: " + ", ".join(f"{n} {claims.fmt(reach[d, n][1])}" for n in by_d[d])
          for d in by_d) + " ('-': not reached)",
      verdict=verdict, details=details)
  claims.write(claim, timer, args.out, args.quick)
  return claim


if __name__ == "__main__":
  main()
