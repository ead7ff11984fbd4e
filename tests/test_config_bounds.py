"""Every bound in Config's checks, at its edge, on both sides.

The table is written out here, not read from config.py, so that loosening a bound there
(an open interval made closed, >= made >) fails a row. When a bound changes on purpose,
change its row.
"""

import pytest

from dl101_jax.config import Config, ConfigError

BASE = {"dataset": "digits", "net": "conv8-pool-fc16"}
WITH = {  # the flags a field only means something with
    "weight_decay": {"optimizer": "adamw"}, "muon_lr": {"optimizer": "muon"},
    "momentum": {"optimizer": "nesterov"}, "norm_bias_lr": {"batch_norm": True},
    "whiten_bias_epochs": {"dataset": "cifar10", "net": "airbench"},
    "cutout": {"dataset": "cifar10"}, "process_id": {"num_processes": 3},
    "max_seeds": {"seeds": "auto"}, "seed_budget": {"seeds": "auto"},
}
EPS = 1e-9

# field: (values just inside the allowed range, values just outside it)
EDGES = {
    "epochs": ([1, 10**6], [0, 10**6 + 1, 10**20]), "seeds": ([1, "auto"], [0, "Auto"]),
    "max_seeds": ([3, 2**31], [2, 2**31 + 1]), "seed_budget": ([0, 2**62], [-1, 2**62 + 1]),
    "seed": ([0, 2**31 - 1], [-1, 2**31, 3_000_000_000]),
    "batch_size": ([1], [0]), "eval_batch_size": ([1], [0]),
    "learning_rate": ([EPS], [0.0, -EPS, float("inf"), float("nan")]),
    "dropout": ([0.0, 1 - EPS], [1.0, -EPS, float("nan")]),
    "l2": ([0.0], [-EPS, float("inf")]),
    "l1": ([0.0], [-EPS, float("nan")]),
    "weight_decay": ([0.0, 5.0], [-EPS, float("nan")]),
    "muon_lr": ([EPS], [0.0, float("inf")]),
    "rotate": ([0.0, 180.0], [-EPS, 180 + 1e-6, float("nan")]),
    "translate": ([0, 8], [-1, 9]),
    "label_smoothing": ([0.0, 1 - EPS], [1.0, -EPS]),
    "ema": ([0.0, 1 - EPS], [1.0, -EPS]),
    "lookahead": ([0, 5], [-1]),
    "momentum": ([0.0, 1 - EPS], [1.0, -EPS]),
    "norm_bias_lr": ([EPS], [0.0, float("nan")]),
    "whiten_bias_epochs": ([0, 3, 10**6], [-1, 10**6 + 1]),
    "cutout": ([0, 32], [-1, 33]),
    "tta": ([0, 2], [-1, 3]),
    "train_size": ([0], [-1]), "test_size": ([0], [-1]), "val_size": ([0], [-1]),
    "diverge_above": ([0.0], [-EPS, float("inf")]),
    "log_every": ([0], [-1]), "checkpoint_every": ([0], [-1]),
    "tensorboard_verbose": ([0, 3], [-1, 4]),
    "keep_checkpoints": ([1], [0]), "devices": ([0], [-1]), "num_processes": ([1], [0]),
    "process_id": ([0, 2], [-1, 3]),
}


def _config(field, value):
  return Config(**{**BASE, **WITH.get(field, {}), field: value})


@pytest.mark.parametrize("field", sorted(EDGES))
def test_each_bound_admits_its_edge_and_refuses_one_step_past_it(field):
  inside, outside = EDGES[field]
  for v in inside:
    assert getattr(_config(field, v), field) == v
  for v in outside:
    with pytest.raises(ConfigError) as e:
      _config(field, v)
    assert e.value.field == field, (field, v, str(e.value))


def test_the_table_covers_every_numeric_field():
  import dataclasses

  numeric = {f.name for f in dataclasses.fields(Config) if f.type in ("int", "float")}
  assert numeric and not numeric - set(EDGES), f"no edge rows for {sorted(numeric - set(EDGES))}"


def test_the_last_seed_and_the_step_count_fit_in_int32():
  assert Config(**BASE, seed=2**31 - 3, seeds=3).seed == 2**31 - 3
  with pytest.raises(ConfigError, match=r"--seed: must be an integer in \[0, 2147483645\]"):
    Config(**BASE, seed=2**31 - 2, seeds=3)
  from dl101_jax.config import check_batch_size

  cifar = {**BASE, **WITH["cutout"], "batch_size": 1}  # 50k steps an epoch
  with pytest.raises(ConfigError, match="--epochs: must be at most 42949 for 50000 examples"):
    Config(**cifar, epochs=10**6)
  c = Config(**cifar, epochs=42949)
  with pytest.raises(ConfigError, match="--epochs: must be at most 85899 for 25000 examples"):
    check_batch_size(c.replace(epochs=85900, train_size=25_000), 50_000)


def test_a_data_dir_is_refused_where_nothing_reads_it():
  with pytest.raises(ConfigError, match="--data-dir: must be unset for --dataset digits"):
    Config(**BASE, data_dir="/data")
  assert Config(dataset="cifar10", data_dir="/data").data_dir == "/data"
