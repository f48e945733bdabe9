"""Executes notebooks in place with nbclient: python scripts/execute_notebook.py notebooks/00_quickstart.ipynb"""
import sys
import time

import nbformat
from nbclient import NotebookClient

for path in sys.argv[1:]:
  nb = nbformat.read(path, as_version=4)
  t0 = time.perf_counter()
  NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "notebooks"}}).execute()
  nbformat.write(nb, path)
  print(f"executed {path} in {time.perf_counter() - t0:.1f} s")
