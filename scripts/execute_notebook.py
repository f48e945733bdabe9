"""Re-executes notebooks in place, so that their stored outputs are current.

The notebooks are the source: edit them as notebooks, then run

    python scripts/execute_notebook.py                                  # every notebooks/*.ipynb
    python scripts/execute_notebook.py notebooks/00_quickstart.ipynb   # some

Each runs top to bottom in a fresh kernel, from its own folder; a failing cell stops the run.
"""

import pathlib
import sys
import time

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"


def execute(path: pathlib.Path, timeout: int = 600) -> None:
  nb = nbformat.read(path, as_version=4)
  t0 = time.perf_counter()
  NotebookClient(nb, timeout=timeout, kernel_name="python3",
                 resources={"metadata": {"path": str(path.parent)}}).execute()
  nbformat.write(nb, path)
  print(f"executed {path} in {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
  paths = [pathlib.Path(p).resolve() for p in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
  for p in paths:
    execute(p)
