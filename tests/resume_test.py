"""Resume exactly: an orbax checkpoint (``orbax.checkpoint.StandardCheckpointer``) of params and
optimizer state at step K, restored in a fresh process, continues bit for bit like the
uninterrupted run, for every registry optimizer inside ``optzoo.inject_hyperparams`` with a
scheduled learning rate; on one device, and on examples/sharded_training.py's (data=2, fsdp=4)
mesh, where every restored leaf keeps the sharding it was saved with.

Each case is two child processes (tests/resume_child.py ``save`` then ``resume``) over all the
optimizers at once; they start with 8 simulated CPU devices (XLA reads the count at start) and
share the session's compilation cache, so ``resume`` reads back what ``save`` compiled.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import REPO, SHARDED_FLAGS, repo_env
from optzoo import registry

CHILD = REPO / "tests" / "resume_child.py"


def _phase(phase: str, root, mode: str, names) -> dict:
  env = dict(repo_env(), XLA_FLAGS=SHARDED_FLAGS, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, str(CHILD), phase, str(root), "--mode", mode,
                         "--only", *names],
                        capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
  for line in proc.stdout.splitlines():
    if line.startswith("OPTZOO-RESUME "):
      return json.loads(line.removeprefix("OPTZOO-RESUME "))
  raise AssertionError(f"{phase}: no result line (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def _resume_failures(tmp_path, mode: str, names) -> list[str]:
  saved = _phase("save", tmp_path, mode, names)
  failures = [f"{n}: {r['errors']}" for n, r in saved.items() if not r["ok"]]
  assert sorted(saved) == sorted(names)
  done = [n for n in names if saved[n]["ok"]]
  if done:
    resumed = _phase("resume", tmp_path, mode, done)
    assert sorted(resumed) == sorted(done)
    failures += [f"{n}: {r['errors']}" for n, r in resumed.items() if not r["ok"]]
  return failures


@pytest.mark.parametrize("mode", ["one_device", "sharded"])
def test_orbax_resume_is_bitwise(tmp_path, mode):
  failures = _resume_failures(tmp_path, mode, list(registry.names()))
  assert not failures, failures
