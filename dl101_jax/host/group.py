"""A group: the members that share one compiled program, its program, and where it stands.

`GroupProgram` is what a group compiles (model, optimizer, static program) and
how its members' states are made; `Progress` is the host's record of the group
(epoch, who is alive, histories), which is also the checkpoint's metadata, so a
restore gives back exactly what the loop carries.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.host import checkpoint as ckpt_lib, placement
from dl101_jax.core import member_state, train
from dl101_jax.config import Config
from dl101_jax.host.data import Dataset, fingerprint
from dl101_jax.core.models import make_model, whitening_kernel
from dl101_jax.core.optim import make_optimizer
from dl101_jax.host.parallel import Runtime, to_device
from dl101_jax.host.console import EpochTicker
from dl101_jax.host.report import empty_history
from dl101_jax.host.tb_detail import LOSS_CHUNKS


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained model: a variant at one seed."""

  variant: str
  config: Config
  run_name: str


@dataclasses.dataclass
class Progress:
  """Where a group stands: the loop's state, and the checkpoint's metadata as is.

  `alive` lists the members still training (indices into the group); a member
  that diverged has its epoch in `diverged` and keeps the history it had. Each member's
  kept best epoch is in its state (`TrainState.best`), not here.
  """

  epoch: int
  alive: list[int]
  histories: list[dict]
  diverged: list[int | None]
  wall_seconds: float
  # A search's record (hyperparameters per epoch, lineage, stops): JSON, checkpointed
  # with the rest, so a resumed search carries its history on.
  population: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def fresh(cls, n_members: int) -> "Progress":
    return cls(0, list(range(n_members)), [empty_history() for _ in range(n_members)],
               [None] * n_members, 0.0)

  @classmethod
  def from_meta(cls, meta: dict) -> "Progress":
    """From a checkpoint's meta (its other keys are the group's, not the loop's)."""
    return cls(**{f.name: meta[f.name] for f in dataclasses.fields(cls) if f.name in meta})

  def to_meta(self, configs: list[dict], extra: dict | None = None) -> dict:
    return {**dataclasses.asdict(self), "configs": configs, **(extra or {})}


@dataclasses.dataclass
class GroupResult:
  members: list[Member]
  progress: Progress
  states: Any  # final states of the members in progress.alive, stacked
  resumed_epoch: int = 0
  compile_seconds: float = 0.0
  parameters: int = 0  # per member
  state_bytes_per_device: int = 0  # the most one device held between chunks (0: none ran)

  @property
  def histories(self) -> list[dict]:
    return self.progress.histories

  @property
  def diverged(self) -> list[int | None]:
    return self.progress.diverged

  @property
  def wall_seconds(self) -> float:
    return self.progress.wall_seconds

  @property
  def alive(self) -> list[int]:
    return self.progress.alive


def group_name(members: list[Member]) -> str:
  """A group's name: its variants joined by '+' (its checkpoints' folder, its console label)."""
  return "+".join(dict.fromkeys(m.variant for m in members))


def device_data(ds: Dataset, normalizer, rt: Runtime) -> train.DeviceData:
  """Put a dataset on the device(s) once, replicated."""
  arrays = train.DeviceData(ds.x_train, ds.y_train, ds.x_val, ds.y_val,
                            normalizer.mean, normalizer.std)
  return to_device(arrays, rt.replicated)


@dataclasses.dataclass(frozen=True)
class GroupProgram:
  """What a group compiles: its model, optimizer and static program, and how to init members."""

  members: list[Member]
  model: Any
  tx: Any
  prog: train.Program
  sample_x: jax.Array
  whiten: np.ndarray | None = None  # the airbench net's first-conv kernel, from the data

  @classmethod
  def build(cls, members: list[Member], ds: Dataset, rt: Runtime,
            progress: EpochTicker | None = None,
            data: train.DeviceData | None = None) -> "GroupProgram":
    """The group's program; with `progress`, it reports ~20 ticks per epoch. The airbench
    net's whitening comes from the first 5,000 training images, normalized as `data` does."""
    c0 = members[0].config
    whiten = None
    if c0.is_airbench:
      mean, std = (np.asarray(a, np.float32) for a in (data.mean, data.std))
      whiten = whitening_kernel((ds.x_train[:5000].astype(np.float32) - mean) / std)
    model = make_model(c0, ds.num_classes, dropout=any(m.config.dropout > 0 for m in members),
                       platform=rt.platform, whiten=whiten)
    spe = -(-ds.train_size // c0.batch_size)
    eval_bs = -(-min(c0.eval_batch_size, max(ds.val_size, 1)) // rt.num_devices) * rt.num_devices
    prog = train.Program(loss=c0.loss, batch_size=c0.batch_size, eval_batch_size=eval_bs,
                         flip=ds.is_image and c0.flip,
                         rotate=c0.rotate if ds.is_image else 0.0,
                         translate=c0.translate if ds.is_image else 0,
                         cutout=c0.cutout if ds.is_image else 0,
                         label_smoothing=c0.label_smoothing, ema=c0.ema, tta=c0.tta,
                         lookahead=c0.lookahead, total_steps=c0.epochs * spe,
                         alternate_flip=c0.alternate_flip,
                         augment_first=c0.augment_first, batch_sharding=rt.batch_sharding,
                         member_axis="members" if rt.member_sharding is not None else None,
                         member_loop=c0.member_loop,
                         # the member loop runs each member's epoch whole: no in-epoch ticks
                         progress_every=max(1, progress.spe // 20)
                         if progress and not c0.member_loop else 0,
                         on_progress=progress.tick if progress else None,
                         loss_chunks=LOSS_CHUNKS)
    tx = make_optimizer(c0.optimizer, c0.schedule, c0.epochs * spe, c0.momentum,
                        c0.norm_bias_lr, c0.whiten_bias_epochs * spe,
                        decay="all" if c0.is_airbench else "kernels")
    return cls(members, model, tx, prog,
               jnp.zeros((1, *ds.x_train.shape[1:]), jnp.float32), whiten)

  def hparams(self, idx: list[int]) -> dict[str, jax.Array]:
    """One array per VALUE field: the per-member hyperparameters of `init_state`."""
    return member_state.hparams_of([self.members[i].config for i in idx])

  def init(self, idx: list[int], sharding: Any = None) -> member_state.TrainState:
    return member_state.init_states(self.model, self.tx, self.sample_x, self.hparams(idx),
                                    sharding, ema=self.prog.ema > 0,
                                    lookahead=self.prog.lookahead)

  def abstract(self, idx: list[int], sharding: Any) -> Any:
    """Shapes and shardings of `init(idx)`, without computing it (a restore target)."""
    shapes = jax.eval_shape(lambda: self.init(idx))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def restore_or_init(gp: GroupProgram, ckpt: ckpt_lib.Checkpointer | None,
                    rt: Runtime, fingerprint: str) -> tuple[Any, Progress]:
  """The newest checkpoint's states and progress if it matches the config and the data (its
  `data_lib.fingerprint`), or fresh ones; placed for the chunks (`placement`)."""
  configs = [m.config.to_dict() for m in gp.members]

  def target(meta):
    diff = ckpt_lib.config_diff(meta["configs"], configs, Config().to_dict())
    if diff:
      raise ckpt_lib.CheckpointError(
          f"the checkpoint in {ckpt.directory} was written with a different config "
          f"(fields: {', '.join(diff)}); use the old values, another --workdir, or --restart")
    saved = meta.get("data", {}).get("fingerprint")  # absent in checkpoints before 2026-12-03
    if saved is not None and saved != fingerprint:
      raise ckpt_lib.CheckpointError(
          f"the checkpoint in {ckpt.directory} was trained on other data (fingerprint "
          f"{saved}, this data {fingerprint}: another --data-dir?); use that data, another "
          f"--workdir, or --restart")
    return gp.abstract(list(meta["alive"]), placement.exact(rt, len(meta["alive"])))

  restored = ckpt.restore_latest(target) if ckpt else None
  if restored:  # written on any mesh, read onto this one, then padded and split as chunks want
    states, meta = restored
    progress = Progress.from_meta(meta)
    return placement.placed(states, len(progress.alive), rt), progress
  progress = Progress.fresh(len(gp.members))
  # Made where they will train: the padding rows are the last member's config, so its copies.
  return gp.init(list(placement.padded(progress.alive, rt.axes["members"])),
                 rt.member_sharding or rt.replicated), progress


def checkpointer(c0: Config, group: str) -> ckpt_lib.Checkpointer | None:
  """The group's checkpoints (None without --checkpoint-every)."""
  if not c0.checkpoint_every:
    return None
  return ckpt_lib.Checkpointer(os.path.join(c0.run_dir, "checkpoints", group),
                               c0.keep_checkpoints)


def data_spec(ds: Dataset, data: train.DeviceData, whiten: np.ndarray | None = None) -> dict:
  """What a standalone model needs to see inputs as training did (export reads it); for
  the airbench net also its data-made first-conv kernel."""
  out = {"dataset": ds.name, "num_classes": ds.num_classes, "class_names": list(ds.class_names),
         "input_shape": list(ds.x_train.shape[1:]), "mean": np.asarray(data.mean).tolist(),
         "std": np.asarray(data.std).tolist(), "fingerprint": fingerprint(ds)}
  if whiten is not None:
    out["whiten"] = whiten.tolist()
  return out
