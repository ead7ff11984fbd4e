"""Experiment 0: one layer set or three? (conv32-pool vs three conv-pool sets).

    python -m experiments.layers
    python -m experiments.layers --dataset digits --epochs 5 --seeds 3   # offline, seconds
    python -m experiments.layers --data-dir DATA_DIR --epochs 20 --seeds 3   # DATA_DIR: a prepared TFDS data dir

one_layer_set:    conv32-pool-fc512-fc10
three_layer_sets: conv32-pool-conv64-pool-conv64-pool-fc512-fc10
Adam 1e-3, batch 96, flips and +-25 degree rotations, no dropout. The two
nets have different shapes, so they train one after the other.

Cost, 2-core CPU: 20 epochs x 3 seeds on the 10k subset, ~26 min of training; digits,
2 epochs: seconds. Results: docs/results/layers.*.
"""

from dl101_jax.host import cli
from dl101_jax.config import Config
from dl101_jax.host.experiment import Results, run_experiment
from experiments.claims import judged

CONFIG = Config(name="layers", dataset="cifar10", net="conv32-pool-fc512")
VARIANTS = {
    "one_layer_set": {"net": "conv32-pool-fc512"},
    "three_layer_sets": {"net": "conv32-pool-conv64-pool-conv64-pool-fc512"},
}


def run(config: Config = CONFIG) -> Results:
  return run_experiment(config, VARIANTS, default=CONFIG, extra=judged("layers"))


if __name__ == "__main__":
  cli.main(run, CONFIG)
