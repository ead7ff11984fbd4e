"""The tutorial's last advice, "write programs that tune hyperparameters": a vmapped grid sweep.

    python -m experiments.sweep --learning-rates 1e-4,3e-4,1e-3,3e-3,1e-2 --seeds 3
    python -m experiments.sweep --dataset digits --epochs 5 --dropouts 0,0.25,0.5 --seeds 2

Every point of the grid (learning rate x dropout x weight decay) and every seed
trains in ONE compiled program: they differ only in values, which vmap carries
per member. The best setting is chosen by final accuracy on a validation split
held out of the training set (--val-size; 0 holds out 10%), never on the test
split; the chosen setting is then scored on the test split once, and reported as
such. Plots validation accuracy against each axis (sweep.png).

Cost, 2-core CPU: `--dataset digits --epochs 2 --seeds 2 --dropouts 0,0.5` (10 settings x
2 seeds = 20 models, one program) ~13 s.
"""

import dataclasses
import itertools
import os
from typing import Callable

import numpy as np

from dl101_jax.host import cli
from dl101_jax.config import Config, ConfigError
from dl101_jax.host.experiment import Results, held_out_validation, plain_config, run_experiment


def _floats(field: str, text: str) -> tuple[float, ...]:
  try:
    vals = tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise ConfigError(field, f"must be comma-separated numbers, got {text!r}") from None
  return vals


@dataclasses.dataclass(frozen=True)
class SweepConfig(Config):
  """A grid sweep: the base config plus the values of each axis."""

  learning_rates: str = "1e-4,3e-4,1e-3,3e-3,1e-2"
  """Learning rates to sweep (comma-separated)."""
  dropouts: str = ""
  """Dropout rates to sweep (comma-separated); empty keeps --dropout."""
  weight_decays: str = ""
  """AdamW decoupled weight decays to sweep (comma-separated); empty keeps --weight-decay."""

  def __post_init__(self):
    super().__post_init__()
    for f in ("learning_rates", "dropouts", "weight_decays"):
      _floats(f, getattr(self, f))
    if not self.axes["learning_rate"]:
      raise ConfigError("learning_rates", "must list at least one value")
    if any(w > 0 for w in self.axes["weight_decay"]) and self.optimizer != "adamw":
      raise ConfigError("weight_decays", "need --optimizer adamw")
    for name, values in self.axes.items():
      for v in values:  # each grid point must be a valid Config
        try:
          dataclasses.replace(Config(**{f.name: getattr(self, f.name) for f in
                                        dataclasses.fields(Config)}), **{name: v})
        except ConfigError as e:
          raise ConfigError(f"{name}s" if name != "dropout" else "dropouts", str(e)) from None

  @property
  def axes(self) -> dict[str, tuple[float, ...]]:
    return {"learning_rate": _floats("learning_rates", self.learning_rates),
            "dropout": _floats("dropouts", self.dropouts) or (self.dropout,),
            "weight_decay": _floats("weight_decays", self.weight_decays) or (self.weight_decay,)}


CONFIG = SweepConfig(name="sweep", dataset="cifar10", net="conv32-pool-conv64-conv64-pool-fc512",
                     dropout=0.5, epochs=10)
VARIANTS: dict = {}  # built from the axes: one variant per grid point


def grid(config: SweepConfig) -> dict[str, dict]:
  axes = config.axes
  out = {}
  for lr, dr, wd in itertools.product(*axes.values()):
    out[f"lr_{lr:g}-dropout_{dr:g}-wd_{wd:g}"] = {
        "learning_rate": lr, "dropout": dr, "weight_decay": wd}
  return out


def best_of(config: SweepConfig, points_cfg: dict[str, dict]) -> Callable[[Results], dict]:
  """The sweep's block of results.json, from the trained grid."""

  def extra(results: Results) -> dict:
    if len(results.groups) != 1:
      raise AssertionError("a sweep must compile to one program")
    points = []
    for v in results.json["variants"]:
      points.append(dict(points_cfg[v["name"]], name=v["name"], diverged=v["diverged"],
                         val_accuracy=v["final"]["val_accuracy"] or 0.0,
                         val_accuracy_std=v["final_std"]["val_accuracy"] or 0.0))
    trained = [p for p in points if not p["diverged"]]  # every point diverged: no best
    best = max(trained, key=lambda p: p["val_accuracy"]) if trained else None
    if best:
      test = results.test_accuracy(best["name"])  # the one look at the test split
      best = dict(best, test_accuracy=float(np.mean(test)) if test else None,
                  test_accuracy_per_seed=test)
    return {"sweep": {"axes": {k: list(v) for k, v in config.axes.items()}, "points": points,
                      "best": best, "programs": len(results.groups),
                      "selected_on": results.json["dataset"]["validation"],
                      "test_scored": "once, for the chosen setting only"},
            "config": dataclasses.asdict(config)}

  return extra


def run(config: SweepConfig = CONFIG) -> Results:
  if config.learning_rate != CONFIG.learning_rate:
    raise ConfigError("learning_rate", "the sweep takes its rates from --learning-rates; "
                      "set those instead")
  config = held_out_validation(config)  # select there, never on the test split
  points_cfg = grid(config)
  base = plain_config(config)

  def draw(results: Results) -> list[str]:
    from dl101_jax.host import plots_search

    swept = [a for a, vals in config.axes.items() if len(vals) > 1] or ["learning_rate"]
    plots_search.sweep(results.json["sweep"]["points"], swept, os.path.join(config.run_dir, "sweep.png"))
    return ["sweep.png"]

  results = run_experiment(base, points_cfg, plot=False, extra=best_of(config, points_cfg),
                           draw=draw)
  if results.is_primary:
    sweep = results.json["sweep"]
    best = sweep["best"]
    if best is None:
      print(f"\nEvery one of the {len(sweep['points'])} settings diverged (loss NaN/inf or "
            f"above --diverge-above): no best, and the test split was not scored; try lower "
            f"--learning-rates")
      return results
    print(f"\nBest of {len(sweep['points'])} settings x {config.seeds} seed(s), one compiled "
          f"program, chosen on {sweep['selected_on']}: {best['name']}: val acc "
          f"{best['val_accuracy']:.4f} ± {best['val_accuracy_std']:.4f}; test accuracy "
          f"{best['test_accuracy']:.4f} (the test split, scored once for this setting)")
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
