"""The cost of in-epoch progress: the same epoch with and without its ~20 host callbacks.

    python -m benchmarks.progress                 # 10,000 CIFAR-shaped images, batch 96, 5 repeats

On a terminal, `fit` compiles the epoch with a `jax.debug.callback` every
steps_per_epoch // 20 steps (train.Program.progress_every). This times one epoch
of the dropout net both ways, alternating, and reports the medians and their ratio.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time

import numpy as np


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--images", type=int, default=10_000)
  p.add_argument("--batch-size", type=int, default=96)
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--json", default="")
  a = p.parse_args(argv)

  import dataclasses

  import jax
  import jax.numpy as jnp

  from dl101_jax.core import member_state, train
  from dl101_jax.config import Config
  from dl101_jax.core.models import make_model
  from dl101_jax.core.optim import make_optimizer

  cfg = Config(dataset="cifar10", dropout=0.5, batch_size=a.batch_size)
  rng = np.random.default_rng(0)
  data = jax.device_put(train.DeviceData(
      rng.integers(0, 256, (a.images, 32, 32, 3), np.uint8),
      rng.integers(0, 10, a.images).astype(np.int32), None, None, np.float32(120.0),
      np.float32(64.0)))
  model, tx = make_model(cfg, 10, dropout=True), make_optimizer("adam")
  hp = member_state.hparams_of([cfg])
  steps = -(-a.images // a.batch_size)
  ticks = []
  base = train.Program("xent", a.batch_size, 1000, flip=True, rotate=25.0)
  progs = {"off": base,
           "on": dataclasses.replace(base, progress_every=max(1, steps // 20),
                                     on_progress=lambda e, s: ticks.append(int(s)))}
  keys = member_state.member_keys([0])
  runs = {}
  for name, prog in progs.items():
    states = member_state.init_states(model, tx, jnp.zeros((1, 32, 32, 3)), hp)
    fn = train.compile_run_epochs(prog).lower(states, keys, jnp.int32(0), data, n_epochs=1)
    runs[name] = [fn.compile(), states]
  times = {k: [] for k in runs}
  for r in range(a.repeats + 1):  # the first round warms up
    for name, run in runs.items():
      t = time.perf_counter()
      run[1], m = run[0](run[1], keys, jnp.int32(r), data)
      jax.block_until_ready(m)
      if r:
        times[name].append(time.perf_counter() - t)
  med = {k: statistics.median(v) for k, v in times.items()}
  out = {"machine": {"platform": jax.devices()[0].platform, "cores": os.cpu_count(),
                     "jax": jax.__version__, "python": platform.python_version(),
                     "date": datetime.date.today().isoformat()},
         "steps_per_epoch": steps, "ticks_per_epoch": steps // max(1, steps // 20),
         "epoch_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
         "median_seconds": {k: round(v, 3) for k, v in med.items()},
         "cost_fraction": round(med["on"] / med["off"] - 1, 4)}
  print(json.dumps(out, indent=1))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()
