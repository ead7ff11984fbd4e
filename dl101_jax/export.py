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

A damaged newest checkpoint (emptied, truncated, meta that is not JSON or lacks keys)
is skipped for the newest intact one, saying which; with none intact it is one line.
`manifest.json` (each file's size and sha256) is written last, so an export is whole
or refused by predict with what is missing or changed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys
from typing import Any

import numpy as np

from dl101_jax.host.checkpoint import Checkpointer
from dl101_jax.config import ConfigError
from dl101_jax.host.files import EXPORT_FORMAT as FORMAT


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


META_KEYS = ("variants", "configs", "data", "epoch", "alive")


class _MetaLacks(ValueError):
  pass


def _meta(ckpt: Checkpointer, step: int) -> dict:
  import orbax.checkpoint as ocp

  return ckpt.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def _state(ckpt: Checkpointer, step: int):
  return ckpt.state_on_host(step)  # on any machine, whatever mesh trained it


def newest_readable(ckpt: Checkpointer, keys: tuple[str, ...], *, state: bool) -> tuple:
  """(step, meta, state or None, why) of the newest checkpoint whose meta has `keys` and
  whose state reads back; `why` names each newer one skipped and why. Once one is found
  the skipped are said on stderr; with none, step, meta and state are None and the caller
  refuses in one line. Read-only: unlike a resumed run, export moves nothing aside."""
  skipped: list[tuple[int, str]] = []
  for step in reversed(ckpt.steps()):
    try:
      meta = _meta(ckpt, step)
      missing = [k for k in keys if not isinstance(meta, dict) or k not in meta]
      if missing:
        raise _MetaLacks(f"its meta lacks {', '.join(missing)}")
      restored = _state(ckpt, step) if state else None
    except Exception as e:  # truncated, emptied, not JSON: orbax and json raise many types
      skipped.append((step, str(e) if isinstance(e, _MetaLacks) else type(e).__name__))
      continue
    for bad, why in skipped:
      print(f"warning: {ckpt.directory}/{bad} is unreadable ({why}); trying an older "
            f"checkpoint", file=sys.stderr)
    return step, meta, restored, ""
  return None, None, None, "; ".join(f"epoch {bad}: {why}" for bad, why in skipped)


def find_member(workdir: str, variant: str, seed: int) -> tuple[str, int, dict]:
  """(group checkpoint dir, member index, newest readable meta) of variant at seed (-1:
  its first)."""
  root = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(root):
    raise ConfigError("workdir", f"no checkpoints in {root}; train with --checkpoint-every "
                      f"N > 0 first")
  seen = []
  for group in sorted(os.listdir(root)):
    gdir = os.path.join(root, group)
    if "." in group or not os.path.isdir(gdir):  # <group>.corrupt
      continue
    ckpt = Checkpointer(gdir, 1)
    if not ckpt.steps():
      continue
    step, meta, _, why = newest_readable(ckpt, META_KEYS, state=False)
    if meta is None:
      raise ConfigError("workdir", f"no readable checkpoint in {gdir} ({why}); re-run the "
                        f"experiment to write new ones")
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


def _source(cfg: "ExportConfig", gdir: str, i: int, seed: int) -> tuple[int, dict, Any]:
  """(epoch, meta, model variables of every alive member) to export from the newest readable
  checkpoint holding the member: the weights it evaluates, or with --best those of its kept
  best epoch (held in its state)."""
  from dl101_jax.core import member_state

  step, meta, state, why = newest_readable(Checkpointer(gdir, 1), META_KEYS, state=True)
  if meta is None:
    raise ConfigError("workdir", f"no readable checkpoint in {gdir} ({why})")
  if i not in meta["alive"]:
    raise ConfigError("variant", f"{cfg.variant} seed {seed} diverged; nothing to export")
  if not cfg.best:
    return meta["epoch"], meta, member_state.model_variables(state)
  if "best_epoch" not in state:
    raise ConfigError("best", f"the checkpoint in {gdir} predates kept best epochs; export "
                      f"the newest epoch (without --best), or train again to keep one")
  epoch = int(np.asarray(state["best_epoch"])[meta["alive"].index(i)])
  if not epoch:
    raise ConfigError("best", f"{cfg.variant} seed {seed} has no best epoch kept (its run "
                      f"validates on nothing); export the newest epoch (without --best)")
  return epoch, meta, state["best"]


def _out_dir(cfg: "ExportConfig", seed: int) -> str:
  out = os.path.abspath(cfg.out or os.path.join(cfg.workdir, "export",
                                                f"{cfg.variant}-seed{seed}"))
  if os.path.exists(out) and not os.path.isdir(out):
    raise ConfigError("out", f"{out} is a file; give a folder (new, or an earlier export)")
  if os.path.isdir(out) and os.listdir(out) and not os.path.exists(
      os.path.join(out, "model.json")):
    raise ConfigError("out", f"{out} holds other files; give a new folder or an earlier export")
  try:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, ".write-test"), "w"):
      pass
    os.remove(os.path.join(out, ".write-test"))
  except OSError as e:
    raise ConfigError("out", f"cannot write to {out} ({e.strerror or type(e).__name__}); "
                      f"give --out a writable folder") from None
  return out


def export(cfg: ExportConfig) -> str:
  """Write the member; returns the output directory."""
  import jax
  import orbax.checkpoint as ocp

  from dl101_jax.host import files

  if not cfg.workdir or not cfg.variant:
    raise ConfigError("workdir" if not cfg.workdir else "variant", "is required")
  gdir, i, meta = find_member(cfg.workdir, cfg.variant, cfg.seed)
  config = meta["configs"][i]
  epoch, source_meta, variables_all = _source(cfg, gdir, i, config["seed"])
  j = source_meta["alive"].index(i)
  variables = jax.tree.map(lambda a: np.asarray(a)[j], variables_all)
  out = _out_dir(cfg, config["seed"])
  spec = {"format": FORMAT, "variant": cfg.variant, "seed": config["seed"], "epoch": epoch,
          "best": cfg.best, "source": gdir, "config": config, "data": meta["data"],
          "parameters": int(sum(np.asarray(a).size
                                for a in jax.tree.leaves(variables["params"])))}
  try:
    with contextlib.suppress(FileNotFoundError):  # incomplete until the new manifest lands
      os.remove(os.path.join(out, files.MANIFEST))
    with ocp.StandardCheckpointer() as saver:
      saver.save(os.path.join(out, "variables"), variables, force=True)
    files.write_json(os.path.join(out, "model.json"), spec)
    files.write_manifest(out)  # last: a folder with a manifest is a complete export
  except OSError as e:
    raise ConfigError("out", f"writing {out} failed ({e.strerror or type(e).__name__}); "
                      f"free space or give --out another folder") from None
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
