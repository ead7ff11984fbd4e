"""One trained member as a standalone model: its params, network spec and input normalization.

    python -m dl101_jax.export --workdir runs/dropout --variant dropout
    python -m dl101_jax.export --workdir runs/dropout --variant no_dropout --seed 1 --best --out my_model

Reads the newest checkpoint of the run group that holds the variant (or, with
--best, the kept params of that member's best epoch by validation accuracy),
and writes an orbax checkpoint of the member's model variables (its params, and
BatchNorm's running statistics when the net has them) plus `model.json` (what it
is, how its inputs were normalized, its class names), by default under
<workdir>/export/<variant>-seed<seed>/. `dl101_jax.predict` loads it without any
of the training machinery. Works mid-run and after a resume: any checkpoint will do.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from dl101_jax.host.checkpoint import Checkpointer
from dl101_jax.config import ConfigError

FORMAT = "dl101_jax.export/2"  # 2: variables/ ({"params", "batch_stats"}); 1: params/ only


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """Which member to export, from which run."""

  workdir: str = ""
  """The experiment's workdir (holds checkpoints/), e.g. runs/dropout."""
  variant: str = ""
  """The variant to export, e.g. dropout."""
  seed: int = -1
  """Its seed; -1 takes the variant's first seed."""
  best: bool = False
  """Export the member's best epoch by validation accuracy instead of its newest."""
  out: str = ""
  """Output directory (default: <workdir>/export/<variant>-seed<seed>)."""


def _meta(ckpt: Checkpointer, step: int) -> dict:
  import orbax.checkpoint as ocp

  return ckpt.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def _state(ckpt: Checkpointer, step: int):
  import orbax.checkpoint as ocp

  return ckpt.mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))["state"]


def find_member(workdir: str, variant: str, seed: int) -> tuple[str, int, dict]:
  """(group checkpoint dir, member index, newest meta) of variant at seed (-1: its first)."""
  root = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(root):
    raise ConfigError("workdir", f"no checkpoints in {root}; train with --checkpoint-every "
                      f"N > 0 first")
  seen = []
  for group in sorted(os.listdir(root)):
    gdir = os.path.join(root, group)
    if "." in group or not os.path.isdir(gdir):  # <group>.best, <group>.corrupt
      continue
    ckpt = Checkpointer(gdir, 1)
    steps = ckpt.steps()
    if not steps:
      continue
    meta = _meta(ckpt, steps[-1])
    if "variants" not in meta or "data" not in meta:
      raise ConfigError("workdir", f"the checkpoints in {gdir} predate exporting; re-run "
                        f"the experiment with this version to write one that can be exported")
    mine = [(c["seed"], i) for i, (v, c) in enumerate(zip(meta["variants"], meta["configs"]))
            if v == variant]
    seen += [f"{v} (seed {c['seed']})" for v, c in zip(meta["variants"], meta["configs"])]
    if mine:
      seeds = dict(mine)
      s = min(seeds) if seed < 0 else seed
      if s not in seeds:
        raise ConfigError("seed", f"variant {variant} has seeds {sorted(seeds)}, got {seed}")
      return gdir, seeds[s], meta
  raise ConfigError("variant", f"no variant {variant!r} in {root}; there: {', '.join(seen)}")


def export(cfg: ExportConfig) -> str:
  """Write the member; returns the output directory."""
  import jax
  import orbax.checkpoint as ocp

  from dl101_jax.core import member_state

  if not cfg.workdir or not cfg.variant:
    raise ConfigError("workdir" if not cfg.workdir else "variant", "is required")
  gdir, i, meta = find_member(cfg.workdir, cfg.variant, cfg.seed)
  config = meta["configs"][i]
  source, epoch = Checkpointer(gdir, 1), meta["epoch"]
  if cfg.best:
    source = Checkpointer(gdir + ".best", 2)
    if not source.steps():
      raise ConfigError("best", f"no best-epoch params were kept in {gdir}.best")
    meta = _meta(source, source.steps()[-1])
    epoch = meta["best_epoch"][i]
  if i not in meta["alive"] or epoch is None:
    raise ConfigError("variant", f"{cfg.variant} seed {config['seed']} diverged; nothing to "
                      f"export")
  state = _state(source, source.steps()[-1])
  # A training checkpoint holds the TrainState; a best one the model variables (or, written
  # before BatchNorm, the params alone).
  if "params" not in state:
    state = {"params": state}
  variables_all = member_state.model_variables(state)  # what training evaluated
  j = meta["alive"].index(i)
  variables = jax.tree.map(lambda a: np.asarray(a)[j], variables_all)
  out = os.path.abspath(cfg.out or os.path.join(cfg.workdir, "export",
                                                f"{cfg.variant}-seed{config['seed']}"))
  os.makedirs(out, exist_ok=True)
  with ocp.StandardCheckpointer() as saver:
    saver.save(os.path.join(out, "variables"), variables, force=True)
  spec = {"format": FORMAT, "variant": cfg.variant, "seed": config["seed"], "epoch": epoch,
          "best": cfg.best, "source": gdir, "config": config, "data": meta["data"],
          "parameters": int(sum(np.asarray(a).size
                                for a in jax.tree.leaves(variables["params"])))}
  from dl101_jax.host.files import write_json

  write_json(os.path.join(out, "model.json"), spec)
  return out


def main(args: list[str] | None = None) -> None:
  from dl101_jax.host import cli

  cfg = cli.parse(ExportConfig(), args, prog="python -m dl101_jax.export",
                  description=__doc__.split("\n\n")[0])
  try:
    out = export(cfg)
  except ConfigError as e:
    cli.fail(str(e), 2)
  spec = json.load(open(os.path.join(out, "model.json")))
  print(f"exported {spec['variant']} seed {spec['seed']} ({'best ' if spec['best'] else ''}"
        f"epoch {spec['epoch']}, {spec['parameters']:,} parameters) to {out}")


if __name__ == "__main__":
  main()
