"""fit(): the host loop around a group's compiled program.

Per call it runs a chunk of epochs on the device, then, on the host: records
metrics, drops members whose loss turned NaN/inf (no more compute for them),
logs, checkpoints, and stops at that safe point when asked to.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax import checkpoint as ckpt_lib
from dl101_jax import files, signals, train
from dl101_jax.config import RUN, VALUE, Config, fields_with_role
from dl101_jax.data import Dataset
from dl101_jax.models import make_model
from dl101_jax.optim import LABELS, make_optimizer
from dl101_jax.parallel import Runtime, is_out_of_memory, out_of_memory, to_device, to_host
from dl101_jax.report import (METRICS, Console, EpochProgress, TensorBoardRun, empty_history,
                              epoch_line, step_line)

PROGRESS_MIN_STEPS = 20  # fewer steps per epoch: an epoch is quick, no in-epoch line


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
  that diverged has its epoch in `diverged` and keeps the history it had.
  """

  epoch: int
  alive: list[int]
  histories: list[dict]
  diverged: list[int | None]
  wall_seconds: float

  @classmethod
  def fresh(cls, n_members: int) -> "Progress":
    return cls(0, list(range(n_members)), [empty_history() for _ in range(n_members)],
               [None] * n_members, 0.0)

  @classmethod
  def from_meta(cls, meta: dict) -> "Progress":
    return cls(**{f.name: meta[f.name] for f in dataclasses.fields(cls)})

  def to_meta(self, configs: list[dict]) -> dict:
    return {**dataclasses.asdict(self), "configs": configs}


@dataclasses.dataclass
class GroupResult:
  members: list[Member]
  progress: Progress
  states: Any  # final states of the members in progress.alive, stacked
  resumed_epoch: int = 0
  compile_seconds: float = 0.0

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


def _select(tree: Any, idx: list[int]) -> Any:
  ix = np.asarray(idx, np.int32)  # uncommitted: works on global multi-process arrays too
  return jax.tree.map(lambda a: a[ix], tree)


def device_data(ds: Dataset, normalizer, rt: Runtime) -> train.DeviceData:
  """Put a dataset on the device(s) once, replicated."""
  arrays = train.DeviceData(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
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

  @classmethod
  def build(cls, members: list[Member], ds: Dataset, rt: Runtime,
            progress: EpochProgress | None = None) -> "GroupProgram":
    """The group's program; with `progress`, it reports ~20 ticks per epoch."""
    c0 = members[0].config
    model = make_model(c0, ds.num_classes, dropout=any(m.config.dropout > 0 for m in members),
                       platform=rt.platform)
    eval_bs = -(-min(c0.eval_batch_size, max(ds.test_size, 1)) // rt.num_devices) * rt.num_devices
    prog = train.Program(loss=c0.loss, batch_size=c0.batch_size, eval_batch_size=eval_bs,
                         flip=ds.is_image and c0.flip,
                         max_degrees=c0.rotate if ds.is_image else 0.0,
                         augment_first=c0.augment_first, batch_sharding=rt.batch_sharding,
                         progress_every=max(1, progress.spe // 20) if progress else 0,
                         on_progress=progress.tick if progress else None)
    return cls(members, model, make_optimizer(c0.optimizer), prog,
               jnp.zeros((1, *ds.x_train.shape[1:]), jnp.float32))

  def hparams(self, idx: list[int]) -> dict[str, jax.Array]:
    """One array per VALUE field: the per-member hyperparameters of `init_state`."""
    cs = [self.members[i].config for i in idx]
    return {k: jnp.asarray([getattr(c, k) for c in cs], jnp.int32 if k == "seed" else jnp.float32)
            for k in fields_with_role(VALUE)}

  def init(self, idx: list[int], sharding: Any = None) -> train.TrainState:
    return train.init_states(self.model, self.tx, self.sample_x, self.hparams(idx), sharding)

  def abstract(self, idx: list[int], sharding: Any) -> Any:
    """Shapes and shardings of `init(idx)`, without computing it (a restore target)."""
    shapes = jax.eval_shape(lambda: self.init(idx))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def restore_or_init(gp: GroupProgram, ckpt: ckpt_lib.Checkpointer | None,
                    rt: Runtime) -> tuple[Any, Progress]:
  """The newest matching checkpoint's states and progress, or fresh ones."""
  configs = [m.config.to_dict() for m in gp.members]

  def target(meta):
    diff = ckpt_lib.config_diff(meta["configs"], configs, Config().to_dict())
    if diff:
      raise ckpt_lib.CheckpointError(
          f"the checkpoint in {ckpt.directory} was written with a different config "
          f"(fields: {', '.join(diff)}); use the old values, another --workdir, or --restart")
    return gp.abstract(list(meta["alive"]), rt.replicated)

  restored = ckpt.restore_latest(target) if ckpt else None
  if restored:
    states, meta = restored
    return states, Progress.from_meta(meta)
  progress = Progress.fresh(len(gp.members))
  return gp.init(progress.alive, rt.replicated), progress


def open_tensorboard(members: list[Member], c0: Config, resumed: int) -> dict[int, TensorBoardRun]:
  """One writer per member; a fresh start replaces old curves, a resume purges later points."""
  if not resumed:
    for m in members:
      files.remove_tree(os.path.join(c0.run_dir, m.run_name))
  logged = [k for k in c0.to_dict() if k not in fields_with_role(RUN)]
  return {i: TensorBoardRun(os.path.join(c0.run_dir, m.run_name),
                            {k: getattr(m.config, k) for k in logged}, resume_epoch=resumed)
          for i, m in enumerate(members)}


def record_chunk(progress: Progress, mets: dict[str, np.ndarray], seconds: float,
                 c0: Config, steps_per_epoch: int, tb: dict[int, TensorBoardRun],
                 show: Callable[[int, float, bool], None]) -> list[int]:
  """Append a chunk's n_epochs x M metrics to the histories; returns the newly diverged.

  A member whose training loss is NaN/inf or above --diverge-above is marked
  diverged at that epoch and gets no more history.
  """
  n = next(iter(mets.values())).shape[0]
  newly_dead: list[int] = []
  for e in range(n):
    ep = progress.epoch + e + 1
    progress.wall_seconds += seconds / n
    for j, i in enumerate(progress.alive):
      if i in newly_dead:
        continue
      m = {k: float(v[e, j]) for k, v in mets.items()}
      if not all(math.isfinite(v) for v in m.values()) or (
          c0.diverge_above and m["train_loss"] > c0.diverge_above):
        progress.diverged[i] = ep
        newly_dead.append(i)
        continue
      h = progress.histories[i]
      h["epoch"].append(ep)
      h["step"].append(ep * steps_per_epoch)
      h["seconds"].append(progress.wall_seconds)
      for k, v in m.items():
        h[k].append(v)
      if i in tb:
        tb[i].log(ep, m)
    show(ep, seconds / n, bool(newly_dead) and e == n - 1)
  progress.epoch += n
  return newly_dead


def prune(states: Any, progress: Progress, dead: list[int]) -> Any:
  """Drop diverged members from the stacked states (no more compute for them)."""
  keep = [j for j, i in enumerate(progress.alive) if i not in dead]
  progress.alive = [progress.alive[j] for j in keep]
  return _select(states, keep) if keep else None


def chunk_length(c0: Config) -> int:
  """Epochs per device call: a log line and a checkpoint both fall on a chunk's end."""
  per_call = c0.epochs_per_log
  return math.gcd(per_call, c0.checkpoint_every) if c0.checkpoint_every else per_call


def fit(members: list[Member], ds: Dataset, data: train.DeviceData, rt: Runtime, *,
        group: str, console: Console, label_variants: bool = True,
        should_stop: Callable[[], int | None] = signals.pending) -> GroupResult:
  """Train a group of members that share one program; resume from its checkpoints.

  `should_stop()` is asked after every chunk; a signal number saves and raises
  signals.Interrupted (unless the group has just finished). `label_variants`
  names the variant on every console line (an experiment with several).
  """
  c0 = members[0].config
  steps_per_epoch = -(-ds.train_size // c0.batch_size)
  # In-epoch progress only where someone watches (a terminal) and an epoch has steps to show.
  ticker = (EpochProgress(console, steps_per_epoch, c0.epochs)
            if console.tty and console.enabled and steps_per_epoch >= PROGRESS_MIN_STEPS else None)
  gp = GroupProgram.build(members, ds, rt, ticker)
  configs = [m.config.to_dict() for m in members]

  # --- Restore or start fresh.
  ckpt = None
  if c0.checkpoint_every:
    ckpt = ckpt_lib.Checkpointer(os.path.join(c0.run_dir, "checkpoints", group),
                                 c0.keep_checkpoints)
  states, progress = restore_or_init(gp, ckpt, rt)
  resumed = progress.epoch
  if resumed:
    step = max((h["step"][-1] for h in progress.histories if h["step"]), default=0)
    done = resumed >= c0.epochs or not progress.alive
    console.say(f"{'Already finished' if done else 'Resuming'} {group} from epoch {resumed} "
                f"(step {step})")

  tb = open_tensorboard(members, c0, resumed) if rt.is_primary else {}
  run = train.compile_run_epochs(gp.prog)
  compiled, compile_s = {}, 0.0
  keys_all = jax.device_put(train.member_keys([m.config.seed for m in members]), rt.replicated)
  console.new_block()  # a group's live block never overwrites the previous group's
  show = lambda ep, seconds, force: _show(Shown(console, members, progress.histories, c0,
                                                steps_per_epoch, ds, seconds, label_variants),
                                          ep, force)
  try:
    while progress.epoch < c0.epochs and progress.alive:
      # --- One chunk of epochs on the device (compiled apart, so its seconds are compute).
      n = min(chunk_length(c0) - progress.epoch % chunk_length(c0), c0.epochs - progress.epoch)
      args = (states, _select(keys_all, progress.alive),
              jax.device_put(np.int32(progress.epoch), rt.replicated), data)
      oom = lambda e, what: out_of_memory(e, what=what, batch_size=c0.batch_size,
                                          members=len(progress.alive), rt=rt)
      if (n, len(progress.alive)) not in compiled:
        t0 = time.perf_counter()
        console.say(f"{group}: compiling {len(progress.alive)} model(s) into one program...")
        try:
          compiled[n, len(progress.alive)] = run.lower(*args, n_epochs=n).compile()
        except Exception as e:
          if is_out_of_memory(e):
            raise oom(e, f"compiling {group}") from None
          raise
        compile_s += time.perf_counter() - t0
        console.say(f"{group}: compiled in {time.perf_counter() - t0:.1f} s")
      signals.phase("training")
      if ticker:
        ticker.start(progress.epoch)
      t0 = time.perf_counter()
      try:
        with jax.transfer_guard("disallow"):  # explicit transfers only, inside the epochs
          states, mets = compiled[n, len(progress.alive)](*args)
        mets = to_host(_wait(mets))  # the only device->host copy: n_epochs x M metrics
      except Exception as e:
        if is_out_of_memory(e):
          raise oom(e, f"training {group}") from None
        raise
      seconds = time.perf_counter() - t0

      # --- Record, log, drop the diverged.
      dead = record_chunk(progress, mets, seconds, c0, steps_per_epoch, tb, show)
      for i in dead:
        console.say(f"{members[i].run_name}: loss is NaN/inf or above --diverge-above "
                    f"({c0.diverge_above:g}) at epoch {progress.diverged[i]}; stopped (diverged)")
      states = prune(states, progress, dead) if dead else states
      for w in tb.values():  # on disk before the checkpoint that covers these epochs
        w.flush()

      # --- Checkpoint; stop if asked. With every member diverged there is no state to
      # save; a resume then recomputes the same divergence from the previous checkpoint.
      stop = should_stop()
      finished = progress.epoch >= c0.epochs or not progress.alive
      if ckpt and progress.alive and (progress.epoch % c0.checkpoint_every == 0 or finished
                                      or stop):
        ckpt.save(progress.epoch, states, progress.to_meta(configs))
      if stop and not finished:
        raise signals.Interrupted(signals.exit_code(stop))
      signals.phase("setup")
  finally:
    signals.phase("setup")
    if ckpt:
      ckpt.close()
    for w in tb.values():
      w.close()
  return GroupResult(members, progress, states, resumed, compile_s)


def _wait(tree: Any) -> Any:
  """Block until `tree` is computed, polling, so that signal handlers run meanwhile.

  A blocking device_get would hold the main thread in C++ for the whole chunk,
  and Python runs signal handlers only between bytecodes.
  """
  leaves = jax.tree.leaves(tree)
  while not all(x.is_ready() for x in leaves):
    time.sleep(0.05)
  return tree


@dataclasses.dataclass(frozen=True)
class Shown:
  """What a console update needs to know about the group."""

  console: Console
  members: list[Member]
  histories: list[dict]
  config: Config
  steps_per_epoch: int
  ds: Dataset
  epoch_seconds: float
  label_variants: bool


def _show(s: Shown, ep: int, force: bool = False) -> None:
  """One 'Training Step' line per variant, then its TFLearn line (mean over its seeds).

  The label is the optimizer (TFLearn's train-op name), plus the variant when
  the experiment has several. `time:` is the epoch's seconds, as TFLearn's.
  """
  by_variant: dict[str, list[dict]] = {}
  labels = {}
  for i, mem in enumerate(s.members):
    h = s.histories[i]
    labels[mem.variant] = LABELS[mem.config.optimizer] + (
        f":{mem.variant}" if s.label_variants else "")
    if h["epoch"] and h["epoch"][-1] == ep:
      by_variant.setdefault(mem.variant, []).append({k: h[k][-1] for k in METRICS if h[k]})
  if not by_variant:
    return
  lines = []
  for v, ms in by_variant.items():
    mean = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
    lines.append(step_line(ep * s.steps_per_epoch, mean["train_loss"], s.epoch_seconds))
    lines.append(epoch_line(labels[v], ep, s.config.epochs, mean, s.ds.train_size,
                            acc=s.ds.num_classes > 1))
  s.console.show(ep, lines, force=force)
