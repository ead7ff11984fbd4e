"""TensorBoard past the epoch's scalars: the loss within epochs, and TFLearn's histograms.

    python -m experiments.dropout --dataset digits --epochs 3 --tensorboard-verbose 3
    tensorboard --logdir runs/dropout     # HISTOGRAMS and DISTRIBUTIONS, one card per tensor

StepLoss (in each run's steps/): the training loss of each twentieth of an epoch
(LOSS_CHUNKS runs of steps; the compiled epoch returns their means with its metrics, so
they cross to the host once per epoch) at the run's last training step, for a curve as
TFLearn's and Keras' per-step ones.

--tensorboard-verbose, TFLearn's levels (tflearn.DNN's `tensorboard_verbose`): 0 loss and
accuracy; 1 also the gradients; 2 also the weights; 3 also the activations and their
sparsity. TFLearn summarizes its training step as it runs; here one jitted call per epoch,
over every member at once, measures each member at the epoch's end on a fixed probe batch
(the first PROBE training images, normalized, without augmentation, dropout in evaluation
mode), so the pictures compare from epoch to epoch and the training step is untouched.
Each tensor becomes BUCKETS counts between its min and max on the device (jnp.histogram);
only those counts and five moments per tensor come back, once per epoch, and tensorboardX's
histogram_raw writes them. Cost: a forward and backward pass over PROBE images per member
and epoch.

  Gradients/<layer>/<param>   the loss's gradient on the probe batch (level >= 1)
  Weights/<layer>/<param>     the parameters (level >= 2)
  Activations/<layer>         each parameterized layer's output: a conv's or fc's before its
                              ReLU (with --batch-norm, BatchNorm's before it) (level 3)
  Sparsity/<layer>            the share of a ReLU's inputs it zeroes (<= 0): TFLearn's
                              zero_fraction of the activation (level 3, a scalar; not for the
                              airbench nets, whose GELU zeroes nothing)
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.core import losses, train
from dl101_jax.host.parallel import to_host

BUCKETS = 30
PROBE = 256  # probe images per epoch: the same ones every epoch
LOSS_CHUNKS = 20  # StepLoss points per epoch


def log_chunk_losses(tb: dict, chunks_ExMxK: np.ndarray, alive: list[int], first_epoch: int,
                     steps_per_epoch: int, dead: list[int] = ()) -> None:
  """StepLoss for the chunk's epochs (first_epoch, first_epoch + 1, ...): run c of K ends at
  step ceil((c + 1) S / K) of the epoch's S (train.chunk_means' split)."""
  for e in range(chunks_ExMxK.shape[0]):
    k = chunks_ExMxK.shape[2]
    for j, i in enumerate(alive):
      if i not in tb or i in dead:
        continue
      for c in range(k):
        step = (first_epoch + e - 1) * steps_per_epoch - (-(c + 1) * steps_per_epoch // k)
        tb[i].log_scalar(step, "StepLoss", float(chunks_ExMxK[e, j, c]), sub="steps")


def _stats(x: jax.Array) -> dict[str, jax.Array]:
  """A histogram of one tensor as TensorBoard stores it: BUCKETS counts between min and max."""
  x = x.ravel().astype(jnp.float32)
  lo, hi = jnp.min(x), jnp.max(x)
  hi = jnp.where(hi > lo, hi, lo + 1e-12)  # a constant tensor (zero biases): one bucket holds it
  counts, edges = jnp.histogram(x, bins=BUCKETS, range=(lo, hi))
  return {"min": lo, "max": hi, "num": jnp.float32(x.size), "sum": jnp.sum(x),
          "sum_squares": jnp.sum(x * x), "limits": edges[1:], "counts": counts.astype(jnp.float32)}


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
  """{'prefix/layer/param': leaf} of a nested dict."""
  out = {}
  for k, v in tree.items():
    name = f"{prefix}/{k}"
    out.update(_flat(v, name) if isinstance(v, dict) else {name: v})
  return out


def _layer_outputs(inter: dict, params: dict) -> dict[str, jax.Array]:
  """Each parameterized layer's output from flax's captured intermediates ('__call__')."""
  out = {}
  for name in params:
    entry = inter.get(name)
    if isinstance(entry, dict) and "__call__" in entry:
      out[name] = entry["__call__"][0]
  return out


def _feeds_relu(model: Any, name: str) -> bool:
  """Whether the layer's output goes into a ReLU: models.ConvNet's convs (their BatchNorms'
  with --batch-norm) and hidden fcs; not the logits, the airbench nets' or the perceptron's."""
  if not hasattr(model, "layer_sets") or name == "head":
    return False
  return not (model.batch_norm and name.startswith("conv"))


def make_probe(model: Any, loss: str, level: int):
  """A jitted fn(states, x, y) -> {tag: stats} stacked over the states' members."""

  def one(state, x, y):
    variables = {"params": state.params}
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
    out = {}
    if level >= 1:
      def probe_loss(p):
        logits = model.apply({**variables, "params": p}, x, train=False)
        return jnp.mean(losses.per_example_loss(loss, logits, y))

      grads = jax.grad(probe_loss)(state.params)
      out.update({k: _stats(v) for k, v in _flat(grads, "Gradients").items()})
    if level >= 2:
      out.update({k: _stats(v) for k, v in _flat(state.params, "Weights").items()})
    if level >= 3:
      _, inter = model.apply(variables, x, train=False, capture_intermediates=True,
                             mutable=["intermediates"])
      for name, a in _layer_outputs(inter["intermediates"], state.params).items():
        out[f"Activations/{name}"] = _stats(a)
        if _feeds_relu(model, name):
          out[f"Sparsity/{name}"] = jnp.mean(a <= 0).astype(jnp.float32)
    return out

  return jax.jit(jax.vmap(one, in_axes=(0, None, None)))


def probe_for(model: Any, loss: str, level: int, data: train.DeviceData) -> "Probe | None":
  """A group's Probe at --tensorboard-verbose `level`; None at 0 (scalars only)."""
  return Probe(model, loss, level, data) if level else None


class Probe:
  """The per-epoch histograms of one group's members, written to their TensorBoard runs."""

  def __init__(self, model: Any, loss: str, level: int, data: train.DeviceData):
    n = min(PROBE, data.x_train.shape[0])
    self.x = data.normalize(data.x_train[:n].astype(jnp.float32))
    self.y = data.y_train[:n]
    self.fn = make_probe(model, loss, level)

  def log(self, tb: dict, states: Any, alive: list[int], epoch: int,
          skip: list[int] = ()) -> None:
    """Measure the alive members' states (stacked in `alive`'s order) and write the epoch's
    histograms into their runs; `skip`: members that just diverged (their weights are NaN)."""
    if states is None:
      return
    # Measured on every process (the states may be split over them: reading is a
    # collective), written where the runs are.
    got = to_host(self.fn(states, self.x, self.y))
    for j, i in enumerate(alive):
      if i not in tb or i in skip:
        continue
      for tag, s in got.items():
        if isinstance(s, dict):
          tb[i].log_histogram(epoch, tag, {k: np.asarray(v[j]) for k, v in s.items()})
        else:
          tb[i].log_scalar(epoch, tag, float(s[j]))
