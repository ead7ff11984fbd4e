"""airbench94's recipe in PyTorch on CPU, trained on the data experiments.modern sees: a
reference accuracy, so a shortfall can be put on the engine or on the data.

    python -m benchmarks.airbench_reference --data-dir DATA_DIR [--seed 0] [--out F.json]

Written here from airbench94's published recipe (Jordan 2024, arXiv 2404.00498; the
hyperparameters of KellerJordan/cifar10-airbench legacy/airbench94.py), independently of
dl101_jax: its own normalization constants, data order, flips, crops, Lookahead (which
averages BatchNorm's running statistics too) and TTA, in float32 on CPU. Only the TFDS
reader is shared. It prints the validation accuracy per epoch (the fast weights, no TTA,
as airbench logs it) and the final TTA accuracy, and writes them with the wall time and
how much the data's pixels show JPEG's 8x8 blocks (`block_edge_ratio`).
Needs requirements-bench.txt (torch, CPU build). 50k images x 9.9 epochs: ~40 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import numpy as np

# airbench94's hyperparameters, in its decoupled units (per 1024 examples).
EPOCHS = 9.9
BATCH = 1024
LR_PER_1024 = 11.5
MOMENTUM = 0.85  # Nesterov
WD_PER_1024 = 0.0153  # decoupled from the lr
NORM_BIAS_LR_X = 64.0  # BatchNorm shifts' lr multiplier (their decay is not scaled)
LABEL_SMOOTHING = 0.2
WHITEN_BIAS_EPOCHS = 3
TRANSLATE = 2  # pixels, reflect padding
BN_MOMENTUM = 0.6  # fraction of the running statistic kept per step
WIDTHS = (64, 256, 256)
LOOKAHEAD_EVERY = 5
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def block_edge_ratio(x_NxHxWxC: np.ndarray) -> float:
  """Mean |difference| between neighbouring pixels across JPEG's 8-pixel block edges over
  that inside the blocks, rows and columns together: about 1 for natural images stored
  losslessly (CIFAR-10's originals); above 1 where pixels went through JPEG."""
  x = x_NxHxWxC.astype(np.float32)
  edge, inside = [], []
  for axis in (1, 2):
    d = np.abs(np.diff(x, axis=axis)).mean(axis=tuple(a for a in range(4) if a != axis))
    at_edge = np.arange(len(d)) % 8 == 7
    edge.append(d[at_edge].mean())
    inside.append(d[~at_edge].mean())
  return float(np.mean(edge) / np.mean(inside))


def build(torch, nn):
  """The network: frozen 2x2 whitening conv (+bias), three conv-pool-BN-GELU-conv-BN-GELU
  blocks, max-pool, bias-free linear head scaled by 1/9."""

  def conv(cin, cout, k=3, bias=False, padding="same"):
    c = nn.Conv2d(cin, cout, k, padding=padding, bias=bias)
    with torch.no_grad():  # PyTorch's default init, then the first cin filters the identity
      nn.init.dirac_(c.weight[:min(cin, cout)])
      if bias:
        c.bias.zero_()
    return c

  def norm(c):
    bn = nn.BatchNorm2d(c, eps=1e-12, momentum=1 - BN_MOMENTUM)
    bn.weight.requires_grad = False
    return bn

  layers = [conv(3, 24, k=2, bias=True, padding=0), nn.GELU()]
  cin = 24
  for w in WIDTHS:
    layers += [conv(cin, w), nn.MaxPool2d(2), norm(w), nn.GELU(), conv(w, w), norm(w), nn.GELU()]
    cin = w
  class Scale(nn.Module):  # torch has no elementwise-scale layer
    def forward(self, x):
      return x / 9.0

  layers += [nn.MaxPool2d(3), nn.Flatten(), nn.Linear(cin, 10, bias=False), Scale()]
  net = nn.Sequential(*layers)
  net[0].weight.requires_grad = False
  return net


def whiten_(torch, layer, x_NCHW, eps=5e-4):
  """Whitening conv from the (uncentred) covariance of all 2x2 patches of x."""
  c = x_NCHW.shape[1]
  p = x_NCHW.unfold(2, 2, 1).unfold(3, 2, 1)  # N C H' W' 2 2
  p = p.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()
  cov = p.T @ p / len(p)
  evals, evecs = torch.linalg.eigh(cov)
  evals, evecs = evals.flip(0), evecs.flip(1)
  filt = (evecs / torch.sqrt(evals.clamp(min=0) + eps)).T.reshape(c * 4, c, 2, 2)
  with torch.no_grad():
    layer.weight.copy_(torch.cat([filt, -filt]).float())


def tta_logits(torch, F, net, x):
  """Mirror, plus one-pixel shifts up-left and down-right (each mirrored), weighted 1/2, 1/4, 1/4."""
  mirror = lambda v: 0.5 * (net(v) + net(v.flip(-1)))
  pad = F.pad(x, (1, 1, 1, 1), mode="reflect")
  h, w = x.shape[-2:]
  return (0.5 * mirror(x) + 0.25 * mirror(pad[..., :h, :w]) + 0.25 * mirror(pad[..., 2:, 2:]))


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data-dir", required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--epochs", type=float, default=EPOCHS)
  p.add_argument("--train-size", type=int, default=0, help="first N training images (0: all)")
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--out", default="")
  a = p.parse_args()

  import torch
  import torch.nn.functional as F
  from torch import nn

  from dl101_jax.host.data import load_cifar10

  torch.set_num_threads(a.threads)
  torch.manual_seed(a.seed)
  ds = load_cifar10(a.data_dir)
  xtr, ytr = ds.x_train, ds.y_train
  if a.train_size:
    xtr, ytr = xtr[:a.train_size], ytr[:a.train_size]
  to_t = lambda x: ((torch.tensor(x).float().div(255) - torch.tensor(MEAN)) / torch.tensor(STD)
                    ).permute(0, 3, 1, 2).contiguous()
  x_train, y_train = to_t(xtr), torch.tensor(ytr).long()
  x_test, y_test = to_t(ds.x_val), torch.tensor(ds.y_val).long()
  edges = {"train": block_edge_ratio(xtr), "test": block_edge_ratio(ds.x_val)}
  print(f"8-pixel block edge ratio (1 = no JPEG blocks): train {edges['train']:.3f}, "
        f"test {edges['test']:.3f}", flush=True)

  net = build(torch, nn)
  whiten_(torch, net[0], x_train[:5000])
  net = net.to(memory_format=torch.channels_last)

  steps_per_epoch = len(x_train) // BATCH  # the last partial batch is dropped
  total = math.ceil(steps_per_epoch * a.epochs)
  # Decoupled -> PyTorch SGD units, for a summed loss.
  lr = LR_PER_1024 / (1024 * (1 + 1 / (1 - MOMENTUM)))
  wd = WD_PER_1024 * BATCH / (1024 * (1 + 1 / (1 - MOMENTUM)))
  named = [(k, q) for k, q in net.named_parameters() if q.requires_grad]
  is_norm_bias = lambda k: isinstance(net[int(k.split(".")[0])], nn.BatchNorm2d)
  norm_b = [q for k, q in named if is_norm_bias(k)]
  other = [q for k, q in named if not is_norm_bias(k)]
  lr_b = lr * NORM_BIAS_LR_X
  opt = torch.optim.SGD([dict(params=norm_b, lr=lr_b, weight_decay=wd / lr_b),
                         dict(params=other, lr=lr, weight_decay=wd / lr)],
                        momentum=MOMENTUM, nesterov=True)
  warm = int(0.23 * total)
  factor = lambda s: (0.2 + 0.8 * s / warm) if s < warm else (1 - 0.93 * (s - warm) / (total - warm))
  sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
  loss_fn = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING, reduction="sum")
  slow = {k: v.detach().clone() for k, v in net.state_dict().items()}

  def lookahead(alpha_keep):
    with torch.no_grad():
      for k, v in net.state_dict().items():
        if v.is_floating_point():
          slow[k].lerp_(v, 1 - alpha_keep)
          v.copy_(slow[k])

  def accuracy(tta):
    net.eval()
    with torch.no_grad():
      out = torch.cat([(tta_logits(torch, F, net, xb) if tta else net(xb))
                       for xb in x_test.split(500)])
    net.train()
    return (out.argmax(1) == y_test).float().mean().item()

  # Flips: a fixed random half at the start, then every image mirrored on odd epochs.
  flipped = torch.where((torch.rand(len(x_train)) < 0.5).view(-1, 1, 1, 1),
                        x_train.flip(-1), x_train)
  padded = F.pad(flipped, (TRANSLATE,) * 4, mode="reflect")
  h = x_train.shape[-1]
  step, per_epoch, t0 = 0, [], time.perf_counter()
  for epoch in range(math.ceil(a.epochs)):
    net[0].bias.requires_grad = epoch < WHITEN_BIAS_EPOCHS
    shifts = torch.randint(0, 2 * TRANSLATE + 1, (len(x_train), 2))
    images = torch.empty_like(x_train)
    for dy in range(2 * TRANSLATE + 1):
      for dx in range(2 * TRANSLATE + 1):
        m = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
        images[m] = padded[m, :, dy:dy + h, dx:dx + h]
    if epoch % 2 == 1:
      images = images.flip(-1)
    order = torch.randperm(len(x_train))
    for i in range(steps_per_epoch):
      idx = order[i * BATCH:(i + 1) * BATCH]
      xb = images[idx].contiguous(memory_format=torch.channels_last)
      loss = loss_fn(net(xb), y_train[idx])
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      sched.step()
      step += 1
      if step % LOOKAHEAD_EVERY == 0:
        lookahead(0.95 ** 5 * (step / total) ** 3)
      if step >= total:
        lookahead(1.0)  # the slow weights become the model
        break
    per_epoch.append(accuracy(tta=False))
    print(f"epoch {epoch + 1}: step {step}, val acc {per_epoch[-1]:.4f}, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
  train_s = time.perf_counter() - t0
  final, final_tta = per_epoch[-1], accuracy(tta=True)
  print(f"final: {final:.4f}, with TTA {final_tta:.4f}; {train_s / 60:.1f} min")
  out = {"recipe": "airbench94 (PyTorch reference)", "seed": a.seed, "epochs": a.epochs,
         "steps": total, "train_size": len(x_train), "test_size": len(x_test),
         "val_accuracy_per_epoch": per_epoch, "val_accuracy": final,
         "val_accuracy_tta": final_tta, "train_seconds": train_s,
         "data_block_edge_ratio": edges,
         "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
         "threads": a.threads, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
  if a.out:
    with open(a.out, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
