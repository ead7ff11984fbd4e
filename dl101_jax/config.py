"""Frozen configuration: the only way a run is described.

A `Config` is a value. Variants are `dataclasses.replace(config, **overrides)`.
`__post_init__` rejects bad values with a `ConfigError` (a `ValueError`) that
names the field, its command-line flag, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Literal

DATASETS = ("or", "digits", "cifar10")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Known training-set sizes, so a batch larger than the data is caught before loading.
TRAIN_SIZES = {"or": 4, "digits": 1437, "cifar10": 50_000}
TEST_SIZES = {"or": 0, "digits": 360, "cifar10": 10_000}


class ConfigError(ValueError):
  """A bad configuration value; `field` is the dataclass field at fault."""

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(f"{flag(field)}: {message}")


def flag(field: str) -> str:
  return "--" + field.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class NetSpec:
  """A parsed `--net` string: conv layer sets (each ends in a 2x2 pool), then fc widths."""

  layer_sets: tuple[tuple[int, ...], ...]
  fc: tuple[int, ...]

  @property
  def is_perceptron(self) -> bool:
    return not self.layer_sets and not self.fc


_TOKEN = re.compile(r"^(conv|fc)([1-9][0-9]*)$|^pool$")


def parse_net(net: str) -> NetSpec:
  """'conv32-pool-conv64-conv64-pool-fc512' -> NetSpec(((32,), (64, 64)), (512,)).

  'perceptron' is one Dense unit with a sigmoid. The final fc to the class
  count is implicit, and so is the dropout layer before it.
  """
  if net == "perceptron":
    return NetSpec((), ())
  sets, convs, fc = [], [], []
  for tok in net.split("-"):
    m = _TOKEN.match(tok)
    if not m:
      raise ValueError(f"unknown layer {tok!r} (allowed: convN, pool, fcN)")
    if tok == "pool":
      if not convs or fc:
        raise ValueError("'pool' must close a run of convN layers before any fcN")
      sets.append(tuple(convs))
      convs = []
    elif m.group(1) == "conv":
      if fc:
        raise ValueError("convN cannot follow fcN")
      convs.append(int(m.group(2)))
    else:
      if convs:
        raise ValueError("each run of convN layers must end in 'pool'")
      fc.append(int(m.group(2)))
  if convs:
    raise ValueError("each run of convN layers must end in 'pool'")
  if not sets and not fc:
    raise ValueError("empty network")
  return NetSpec(tuple(sets), tuple(fc))


@dataclasses.dataclass(frozen=True)
class Config:
  """One training run, or the base of an experiment's variants."""

  name: str = "run"
  """Experiment name: labels the console, results.json and the default workdir."""
  dataset: Literal["or", "digits", "cifar10"] = "digits"
  """Data: the OR truth table, scikit-learn's 8x8 digits (offline), or CIFAR-10 via TFDS."""
  data_dir: str | None = None
  """TFDS data dir for CIFAR-10 (default: TFDS's own, usually ~/tensorflow_datasets)."""
  train_size: int = 0
  """Class-stratified training subset size; 0 uses all."""
  test_size: int = 0
  """Class-stratified test subset size; 0 uses all."""
  net: str = "conv32-pool-conv64-conv64-pool-fc512"
  """Network: 'perceptron', or convN/pool/fcN joined by '-' (a final fc to the classes is added)."""
  dropout: float = 0.0
  """Dropout rate before the last layer (TFLearn's dropout(0.5) keeps 50%); 0 disables."""
  l2: float = 0.0
  """TFLearn-style L2 loss term l2 * sum(w**2) / 2 over conv and hidden fc kernels."""
  optimizer: Literal["sgd", "adam", "adamw"] = "adam"
  """Update rule (optax): sgd, adam (b1 0.9, b2 0.999, eps 1e-8), or adamw (decoupled decay)."""
  learning_rate: float = 1e-3
  """Learning rate."""
  weight_decay: float = 0.0
  """Decoupled weight decay for adamw, applied to kernels only."""
  loss: Literal["xent", "mse"] = "xent"
  """Loss: softmax cross-entropy with integer labels, or mean square."""
  epochs: int = 50
  """Passes over the training set."""
  batch_size: int = 96
  """Examples per step; the last partial batch is padded and masked, never dropped."""
  seed: int = 0
  """First random seed; --seeds N uses seed .. seed+N-1."""
  seeds: int = 1
  """Seeds per variant, trained together in one vmapped program; reported as mean +- std."""
  norm: Literal["scalar", "per_channel", "none"] = "scalar"
  """Featurewise normalization from training-set statistics (TFLearn's default is one scalar)."""
  flip: bool = True
  """Random left-right flip with p=0.5 in training (image datasets)."""
  rotate: float = 25.0
  """Random rotation with p=0.5, uniform in [-rotate, rotate] degrees; 0 disables."""
  precision: Literal["f32", "bf16"] = "f32"
  """Compute dtype; params and optimizer state stay float32."""
  eval_batch_size: int = 1000
  """Examples per validation step."""
  log_every: int = 0
  """Console line every N epochs when not on a terminal; 0 picks 1 up to 100 epochs, else epochs/20."""
  workdir: str | None = None
  """Output directory for TensorBoard, checkpoints and results (default: runs/<name>)."""
  checkpoint_every: int = 1
  """Save a checkpoint every N epochs; 0 disables checkpoints."""
  keep_checkpoints: int = 3
  """How many recent checkpoints to keep per run group."""
  restart: bool = False
  """Ignore existing checkpoints in the workdir and start fresh (old ones are deleted)."""
  diverge_above: float = 1e4
  """A training loss above this, or NaN/inf, marks a member diverged and stops it; 0: NaN/inf only."""
  debug_nans: bool = False
  """Turn on jax_debug_nans to stop at the first NaN-producing operation."""
  variants: str = ""
  """Comma-separated variants to run (default: all of the experiment's)."""
  devices: int = 0
  """Local devices to use for data parallelism; 0 uses all."""
  platform: Literal["auto", "cpu", "gpu", "tpu"] = "auto"
  """Require this JAX platform and fail loudly if it is missing; auto takes the default."""
  coordinator: str = ""
  """Multi-host: HOST:PORT of process 0 for jax.distributed; 'auto' lets JAX detect it."""
  num_processes: int = 1
  """Multi-host: total number of processes."""
  process_id: int = 0
  """Multi-host: this process's index."""
  compilation_cache: bool = True
  """Keep compiled programs in JAX's persistent cache (~/.cache/dl101_jax/jax)."""

  def __post_init__(self):
    def need(ok: bool, field: str, allowed: str):
      if not ok:
        raise ConfigError(field, f"must be {allowed}, got {getattr(self, field)!r}")

    def finite(v) -> bool:
      return isinstance(v, (int, float)) and math.isfinite(v)

    need(bool(re.fullmatch(r"[A-Za-z0-9_.+-]+", self.name)), "name",
         "letters, digits, '_', '.', '+' or '-'")
    need(self.dataset in DATASETS, "dataset", f"one of {', '.join(DATASETS)}")
    need(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}")
    need(self.loss in ("xent", "mse"), "loss", "xent or mse")
    need(self.norm in ("scalar", "per_channel", "none"), "norm", "scalar, per_channel or none")
    need(self.precision in ("f32", "bf16"), "precision", "f32 or bf16")
    need(self.platform in ("auto", "cpu", "gpu", "tpu"), "platform", "auto, cpu, gpu or tpu")
    need(self.epochs >= 1, "epochs", "an integer >= 1")
    need(self.seeds >= 1, "seeds", "an integer >= 1")
    need(self.seed >= 0, "seed", "an integer >= 0")
    need(self.batch_size >= 1, "batch_size", "an integer >= 1")
    need(self.eval_batch_size >= 1, "eval_batch_size", "an integer >= 1")
    need(finite(self.learning_rate) and self.learning_rate > 0, "learning_rate",
         "a finite number > 0")
    need(finite(self.dropout) and 0 <= self.dropout < 1, "dropout", "in [0, 1)")
    need(finite(self.l2) and self.l2 >= 0, "l2", "a finite number >= 0")
    need(finite(self.weight_decay) and self.weight_decay >= 0, "weight_decay",
         "a finite number >= 0")
    need(self.weight_decay == 0 or self.optimizer == "adamw", "weight_decay",
         "0 unless --optimizer adamw")
    need(finite(self.rotate) and 0 <= self.rotate <= 180, "rotate", "in [0, 180] degrees")
    need(self.train_size >= 0, "train_size", "an integer >= 0 (0 = all)")
    need(self.test_size >= 0, "test_size", "an integer >= 0 (0 = all)")
    need(finite(self.diverge_above) and self.diverge_above >= 0, "diverge_above",
         "a finite number >= 0")
    need(self.log_every >= 0, "log_every", "an integer >= 0 (0 = auto)")
    need(self.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0 (0 = never)")
    need(self.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1")
    need(self.devices >= 0, "devices", "an integer >= 0 (0 = all)")
    need(self.num_processes >= 1, "num_processes", "an integer >= 1")
    need(0 <= self.process_id < self.num_processes, "process_id",
         f"in [0, {self.num_processes})")
    try:
      spec = parse_net(self.net)
    except ValueError as e:
      raise ConfigError("net", f"{e}; got {self.net!r}") from None
    if self.dataset == "or":
      need(spec.is_perceptron, "net", "'perceptron' for --dataset or")
    else:
      need(not spec.is_perceptron, "net", "a conv/fc network for image datasets")
    if self.dataset == "or" or not self.train_size:
      n_train = TRAIN_SIZES[self.dataset]
    else:
      n_train = min(self.train_size, TRAIN_SIZES[self.dataset])
    # A prepared CIFAR-10 dir may hold fewer images than the full set; the loader re-checks.
    need(self.batch_size <= n_train, "batch_size",
         f"at most the training-set size ({n_train})")

  @property
  def net_spec(self) -> NetSpec:
    return parse_net(self.net)

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


# Fields that may differ between members of one compiled program: they are
# runtime values (optax hyperparameters or traced scalars), not shapes.
VALUE_FIELDS = ("seed", "learning_rate", "weight_decay", "l2", "dropout")
# Fields that say where and how to run, not what is computed.
RUN_FIELDS = ("name", "diverge_above", "log_every", "workdir", "checkpoint_every", "keep_checkpoints",
              "restart", "debug_nans", "variants", "devices", "platform", "coordinator",
              "num_processes", "process_id", "compilation_cache", "seeds")


def group_key(config: Config) -> tuple:
  """Configs with equal keys train together in one vmapped program."""
  d = config.to_dict()
  for f in VALUE_FIELDS + RUN_FIELDS:
    d.pop(f)
  # adam is adamw with zero decay, so they share one program.
  d["optimizer"] = "sgd" if config.optimizer == "sgd" else "adamw"
  return tuple(sorted(d.items()))
