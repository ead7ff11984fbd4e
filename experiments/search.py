"""The tutorial's last advice, "write programs that tune hyperparameters": grid, successive
halving and population-based training, each with the whole population in ONE compiled program.

    python -m experiments.search --dataset digits --epochs 6 --members 8 --method pbt
    python -m experiments.search --data-dir DATA_DIR --method halving --members 16 --epochs 10
    python -m experiments.search --data-dir DATA_DIR --method pbt --members 32 --epochs 30  # a GPU
    python -m experiments.search --replay runs/search/results.json  # the winner's schedule alone

The space: learning rate (log-uniform in --lr-range), dropout, weight decay (AdamW's
decoupled one by default) and TFLearn's L2 (uniform in their ranges; 'lo,hi', lo == hi fixes
one). --members configurations are sampled from --seed, so a search is a pure
function of its config, and the three methods start from the same population.
  grid:    every member trains all --epochs (the sweep's way; random points, not a lattice).
  halving: every --rung-epochs, the top ⌈M/--eta⌉ by validation accuracy go on; the
           rest leave the program (it recompiles for fewer members).
  pbt:     every --pbt-every epochs, the bottom --pbt-fraction copy the params and
           optimizer state of members drawn from the top as many (exploit, a gather
           on the device), then multiply each hyperparameter by 0.8 or 1.2, or
           resample it with --resample-probability (explore), within the bounds.
Every decision and the final choice use a class-stratified split held out of the
training set (--val-size; 0 holds out 10%). The winner, and only it, is scored
on the test split once. Compute is reported in member-epochs.

Outputs: results.json (block "search": each member's hyperparameters per epoch,
lineage and stop, the winner, its validation and test accuracy), search.png,
schedule.png, summary.md, TensorBoard runs. Kill it and run the same command:
the search resumes from its checkpoint and ends bit-identical (tested).
"""

import dataclasses
import json
import os

import numpy as np

from dl101_jax.host import cli
from dl101_jax.core import population as pop
from dl101_jax.config import Config, ConfigError
from dl101_jax.host.experiment import (Results, changed_fields, held_out_validation,
                                       plain_config, refuse, run_experiment)
from dl101_jax.tuning import (METHODS, Method, PopulationStep, ReplayStep, ancestry, member_epochs,
                              winner)

SAMPLED = ("learning_rate", "dropout", "weight_decay", "l2")  # their Config fields
METHOD_FLAGS = {"eta": "halving", "rung_epochs": "halving", "pbt_every": "pbt",
                "pbt_fraction": "pbt", "resample_probability": "pbt"}


def _range(config, field: str) -> tuple[float, float]:
  try:
    lo, hi = (float(v) for v in getattr(config, field).split(","))
  except ValueError:
    raise ConfigError(field, f"must be 'lo,hi' (two numbers), got {getattr(config, field)!r}") \
        from None
  return lo, hi


@dataclasses.dataclass(frozen=True)
class SearchConfig(Config):
  """A search: the base config, the space, and the method's settings."""

  method: Method = "pbt"
  """grid: all train to the end; halving: successive halving; pbt: population-based training."""
  members: int = 8
  """Configurations sampled (the population), trained together in one program."""
  lr_range: str = "1e-4,1e-2"
  """Learning-rate bounds 'lo,hi' (log-uniform; lo > 0)."""
  dropout_range: str = "0,0.7"
  """Dropout-rate bounds 'lo,hi' (uniform, in [0, 1))."""
  weight_decay_range: str = "0,0.1"
  """Weight-decay bounds 'lo,hi' (uniform; nonzero needs --optimizer adamw or nesterov)."""
  l2_range: str = "0,0.002"
  """TFLearn L2 coefficient bounds 'lo,hi' (uniform)."""
  eta: int = 2
  """Halving: keep the top 1/eta at each rung."""
  rung_epochs: int = 2
  """Halving: epochs between rungs."""
  pbt_every: int = 2
  """PBT: epochs between exploit/explore steps."""
  pbt_fraction: float = 0.25
  """PBT: the bottom fraction copies from the top fraction (at most half)."""
  resample_probability: float = 0.25
  """PBT explore: chance to resample a hyperparameter instead of perturbing it x0.8/x1.2."""
  replay: str = ""
  """A search's results.json: retrain its winner's hyperparameter schedule (per epoch, through
  the weights it inherited) as one plain run from scratch, beside the winner (in
  <its folder>/replay unless --workdir); other settings come from that file (--seed: start
  from another seed)."""

  def __post_init__(self):
    super().__post_init__()
    if self.method not in METHODS:
      raise ConfigError("method", f"must be one of {', '.join(METHODS)}, got {self.method!r}")
    space = self.space  # each range parses and lies within its field's allowed values
    for f, (lo, hi) in zip(("lr_range", "dropout_range", "weight_decay_range", "l2_range"),
                           (getattr(space, k) for k in SAMPLED)):
      if not lo <= hi:
        raise ConfigError(f, f"needs lo <= hi, got {getattr(self, f)!r}")
    if space.learning_rate[0] <= 0:
      raise ConfigError("lr_range", f"needs lo > 0 (log-uniform), got {self.lr_range!r}")
    if space.dropout[0] < 0 or space.dropout[1] >= 1:
      raise ConfigError("dropout_range", f"must lie in [0, 1), got {self.dropout_range!r}")
    for f, k in (("weight_decay_range", "weight_decay"), ("l2_range", "l2")):
      if getattr(space, k)[0] < 0:
        raise ConfigError(f, f"must be >= 0, got {getattr(self, f)!r}")
    if space.weight_decay[1] > 0 and self.optimizer not in ("adamw", "nesterov"):
      default = next(f.default for f in dataclasses.fields(self) if f.name == "weight_decay_range")
      if self.weight_decay_range == default:  # name the flag the user gave, not the default
        raise ConfigError("optimizer", f"must be adamw or nesterov while the search samples "
                          f"weight decay (--weight-decay-range, default {default}); for "
                          f"{self.optimizer}, add --weight-decay-range 0,0")
      raise ConfigError("weight_decay_range", "needs --optimizer adamw or nesterov (or '0,0')")
    for f, ok, allowed in (("members", self.members >= 1, "an integer >= 1"),
                           ("eta", self.eta >= 2, "an integer >= 2"),
                           ("rung_epochs", self.rung_epochs >= 1, "an integer >= 1"),
                           ("pbt_every", self.pbt_every >= 1, "an integer >= 1"),
                           ("pbt_fraction", 0 < self.pbt_fraction <= 0.5, "in (0, 0.5]"),
                           ("resample_probability", 0 <= self.resample_probability <= 1,
                            "in [0, 1]")):
      if not ok:
        raise ConfigError(f, f"must be {allowed}, got {getattr(self, f)!r}")
    self.refuse_other_methods_flags()

  def refuse_other_methods_flags(self) -> None:
    """A flag of halving or PBT given to another method would do nothing: refuse it."""
    defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
    for f, method in METHOD_FLAGS.items():
      if self.method != method and getattr(self, f) != defaults[f]:
        raise ConfigError(f, f"applies to --method {method} only (this is {self.method})")

  @property
  def space(self) -> pop.Space:
    return pop.Space(*(_range(self, f) for f in ("lr_range", "dropout_range",
                                                 "weight_decay_range", "l2_range")))


CONFIG = SearchConfig(name="search", dataset="cifar10", net="conv32-pool-conv64-conv64-pool-fc512",
                      optimizer="adamw", epochs=10)
VARIANTS: dict = {}  # sampled: one variant per member, m00, m01, ...


def population(config: SearchConfig) -> dict[str, dict]:
  """The sampled members: name -> Config overrides (float32 values, as trained)."""
  hp = pop.sample(pop.key_for(config.seed, pop.SAMPLE), config.space, config.members)
  hp = {k: np.asarray(v) for k, v in hp.items()}
  width = len(str(config.members - 1))
  return {f"m{j:0{width}d}": {k: float(hp[k][j]) for k in SAMPLED}
          for j in range(config.members)}


# What a search sets itself: a flag for it would be silently ignored, so it is refused.
REFUSED = {
    **{f: f"the search samples it; set its bounds with --{r.replace('_', '-')}"
       for f, r in (("learning_rate", "lr_range"), ("dropout", "dropout_range"),
                    ("weight_decay", "weight_decay_range"), ("l2", "l2_range"))},
    "seeds": "a search samples its population from --seed; repeat the search with other "
             "--seed values instead",
    "variants": "a search's members are sampled; set --members instead"}


def search_block(config: SearchConfig, step: PopulationStep, members: dict[str, dict]):
  """results.json's "search" block, from the trained population."""

  def extra(results: Results) -> dict:
    (g,) = results.groups  # a search is one program
    p = g.progress
    rec = p.population or step.fresh_record()
    names = list(members)
    win = winner(p) if p.alive else None
    rows = []
    for i, name in enumerate(names):
      h = p.histories[i]
      rows.append({"name": name, "initial": members[name], "hparams": rec["hparams"][i],
                   "lineage": rec["lineage"][i], "stopped_at": rec["stopped"][i],
                   "diverged_at": p.diverged[i], "epochs_trained": len(h["epoch"]),
                   "final_val_accuracy": h["val_accuracy"][-1] if h["val_accuracy"] else None})
    block = {"method": config.method, "space": config.space.to_dict(), "members": len(names),
             "member_epochs": member_epochs(p), "eta": config.eta,
             "population": rows, "rungs": rec["rungs"],
             "selected_on": results.json["dataset"]["validation"],
             "test_scored": "once, for the winner only", "winner": None}
    if win is not None:
      test = results.test_accuracy(names[win])
      block["winner"] = {"name": names[win], "val_accuracy": p.histories[win]["val_accuracy"][-1],
                         "test_accuracy": test[0] if test else None,
                         "final_hparams": rec["current"][win],
                         "schedule": ancestry(rec, win, p.histories[win]["epoch"][-1])}
    return {"search": block, "config": dataclasses.asdict(config)}

  return extra


def draw(config: SearchConfig):
  def pictures(results: Results) -> list[str]:
    block = results.json["search"]
    if not block["winner"]:
      return []
    from dl101_jax.host import plots_search

    hs = [v["per_seed"][0] for v in results.json["variants"]]
    plots_search.search(block, hs, os.path.join(config.run_dir, "search.png"))
    plots_search.schedule(block, os.path.join(config.run_dir, "schedule.png"))
    return ["search.png", "schedule.png"]

  return pictures


def _recorded(path: str) -> tuple[dict, dict]:
  """(the search's config, its winner) from a search's results.json; one line if not."""
  try:
    with open(path) as f:
      d = json.load(f)
    winner, recorded = d["search"]["winner"], d["config"]
  except OSError as e:
    raise ConfigError("replay", f"cannot read {path}: {e.strerror}") from None
  except (ValueError, KeyError, TypeError):
    raise ConfigError("replay", f"{path} is not the results.json of experiments.search") \
        from None
  if not winner or not winner.get("schedule"):
    raise ConfigError("replay", f"{path}: that search has no winner to replay")
  return recorded, winner


def replay(config: SearchConfig) -> Results:
  """--replay: the winner's schedule alone, as one plain run. Every member of a search shares
  its seed (initial weights, batches, dropout draws), so on the search's seed the schedule
  retraces the winner's line, up to the float rounding of a program of one member instead
  of M: weights PBT copied are weights this run computes itself. With --seed, the same
  schedule from another start: does it carry over?"""
  given = changed_fields(config, CONFIG)
  why = ("--replay takes every setting from RESULTS_JSON; only --seed, --workdir, --data-dir "
         "and --restart may be given")
  refuse(given - {"replay", "workdir", "data_dir", "restart", "seed"},
         {f.name: why for f in dataclasses.fields(SearchConfig)})
  recorded, winner = _recorded(config.replay)
  schedule = tuple(winner["schedule"])
  first = {k: schedule[0][k] for k in SAMPLED}
  if first["dropout"] == 0 and any(e["dropout"] > 0 for e in schedule):
    raise ConfigError("replay", "the schedule starts without dropout and adds it later: the "
                      "network would be built without dropout layers")
  fields = {f.name for f in dataclasses.fields(Config)}
  base = Config(**{**{k: v for k, v in recorded.items() if k in fields}, **first,
                   "name": "replay", "seeds": 1, "restart": config.restart,
                   "seed": config.seed if "seed" in given else recorded["seed"],
                   "data_dir": config.data_dir or recorded["data_dir"],
                   "workdir": config.workdir or os.path.join(
                       os.path.dirname(os.path.abspath(config.replay)), "replay")})

  def extra(results: Results) -> dict:
    (g,) = results.groups
    v = results.json["variants"][0]
    test = results.test_accuracy("replay")
    return {"replay": {"of": os.path.abspath(config.replay), "winner": winner,
                       "schedule": list(schedule), "used": g.progress.population["used"],
                       "val_accuracy": v["final"]["val_accuracy"],
                       "test_accuracy": test[0] if test else None}}

  results = run_experiment(base, {"replay": {}}, plot=False, extra=extra,
                           between_chunks=ReplayStep(schedule), decide_every=1)
  r = results.json["replay"]
  if results.is_primary:
    print(f"\nReplay of {winner['name']}'s schedule from scratch: val acc "
          f"{r['val_accuracy']:.4f} (the winner: {winner['val_accuracy']:.4f}), test acc "
          f"{r['test_accuracy']:.4f} (the winner: {winner['test_accuracy']:.4f})")
  return results


def run(config: SearchConfig = CONFIG) -> Results:
  if config.replay:
    return replay(config)
  refuse(changed_fields(config, CONFIG), REFUSED)
  config = held_out_validation(config)  # every decision is made there, never on the test split
  members = population(config)
  step = PopulationStep(config.method, config.space, config.seed, config.epochs,
                        tuple(members.values()), eta=config.eta, rung_epochs=config.rung_epochs,
                        pbt_every=config.pbt_every, fraction=config.pbt_fraction,
                        resample_probability=config.resample_probability)
  base = plain_config(config)
  results = run_experiment(base, members, plot=False, extra=search_block(config, step, members),
                           between_chunks=step, decide_every=step.every, draw=draw(config))
  w, block = results.json["search"]["winner"], results.json["search"]
  if results.is_primary and w:
    hp = ", ".join(f"{k} {v:.3g}" for k, v in w["final_hparams"].items())
    print(f"\n{config.method}: {block['members']} members, {block['member_epochs']} member-epochs "
          f"in one program; winner (best final-epoch val acc) {w['name']} ({hp}): val acc "
          f"{w['val_accuracy']:.4f} on {block['selected_on']}; test accuracy "
          f"{w['test_accuracy']:.4f} (scored once)")
  return results


if __name__ == "__main__":
  cli.main(run, CONFIG)
