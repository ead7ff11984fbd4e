"""A learning-rate finder: a log grid of rates, trained side by side as ONE vmapped population.

    python -m experiments.lr_find --dataset digits                          # ~20 s
    python -m experiments.lr_find --data-dir DATA_DIR --train-size 10000    # ~5 min, 2 cores
    python -m experiments.lr_find --dataset digits --net conv16-fc64 --lr-range 1e-4,1

The classic range test (Smith 2017; fastai's `lr_find`) is one run whose rate grows every
step, so each rate's loss carries the history of all the smaller ones. Here every rate is its
own short run instead: the same initial weights and the same batches (one seed, shared), a
constant rate, --epochs of training (default 1). The rates differ only in a value that lives in
each member's optimizer state, so they are members of one compiled program and train
together, not one after another.

The suggestion is the rate whose validation loss is lowest after that budget, judged on a
split held out of the training set (--val-size; 0 holds out 10%), never on the test split.
Rates whose loss turns NaN/inf are marked diverged and left out. Over --seeds, the mean loss.
A short budget favours large rates: for a long run, a rate a little below the suggestion is
the safer start. Writes lr_find.png (loss against rate, the suggestion marked) and the
"lr_find" block of results.json. Results: docs/results/lr_find.*.
"""

import dataclasses
import math
import os

import numpy as np

from dl101_jax.config import Config, ConfigError
from dl101_jax.host import cli
from dl101_jax.host.experiment import Results, held_out_validation, plain_config, run_experiment

RULE = ("the rate with the lowest mean validation loss after the budget, on a split held out "
        "of the training set; diverged rates left out")


@dataclasses.dataclass(frozen=True)
class LrFindConfig(Config):
  """The tutorial's learning-rate experiment's recipe, with a grid of rates instead of three."""

  lr_range: str = "1e-5,1e-1"
  """Smallest and largest learning rate 'lo,hi' (0 < lo < hi); the grid is log-spaced."""
  lr_points: int = 9
  """Rates in the grid, both ends included (2..64): 9 over 1e-5..1e-1 is two per decade."""

  def __post_init__(self):
    super().__post_init__()
    try:
      lo, hi = (float(v) for v in self.lr_range.split(","))
    except ValueError:
      raise ConfigError("lr_range", f"must be 'lo,hi' (two numbers), got {self.lr_range!r}") \
          from None
    if not (math.isfinite(hi) and 0 < lo < hi):
      raise ConfigError("lr_range", f"needs 0 < lo < hi, both finite, got {self.lr_range!r}")
    if not 2 <= self.lr_points <= 64:
      raise ConfigError("lr_points", f"must be an integer in 2..64, got {self.lr_points}")

  @property
  def rates(self) -> list[float]:
    lo, hi = (float(v) for v in self.lr_range.split(","))
    return [float(r) for r in np.geomspace(lo, hi, self.lr_points)]


CONFIG = LrFindConfig(name="lr_find", dataset="cifar10",
                      net="conv32-pool-conv64-conv64-pool-fc512", dropout=0.5, epochs=1)
VARIANTS: dict = {}  # built from --lr-range and --lr-points: one variant per rate


def grid(config: LrFindConfig) -> dict[str, dict]:
  return {f"lr_{r:.3g}": {"learning_rate": r} for r in config.rates}


def suggest(rates: list[float], losses: list[float | None]) -> float | None:
  """RULE: the rate of the lowest loss; None (diverged) never wins; None if all diverged."""
  finite = [(loss, r) for r, loss in zip(rates, losses) if loss is not None]
  return min(finite)[1] if finite else None


def block(config: LrFindConfig, points: dict[str, dict]):
  """The "lr_find" block of results.json, from the trained population."""

  def extra(results: Results) -> dict:
    if len(results.groups) != 1:
      raise AssertionError("a learning-rate finder must compile to one program")
    by_name = {v["name"]: v for v in results.json["variants"]}
    rates, losses, per_seed, acc, diverged = [], [], [], [], []
    for name, p in points.items():
      v = by_name[name]
      finals = [h["val_loss"][-1] for h in v["per_seed"] if h["val_loss"]]
      bad = v["diverged"] or not finals or not all(math.isfinite(x) for x in finals)
      rates.append(p["learning_rate"])
      per_seed.append([x if math.isfinite(x) else None for x in finals])
      losses.append(None if bad else float(np.mean(finals)))
      acc.append(None if bad else v["final"]["val_accuracy"])
      diverged.append(bool(bad))
    best = suggest(rates, losses)
    return {"lr_find": {"rates": rates, "val_loss": losses, "val_loss_per_seed": per_seed,
                        "val_accuracy": acc, "diverged": diverged, "suggested": best,
                        "epochs": config.epochs, "seeds": config.seeds, "rule": RULE,
                        "selected_on": results.json["dataset"]["validation"]},
            "config": dataclasses.asdict(config)}

  return extra


def run(config: LrFindConfig = CONFIG) -> Results:
  if config.learning_rate != CONFIG.learning_rate:
    raise ConfigError("learning_rate", "the finder takes its rates from --lr-range and "
                      "--lr-points; set those instead")
  config = held_out_validation(config)  # choose there, never on the test split
  points = grid(config)
  base = plain_config(config)

  def draw(results: Results) -> list[str]:
    from dl101_jax.host import plots_search

    plots_search.lr_find(results.json["lr_find"], os.path.join(config.run_dir, "lr_find.png"))
    return ["lr_find.png"]

  results = run_experiment(base, points, plot=False, extra=block(config, points), draw=draw)
  if results.is_primary:
    found = results.json["lr_find"]
    best = found["suggested"]
    print(f"\n{len(found['rates'])} rates, {config.epochs} epoch(s), one compiled program. "
          + (f"Suggested learning rate: {best:.3g} ({RULE})." if best is not None else
             "Every rate diverged: lower --lr-range."))
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
