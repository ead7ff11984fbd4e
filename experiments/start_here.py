"""The first network: one sigmoid neuron learns logical OR.

    python -m experiments.start_here

As in the tutorial: SGD with learning rate 2, mean-square loss, 2000 epochs,
one batch of the 4 rows. Expected (TFLearn printed 0.0401, 0.9749, 0.9754,
0.99997, loss 0.00072): 0 or 0 ~ 0.04, the others > 0.97. About 2 s of
process wall time on 2 CPU cores, imports and compilation included.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp

from dl101_jax import cli, report
from dl101_jax.config import Config
from dl101_jax.experiment import Results, run_experiment

CONFIG = Config(name="start_here", dataset="or", net="perceptron", optimizer="sgd",
                learning_rate=2.0, loss="mse", epochs=2000, batch_size=4,
                checkpoint_every=0)
VARIANTS = {"or": {}}


def run(config: Config = CONFIG) -> Results:
  """Train the OR neuron, print its predictions, save them in results.json."""
  results = run_experiment(config, VARIANTS, plot=False)
  group = results.groups[0]
  x = jnp.asarray(results.dataset.x_train)
  params = jax.tree.map(lambda a: a[0], group.states.params)
  preds = jax.device_get(group.states.apply_fn({"params": params}, x))
  print("Testing OR operator")
  predictions = {}
  for (a, b), p in zip(results.dataset.x_train.astype(int), preds):
    print(f"{a} or {b}: [[{p[0]:.9g}]]")
    predictions[f"{a} or {b}"] = float(p[0])
  final = results.json["variants"][0]["final"]
  results.json.update(final_loss=final["train_loss"], predictions=predictions)
  if jax.process_index() == 0:
    report.write_json(os.path.join(config.run_dir, "results.json"), results.json)
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
