"""Config's checks: each field's range and choices, the flags that need another flag, sizes
and counts, the network against the dataset, and the batch against the training set.

Apart from config.py so that each stays readable; it knows no Config (its functions take
any object with Config's fields), so config.py imports it and nothing imports back.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

from dl101_jax.net_spec import parse_net

AIRBENCH_NETS = ("airbench", "airbench_muon")  # models.AirbenchNet; CIFAR-10 only
MAX_SEED = 2**31 - 1  # the largest int32: seeds and step counts are int32 on the device
MAX_EPOCHS = 1_000_000
AUTO_MAX_SEEDS = 12  # --max-seeds' default
IMAGE_SIDES = {"digits": 8, "cifar10": 32}  # the largest --cutout square per dataset
MUON_LR = 0.24  # airbench94_muon's; --muon-lr's default, refused off it without --optimizer muon
# Known training-set sizes, so a batch larger than the data is caught before loading.
TRAIN_SIZES = {"or": 4, "digits": 1437, "cifar10": 50_000}


class ConfigError(ValueError):
  """A bad configuration value; `field` is the dataclass field at fault."""

  def __init__(self, field: str, message: str):
    self.field = field
    super().__init__(f"{flag(field)}: {message}")


def flag(field: str) -> str:
  return "--" + field.replace("_", "-")


def _need(c, ok: bool, field: str, allowed: str) -> None:
  if not ok:
    raise ConfigError(field, f"must be {allowed}, got {getattr(c, field)!r}")


def check_values(c, choices: dict[str, tuple[str, ...]]) -> None:
  """Each field's own range and choices."""
  _need(c, bool(re.fullmatch(r"[A-Za-z0-9_.+-]+", c.name)), "name",
        "letters, digits, '_', '.', '+' or '-'")
  for name, allowed in choices.items():
    _need(c, getattr(c, name) in allowed, name, f"one of {', '.join(allowed)}")
  # Ranges first, so no value reaches int32 or schedule arithmetic that cannot hold it.
  _need(c, _int_in(c.epochs, 1, MAX_EPOCHS), "epochs", f"an integer in [1, {MAX_EPOCHS}]")
  _need(c, c.seeds == "auto" or _int_in(c.seeds, 1, MAX_SEED + 1), "seeds",
        "an integer >= 1, or auto")
  _need(c, _int_in(c.max_seeds, 3, MAX_SEED + 1), "max_seeds",
        "an integer >= 3 (--seeds auto's first look trains 3)")
  _need(c, _int_in(c.seed_budget, 0, 2**62), "seed_budget",
        "an integer >= 0 model-epochs (0 = no limit)")
  # Seeds run seed, seed + 1, ..., each a PRNGKey of an int32.
  n = c.max_seeds if c.seeds == "auto" else c.seeds
  _need(c, _int_in(c.seed, 0, MAX_SEED + 1 - n), "seed",
        f"an integer in [0, {MAX_SEED + 1 - n}] (with --seeds {c.seeds}, "
        f"the last seed must fit in int32)")
  _need(c, c.batch_size >= 1, "batch_size", "an integer >= 1")
  _need(c, c.eval_batch_size >= 1, "eval_batch_size", "an integer >= 1")
  _need(c, _finite(c.learning_rate) and c.learning_rate > 0, "learning_rate",
        "a finite number > 0")
  _need(c, _finite(c.dropout) and 0 <= c.dropout < 1, "dropout", "in [0, 1)")
  _need(c, _finite(c.l2) and c.l2 >= 0, "l2", "a finite number >= 0")
  _need(c, _finite(c.l1) and c.l1 >= 0, "l1", "a finite number >= 0")
  _need(c, _finite(c.weight_decay) and c.weight_decay >= 0, "weight_decay",
        "a finite number >= 0")
  _need(c, c.weight_decay == 0 or c.optimizer in ("adamw", "nesterov", "muon"),
        "weight_decay", "0 unless --optimizer adamw, nesterov or muon")
  _need(c, _finite(c.muon_lr) and c.muon_lr > 0, "muon_lr", "a finite number > 0")
  _need(c, c.muon_lr == MUON_LR or c.optimizer == "muon", "muon_lr",
        f"{MUON_LR} (the default) unless --optimizer muon")
  _need(c, _finite(c.rotate) and 0 <= c.rotate <= 180, "rotate", "in [0, 180] degrees")
  _need(c, isinstance(c.translate, int) and 0 <= c.translate <= 8, "translate",
        "an integer in [0, 8] pixels")
  _need(c, _finite(c.label_smoothing) and 0 <= c.label_smoothing < 1, "label_smoothing",
        "in [0, 1)")
  _need(c, c.label_smoothing == 0 or c.loss == "xent", "label_smoothing",
        "0 unless --loss xent")
  _need(c, _finite(c.ema) and 0 <= c.ema < 1, "ema", "in [0, 1)")
  _need(c, isinstance(c.lookahead, int) and c.lookahead >= 0, "lookahead",
        "an integer >= 0 (steps between synchronizations; 0 = none)")
  _need(c, c.lookahead == 0 or c.ema == 0, "lookahead",
        "0 with --ema (both choose the weights that are evaluated)")
  _need(c, _finite(c.momentum) and 0 <= c.momentum < 1, "momentum", "in [0, 1)")
  _need(c, _finite(c.norm_bias_lr) and c.norm_bias_lr > 0, "norm_bias_lr", "a number > 0")
  _need(c, _int_in(c.whiten_bias_epochs, 0, MAX_EPOCHS), "whiten_bias_epochs",
        f"an integer in [0, {MAX_EPOCHS}]")


def check_pairs(c, default: Callable[[str], Any]) -> None:
  """Flags that only mean something with another flag: refused, never silently ignored."""
  _need(c, c.momentum == 0.9 or c.optimizer in ("nesterov", "muon"), "momentum",
        "0.9 (the default) unless --optimizer nesterov or muon")
  _need(c, c.whiten_bias_epochs == 0 or c.net in AIRBENCH_NETS, "whiten_bias_epochs",
        "0 unless --net airbench or airbench_muon")
  _need(c, c.norm_bias_lr == 1.0 or c.batch_norm or c.net in AIRBENCH_NETS, "norm_bias_lr",
        "1 unless the net has BatchNorm (--batch-norm or --net airbench*)")
  _need(c, isinstance(c.cutout, int) and 0 <= c.cutout <= IMAGE_SIDES.get(c.dataset, 0),
        "cutout", f"an integer in [0, {IMAGE_SIDES.get(c.dataset, 0)}] pixels for "
        f"--dataset {c.dataset}")
  _need(c, c.data_dir is None or c.dataset == "cifar10", "data_dir",
        f"unset for --dataset {c.dataset} (only CIFAR-10 is read from a data dir)")
  _need(c, not c.alternate_flip or c.flip, "alternate_flip", "off with --no-flip")
  _need(c, c.translate == 0 or c.dataset != "or", "translate", "0 for --dataset or")
  _need(c, c.tta in (0, 1, 2), "tta", "0, 1 or 2")
  _need(c, c.tta == 0 or c.dataset != "or", "tta", "0 for --dataset or (no images)")
  for f in ("max_seeds", "seed_budget"):
    _need(c, c.seeds == "auto" or getattr(c, f) == default(f), f,
          f"{default(f)} (the default) unless --seeds auto")


def check_counts(c) -> None:
  """Sizes, cadences and process counts."""
  _need(c, c.train_size >= 0, "train_size", "an integer >= 0 (0 = all)")
  _need(c, c.test_size >= 0, "test_size", "an integer >= 0 (0 = all)")
  _need(c, c.val_size >= 0, "val_size", "an integer >= 0 (0 = validate on the test split)")
  _need(c, _finite(c.diverge_above) and c.diverge_above >= 0, "diverge_above",
        "a finite number >= 0")
  _need(c, c.log_every >= 0, "log_every", "an integer >= 0 (0 = auto)")
  _need(c, c.tensorboard_verbose in (0, 1, 2, 3), "tensorboard_verbose",
        "0, 1, 2 or 3 (TFLearn's levels)")
  _need(c, c.checkpoint_every >= 0, "checkpoint_every", "an integer >= 0 (0 = never)")
  _need(c, c.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1")
  _need(c, c.devices >= 0, "devices", "an integer >= 0 (0 = all)")
  _need(c, c.num_processes >= 1, "num_processes", "an integer >= 1")
  _need(c, not c.mesh or bool(re.fullmatch(r"members=[1-9]\d*,data=[1-9]\d*", c.mesh)),
        "mesh", "members=M,data=D with positive integers (e.g. members=4,data=2), or empty")
  if c.member_loop and re.fullmatch(r"members=\d+,data=\d+", c.mesh) and c.mesh_axes[1] > 1:
    m, d = c.mesh_axes
    raise ConfigError("member_loop", f"trains each device's own members whole, so --mesh must "
                      f"not split batches: use --mesh members={m * d},data=1 or no --mesh, "
                      f"got --mesh {c.mesh}")
  _need(c, 0 <= c.process_id < c.num_processes, "process_id",
        f"in [0, {c.num_processes})")


def check_net(c) -> None:
  """The network against the dataset, and the batch against the known training-set size."""
  if c.net in AIRBENCH_NETS:  # models.AirbenchNet: three pools after a 2x2 conv need 16+ px
    _need(c, c.dataset == "cifar10", "net",
          f"a conv/fc network, not {c.net}, for small images")
    return check_batch_size(c, TRAIN_SIZES[c.dataset])
  try:
    spec = parse_net(c.net)
  except ValueError as e:
    raise ConfigError("net", f"{e}; got {c.net!r}") from None
  if c.dataset == "or":
    _need(c, spec.is_perceptron, "net", "'perceptron' for --dataset or")
  else:
    _need(c, not spec.is_perceptron, "net", "a conv/fc network for image datasets")
  # Known sizes catch a too-large batch before loading; a prepared CIFAR-10 dir may
  # hold fewer images, so the experiment checks again with the loaded size.
  check_batch_size(c, TRAIN_SIZES[c.dataset])


def _int_in(v, lo: int, hi: int) -> bool:
  return isinstance(v, int) and lo <= v <= hi


def _finite(v) -> bool:
  return isinstance(v, (int, float)) and math.isfinite(v)


def check_batch_size(config: Any, n_available: int, variant: str | None = None) -> None:
  """The one batch-size check: at most the training-set size (after --train-size and --val-size).

  `n_available`: the training examples before --val-size is held out.
  """
  n = min(config.train_size, n_available) if config.train_size else n_available
  if config.val_size and config.dataset != "or" and config.val_size >= n:
    raise ConfigError("val_size", f"must be below the training-set size ({n}), "
                      f"got {config.val_size}")
  n -= config.val_size if config.dataset != "or" else 0
  who = f"variant {variant}: " if variant else ""
  if config.batch_size > n:
    raise ConfigError("batch_size", f"{who}must be at most the training-set size ({n}), "
                      f"got {config.batch_size}")
  steps = config.epochs * -(-n // config.batch_size)  # the step counter is an int32
  if steps > MAX_SEED:
    raise ConfigError("epochs", f"{who}must be at most {MAX_SEED // -(-n // config.batch_size)} "
                      f"for {n} examples in batches of {config.batch_size} (the step count "
                      f"must fit in int32), got {config.epochs}")
