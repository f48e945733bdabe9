"""optzoo's lowest layer: argument checks, per-leaf tree plumbing, state-memory accounting and
objectives inside ``optax.masked`` / ``optax.partition``. Nothing here imports the rest of optzoo."""
