"""All five CIFAR-10 experiments with the same flags, then runs/REPORT.md with a verdict per claim.

    python -m experiments --dataset digits --epochs 2          # offline, about a minute
    python -m experiments --data-dir DATA_DIR --epochs 20 --seeds 3
    python -m experiments --seeds 3                             # the tutorial: 5 x 50 epochs, hours on a CPU

Every flag given is applied to every experiment, as given (--workdir W puts each
in W/<experiment>); the rest come from each experiment's own CONFIG. A flag that
one experiment varies (--dropout, --batch-size, --learning-rate, --l2,
--weight-decay, --optimizer, --net) is refused with the experiment's name, and
so are --name and --variants, which differ per experiment.
"""

import dataclasses
import os

from dl101_jax.host import cli
from dl101_jax import verdict
from dl101_jax.config import Config
from dl101_jax.host.experiment import refuse, varied_fields
from dl101_jax.host.files import write_text
from experiments import batch_size, dropout, layers, learning_rate, regularization
from experiments.claims import family, notes

EXPERIMENTS = (layers, dropout, regularization, batch_size, learning_rate)
# What `python -m experiments` parses: the shared recipe. Per-experiment fields
# (name, net, dropout) come from each module's CONFIG unless given as flags.
CONFIG = Config(name="experiments", dataset="cifar10")
VARIANTS: dict = {}


PER_EXPERIMENT = ("name", "variants")


def configs(config: Config, given: set[str] | None = None) -> list[Config]:
  """Each experiment's CONFIG with the fields this run sets.

  `given`: the fields set on the command line (from Python: those that differ
  from CONFIG). Each is applied to every experiment, or refused.
  """
  if given is None:
    given = {f.name for f in dataclasses.fields(Config)
             if getattr(config, f.name) != getattr(CONFIG, f.name)}
  given = set(given) - {"workdir"}
  refuse(given, {f: "differs per experiment; run one experiment with "
                    "python -m experiments.<name> to set it" for f in PER_EXPERIMENT})
  for m in EXPERIMENTS:
    name = m.CONFIG.name
    refuse(given, {f: f"the {name} experiment sets this per variant; leave it out here, or "
                      f"run python -m experiments.{name}" for f in varied_fields(m.VARIANTS)})
  root = config.workdir or "runs"
  changed = {f: getattr(config, f) for f in given}
  return [dataclasses.replace(m.CONFIG, **changed, workdir=os.path.join(root, m.CONFIG.name))
          for m in EXPERIMENTS]


def run(config: Config = CONFIG, given: set[str] | None = None) -> dict:
  cfgs = configs(config, given)  # every refusal before anything trains
  results = {}
  for module, cfg in zip(EXPERIMENTS, cfgs):
    print(f"\n=== {cfg.name} ===")
    results[module.CONFIG.name] = module.run(cfg).json
  root = config.workdir or "runs"
  write_text(os.path.join(root, "REPORT.md"), report_md(results))
  print(f"\nWrote {os.path.join(root, 'REPORT.md')}")
  return results


def verdicts(results: dict[str, dict]) -> list:
  """A verdict for each claim whose experiment and variants are in `results`, judged as one
  family (Holm)."""
  return verdict.judge_all(family(results))  # Holm over every claim the report judges


def seeds_md(results: dict[str, dict]) -> str:
  """'3 seeds per variant', or each experiment's count where they differ (--seeds auto)."""
  used = {name: (r.get("seeds_auto") or {}).get("seeds_used") or r["config"]["seeds"]
          for name, r in results.items()}
  auto = {name for name, r in results.items() if r.get("seeds_auto")}
  if len(set(used.values())) == 1 and not auto:
    n = next(iter(used.values()))
    return f"{n} seed{'s' if n != 1 else ''} per variant"
  return "seeds per variant: " + ", ".join(
      f"{name} {n}" + (" (--seeds auto)" if name in auto else "") for name, n in used.items())


def report_md(results: dict[str, dict]) -> str:
  from dl101_jax.host.report import summary_table

  first = next(iter(results.values()))
  d, c = first["dataset"], first["config"]
  train_s = sum(g["wall_seconds"] for r in results.values() for g in r.get("groups", []))
  vs = verdicts(results)
  out = ["# dl101_jax: the tutorial's five experiments", "",
         f"{d['name']}: {d['train_size']} train / {d['test_size']} test images (validation on "
         f"the test split, as in the tutorial), {c['epochs']} epochs, {seeds_md(results)}, "
         f"{first['devices']} "
         f"{first['platform']} device(s); {train_s / 60:.1f} min of training in all.", "",
         "## The tutorial's claims, judged", "",
         f"Rule: {verdict.RULE}. Final-epoch values, one sample per seed (3b: per epoch).", "",
         verdict.table(vs), *notes(vs, results), ""]
  for name, r in results.items():
    out += [f"## {name}", ""]
    out += [f"- ({v.claim.id}) {v.claim.text}: **{v.verdict}**" for v in vs
            if v.claim.experiment == name]
    out += ["", summary_table(r), "", f"![{name}]({name}/comparison.png)", ""]
  return "\n".join(out)


def main(config: Config = CONFIG) -> dict:
  """The command line: what was given there is what every experiment gets."""
  return run(config, cli.given_fields())


if __name__ == "__main__":
  cli.main(main, CONFIG)
