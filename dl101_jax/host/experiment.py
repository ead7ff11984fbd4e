"""run_experiment(): variants x seeds -> groups -> fit -> results.json, summary, picture.

An experiment is a base `Config` plus named variants, each a dict of
`dataclasses.replace` overrides. Variants that differ only in values (learning
rate, weight decay, L2, dropout, seed) are trained together in one compiled
program; the others (network, batch size) one group after another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from typing import Any, Callable

from dl101_jax.config import Config, ConfigError, check_batch_size, group_key
from dl101_jax.host import console as console_lib
from dl101_jax.host import data as data_lib
from dl101_jax.host import files, report, results_json, seeds_auto, signals
from dl101_jax.host.group import GroupResult, Member, device_data, group_name
from dl101_jax.host.loop import fit
from dl101_jax.host.tb_pages import hparams_columns
from dl101_jax.host.outputs import Results, write_outputs
from dl101_jax.host.parallel import configure_jax, runtime


def select_variants(config: Config, variants: dict[str, dict],
                    opt_in: dict[str, dict] | None = None) -> dict[str, Config]:
  """The variants --variants asks for (by default all of `variants`, none of `opt_in`)."""
  every = {**variants, **(opt_in or {})}
  names = config.variant_names or tuple(variants)
  unknown = [n for n in names if n not in every]
  if unknown:
    raise ConfigError("variants", f"unknown variant {', '.join(unknown)}; allowed: "
                      f"{', '.join(every)}")
  return {n: dataclasses.replace(config, **every[n]) for n in names}


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


def restart(config: Config, members: list[Member], console: console_lib.Console) -> None:
  """--restart: delete the old checkpoints and these runs' TensorBoard logs."""
  wd = config.run_dir
  gone = files.remove_tree(os.path.join(wd, "checkpoints"))
  for m in members:
    gone |= files.remove_tree(os.path.join(wd, m.run_name))
  if gone:
    console.say(f"--restart: deleted the checkpoints and TensorBoard runs in {wd}")


def varied_fields(variants: dict[str, dict]) -> set[str]:
  """The Config fields an experiment's variants set."""
  return {k for overrides in variants.values() for k in overrides}


def changed_fields(config: Any, default: Any) -> set[str]:
  """The fields of `config` that differ from `default` (what a run was given)."""
  return {f.name for f in dataclasses.fields(default)
          if getattr(config, f.name) != getattr(default, f.name)}


def per_variant_refusals(variants: dict[str, dict], experiment: str) -> dict[str, str]:
  """Why each field the variants set is refused as a flag: the variants' own values."""
  def value(v):
    return f"{v:g}" if isinstance(v, float) else f"{v}"

  return {f: f"the {experiment} experiment sets this per variant ("
             + ", ".join(f"{n}={value(o[f])}" for n, o in variants.items() if f in o)
             + "); pick variants with --variants, or try other values with experiments.sweep"
          for f in varied_fields(variants)}


def refuse(given: set[str], refused: dict[str, str]) -> None:
  """The one way a flag is refused: the first given field that `refused` names is a
  ConfigError with its reason and what to do instead, so no value is dropped unsaid.
  Experiments declare their refusals (field -> reason) beside their variants."""
  for f in sorted(given & set(refused)):
    raise ConfigError(f, refused[f])


def plain_config(config: Config) -> Config:
  """The Config inside an experiment's own extension of it (a sweep's, a search's): what
  run_experiment trains with, the extension's own fields left out."""
  return Config(**{f.name: getattr(config, f.name) for f in dataclasses.fields(Config)})


def held_out_validation(config: Config) -> Config:
  """The config, validating on a split held out of the training set: --val-size, or 10%
  of the training set when it is 0. What a search or sweep selects on; never the test split."""
  if config.val_size:
    return config
  return dataclasses.replace(config, val_size=max(1, data_lib.train_size_on_disk(config) // 10))


def run_experiment(config: Config, variants: dict[str, dict], *, plot: bool = True,
                   console: console_lib.Console | None = None,
                   opt_in: dict[str, dict] | None = None, default: Config | None = None,
                   extra: Callable[["Results"], dict] | None = None,
                   between_chunks: Callable | None = None, decide_every: int = 0,
                   draw: Callable[["Results"], list[str]] | None = None,
                   refused: dict[str, str] | None = None) -> Results:
  """Train every selected variant (x seeds) of an experiment; write its outputs once.

  `opt_in` variants run only when --variants names them. With `default` (the
  experiment's CONFIG), a config that changes a field the selected variants set, or
  one that `refused` names (field -> reason), is refused. `extra(results)` may add
  fields to results.json (computed from the trained states) before it is written. `between_chunks` and `decide_every` go to
  each group's `fit` (a search's population step).
  """
  t_start = time.perf_counter()
  selected = select_variants(config, variants, opt_in)
  if default is not None:  # only the variants that run can override a flag
    every = {**variants, **(opt_in or {})}
    refuse(changed_fields(config, default),
           {**per_variant_refusals({n: every[n] for n in selected}, config.name),
            **(refused or {})})
  if config.seeds == "auto":  # every seed a look may train; seeds_auto trains them in batches
    _check_auto(config, selected, extra)
    members = make_members(seeds_auto.batch(selected, 0, config.max_seeds))
  else:
    members = make_members(selected)
  configure_jax(config)
  # The default mesh splits over members when a program trains as many as there are devices.
  largest = max(len(g) for g in make_groups(
      members if config.seeds != "auto" else make_members(seeds_auto.batch(
          selected, 0, seeds_auto.SEEDS_PER_LOOK))))
  rt = runtime(config, largest)
  for vc in selected.values():
    runtime(vc, largest)  # each variant's batch must split over the data axis too
  console = console or console_lib.Console(config.epochs, config.epochs_per_log,
                                      enabled=rt.is_primary)
  with (files.hold_workdir(config.run_dir) if rt.is_primary else contextlib.nullcontext()):
    return _train_and_report(config, variants, selected, members, rt, console, t_start,
                             plot=plot, opt_in=opt_in, extra=extra, between_chunks=between_chunks,
                             decide_every=decide_every, draw=draw)


def _train_and_report(config: Config, variants: dict[str, dict], selected: dict[str, Config],
                      members: list[Member], rt: Any, console: console_lib.Console, t_start: float, *,
                      plot: bool, opt_in: dict[str, dict] | None, extra: Callable | None,
                      between_chunks: Callable | None, decide_every: int,
                      draw: Callable | None) -> Results:
  """run_experiment's work once the workdir is held: load, train each group, write."""
  if config.restart and rt.is_primary:
    restart(config, members, console)
  ds, dev = _load(config, selected, members, rt, console)  # --- Data, once for every group.

  if rt.is_primary:  # the HParams dashboard's columns, for every group of the experiment
    report.write_hparams(config.run_dir, [report.experiment_summary(hparams_columns(members))])
  # --- Train each group; stop between groups if a signal came in.
  def train(batch: dict[str, Config], suffix: str = "") -> list[GroupResult]:
    out = []
    for g in make_groups(make_members(batch)):
      signals.stop_if_pending()  # after loading, and between groups (each ends on a checkpoint)
      out.append(fit(g, ds, dev, rt, group=group_name(g) + suffix, console=console,
                     label_variants=len(selected) > 1, between_chunks=between_chunks,
                     decide_every=decide_every))
    return out

  every = {**variants, **(opt_in or {})}
  variants_json = lambda groups: [results_json.variant_json(name, vc, every[name], groups)
                                  for name, vc in selected.items()]

  def finish(groups: list[GroupResult], auto: dict | None) -> Results:
    """results.json, then the outputs (also after each --seeds auto look that goes on)."""
    signals.phase("finishing")
    out = results_json.run_json(config, ds, rt, groups)
    out["variants"] = variants_json(groups)
    if auto:
      out["seeds_auto"] = auto
    if ds.num_classes > 1 and ds.val_size:
      out.update(results_json.where_it_errs(out, groups, ds, dev))
    results = Results(out, groups, ds, rt.is_primary, dev)
    if extra:
      out.update(extra(results))
    out["process_seconds"] = round(time.perf_counter() - t_start, 3)
    if rt.is_primary:
      write_outputs(results, config, console, plot=plot, draw=draw)
    return results

  if config.seeds != "auto":
    return finish(train(selected), None)
  # Looks of 3 seeds until the claims are decided; the outputs so far after each look.
  judge = lambda groups, record: extra.verdicts({"variants": variants_json(groups),
                                                 "seeds_auto": record})
  groups, auto = seeds_auto.run(config, selected, train, judge, console.say, extra.alpha,
                                after_look=finish)
  return finish(groups, auto)


def _check_auto(config: Config, selected: dict[str, Config], extra: Any) -> None:
  """--seeds auto needs claims to decide: an experiment that judges some on these variants."""
  if not hasattr(extra, "verdicts"):
    raise ConfigError("seeds", f"a number for the {config.name} experiment: auto adds seeds "
                      "until the claims an experiment judges are decided (layers, dropout, "
                      "regularization, batch_size, learning_rate)")
  if not [c for c in extra.claims(selected) if c.samples == "seeds"]:
    raise ConfigError("seeds", f"a number with --variants {config.variants}: auto needs both "
                      f"sides of one of the {config.name} experiment's claims over seeds")


def _load(config: Config, selected: dict[str, Config], members: list[Member], rt: Any,
          console: console_lib.Console) -> tuple[data_lib.Dataset, Any]:
  """The dataset (each variant's batch checked against it) and its copy on the devices."""
  t0 = time.perf_counter()
  console.say(f"{config.name}: loading {config.dataset}...")
  ds = data_lib.load(config)
  for name, vc in selected.items():
    held_out = ds.val_size if ds.test_split is not None else 0
    check_batch_size(vc, ds.train_size + held_out, variant=name)
  dev = device_data(ds, data_lib.Normalizer.fit(ds.x_train, config.norm), rt)
  console.say(f"{config.name}: {ds.train_size} train / {ds.val_size} test examples on "
              f"{rt.num_devices} {rt.platform} device(s) in {time.perf_counter() - t0:.1f} s; "
              + ("up to " if config.seeds == "auto" else "")
              + f"{len(members)} model(s) in {len(make_groups(members))} program(s)"
              + (f", {seeds_auto.SEEDS_PER_LOOK} seeds a look" if config.seeds == "auto" else ""))
  return ds, dev
