"""Grid, successive halving and PBT at equal compute, each repeated over search seeds.

    python -m experiments.search_compare --dataset digits --epochs 6 --members 4 --search-seeds 2
    python -m experiments.search_compare --data-dir DATA_DIR   # the README's table, ~1 h of 2-core CPU
    python -m experiments.search_compare --data-dir DATA_DIR --members 32 --epochs 30 \\
        --net conv32-pool-conv64-conv64-pool-fc512 --search-seeds 5   # a GPU

Each method gets the same budget in member-epochs: --members x --epochs. Grid and
PBT train --members for --epochs; halving starts with as many members as that
budget allows for its rungs (20 -> 10 -> 5 -> 3 -> 2 for 8 x 10, eta 2, rungs of 2
epochs). Search seed s samples the population of every method from --seed + s, so
the methods differ only in what they do with it. Every choice is made on the held-out
split; each winner's test accuracy is scored once. Writes compare.md and
compare.json (and each search's own outputs in <workdir>/<method>-seed<s>/).

Cost, 2-core CPU: the defaults on the 10k subset, ~46 min for the nine searches.
Results: docs/results/search_compare.*.
"""

import dataclasses
import math
import os

import numpy as np

from dl101_jax import verdict
from dl101_jax.host import cli
from dl101_jax.config import ConfigError
from dl101_jax.host.experiment import changed_fields, refuse
from dl101_jax.host.files import write_json, write_text
from dl101_jax.tuning import METHODS
from experiments import search
from experiments.search import SearchConfig


@dataclasses.dataclass(frozen=True)
class CompareConfig(SearchConfig):
  """A comparison: the search config (all three methods run; --method is refused) and repeats."""

  search_seeds: int = 3
  """Searches per method, from --seed, --seed + 1, ..."""

  def refuse_other_methods_flags(self) -> None:
    """All three methods run here: each takes its own flags (plan() gives each its own)."""

  def __post_init__(self):
    super().__post_init__()
    if self.search_seeds < 1:
      raise ConfigError("search_seeds", f"must be an integer >= 1, got {self.search_seeds!r}")


CONFIG = CompareConfig(name="search_compare", dataset="cifar10", net="conv16-pool-conv32-pool-fc128",
                       optimizer="adamw", epochs=10, members=8)
VARIANTS: dict = {}


def halving_cost(n: int, epochs: int, rung: int, eta: int) -> int:
  """Member-epochs successive halving spends starting from n members."""
  total, e = 0, 0
  while e < epochs:
    span = min(rung, epochs - e)
    total += n * span
    e += span
    n = max(1, math.ceil(n / eta)) if e < epochs and n > 1 else n
  return total


def halving_members(budget: int, epochs: int, rung: int, eta: int) -> int:
  """The most members halving can start with inside `budget` member-epochs."""
  n = 1
  while halving_cost(n + 1, epochs, rung, eta) <= budget:
    n += 1
  return n


def plan(config: CompareConfig) -> list[SearchConfig]:
  budget = config.members * config.epochs
  n_halving = halving_members(budget, config.epochs, config.rung_epochs, config.eta)
  base = {f.name: getattr(config, f.name) for f in dataclasses.fields(SearchConfig)}
  root = config.run_dir
  out = []
  defaults = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
  for method in METHODS:
    others = {f: defaults[f] for f, m in search.METHOD_FLAGS.items() if m != method}
    for s in range(config.search_seeds):
      out.append(SearchConfig(**dict(
          base, **others, method=method, seed=config.seed + s,
          name=f"{method}-seed{config.seed + s}",
          members=n_halving if method == "halving" else config.members,
          workdir=os.path.join(root, f"{method}-seed{config.seed + s}"))))
  return out


def table(rows: list[dict]) -> str:
  lines = ["| method | members | member-epochs | best val acc (mean ± std) | winner's test acc "
           "(mean ± std) | wall s (all seeds) |", "|---|---|---|---|---|---|"]
  for method in dict.fromkeys(r["method"] for r in rows):
    rs = [r for r in rows if r["method"] == method]
    val = np.array([r["val_accuracy"] for r in rs])
    test = np.array([r["test_accuracy"] for r in rs])
    lines.append(f"| {method} | {rs[0]['members']} | {rs[0]['member_epochs']} | "
                 f"{val.mean():.4f} ± {val.std():.4f} | {test.mean():.4f} ± {test.std():.4f} | "
                 f"{sum(r['wall_seconds'] for r in rs):.1f} |")
  return "\n".join(lines)


def versus_grid(rows: list[dict], metric: str = "test_accuracy") -> list[dict]:
  """Each other method's winner against grid's on `metric`, by the project's rule: paired
  by search seed (method m's seed s and grid's seed s search the same data split), with
  Holm over the comparisons made."""
  keyed = {}
  for r in rows:
    if not math.isnan(r[metric]):
      keyed.setdefault(r["method"], {})[r["seed"]] = r[metric]
  grid = keyed.get("grid", {})
  out = []
  for method, mine in keyed.items():
    if method != "grid" and grid:
      test, low, high, p = verdict.compare(mine, grid)
      out.append({"method": method, "metric": metric,
                  "difference": float(np.mean(list(mine.values())) -
                                      np.mean(list(grid.values()))),
                  "ci95": [low, high], "test": test, "p": p, "n": [len(mine), len(grid)]})
  for o, ph in zip(out, verdict.holm([o["p"] for o in out])):
    o["verdict"] = verdict.decide(*o["ci95"], ph)
    none = lambda x: None if math.isnan(x) else x  # noqa: E731
    o.update(p=none(o["p"]), p_holm=none(ph), ci95=[none(x) for x in o["ci95"]])
  return out


def versus_table(comparisons: list[dict]) -> str:
  lines = ["| winner's test acc | difference [95% CI] | test (Holm p) | verdict |",
           "|---|---|---|---|"]
  num = lambda x: "–" if x is None else f"{x:+.4f}"  # noqa: E731
  for c in comparisons:
    p = "–" if c["p_holm"] is None else f"{c['p_holm']:.2g}"
    lines.append(f"| {c['method']} − grid | {num(c['difference'])} [{num(c['ci95'][0])}, "
                 f"{num(c['ci95'][1])}] | {c['test']} ({p}) | {c['verdict']} |")
  return "\n".join(lines)


VERSUS = "\nAgainst grid, by the project's rule"


def versus_text(comparisons: list[dict]) -> str:
  """compare.md's last section."""
  return f"{VERSUS} ({verdict.RULE}):\n\n{versus_table(comparisons)}\n"


def run(config: CompareConfig = CONFIG) -> dict:
  refuse(changed_fields(config, CONFIG), search.REFUSED)
  runs = plan(config)  # every config validated before anything trains
  rows = []
  for c in runs:
    print(f"\n=== {c.name}: {c.members} members x {c.epochs} epochs ===")
    r = search.run(c).json
    s, w = r["search"], r["search"]["winner"] or {}
    rows.append({"method": c.method, "seed": c.seed, "members": s["members"],
                 "member_epochs": s["member_epochs"], "winner": w.get("name"),
                 "val_accuracy": w.get("val_accuracy", float("nan")),
                 "test_accuracy": w.get("test_accuracy", float("nan")),
                 "final_hparams": w.get("final_hparams"),
                 "wall_seconds": sum(g["wall_seconds"] for g in r["groups"])})
  d = r["dataset"]
  text = (f"# Hyperparameter search at equal compute\n\n{d['name']}: {d['train_size']} train "
          f"(selection on {d['validation']}), winner scored once on {d['test_size']} test "
          f"images; net {config.net}, {config.epochs} epochs, budget {config.members} x "
          f"{config.epochs} member-epochs, {config.search_seeds} search seeds (mean ± std over "
          f"them).\n\n{table(rows)}\n")
  versus = versus_grid(rows)
  text += versus_text(versus)
  wd = config.run_dir
  write_json(os.path.join(wd, "compare.json"), {"config": dataclasses.asdict(config),
                                                "runs": rows, "versus_grid": versus})
  write_text(os.path.join(wd, "compare.md"), text)
  print("\n" + text + f"\nWrote {wd}/compare.md and compare.json")
  return {"runs": rows, "table": text}


def main(config: CompareConfig = CONFIG) -> dict:
  if "method" in cli.given_fields():
    raise ConfigError("method", "search_compare runs all three methods; leave it out")
  return run(config)


if __name__ == "__main__":
  cli.main(main, CONFIG)
