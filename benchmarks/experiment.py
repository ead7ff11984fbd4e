"""Time a whole experiment as a user runs it: process start to results.json.

    python -m benchmarks.experiment                                   # dropout, 1 epoch, digits
    python -m benchmarks.experiment --experiment dropout -- --data-dir ../shared/data/cifar10-subset

Splits the wall time into startup (imports, data, device transfer), compile,
training and the rest (reports, pictures), from the run's own results.json.
Runs twice: the second time with the persistent compilation cache warm.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time


def time_run(experiment: str, args: list[str], cache: str) -> dict:
  wd = tempfile.mkdtemp(prefix=f"bench_{experiment}_")
  cmd = [sys.executable, "-m", f"experiments.{experiment}", "--workdir", wd, *args]
  t = time.perf_counter()
  r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, XDG_CACHE_HOME=cache))
  wall = time.perf_counter() - t
  if r.returncode != 0:
    raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
  res = json.load(open(os.path.join(wd, "results.json")))
  train = max(v["wall_seconds"] for v in res["variants"])
  comp = max(v.get("compile_seconds", 0.0) for v in res["variants"])
  groups = {(v["wall_seconds"], v.get("compile_seconds", 0.0)) for v in res["variants"]}
  train_all = sum(w for w, _ in groups)
  comp_all = sum(c for _, c in groups)
  return {"command": " ".join(cmd[2:]), "process_wall_s": round(wall, 2),
          "compile_s": round(comp_all, 2), "train_s": round(train_all, 2),
          "other_s": round(wall - comp_all - train_all, 2),
          "val_accuracy": {v["name"]: v["final"]["val_accuracy"] for v in res["variants"]},
          "dataset": res["dataset"], "devices": res["devices"], "platform": res["platform"],
          "max_group_train_s": train, "max_group_compile_s": comp}


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--experiment", default="dropout")
  p.add_argument("--json", default="")
  p.add_argument("args", nargs="*", help="flags for the experiment (after --)")
  a = p.parse_args(argv)
  args = a.args or ["--dataset", "digits", "--epochs", "1"]
  cache = tempfile.mkdtemp(prefix="dl101_cache_")
  out = {"cold_cache": time_run(a.experiment, args, cache),
         "warm_cache": time_run(a.experiment, args, cache)}
  print(json.dumps(out, indent=1))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()
