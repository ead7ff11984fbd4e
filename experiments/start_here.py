"""The first network: one sigmoid neuron learns logical OR.

    python -m experiments.start_here

As in the tutorial: SGD with learning rate 2, mean-square loss, 2000 epochs,
one batch of the 4 rows. Expected (TFLearn printed 0.0401, 0.9749, 0.9754,
0.99997, loss 0.00072): 0 or 0 ~ 0.04, the others > 0.97. About 2 s of
process wall time on 2 CPU cores, imports and compilation included.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.host import cli
from dl101_jax.core import member_state
from dl101_jax.config import Config
from dl101_jax.host.experiment import Results, run_experiment

CONFIG = Config(name="start_here", dataset="or", net="perceptron", optimizer="sgd",
                learning_rate=2.0, loss="mse", epochs=2000, batch_size=4,
                checkpoint_every=0, workdir="runs_or")
VARIANTS = {"or": {}}


def predictions(results: Results) -> dict:
  """The trained neuron's outputs on the four rows (mean over seeds), for results.json."""
  states = results.groups[0].states  # stacked over seeds
  x = jnp.asarray(results.dataset.x_train)
  preds_S = jax.device_get(jax.vmap(lambda v: states.apply_fn(v, x))(
      member_state.model_variables(states)))
  mean = preds_S.mean(axis=0)[:, 0]
  out = {"final_loss": results.json["variants"][0]["final"]["train_loss"],
         "predictions": {f"{a} or {b}": float(m)
                         for (a, b), m in zip(results.dataset.x_train.astype(int), mean)}}
  if len(preds_S) > 1:
    out["predictions_per_seed"] = preds_S[..., 0].tolist()
  return out


def run(config: Config = CONFIG) -> Results:
  """Train the OR neuron, print its predictions; results.json holds them too."""
  results = run_experiment(config, VARIANTS, plot=False, extra=predictions, default=CONFIG)
  per_seed = results.json.get("predictions_per_seed")
  if results.is_primary:
    print("Testing OR operator" + (f" (mean ± std over {len(per_seed)} seeds)" if per_seed else ""))
    for i, (row, m) in enumerate(results.json["predictions"].items()):
      spread = f" ± {np.std([p[i] for p in per_seed]):.2g}" if per_seed else ""
      print(f"{row}: [[{m:.9g}]]{spread}")
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
