"""Experiment 1: does dropout help? The same net with and without dropout(0.5).

    python -m experiments.dropout                       # CIFAR-10, 50 epochs
    python -m experiments.dropout --dataset digits --epochs 5 --seeds 3   # offline, seconds
    python -m experiments.dropout --data-dir DATA_DIR --train-size 10000 --epochs 20 --seeds 3
    python -m experiments.dropout --variants dropout,no_dropout,as_published

Network: conv32-pool-conv64-conv64-pool-fc512-[dropout 0.5]-fc10, Adam 1e-3,
batch 96, flips and +-25 degree rotations. Both variants train together in one
vmapped program (dropout's rate is a runtime value, not a shape).

The tutorial's own notebooks differ: `1_without_dropout.ipynb` kept dropout(0.5)
and commented out the second max-pool, so its "without dropout" run compared a
net with that pool against one without it. `no_dropout` here is the clean
ablation (the same net, dropout removed). The opt-in variant `as_published` is
the notebook's exact network, conv32-pool-conv64-conv64-fc512 with dropout 0.5
(8.45M parameters, 4x the dropout net's); it runs only when --variants names it.

Cost, 2-core CPU: 20 epochs x 3 seeds on the 10k subset, ~51 min of training for the 6
models; digits, 2 epochs: seconds. Results: docs/results/dropout.*.
"""

from dl101_jax.host import cli
from dl101_jax.config import Config
from dl101_jax.host.experiment import Results, run_experiment
from experiments.claims import judged

CONFIG = Config(name="dropout", dataset="cifar10", net="conv32-pool-conv64-conv64-pool-fc512")
VARIANTS = {"dropout": {"dropout": 0.5}, "no_dropout": {"dropout": 0.0}}
# Not in the default set: the published notebook's network (see the docstring).
OPT_IN = {"as_published": {"net": "conv32-pool-conv64-conv64-fc512", "dropout": 0.5}}


def run(config: Config = CONFIG) -> Results:
  return run_experiment(config, VARIANTS, opt_in=OPT_IN, default=CONFIG, extra=judged("dropout"))


if __name__ == "__main__":
  cli.main(run, CONFIG)
