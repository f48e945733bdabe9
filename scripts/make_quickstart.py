"""Writes notebooks/00_quickstart.ipynb (then execute it with nbconvert/nbclient)."""
import nbformat as nbf

nb = nbf.v4.new_notebook()
md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
nb.cells = [
    md("# optzoo quick start\n\n"
       "An optzoo optimizer is an optax `GradientTransformation`: take a training loop written for "
       "`optax.adam`, swap in `optzoo.lion`, change nothing else. Here a small Flax MLP classifier "
       "is trained on synthetic Gaussian blobs with both, in the same jitted loop."),
    code("import time\n\nimport jax\nimport jax.numpy as jnp\nimport matplotlib.pyplot as plt\n"
         "import numpy as np\nimport optax\n\nimport optzoo\nfrom optzoo import objectives\n\n"
         "xs, ys = objectives.mlp_data(n=2048)\nmodel = objectives.mlp_model()\n"
         "print(jax.devices()[0].platform, xs.shape, ys.shape)"),
    md("The training loop: an ordinary optax loop. The only optimizer-specific line is the one that builds `tx`."),
    code("def train(tx, steps=600, batch=128, seed=0):\n"
         "    params = model.init(jax.random.PRNGKey(seed), xs[:1])['params']\n"
         "    opt_state = tx.init(params)\n\n"
         "    def loss_fn(params, x, y):\n"
         "        logits = model.apply({'params': params}, x)\n"
         "        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()\n\n"
         "    @jax.jit\n"
         "    def step(params, opt_state, x, y):\n"
         "        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)\n"
         "        updates, opt_state = tx.update(grads, opt_state, params)\n"
         "        return optax.apply_updates(params, updates), opt_state, loss\n\n"
         "    rng = np.random.default_rng(seed)\n"
         "    losses = []\n"
         "    t0 = time.perf_counter()\n"
         "    for _ in range(steps):\n"
         "        idx = rng.integers(0, len(xs), batch)\n"
         "        params, opt_state, loss = step(params, opt_state, xs[idx], ys[idx])\n"
         "        losses.append(float(loss))\n"
         "    return np.array(losses), time.perf_counter() - t0, params\n"),
    md("Lion's paper advises a learning rate 3-10x smaller than Adam's and a larger weight decay; "
       "we use 3x smaller here and the same loop for both."),
    code("adam_losses, adam_s, _ = train(optax.adam(3e-3))\n"
         "lion_losses, lion_s, lion_params = train(optzoo.lion(learning_rate=1e-3, weight_decay=1e-2))\n"
         "print(f'final loss (mean of last 50 steps): adam {adam_losses[-50:].mean():.4f}, '\n"
         "      f'lion {lion_losses[-50:].mean():.4f}')\n"
         "print(f'wall time incl. compile: adam {adam_s:.2f} s, lion {lion_s:.2f} s')\n"
         "print(f'optimizer state bytes/param: adam {optzoo.bytes_per_param(optax.adam(1e-3), lion_params):.2f}, '\n"
         "      f'lion {optzoo.bytes_per_param(optzoo.lion(1e-3), lion_params):.2f}')"),
    code("def smooth(x, k=20):\n    return np.convolve(x, np.ones(k) / k, mode='valid')\n\n"
         "fig, ax = plt.subplots(figsize=(6, 3.5))\n"
         "ax.plot(smooth(adam_losses), label='optax.adam(3e-3)')\n"
         "ax.plot(smooth(lion_losses), label='optzoo.lion(1e-3, wd=1e-2)')\n"
         "ax.set_yscale('log'); ax.set_xlabel('step'); ax.set_ylabel('train loss (20-step mean)')\n"
         "ax.legend(); ax.set_title('Flax MLP on Gaussian blobs'); plt.show()"),
    md("Everything optax offers composes as usual: schedules, `optax.chain`, `inject_hyperparams`, "
       "`MultiSteps`. For example a warm-up cosine schedule with gradient clipping, and the "
       "learning rate exposed in the state:"),
    code("sched = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 50, 600)\n"
         "tx = optax.chain(optax.clip_by_global_norm(1.0),\n"
         "                 optax.inject_hyperparams(optzoo.lion)(learning_rate=sched, weight_decay=1e-2))\n"
         "losses, _, _ = train(tx)\n"
         "print(f'final loss with schedule + clipping: {losses[-50:].mean():.4f}')"),
    md("Every optimizer in the zoo is listed in `optzoo.registry`; the conformance kit "
       "`optzoo.testing.check_optimizer` checks any optax optimizer (optzoo's or yours) for jit, "
       "dtypes, schedules, `inject_hyperparams`, `MultiSteps`, checkpoints, sharding and convergence."),
    code("from optzoo import registry, testing\n"
         "for e in registry.ENTRIES:\n"
         "    print(f'{e.name:22s} {e.family:18s} {e.paper}')\n"
         "print(testing.check_optimizer(optzoo.lion, {'learning_rate': 3e-3, 'weight_decay': 0.0},\n"
         "                              checks=('jit', 'dtypes', 'inject_hyperparams')))"),
]
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nbf.write(nb, "notebooks/00_quickstart.ipynb")
