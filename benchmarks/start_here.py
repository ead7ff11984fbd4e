"""The first command's process wall time, with torch importable and with torch hidden.

    python -m benchmarks.start_here [--repeats 3] [--out F.json]

Runs `python -m experiments.start_here` as a fresh process `--repeats` times each way,
alternating, and prints the medians side by side. "torch hidden" puts a meta-path finder
in front of the import system (through a sitecustomize on PYTHONPATH) that refuses
`torch`, as in a venv without it. Where torch is not installed, both rows measure the
same thing and the output says so. About 15 s on 2 cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

HIDE_TORCH = """import sys
class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch hidden by benchmarks.start_here")
sys.meta_path.insert(0, _NoTorch())
"""


def once(env: dict, workdir: str) -> float:
  t0 = time.perf_counter()
  subprocess.run([sys.executable, "-m", "experiments.start_here", "--workdir", workdir],
                 check=True, capture_output=True, env=env, timeout=300)
  return time.perf_counter() - t0


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--out", default="")
  a = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    shim = os.path.join(tmp, "shim")
    os.makedirs(shim)
    with open(os.path.join(shim, "sitecustomize.py"), "w") as f:
      f.write(HIDE_TORCH)
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        os.getcwd(), os.environ.get("PYTHONPATH", "")]))}
    hidden = {**base, "PYTHONPATH": shim + os.pathsep + base["PYTHONPATH"]}
    once(base, os.path.join(tmp, "warm"))  # JAX's compilation cache and the OS file cache
    times = {"torch importable": [], "torch hidden": []}
    for _ in range(a.repeats):
      times["torch importable"].append(once(base, os.path.join(tmp, "a")))
      times["torch hidden"].append(once(hidden, os.path.join(tmp, "b")))
  torch = importlib.util.find_spec("torch") is not None
  out = {"benchmark": "experiments.start_here process wall time (s)", "torch_installed": torch,
         "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
         "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
         "machine": platform.machine(), "cpus": os.cpu_count(),
         "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}
  print(f"start_here, median of {a.repeats} (s): " + ", ".join(
      f"{k} {v:.2f}" for k, v in out["median_s"].items())
        + ("" if torch else "  (torch is not installed: both rows are the same case)"))
  if a.out:
    with open(a.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
