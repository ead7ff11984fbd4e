"""All five CIFAR-10 experiments with the same flags, then runs/REPORT.md.

    python -m experiments                          # the tutorial: 5 x 50 epochs
    python -m experiments --dataset digits --epochs 2
    python -m experiments --data-dir ../shared/data/cifar10-subset --epochs 3

Flags apply to every experiment (--workdir W puts each in W/<experiment>);
each experiment keeps its own network and variants.
"""

import dataclasses
import os

from dl101_jax import cli
from dl101_jax.config import Config
from dl101_jax.report import write_text
from experiments import batch_size, dropout, layers, learning_rate, regularization

EXPERIMENTS = (layers, dropout, regularization, batch_size, learning_rate)
# What `python -m experiments` parses: the shared recipe. Per-experiment fields
# (name, net, dropout) come from each module's CONFIG unless given as flags.
CONFIG = Config(name="experiments", dataset="cifar10")
VARIANTS: dict = {}
CLAIMS = {
    "layers": "(0) three layer sets are ~15% more accurate than one",
    "dropout": "(1) dropout improves validation accuracy",
    "regularization": "(2) L2 improves validation accuracy",
    "batch_size": "(3) a large batch needs fewer steps, each slower",
    "learning_rate": "(4) 1e-2 does not converge well",
}


def configs(config: Config) -> list[Config]:
  """Each experiment's CONFIG with the fields this run's flags changed."""
  changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(Config)
             if getattr(config, f.name) != getattr(CONFIG, f.name) and f.name != "workdir"}
  root = config.workdir or "runs"
  return [dataclasses.replace(m.CONFIG, **changed, workdir=os.path.join(root, m.CONFIG.name))
          for m in EXPERIMENTS]


def run(config: Config = CONFIG) -> dict:
  results = {}
  for module, cfg in zip(EXPERIMENTS, configs(config)):
    print(f"\n=== {cfg.name} ===")
    results[cfg.name] = module.run(cfg).json
  root = config.workdir or "runs"
  write_text(os.path.join(root, "REPORT.md"), report_md(results))
  print(f"\nWrote {os.path.join(root, 'REPORT.md')}")
  return results


def report_md(results: dict) -> str:
  from dl101_jax.report import summary_table

  first = next(iter(results.values()))
  d, c = first["dataset"], first["config"]
  out = ["# dl101_jax: the tutorial's five experiments", "",
         f"{d['name']}: {d['train_size']} train / {d['test_size']} test images, "
         f"{c['epochs']} epochs, {c['seeds']} seed(s) per variant, {first['devices']} "
         f"{first['platform']} device(s).", ""]
  for name, r in results.items():
    out += [f"## {name}", "", f"Tutorial claim: {CLAIMS[name]}.", "", summary_table(r), "",
            f"![{name}]({name}/comparison.png)", ""]
  return "\n".join(out)


if __name__ == "__main__":
  cli.main(run, CONFIG)
