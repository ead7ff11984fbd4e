"""Frozen configuration: the only way a run is described.

A `Config` is a value. Variants are `dataclasses.replace(config, **overrides)`.
`__post_init__` rejects bad values with a `ConfigError` (a `ValueError`) that
names the field, its command-line flag, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Literal

from dl101_jax.config_checks import (
    AIRBENCH_NETS, AUTO_MAX_SEEDS, IMAGE_SIDES, MAX_EPOCHS, MAX_SEED, MUON_LR, TRAIN_SIZES,
    ConfigError, check_batch_size, check_counts, check_net, check_pairs, check_values, flag)
from dl101_jax.net_spec import NetSpec, parse_net

# What other modules import from here, the checks' constants and error among them.
__all__ = ["Config", "ConfigError", "flag", "fields_with_role", "group_key", "check_batch_size",
           "VALUE", "SHAPE", "SCHEDULE", "RUN", "AIRBENCH_NETS", "AUTO_MAX_SEEDS", "IMAGE_SIDES",
           "MAX_EPOCHS", "MAX_SEED", "MUON_LR", "TRAIN_SIZES", "DATASETS", "OPTIMIZERS",
           "SCHEDULES"]

# Each choice field's choices, written once as its type: tyro shows them in --help and
# parses them; __post_init__ checks them (for configs built in code) from the same type.
Dataset = Literal["or", "digits", "cifar10"]
Optimizer = Literal["sgd", "adam", "adamw", "nesterov", "muon"]
Schedule = Literal["constant", "warmup_linear", "linear"]
Loss = Literal["xent", "mse"]
Norm = Literal["scalar", "per_channel", "none"]
Init = Literal["tflearn", "lecun"]
Precision = Literal["f32", "bf16"]
Platform = Literal["auto", "cpu", "gpu", "tpu"]
DATASETS, OPTIMIZERS, SCHEDULES = (typing.get_args(t) for t in (Dataset, Optimizer, Schedule))

# Each Config field's role, declared once (the `role` tag of its field) and read by
# everything that must treat fields differently:
#   VALUE     may differ between members of one compiled program (optax
#             hyperparameters, traced scalars); one array per member in fit.
#   SHAPE     defines the compiled program: members of a group share it.
#   SCHEDULE  how long to train: a group shares it, but a finished run may resume
#             with more (the checkpoint does not pin it).
#   RUN       where and how to run; never changes what is computed.
# Group key = all but VALUE and RUN; checkpoint config check = VALUE and SHAPE;
# TensorBoard hparams = all but RUN. The second tag is the field's group in --help.
VALUE, SHAPE, SCHEDULE, RUN = "value", "shape", "schedule", "run"


def _field(default, role: str, group: str):
  """A Config field with its role (above) and its --help group, declared together."""
  return dataclasses.field(default=default, metadata={"role": role, "group": group})


@dataclasses.dataclass(frozen=True)
class Config:
  """One training run, or the base of an experiment's variants."""

  name: str = _field("run", RUN, "outputs")
  """Experiment name: labels the console, results.json and the default workdir."""
  dataset: Dataset = _field("digits", SHAPE, "data")
  """Data: the OR truth table, scikit-learn's 8x8 digits (offline), or CIFAR-10 via TFDS."""
  data_dir: str | None = _field(None, RUN, "data")
  """TFDS data dir for CIFAR-10 (default: TFDS's own, usually ~/tensorflow_datasets)."""
  train_size: int = _field(0, SHAPE, "data")
  """Class-stratified training subset size; 0 uses all."""
  test_size: int = _field(0, SHAPE, "data")
  """Class-stratified test subset size; 0 uses all."""
  val_size: int = _field(0, SHAPE, "data")
  """Hold out this many training examples (class-stratified) to validate on; 0 validates on the test split, as the tutorial did."""
  net: str = _field("conv32-pool-conv64-conv64-pool-fc512", SHAPE, "training")
  """Network: 'perceptron', convN/pool/fcN joined by '-' (a final fc to the classes is added), 'airbench' (airbench94's, CIFAR-10) or 'airbench_muon' (airbench94_muon's: the same with its head, init std 1 and outputs / 256)."""
  dropout: float = _field(0.0, VALUE, "training")
  """Dropout rate before the last layer (TFLearn's dropout(0.5) keeps 50%); 0 disables."""
  l2: float = _field(0.0, VALUE, "training")
  """TFLearn-style L2 loss term l2 * sum(w**2) / 2 over conv and hidden fc kernels."""
  l1: float = _field(0.0, VALUE, "training")
  """TFLearn-style L1 loss term l1 * sum(|w|) over the same kernels (sparse weights); 0 disables."""
  batch_norm: bool = _field(False, SHAPE, "training")
  """BatchNorm after every conv, before its ReLU (its running statistics are part of each model's state; the convs then have no bias)."""
  optimizer: Optimizer = _field("adam", SHAPE, "training")
  """Update rule (optax): sgd, adam (b1 0.9, b2 0.999, eps 1e-8), adamw (decoupled decay), nesterov (SGD, momentum 0.9, decay added to the gradient as PyTorch's), or muon (airbench94_muon's: Muon at --muon-lr on the conv filters, nesterov at --learning-rate on the rest)."""
  norm_bias_lr: float = _field(1.0, SHAPE, "training")
  """Learning-rate multiplier for BatchNorm's shifts (airbench94: 64); with --optimizer muon also for the whitening bias."""
  whiten_bias_epochs: int = _field(0, SHAPE, "training")
  """--net airbench*: train the whitening conv's bias this many epochs, then freeze it (airbench94: 3); with --optimizer muon its lr falls linearly to 0 over them (airbench94_muon's); 0 never freezes it."""
  momentum: float = _field(0.9, SHAPE, "training")
  """Momentum of --optimizer nesterov (airbench94 uses 0.85)."""
  schedule: Schedule = _field("constant", SHAPE, "training")
  """Learning-rate schedule over --epochs: constant, warmup_linear (0.2x -> 1x at 23% of the steps -> 0.07x, airbench94's) or linear (1x -> 0 at the end, airbench94_muon's); resuming with more epochs stretches it."""
  learning_rate: float = _field(1e-3, VALUE, "training")
  """Learning rate."""
  weight_decay: float = _field(0.0, VALUE, "training")
  """Weight decay on kernels only (with nesterov and --net airbench, every trained parameter, as airbench94; with muon, every parameter but the conv filters): decoupled for adamw, added to the gradient for nesterov and muon."""
  muon_lr: float = _field(MUON_LR, VALUE, "training")
  """--optimizer muon: Muon's learning rate on the conv filters (airbench94_muon: 0.24)."""
  loss: Loss = _field("xent", SHAPE, "training")
  """Loss: softmax cross-entropy with integer labels, or mean square."""
  ema: float = _field(0.0, SHAPE, "training")
  """Keep an exponential moving average of the weights with this decay per step (e.g. 0.99); evaluation, the best epoch and export use it; 0 disables."""
  lookahead: int = _field(0, SHAPE, "training")
  """airbench94's Lookahead (optax.lookahead) every this many steps (airbench94: 5): slow weights move toward the fast ones by 1 - 0.95**5 * (t/T)**3 at step t of the run's T (resuming with more epochs stretches it), and the fast restart from them (BatchNorm's running statistics too, as airbench's buffers); evaluation, the best epoch and export use the slow weights; 0 disables."""
  tta: int = _field(0, SHAPE, "data")
  """Test-time augmentation in evaluation: 0 none, 1 mean logits of image and mirror, 2 also one-pixel shifts (airbench94's)."""
  label_smoothing: float = _field(0.0, SHAPE, "training")
  """Cross-entropy against smoothed targets: (1 - a) one-hot + a / classes (optax.smooth_labels); 0 disables."""
  epochs: int = _field(50, SCHEDULE, "training")
  """Passes over the training set."""
  batch_size: int = _field(96, SHAPE, "training")
  """Examples per step; the last partial batch is padded and masked, never dropped."""
  seed: int = _field(0, VALUE, "training")
  """First random seed; --seeds N uses seed .. seed+N-1."""
  seeds: int | Literal["auto"] = _field(1, RUN, "training")
  """Seeds per variant, trained together in one vmapped program; reported as mean +- std. auto: 3 at a time, until every claim the experiment judges is decided (or --max-seeds, --seed-budget)."""
  max_seeds: int = _field(AUTO_MAX_SEEDS, RUN, "training")
  """--seeds auto: the most seeds per variant."""
  seed_budget: int = _field(0, RUN, "training")
  """--seeds auto: the most model-epochs (seeds x variants x epochs) to train; 0: no limit but --max-seeds."""
  norm: Norm = _field("scalar", SHAPE, "data")
  """Featurewise normalization from training-set statistics (TFLearn's default is one scalar)."""
  flip: bool = _field(True, SHAPE, "data")
  """Random left-right flip with p=0.5 in training (image datasets)."""
  rotate: float = _field(25.0, SHAPE, "data")
  """Random rotation with p=0.5, uniform in [-rotate, rotate] degrees; 0 disables."""
  alternate_flip: bool = _field(False, SHAPE, "data")
  """With --flip: each image keeps a random orientation for the run and all are mirrored every other epoch (airbench's), instead of a coin per image and step."""
  cutout: int = _field(0, SHAPE, "data")
  """Cutout in training: a random N x N square inside each image set to the mean colour (0 once normalized), airbench96's (12); 0 disables."""
  translate: int = _field(0, SHAPE, "data")
  """Random translation in training, up to N pixels each way (reflect-padded crop; image datasets); 0 disables."""
  augment_first: bool = _field(True, SHAPE, "data")
  """Augment raw pixels, then normalize (TFLearn's order: a rotation's corners are black); False normalizes first (corners take the mean colour)."""
  init: Init = _field("tflearn", SHAPE, "training")
  """Weight init: TFLearn's (conv uniform +-sqrt(3/fan_in), fc truncated normal std 0.02, zero biases) or Flax's lecun_normal."""
  precision: Precision = _field("f32", SHAPE, "training")
  """Compute dtype; params and optimizer state stay float32."""
  eval_batch_size: int = _field(1000, SHAPE, "data")
  """Examples per validation step."""
  tensorboard_verbose: int = _field(0, RUN, "outputs")
  """TensorBoard's detail, TFLearn's levels: 0 loss, accuracy and learning rate; 1 also gradient histograms; 2 also weights; 3 also activations and their sparsity. Measured on the device at each epoch's end on a fixed batch of training images."""
  log_every: int = _field(0, RUN, "outputs")
  """Console line every N epochs when not on a terminal; 0 picks 1 up to 100 epochs, else epochs/20."""
  workdir: str | None = _field(None, RUN, "outputs")
  """Output directory for TensorBoard, checkpoints and results (default: runs/<name>)."""
  checkpoint_every: int = _field(1, RUN, "run control")
  """Save a checkpoint every N epochs; 0 disables checkpoints."""
  keep_checkpoints: int = _field(3, RUN, "run control")
  """How many recent checkpoints to keep per run group."""
  restart: bool = _field(False, RUN, "run control")
  """Ignore existing checkpoints in the workdir and start fresh (old ones are deleted)."""
  diverge_above: float = _field(1e4, SHAPE, "training")
  """A training loss above this, or NaN/inf, marks a member diverged and stops it; 0: NaN/inf only."""
  debug_nans: bool = _field(False, RUN, "run control")
  """Turn on jax_debug_nans to stop at the first NaN-producing operation."""
  variants: str = _field("", RUN, "training")
  """Comma-separated variants to run (default: all of the experiment's)."""
  devices: int = _field(0, RUN, "scale-out")
  """Local devices to use for data parallelism; 0 uses all."""
  platform: Platform = _field("auto", RUN, "scale-out")
  """Require this JAX platform and fail loudly if it is missing; auto takes the default."""
  mesh: str = _field("", RUN, "scale-out")
  """Devices per axis, 'members=4,data=2': a program's members sharded on the first, each batch on the second; empty: all devices on members when a program trains at least as many members as there are devices, else on data."""
  member_loop: bool = _field(False, RUN, "scale-out")
  """Train a program's members one after another (lax.map), not vmapped, each device running the one-device program on its own rows: every member then trains bit for bit as on one device, on any mesh and in a group of any size. Each device compiles its own copy; a --mesh must not split data."""
  coordinator: str = _field("", RUN, "scale-out")
  """Multi-host: HOST:PORT of process 0 for jax.distributed; 'auto' lets JAX detect it."""
  num_processes: int = _field(1, RUN, "scale-out")
  """Multi-host: total number of processes."""
  process_id: int = _field(0, RUN, "scale-out")
  """Multi-host: this process's index."""
  compilation_cache: bool = _field(True, RUN, "run control")
  """Keep compiled programs in JAX's persistent cache (~/.cache/dl101_jax/jax)."""

  def __post_init__(self):  # every check in config_checks.py, in this order
    check_values(self, _choices())
    check_pairs(self, _default)
    check_counts(self)
    check_net(self)

  @property
  def is_airbench(self) -> bool:
    return self.net in AIRBENCH_NETS

  @property
  def net_spec(self) -> NetSpec:
    return parse_net(self.net)

  @property
  def mesh_axes(self) -> tuple[int, int]:
    """--mesh's (members, data)."""
    m, d = (int(part.split("=")[1]) for part in self.mesh.split(","))
    return m, d

  @property
  def run_dir(self) -> str:
    return self.workdir or f"runs/{self.name}"

  @property
  def epochs_per_log(self) -> int:
    if self.log_every:
      return self.log_every
    return 1 if self.epochs <= 100 else max(1, self.epochs // 20)

  @property
  def variant_names(self) -> tuple[str, ...]:
    return tuple(v.strip() for v in self.variants.split(",") if v.strip())

  def replace(self, **overrides) -> "Config":
    return dataclasses.replace(self, **overrides)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@functools.cache
def _choices() -> dict[str, tuple[str, ...]]:
  """{field: its choices} for every Literal-typed Config field."""
  hints = typing.get_type_hints(Config)
  return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(Config)
          if typing.get_origin(hints[f.name]) is Literal}


def _default(field: str):
  return next(f.default for f in dataclasses.fields(Config) if f.name == field)


def fields_with_role(*roles: str) -> tuple[str, ...]:
  """Config field names whose role is one of `roles`, in declaration order."""
  return tuple(f.name for f in dataclasses.fields(Config) if f.metadata["role"] in roles)


def group_key(config: Config) -> tuple:
  """Configs with equal keys train together in one vmapped program."""
  d = {k: getattr(config, k) for k in fields_with_role(SHAPE, SCHEDULE)}
  # adam is adamw with zero decay, so they share one program.
  d["optimizer"] = "adamw" if config.optimizer == "adam" else config.optimizer
  return tuple(sorted(d.items()))
