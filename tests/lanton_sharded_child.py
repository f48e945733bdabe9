"""Child process of lanton_sharded_test.py (run with 4 simulated CPU devices): LANTON's update on
FSDP-split matrices, compiled with and without ``ns_mesh``; prints one ``OPTZOO-NS {json}`` line
with the update's collective bytes per param byte (benchmarks/communication.py's count) and the
largest difference between the two updates."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

import communication  # benchmarks/, on PYTHONPATH
import optzoo


def main():
  mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("fsdp",))  # Auto axes, as the example's
  split = NamedSharding(mesh, P("fsdp", None))
  keys = jax.random.split(jax.random.PRNGKey(0), 6)
  shapes = {"w0": (64, 128), "w1": (128, 64), "w2": (64, 64)}
  params = {k: jax.device_put(jax.random.normal(keys[i], s), split)
            for i, (k, s) in enumerate(shapes.items())}
  grads = {k: jax.device_put(jax.random.normal(keys[3 + i], s), split)
           for i, (k, s) in enumerate(shapes.items())}
  param_bytes = sum(x.nbytes for x in params.values())
  out = {}
  for name, m in (("whole", mesh), ("split", None)):
    tx = optzoo.lanton(1e-2, ns_mesh=m, warmup_steps=0)
    abstract = jax.eval_shape(tx.init, params)
    state_sh = jax.tree.map(lambda a: split if a.shape in shapes.values() else
                            NamedSharding(mesh, P()), abstract)
    state = jax.jit(tx.init, out_shardings=state_sh)(params)

    def update(g, s, p, tx=tx):
      u, s = tx.update(g, s, p)
      return optax.apply_updates(p, u), s

    fn = jax.jit(update, out_shardings=({k: split for k in shapes}, state_sh))
    kinds, _, _, _ = communication.collective_bytes(fn.lower(grads, state, params).compile().as_text())
    p, s = params, state
    for _ in range(2):  # the second step has a previous gradient: the noise's Newton-Schulz runs
      p, s = fn(grads, s, p)
    out[name] = {"bytes": sum(kinds.values()) / param_bytes, "params": jax.device_get(p),
                 "sharded_like_params": all(s.inner_states["lanton"].inner_state[0].mu[k]
                                            .sharding.is_equivalent_to(split, 2) for k in shapes)}
  # a scanned stack of 8 layers sharded along its layer axis: each device's layers are whole
  # matrices already, so Newton-Schulz on them stays local (no gather)
  stack_split = NamedSharding(mesh, P("fsdp", None, None))
  stack = {"s": jax.device_put(jax.random.normal(keys[0], (8, 64, 64)), stack_split)}
  tx = optzoo.lanton(1e-2, ns_mesh=mesh, warmup_steps=0, stack_axes={"s": 1})
  abstract = jax.eval_shape(tx.init, stack)
  state_sh = jax.tree.map(lambda a: stack_split if a.shape == (8, 64, 64) else
                          NamedSharding(mesh, P()), abstract)
  state = jax.jit(tx.init, out_shardings=state_sh)(stack)
  fn = jax.jit(lambda g, s, p: tx.update(g, s, p), out_shardings=({"s": stack_split}, state_sh))
  kinds, _, _, _ = communication.collective_bytes(fn.lower(stack, state, stack).compile().as_text())
  stack_bytes = sum(kinds.values()) / stack["s"].nbytes
  diff = max(float(np.max(np.abs(out["whole"]["params"][k] - out["split"]["params"][k])))
             for k in shapes)
  print("OPTZOO-NS " + json.dumps({"whole": out["whole"]["bytes"], "split": out["split"]["bytes"],
                                   "max_abs_diff": diff,
                                   "state_kept": out["whole"]["sharded_like_params"],
                                   "stack": stack_bytes}))


if __name__ == "__main__":  # not at import: pytest's --doctest-modules imports tests/
  main()
