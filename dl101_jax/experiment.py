"""run_experiment(): variants x seeds -> groups -> fit -> results.json, summary, picture.

An experiment is a base `Config` plus named variants, each a dict of
`dataclasses.replace` overrides. Variants that differ only in values (learning
rate, weight decay, L2, dropout, seed) are trained together in one compiled
program; the others (network, batch size) one group after another.
"""

from __future__ import annotations

import dataclasses
import os

from dl101_jax import checkpoint as ckpt_lib
from dl101_jax import data as data_lib
from dl101_jax import report
from dl101_jax.config import Config, ConfigError, group_key
from dl101_jax.loop import GroupResult, Member, device_data, fit
from dl101_jax.parallel import configure_jax, runtime


@dataclasses.dataclass
class Results:
  """What run(config) returns: the results.json content and the trained groups."""

  json: dict
  groups: list[GroupResult]
  dataset: data_lib.Dataset

  def __getitem__(self, key):
    return self.json[key]


def select_variants(config: Config, variants: dict[str, dict]) -> dict[str, Config]:
  """The variants --variants asks for (all by default), as full configs."""
  names = config.variant_names or tuple(variants)
  unknown = [n for n in names if n not in variants]
  if unknown:
    raise ConfigError("variants", f"unknown variant {', '.join(unknown)}; allowed: "
                      f"{', '.join(variants)}")
  return {n: dataclasses.replace(config, **variants[n]) for n in names}


def make_members(selected: dict[str, Config]) -> list[Member]:
  out = []
  for name, vc in selected.items():
    for s in range(vc.seeds):
      c = dataclasses.replace(vc, seed=vc.seed + s)
      out.append(Member(name, c, name if vc.seeds == 1 else f"{name}-seed{c.seed}"))
  return out


def make_groups(members: list[Member]) -> list[list[Member]]:
  """Members with equal group keys, in first-appearance order."""
  groups: dict[tuple, list[Member]] = {}
  for m in members:
    groups.setdefault(group_key(m.config), []).append(m)
  return list(groups.values())


def group_name(members: list[Member]) -> str:
  return "+".join(dict.fromkeys(m.variant for m in members))


def restart(config: Config, members: list[Member], console: report.Console) -> None:
  """--restart: delete the old checkpoints and these runs' TensorBoard logs."""
  wd = config.run_dir
  gone = ckpt_lib.clear(os.path.join(wd, "checkpoints"))
  for m in members:
    gone |= ckpt_lib.clear(os.path.join(wd, m.run_name))
  if gone:
    console.say(f"--restart: deleted the checkpoints and TensorBoard runs in {wd}")


def run_experiment(config: Config, variants: dict[str, dict], *, plot: bool = True,
                   console: report.Console | None = None) -> Results:
  """Train every selected variant (x seeds) of an experiment; write its outputs."""
  selected = select_variants(config, variants)
  members = make_members(selected)
  configure_jax(config)
  rt = runtime(config)
  for vc in selected.values():
    runtime(vc)  # each variant's batch must split over the devices too
  console = console or report.Console(config.epochs, config.epochs_per_log,
                                      enabled=rt.is_primary)
  if config.restart and rt.is_primary:
    restart(config, members, console)
  ds = data_lib.load(config)
  for name, vc in selected.items():
    if vc.batch_size > ds.train_size:
      raise ConfigError("batch_size", f"variant {name}: must be at most the training-set size "
                        f"({ds.train_size}), got {vc.batch_size}")
  normalizer = data_lib.Normalizer.fit(ds.x_train, config.norm)
  dev = device_data(ds, normalizer, rt)
  groups = []
  for g in make_groups(members):
    groups.append(fit(g, ds, dev, rt, group=group_name(g), console=console))

  out = {
      "experiment": config.name,
      "dataset": {"name": ds.name, "train_size": ds.train_size, "test_size": ds.test_size},
      "devices": rt.num_devices, "processes": rt.processes, "platform": rt.platform,
      "config": config.to_dict(),
      "variants": [],
  }
  for name in selected:
    hs, div, wall, comp = [], [], 0.0, 0.0
    for g in groups:
      for i, m in enumerate(g.members):
        if m.variant == name:
          hs.append(g.histories[i]), div.append(g.diverged[i])
          # Members of one group share its wall time (training, compile excluded).
          wall, comp = g.wall_seconds, g.compile_seconds
    v = report.variant_result(name, hs, div, wall)
    v["compile_seconds"] = round(comp, 3)
    out["variants"].append(v)
  results = Results(out, groups, ds)
  if rt.is_primary:
    write_outputs(results, config, console, plot=plot)
  return results


def write_outputs(results: Results, config: Config, console: report.Console, *,
                  plot: bool = True) -> None:
  wd = config.run_dir
  report.write_json(os.path.join(wd, "results.json"), results.json)
  table = report.summary_table(results.json)
  d = results.json["dataset"]
  header = (f"# {config.name}\n\n{d['name']}: {d['train_size']} train / {d['test_size']} test "
            f"images, {config.epochs} epochs, {config.seeds} seed(s), "
            f"{results.json['devices']} {results.json['platform']} device(s)\n\n")
  report.write_text(os.path.join(wd, "summary.md"), header + table + "\n")
  if plot:
    from dl101_jax import plots

    plots.comparison(results.json, os.path.join(wd, "comparison.png"))
  console.say("\n" + table)
