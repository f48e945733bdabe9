"""Child process of conformance_test.py: the kit's sharding check over every registry entry.

Run with ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` so that JAX sees 8 CPU devices;
prints one line ``OPTZOO-RESULT {name: 'ok' | 'skipped: ...' | 'FAILED: ...'}``.

A process of its own, outside pytest, so without tests/conftest.py's strict promotion: it runs
under JAX's standard promotion, which the entries built on optax's Adam (lanton, metaoptimize,
noise_adaptive_layerwise: optax's bias correction computes float ** int32) need anyway.
"""

import json

from optzoo import registry, testing


def main() -> None:
  out = {}
  for entry in registry.ENTRIES:
    try:
      out[entry.name] = testing.run_check("sharding", testing.subject_from_entry(entry))
    except Exception as e:  # noqa: BLE001 - reported back to the parent test
      out[entry.name] = f"FAILED: {type(e).__name__}: {e}"
  print("OPTZOO-RESULT " + json.dumps(out))


if __name__ == "__main__":
  main()
