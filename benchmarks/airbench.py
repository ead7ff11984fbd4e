"""airbench94's network and optimizer on this machine: dl101_jax side by side with PyTorch.

    python -m benchmarks.airbench [--batch-size 1024] [--steps 3] [--repeats 3] [--threads 2]
                                  [--json PATH]

Both train the same network (models.AirbenchNet: a 2x2 whitening conv, three 64/256/256
conv-pool-BatchNorm-GELU blocks, 1,971,352 parameters) with Nesterov SGD (momentum 0.85),
label smoothing 0.2 and the same batch, on random CIFAR-shaped data. dl101_jax runs its
real path: uint8 data on the device, the epoch as one lax.scan, alternating flips and
2-pixel translations inside the jitted step, airbench's Lookahead, BatchNorm's statistics in
the state. torch gets the same network and optimizer with the data already float tensors
in memory, no augmentation and no Lookahead, which favours it. The two alternate in every repeat so
both see the same machine; each figure is the median; ratio = dl101_jax / torch.
Needs requirements-bench.txt (torch, CPU build).
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import time

import numpy as np


class JaxAirbench:
  def __init__(self, batch_size: int, steps: int, im2col: bool = True):
    import jax
    import jax.numpy as jnp

    from dl101_jax.core import member_state, train
    from dl101_jax.config import Config
    from dl101_jax.core.models import make_model, whitening_kernel
    from dl101_jax.core.optim import make_optimizer

    self.jax, self.n = jax, batch_size * steps
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (self.n, 32, 32, 3), np.uint8)
    mean, std = np.float32(120.0), np.float32(64.0)
    cfg = Config(dataset="cifar10", net="airbench", optimizer="nesterov", learning_rate=1.5,
                 weight_decay=1.33e-3, momentum=0.85)
    model = make_model(cfg, 10, whiten=whitening_kernel((x[:512] - mean) / std))
    model = model.clone(im2col=im2col and jax.default_backend() == "cpu")
    self.data = jax.device_put(train.DeviceData(x, rng.integers(0, 10, self.n).astype(np.int32),
                                                None, None, mean, std))
    tx = make_optimizer("nesterov", "warmup_linear", 10 * steps, momentum=0.85,
                        norm_bias_lr=64.0, whiten_bias_steps=3 * steps, decay="all")
    self.states = member_state.init_states(model, tx, jnp.zeros((1, 32, 32, 3)),
                                           member_state.hparams_of([cfg]), lookahead=5)
    prog = train.Program("xent", batch_size, 1000, flip=True, alternate_flip=True, translate=2,
                         label_smoothing=0.2, lookahead=5, total_steps=10 * steps)
    self.keys = member_state.member_keys([0])
    t = time.perf_counter()
    self.run = train.compile_run_epochs(prog).lower(
        self.states, self.keys, jnp.int32(0), self.data, n_epochs=1).compile()
    self.compile_s = time.perf_counter() - t
    self.epoch = 0
    self.seconds()  # warm-up

  def seconds(self) -> float:
    t = time.perf_counter()
    self.states, m = self.run(self.states, self.keys, self.jax.numpy.int32(self.epoch), self.data)
    self.jax.block_until_ready(m)
    self.epoch += 1
    return time.perf_counter() - t


class TorchAirbench:
  def __init__(self, batch_size: int, steps: int, threads: int):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    self.torch = torch

    def norm(c):
      bn = nn.BatchNorm2d(c, momentum=0.4, eps=1e-12)
      bn.weight.requires_grad = False  # no scale, as airbench
      return bn

    def block(cin, cout):
      return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2), norm(cout),
              nn.GELU(), nn.Conv2d(cout, cout, 3, padding=1, bias=False), norm(cout), nn.GELU()]

    whiten = nn.Conv2d(3, 24, 2, bias=True)
    whiten.weight.requires_grad = False
    self.model = nn.Sequential(whiten, nn.GELU(), *block(24, 64), *block(64, 256),
                               *block(256, 256), nn.MaxPool2d(3), nn.Flatten(),
                               nn.Linear(256, 10, bias=False)).to(memory_format=torch.channels_last)
    params = [p for p in self.model.parameters() if p.requires_grad]
    self.opt = torch.optim.SGD(params, lr=1.5, momentum=0.85, nesterov=True, weight_decay=1.33e-3)
    self.loss = nn.CrossEntropyLoss(label_smoothing=0.2)
    self.steps, self.bs = steps, batch_size
    self.x = [torch.randn(batch_size, 3, 32, 32).to(memory_format=torch.channels_last)
              for _ in range(steps)]
    self.y = torch.randint(0, 10, (steps, batch_size))
    self.seconds()  # warm-up

  def seconds(self) -> float:
    t = time.perf_counter()
    for i in range(self.steps):
      self.opt.zero_grad(set_to_none=True)
      self.loss(self.model(self.x[i]) / 9.0, self.y[i]).backward()
      self.opt.step()
    return time.perf_counter() - t


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--batch-size", type=int, default=1024)
  p.add_argument("--steps", type=int, default=3, help="steps per timed epoch")
  p.add_argument("--repeats", type=int, default=3)
  p.add_argument("--threads", type=int, default=2, help="torch's intra-op threads")
  p.add_argument("--json", default="")
  p.add_argument("--xla-conv", action="store_true",
                 help="XLA's convolution on CPU instead of the project's im2col_conv")
  a = p.parse_args()
  import jax
  import torch

  jx = JaxAirbench(a.batch_size, a.steps, im2col=not a.xla_conv)
  tr = TorchAirbench(a.batch_size, a.steps, a.threads)
  samples = {"dl101_jax": [], "torch": []}
  for _ in range(a.repeats):  # alternate: both see the same machine conditions
    samples["dl101_jax"].append(jx.n / jx.seconds())
    samples["torch"].append(tr.steps * tr.bs / tr.seconds())
  med = {k: statistics.median(v) for k, v in samples.items()}
  out = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or
         platform.machine(), "jax": jax.__version__, "torch": torch.__version__,
         "backend": jax.default_backend(), "batch_size": a.batch_size, "steps": a.steps,
         "images_per_s": med, "samples": samples, "ratio": med["dl101_jax"] / med["torch"],
         "jax_compile_s": jx.compile_s, "conv": "xla" if a.xla_conv else "im2col"}
  print(f"airbench net, batch {a.batch_size}: dl101_jax {med['dl101_jax']:.1f} images/s, torch "
        f"{med['torch']:.1f} images/s, ratio {out['ratio']:.2f} (compile {jx.compile_s:.1f} s)")
  if a.json:
    with open(a.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
