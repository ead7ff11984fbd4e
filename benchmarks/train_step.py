"""Training throughput of the tutorial's dropout CNN: dl101_jax side by side with PyTorch.

    python -m benchmarks.train_step [--batch-sizes 50,96,2000] [--frameworks dl101_jax,torch]
                                    [--json PATH] [--repeats 5] [--precision f32|bf16]
                                    [--images 4000] [--vmap-seeds 1,4,8] [--no-compile-times]
                                    [--compile-cache]

dl101_jax is measured on its real path: device-resident uint8 data, on-device
shuffle + flip + rotation inside the jitted step, the scanned epoch. torch is the
same architecture, Adam and batch on the CPU (no augmentation, data already in
memory). Frameworks alternate in every repeat so both see the same machine
conditions; each figure is the median of the repeats. Also: compile time (cold
and with the persistent cache warm, in fresh processes), overhead of the epoch
over pure steps, MFU against a measured matmul peak (and against the chip's published
peak, on a known accelerator), and vmap scaling over seeds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

NET = "conv32-pool-conv64-conv64-pool-fc512"
IMAGES = 4000  # per timed epoch (--images)
# Dense bf16 (fp16 where the chip has no bf16) peak TFLOP/s per jax device, from the
# vendors' datasheets; matched in order against jax's device_kind. TPU v2 and v3 show each
# of a chip's two cores as a device, so theirs is half the chip's. MFU against it is what
# papers quote; an f32 run is held to the same peak, so its MFU is a floor.
CHIP_PEAK_TFLOPS = (("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("A100", 312.0),
                    ("L4", 121.0), ("T4", 65.0), ("V100", 125.0),
                    ("TPU v2", 22.5), ("TPU v3", 61.5), ("TPU v4", 275.0),
                    ("TPU v5 lite", 197.0), ("TPU v5", 459.0), ("TPU v6 lite", 918.0))


def chip_peak_tflops(device_kind: str) -> float | None:
  return next((peak for name, peak in CHIP_PEAK_TFLOPS if name in device_kind), None)


def _steps(batch_size: int) -> int:
  """Steps per timed epoch: about IMAGES images, at least 2 steps."""
  return max(2, IMAGES // batch_size)


def _jax_setup(batch_size: int, seeds: int = 1, steps: int = 0, augment: bool = True,
               precision: str = "f32"):
  """The project's program for one epoch of `steps` steps on random CIFAR-shaped data."""
  import jax
  import jax.numpy as jnp

  from dl101_jax.core import member_state, train
  from dl101_jax.config import Config
  from dl101_jax.core.models import make_model
  from dl101_jax.core.optim import make_optimizer

  cfg = Config(dataset="cifar10", net=NET, dropout=0.5, batch_size=min(batch_size, 50_000),
               precision=precision)
  n = batch_size * (steps or _steps(batch_size))
  rng = np.random.default_rng(0)
  data = jax.device_put(train.DeviceData(
      rng.integers(0, 256, (n, 32, 32, 3), np.uint8), rng.integers(0, 10, n).astype(np.int32),
      None, None, np.float32(120.0), np.float32(64.0)))
  model = make_model(cfg, 10, dropout=True)
  tx = make_optimizer("adam")
  hp = member_state.hparams_of([cfg.replace(seed=s) for s in range(seeds)])
  states = member_state.init_states(model, tx, jnp.zeros((1, 32, 32, 3)), hp)
  prog = train.Program("xent", batch_size, 1000, flip=augment, rotate=25.0 if augment else 0)
  run = train.compile_run_epochs(prog)
  keys = member_state.member_keys(list(range(seeds)))
  return run, states, keys, data, n, model, tx, prog


class JaxBench:
  def __init__(self, batch_size, seeds=1, augment=True, precision="f32"):
    import jax

    self.jax = jax
    self.run, self.states, self.keys, self.data, self.n, self.model, self.tx, self.prog = \
        _jax_setup(batch_size, seeds, augment=augment, precision=precision)
    self.seeds, self.epoch = seeds, 0
    t = time.perf_counter()
    self.compiled = self.run.lower(self.states, self.keys, self.jax.numpy.int32(0), self.data,
                                   n_epochs=1).compile()
    self.compile_s = time.perf_counter() - t
    self.step_once()  # warm-up

  def step_once(self) -> float:
    t = time.perf_counter()
    self.states, m = self.compiled(self.states, self.keys, self.jax.numpy.int32(self.epoch),
                                   self.data)
    self.jax.block_until_ready(m)
    self.epoch += 1
    return time.perf_counter() - t

  def images_per_s(self) -> float:
    return self.n * self.seeds / self.step_once()


class TorchBench:
  def __init__(self, batch_size, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    self.torch = torch
    self.model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 8 * 8, 512), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(512, 10))
    self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    self.steps, self.bs = _steps(batch_size), batch_size
    self.x = torch.randn(self.steps, batch_size, 3, 32, 32)
    self.y = torch.randint(0, 10, (self.steps, batch_size))
    self.loss = nn.CrossEntropyLoss()
    self.step_once()

  def step_once(self) -> float:
    t = time.perf_counter()
    for i in range(self.steps):
      self.opt.zero_grad(set_to_none=True)
      self.loss(self.model(self.x[i]), self.y[i]).backward()
      self.opt.step()
    return time.perf_counter() - t

  def images_per_s(self) -> float:
    return self.steps * self.bs / self.step_once()


def matmul_peak_gflops() -> float:
  import jax
  import jax.numpy as jnp

  a = jnp.ones((2048, 2048), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  best = 0.0
  for _ in range(5):
    t = time.perf_counter()
    f(a).block_until_ready()
    best = max(best, 2 * 2048**3 / (time.perf_counter() - t) / 1e9)
  return best


def step_profile(b: JaxBench) -> tuple[float, float]:
  """(FLOPs per image, overhead fraction) of bench `b`'s program, from one jitted train
  step compiled once: XLA's cost analysis of it, and 1 - (steps x its time) / the scanned
  epoch's time."""
  import jax

  from dl101_jax.core import train

  epoch = statistics.median(b.step_once() for _ in range(5))
  state = jax.tree.map(lambda a: a[0], b.states)
  bs = b.prog.batch_size
  batch = {"x": b.data.normalize(b.data.x_train[:bs]), "y": b.data.y_train[:bs]}
  step = jax.jit(train.make_train_step("xent", flip=True, rotate=25.0), donate_argnums=0)
  compiled = step.lower(state, batch, b.keys[0]).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  state, m = compiled(state, batch, b.keys[0])
  jax.block_until_ready(m)
  times = []
  for _ in range(5):
    t = time.perf_counter()
    for _ in range(b.n // bs):
      state, m = compiled(state, batch, b.keys[0])
    jax.block_until_ready(m)
    times.append(time.perf_counter() - t)
  return float(cost["flops"]) / bs, max(0.0, 1.0 - statistics.median(times) / epoch)


def compile_times(batch_size: int) -> dict:
  """Cold and warm-cache compile seconds, each in a fresh process."""
  cache = tempfile.mkdtemp(prefix="dl101_cache_")
  out = {}
  for label in ("cold", "warm"):
    r = subprocess.run([sys.executable, "-m", "benchmarks.train_step", "--compile-only",
                        str(batch_size)], capture_output=True, text=True,
                       env=dict(os.environ, XDG_CACHE_HOME=cache))
    out[label] = float(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None
  return out


def _compile_only(batch_size: int) -> None:
  from dl101_jax.config import Config
  from dl101_jax.host.parallel import configure_jax

  configure_jax(Config())  # persistent cache under $XDG_CACHE_HOME
  print(JaxBench(batch_size).compile_s)


def main(argv=None) -> dict:
  global IMAGES  # read by _steps in every bench; --images sets it for the run
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-sizes", default="50,96,2000")
  p.add_argument("--frameworks", default="dl101_jax,torch")
  p.add_argument("--json", default="")
  p.add_argument("--repeats", type=int, default=5)
  p.add_argument("--precision", choices=("f32", "bf16"), default="f32",
                 help="dl101_jax's compute dtype (torch stays f32)")
  p.add_argument("--images", type=int, default=IMAGES, help="images per timed epoch")
  p.add_argument("--vmap-seeds", default="1,4,8", help="seed counts for vmap scaling")
  p.add_argument("--no-compile-times", action="store_true",
                 help="skip the cold/warm compile timings (two fresh processes per batch)")
  p.add_argument("--compile-cache", action="store_true",
                 help="keep compiled programs in the project's persistent cache, so that a "
                      "second run loads them (its compile_s is then a cache hit)")
  p.add_argument("--compile-only", type=int, default=0, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  IMAGES = a.images
  if a.compile_only:
    _compile_only(a.compile_only)
    return {}
  import jax

  if a.compile_cache:
    from dl101_jax.config import Config
    from dl101_jax.host.parallel import configure_jax

    configure_jax(Config())

  sizes = [int(s) for s in a.batch_sizes.split(",")]
  frameworks = a.frameworks.split(",")
  try:
    import torch  # noqa: F401
  except ImportError:
    if "torch" in frameworks:
      print("torch is not installed (pip install -r requirements-bench.txt): skipping it")
      frameworks.remove("torch")
  dev = jax.devices()[0]
  machine = {"platform": dev.platform, "device_kind": dev.device_kind, "cores": os.cpu_count(),
             "jax": jax.__version__, "python": platform.python_version(),
             "date": datetime.date.today().isoformat()}
  if "torch" in frameworks:
    import torch

    machine["torch"] = torch.__version__
  ref = 96 if 96 in sizes else sizes[0]  # the tutorial's batch, for MFU, overhead and vmap
  ref_bench = None
  rows = []
  for bs in sizes:
    benches = {}
    if "dl101_jax" in frameworks:
      benches["dl101_jax"] = JaxBench(bs, precision=a.precision)
    if "torch" in frameworks:
      benches["torch"] = TorchBench(bs, threads=os.cpu_count())
    samples = {k: [] for k in benches}
    for _ in range(a.repeats):  # interleaved: both frameworks under the same conditions
      for k, b in benches.items():
        samples[k].append(b.images_per_s())
    for k in benches:
      row = {"framework": k, "batch_size": bs,
             "images_per_s": round(statistics.median(samples[k]), 1),
             "samples": [round(s, 1) for s in samples[k]]}
      if k == "dl101_jax":
        row["compile_s"] = round(benches[k].compile_s, 3)
        row["compile"] = None if a.no_compile_times else compile_times(bs)
      rows.append(row)
    if len(benches) == 2:
      ratio = rows[-2]["images_per_s"] / rows[-1]["images_per_s"]
      rows[-2]["vs_torch"] = round(ratio, 3)
    print(json.dumps(rows[-len(benches):]))
    if bs == ref:
      ref_bench = benches.get("dl101_jax")
    del benches
  peak = matmul_peak_gflops()
  jax_ref = next((r["images_per_s"] for r in rows
                  if r["framework"] == "dl101_jax" and r["batch_size"] == ref), None)
  ref_bench = ref_bench or JaxBench(ref, precision=a.precision)
  fpi, overhead = step_profile(ref_bench)
  vmap = {}
  for s in (int(n) for n in a.vmap_seeds.split(",")):
    b = ref_bench if s == 1 else JaxBench(ref, seeds=s, precision=a.precision)
    vmap[str(s)] = round(statistics.median(b.images_per_s() for _ in range(3)), 1)
    del b
  del ref_bench
  chip = chip_peak_tflops(dev.device_kind) if dev.platform != "cpu" else None
  achieved = fpi * jax_ref if jax_ref else None
  out = {"machine": machine, "precision": a.precision, "rows": rows, "reference_batch": ref,
         "compile_cache": a.compile_cache,  # true: each row's compile_s may be a cache hit
         "overhead_fraction": round(overhead, 4), "flops_per_image": fpi,
         "mfu": round(achieved / (peak * 1e9), 4) if achieved else None,
         "matmul_peak_gflops": round(peak, 1),
         "chip_peak_tflops": chip,
         "mfu_chip_peak": round(achieved / (chip * 1e12), 5) if achieved and chip else None,
         "vmap": vmap}
  print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
  if a.json:
    with open(a.json, "w") as f:
      json.dump(out, f, indent=1)
  return out


if __name__ == "__main__":
  main()
