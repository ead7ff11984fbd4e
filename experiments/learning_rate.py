"""Experiment 4: learning rate 1e-4, 1e-3 or 1e-2?

    python -m experiments.learning_rate
    python -m experiments.learning_rate --dataset digits --epochs 5 --seeds 3   # offline, seconds
    python -m experiments.learning_rate --data-dir DATA_DIR --epochs 20 --seeds 3   # DATA_DIR: a prepared TFDS data dir
    python -m experiments.learning_rate --variants lr_1e-3,lr_1e-2

The dropout net, Adam, batch 96. All rates train together in one vmapped
program (the rate is an optax hyperparameter in each member's state). The
experiment sets the rate per variant, so --learning-rate is refused; other
rates are `python -m experiments.sweep --learning-rates ...`. A rate that makes
the loss NaN/inf is marked diverged at that epoch and the rest finish.

Cost, 2-core CPU: 20 epochs x 3 seeds on the 10k subset, ~57 min of training for the
9 models in one program. Results: docs/results/learning_rate.*.
"""

from dl101_jax.host import cli
from dl101_jax.config import Config
from dl101_jax.host.experiment import Results, run_experiment
from experiments.claims import judged

CONFIG = Config(name="learning_rate", dataset="cifar10",
                net="conv32-pool-conv64-conv64-pool-fc512", dropout=0.5)
VARIANTS = {"lr_1e-4": {"learning_rate": 1e-4}, "lr_1e-3": {"learning_rate": 1e-3},
            "lr_1e-2": {"learning_rate": 1e-2}}


def run(config: Config = CONFIG) -> Results:
  return run_experiment(config, VARIANTS, default=CONFIG, extra=judged("learning_rate"))


if __name__ == "__main__":
  cli.main(run, CONFIG)
