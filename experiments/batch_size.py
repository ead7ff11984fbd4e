"""Experiment 3: batch 50 or batch 2000? Plotted against epochs, steps and seconds.

    python -m experiments.batch_size
    python -m experiments.batch_size --dataset digits --epochs 5 --seeds 3   # offline, seconds
    python -m experiments.batch_size --data-dir DATA_DIR --epochs 20 --seeds 3   # DATA_DIR: a prepared TFDS data dir

The dropout net (conv32-pool-conv64-conv64-pool-fc512-dropout0.5-fc10), Adam
1e-3. The tutorial's point: a large batch takes far fewer steps per epoch, but
each step costs more memory and time, and with the same learning rate it learns
less per epoch. On a training set smaller than 2000 (digits: 1437), the large
batch is the whole set, and its variant is named for the batch it used
(batch_1437), in every table and picture.

Cost, 2-core CPU: 20 epochs x 3 seeds on the 10k subset, ~31 min of training; digits,
2 epochs: seconds. Results: docs/results/batch_size.*.
"""

from dl101_jax.host import cli
from dl101_jax.config import TRAIN_SIZES, Config
from dl101_jax.host.experiment import (Results, changed_fields, per_variant_refusals, refuse,
                                  run_experiment)
from experiments.claims import judged

CONFIG = Config(name="batch_size", dataset="cifar10",
                net="conv32-pool-conv64-conv64-pool-fc512", dropout=0.5)
VARIANTS = {"batch_50": {"batch_size": 50}, "batch_2000": {"batch_size": 2000}}


def run(config: Config = CONFIG) -> Results:
  refuse(changed_fields(config, CONFIG), per_variant_refusals(VARIANTS, "batch_size"))
  n = min(config.train_size or TRAIN_SIZES[config.dataset], TRAIN_SIZES[config.dataset])
  variants, renamed = {}, {}
  for k, v in VARIANTS.items():
    b = min(v["batch_size"], n)
    renamed[k] = f"batch_{b}"
    if b != v["batch_size"]:
      print(f"{k}: the training set has {n} examples; running it as batch_{b}")
    variants[renamed[k]] = {"batch_size": b}
  if config.variant_names:
    config = config.replace(variants=",".join(renamed.get(v, v) for v in config.variant_names))
  renamed = {k: v for k, v in renamed.items() if k != v}
  return run_experiment(config, variants, extra=judged("batch_size", renamed))


if __name__ == "__main__":
  cli.main(run, CONFIG)
