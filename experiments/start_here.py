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
  states = results.groups[0].states  # stacked over seeds
  x = jnp.asarray(results.dataset.x_train)
  preds_S = jax.device_get(jax.vmap(lambda p: states.apply_fn({"params": p}, x))(states.params))
  mean, std = preds_S.mean(axis=0)[:, 0], preds_S.std(axis=0)[:, 0]
  print("Testing OR operator" + (f" (mean ± std over {len(preds_S)} seeds)" if len(preds_S) > 1 else ""))
  predictions = {}
  for (a, b), m, s in zip(results.dataset.x_train.astype(int), mean, std):
    print(f"{a} or {b}: [[{m:.9g}]]" + (f" ± {s:.2g}" if len(preds_S) > 1 else ""))
    predictions[f"{a} or {b}"] = float(m)
  if len(preds_S) > 1:
    results.json["predictions_per_seed"] = preds_S[..., 0].tolist()
  final = results.json["variants"][0]["final"]
  results.json.update(final_loss=final["train_loss"], predictions=predictions)
  if jax.process_index() == 0:
    report.write_json(os.path.join(config.run_dir, "results.json"), results.json)
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
