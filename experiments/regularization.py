"""Experiment 2: does regularization help? None, TFLearn's L2, or decoupled weight decay.

    python -m experiments.regularization
    python -m experiments.regularization --dataset digits --epochs 5 --seeds 3   # offline, seconds
    python -m experiments.regularization --data-dir DATA_DIR --epochs 20 --seeds 3   # DATA_DIR: a prepared TFDS data dir
    python -m experiments.regularization --data-dir DATA_DIR --epochs 20 --seeds auto   # seeds until decided

Network: conv32-pool-conv64-conv64-pool-fc512-fc10 (no dropout), batch 96.
  no_regularization: Adam 1e-3.
  l2: TFLearn's regularizer='L2' on every conv kernel and the fc512 kernel,
      loss += 0.001 * sum(w**2) / 2 (TFLearn's default weight_decay).
  weight_decay: AdamW 1e-3 with decoupled decay 0.05 on kernels. The tutorial
      lacks it. optax shrinks params by lr * wd = 5e-5 per step, so about
      e^-1.3 over 50 CIFAR-10 epochs (26k steps). That is Loshchilov & Hutter's
      normalized decay 0.05 * sqrt(batch / (N * epochs)), divided by the lr
      because optax multiplies the decay by it.
All three differ only in values, so they train together in one program.

Cost, 2-core CPU: 20 epochs x 3 seeds on the 10k subset, ~64 min of training for the
9 models in one program (--seeds auto: as much again for each look of 3 more seeds, up to
12); digits, 2 epochs: seconds. Results: docs/results/regularization.*.
"""

from dl101_jax.host import cli
from dl101_jax.config import Config
from dl101_jax.host.experiment import Results, run_experiment
from experiments.claims import judged

CONFIG = Config(name="regularization", dataset="cifar10",
                net="conv32-pool-conv64-conv64-pool-fc512")
VARIANTS = {
    "no_regularization": {},
    "l2": {"l2": 0.001},
    "weight_decay": {"optimizer": "adamw", "weight_decay": 0.05},
}


def run(config: Config = CONFIG) -> Results:
  return run_experiment(config, VARIANTS, default=CONFIG, extra=judged("regularization"))


if __name__ == "__main__":
  cli.main(run, CONFIG)
