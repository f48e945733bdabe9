"""The long fuzz profile: scripts/fuzzing.py's properties over every registry optimizer, for as
many examples as fit in a time budget (or up to ``--examples`` per optimizer).

    python scripts/fuzz.py --seconds 600                 # every optimizer, 600 s each at most
    python scripts/fuzz.py --only lion --examples 2000 --x64

Prints, per optimizer, the examples run, how many ended in a documented clear error, and the
first failure Hypothesis found (shrunk), then exits non-zero if any optimizer failed. Runs under
JAX's standard dtype promotion, as a user's program does.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time


#: the outcomes :func:`fuzzing.check` returns, before their first colon
_KINDS = ("ok", "clear error", "wrapped optimizer not finite")


def fuzz(name: str, seconds: float, max_examples: int, x64: bool, batch: int = 10) -> dict:
  """Hypothesis runs of ``batch`` random examples each, until the time or the examples are spent
  or one fails (then shrunk)."""
  from hypothesis import HealthCheck, Phase, given, settings  # noqa: PLC0415

  import fuzzing  # noqa: PLC0415

  outcomes: collections.Counter = collections.Counter()
  deadline = time.monotonic() + seconds

  @settings(max_examples=batch, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
  @given(fuzzing.examples(name, float16=True))
  def prop(ex):
    out = fuzzing.check(ex)
    outcomes["ok" if out == "ok" else out.split(":")[0]] += 1
    if out != "ok":
      outcomes[out] += 0  # keep the message as a key (count 0): the kinds of outcomes seen

  failure = None
  while failure is None and time.monotonic() < deadline and \
      sum(outcomes[k] for k in _KINDS) < max_examples:
    try:
      prop()
    except Exception as e:  # noqa: BLE001 - reported
      failure = f"{type(e).__name__}: {str(e)[:2000]}"
  return {"outcomes": outcomes, "failure": failure}


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--only", nargs="*")
  ap.add_argument("--seconds", type=float, default=600.0, help="budget per optimizer (600)")
  ap.add_argument("--examples", type=int, default=5000, help="most examples per optimizer")
  ap.add_argument("--x64", action="store_true", help="enable float64 (draws float64 leaves too)")
  args = ap.parse_args(argv)
  import jax  # noqa: PLC0415

  if args.x64:
    jax.config.update("jax_enable_x64", True)
  from optzoo import registry  # noqa: PLC0415

  failed = []
  for name in registry.names():
    if args.only and name not in args.only:
      continue
    t0 = time.perf_counter()
    res = fuzz(name, args.seconds, args.examples, args.x64)
    c = res["outcomes"]
    kinds = sorted(k for k in c if ":" in k)
    print(f"{name}: {sum(c[k] for k in _KINDS)} examples ({c['ok']} ok, {c['clear error']} "
          f"clear errors, {c['wrapped optimizer not finite']} with a non-finite wrapped "
          f"optimizer) in {time.perf_counter() - t0:.0f} s; failure: {res['failure'] or 'none'}",
          flush=True)
    for k in kinds:
      print(f"    {k}", flush=True)
    if res["failure"]:
      failed.append(name)
  print(f"failed: {failed or 'none'}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
