"""fit(): the host loop around a group's compiled program.

Per call it runs a chunk of epochs on the device, then, on the host: records
metrics, drops members whose loss turned NaN/inf (no more compute for them),
logs, checkpoints, and stops at that safe point when asked to.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from typing import Any, Callable

import jax
import numpy as np

from dl101_jax.host import evaluation, files, placement, signals
from dl101_jax.core import member_state, train
from dl101_jax.config import Config, ConfigError
from dl101_jax.host.data import Dataset
from dl101_jax.host.group import (GroupProgram, GroupResult, Member, Progress, checkpointer,
                                  data_spec, restore_or_init)
from dl101_jax.core.optim import LABELS, schedule_factor
from dl101_jax.host.chunks import ChunkRunner, chunk_length
from dl101_jax.host.parallel import Runtime, to_device, to_host
from dl101_jax.host.console import Console, EpochTicker
from dl101_jax.host.report import METRICS, TensorBoardRun, epoch_line, step_line
from dl101_jax.host.tb_detail import Probe, log_chunk_losses, probe_for
from dl101_jax.host.tb_pages import logged_fields

PROGRESS_MIN_STEPS = 20  # fewer steps per epoch: an epoch is quick, no in-epoch line


def open_tensorboard(members: list[Member], c0: Config, resumed: int,
                     spe: int) -> dict[int, TensorBoardRun]:
  """One writer per member; a fresh start replaces old curves, a resume purges later points."""
  if not resumed:
    for m in members:
      files.remove_tree(os.path.join(c0.run_dir, m.run_name))
  return {i: TensorBoardRun(os.path.join(c0.run_dir, m.run_name),
                            {"variant": m.variant,
                             **{k: getattr(m.config, k) for k in logged_fields(c0)}},
                            resume_epoch=resumed, steps_per_epoch=spe)
          for i, m in enumerate(members)}


def record_chunk(progress: Progress, mets_ExM: dict[str, np.ndarray], seconds: float,
                 c0: Config, steps_per_epoch: int, tb: dict[int, TensorBoardRun],
                 show: Callable[[int, float, bool], None]) -> list[int]:
  """Append a chunk's metrics (each E epochs x M alive members) to the histories.

  Returns the newly diverged members. A member whose training loss is NaN/inf or above
  --diverge-above is marked diverged at that epoch and gets no more history.
  """
  n = next(iter(mets_ExM.values())).shape[0]
  newly_dead: list[int] = []
  for e in range(n):
    ep = progress.epoch + e + 1
    progress.wall_seconds += seconds / n
    for j, i in enumerate(progress.alive):
      if i in newly_dead:
        continue
      m = {k: float(v[e, j]) for k, v in mets_ExM.items()}
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


def keep_best(states: Any, mets_ExM: dict[str, np.ndarray], progress: Progress,
              rt: Runtime) -> Any:
  """Each member's best epoch so far kept inside its state (`member_state.keep_best`), from
  the chunk's last validation: only a chunk's last epoch can be a best epoch, its weights
  are the ones at hand. Nothing to keep without a validation split. The padding (copies of
  the last member) keeps the last member's best, as its copies must."""
  if "val_accuracy" not in mets_ExM:
    return states
  val_M = np.asarray(mets_ExM["val_accuracy"][-1], np.float32)
  split, k = placement.members_axis(states)
  val_W = to_device(val_M[placement.padded(range(len(val_M)), k)], split or rt.replicated)
  return _keep_best(states, val_W, jax.device_put(np.int32(progress.epoch), rt.replicated),
                    split=split)


@functools.partial(jax.jit, static_argnames="split")
def _keep_best(states: Any, val_W: jax.Array, epoch: jax.Array, *, split: Any) -> Any:
  """member_state.keep_best in one program, the states left on their split."""
  return placement.stay(member_state.keep_best(states, val_W, epoch), split)


def prune(states: Any, progress: Progress, dead: list[int]) -> Any:
  """Drop diverged members from the stacked states (no more compute for them)."""
  keep = [j for j, i in enumerate(progress.alive) if i not in dead]
  progress.alive = [progress.alive[j] for j in keep]
  return placement.select(states, keep) if keep else None


def fit(members: list[Member], ds: Dataset, data: train.DeviceData, rt: Runtime, *,
        group: str, console: Console, label_variants: bool = True,
        should_stop: Callable[[], int | None] = signals.pending,
        between_chunks: Callable[[Any, Progress], Any] | None = None,
        decide_every: int = 0) -> GroupResult:
  """Train a group of members that share one program; resume from its checkpoints.

  `should_stop()` is asked after every chunk; a signal number saves and raises
  signals.Interrupted (unless the group has just finished). `label_variants`
  names the variant on every console line (an experiment with several).
  `between_chunks(states, progress) -> states` runs after each chunk is recorded
  and before it is checkpointed: where a population step may replace members' states
  or stop members (by shrinking `progress.alive` and the states with it). Chunks end
  on multiples of `decide_every` epochs, so it sees every such epoch.
  """
  c0 = members[0].config
  spe = -(-ds.train_size // c0.batch_size)  # steps per epoch
  ticker = _ticker(console, spe, c0.epochs)
  gp = GroupProgram.build(members, ds, rt, ticker, data)
  n_params = _say_layers(console, group, gp, c0)

  # --- Restore or start fresh (the members' states, kept bests included, and progress).
  ckpt = checkpointer(c0, group)
  meta = {"variants": [m.variant for m in members], "data": data_spec(ds, data, gp.whiten)}
  states, progress = restore_or_init(gp, ckpt, rt, meta["data"]["fingerprint"])
  resumed = _say_resumed(console, group, progress, c0.epochs, spe)
  tb = open_tensorboard(members, c0, resumed, spe) if rt.is_primary else {}
  runner = ChunkRunner(gp, rt, console, group, ticker)
  probe = probe_for(gp.model, c0.loss, c0.tensorboard_verbose, data)  # every process measures
  console.new_block()  # a group's live block never overwrites the previous group's
  show = lambda ep, seconds, force: _show(Shown(console, members, progress.histories, c0, spe,
                                                ds, seconds, label_variants), ep, force)
  try:
    while progress.epoch < c0.epochs and progress.alive:
      # --- One chunk of epochs on the device.
      n = chunk_length(c0, decide_every, progress.epoch)
      states, mets_ExM, seconds = runner(states, progress.alive, progress.epoch, data, n)
      # --- Record, log, keep the best, drop the diverged, let a population step act.
      chunks_ExMxK = mets_ExM.pop("train_loss_chunks")  # E x M x K: StepLoss
      dead = record_chunk(progress, mets_ExM, seconds, c0, spe, tb, show)
      _log_detail(tb, states, progress, n, c0, spe, dead, chunks_ExMxK, probe)
      states = keep_best(states, mets_ExM, progress, rt)
      states = _after_chunk(states, progress, dead, members, console, between_chunks)
      for w in tb.values():  # on disk before the checkpoint that covers these epochs
        w.flush()
      # --- Checkpoint; stop if asked. With every member diverged there is no state to
      # save; a resume then recomputes the same divergence from the previous checkpoint.
      stop = should_stop()
      finished = progress.epoch >= c0.epochs or not progress.alive
      _save(ckpt, progress, states, members, meta, rt, force=bool(stop) or finished)
      if stop and not finished:
        raise signals.Interrupted(signals.exit_code(stop))
    _end_sessions(tb, progress)
  finally:
    signals.phase("setup")
    for closing in (ckpt, *tb.values()):
      if closing:
        closing.close()
  return GroupResult(members, progress, placement.trim(states, len(progress.alive), rt),
                     resumed, runner.compile_seconds, n_params, runner.state_bytes)


def _log_detail(tb: dict, states: Any, progress: Progress, n: int, c0: Config, spe: int,
                dead: list[int], chunks_ExMxK: np.ndarray, probe: Probe | None) -> None:
  """TensorBoard past the epoch's scalars, for the chunk just recorded (its states still
  every member it ran): StepLoss, the learning rate, and --tensorboard-verbose's histograms."""
  log_chunk_losses(tb, chunks_ExMxK, progress.alive, progress.epoch - n + 1, spe, dead)
  _log_rates(tb, states, progress, n, c0, spe)
  if probe:
    probe.log(tb, states, progress.alive, progress.epoch, dead)


def _log_rates(tb: dict, states: Any, progress: Progress, n: int, c0: Config, spe: int) -> None:
  """Each member's learning rate at the end of each epoch of the chunk just run: its value in
  the states (constant within a chunk: a search changes it between chunks), read back once
  per chunk, times the schedule's factor at the epoch's last step. Before the chunk's
  members are pruned: the states' axis is still progress.alive."""
  # Read on every process (the states may be split over them; reading is a collective),
  # written where the TensorBoard runs are.
  rate_M = np.asarray(to_host(member_state.hparams(states, ("learning_rate",))["learning_rate"]))
  factor = schedule_factor(c0.schedule, c0.epochs * spe)
  for j, i in enumerate(progress.alive):
    h = progress.histories[i]
    for ep in range(progress.epoch - n + 1, progress.epoch + 1):
      if i in tb and ep in h["epoch"]:
        scale = float(factor(ep * spe - 1)) if factor else 1.0
        tb[i].log_rate(ep, float(rate_M[j]) * scale)


def _end_sessions(tb: dict, progress: Progress) -> None:
  """Each run's HParams status: diverged is a failure; finished or stopped by a search, a
  success (a run killed never gets here, so it shows none)."""
  for i, w in tb.items():
    w.end("STATUS_FAILURE" if progress.diverged[i] is not None else "STATUS_SUCCESS")


def _ticker(console: Console, spe: int, epochs: int) -> EpochTicker | None:
  """In-epoch progress only where someone watches (a terminal) and an epoch has steps to
  show."""
  if console.tty and console.enabled and spe >= PROGRESS_MIN_STEPS:
    return EpochTicker(console, spe, epochs)
  return None


def _say_layers(console: Console, group: str, gp: GroupProgram, c0: Config) -> int:
  """Says the group's network as a layer table; returns its parameters per model."""
  rows, n_params = evaluation.layer_table(gp.model, gp.sample_x)
  console.say(f"{group}: {c0.net}, {n_params:,} parameters per model\n" + "\n".join(rows))
  return n_params


def _save(ckpt: Any, progress: Progress, states: Any, members: list[Member], meta: dict,
          rt: Runtime, *, force: bool) -> None:
  """A checkpoint every --checkpoint-every epochs, and when the group finishes or is stopped
  (`force`): the alive members and no padding, so any mesh reads it back. Between chunks a
  signal stops the run after the next epoch: still "training"."""
  if ckpt and progress.alive and (progress.epoch % members[0].config.checkpoint_every == 0
                                  or force):
    ckpt.save(progress.epoch, placement.trim(states, len(progress.alive), rt),
              progress.to_meta([m.config.to_dict() for m in members], meta))


def _say_resumed(console: Console, group: str, progress: Progress, epochs: int,
                 spe: int) -> int:
  """Says where a restored group stands; returns the epoch it resumes from (0: fresh).
  A checkpoint past --epochs is refused: its results would be reported as --epochs'."""
  if progress.epoch > epochs:
    raise ConfigError("epochs", f"the checkpoint of {group} holds {progress.epoch} epochs, "
                      f"more than the {epochs} asked for; give --epochs {progress.epoch} (or "
                      f"more) to report or continue it, or --restart to train {epochs} afresh")
  if progress.epoch:
    done = progress.epoch >= epochs or not progress.alive
    console.say(f"{'Already finished' if done else 'Resuming'} {group} from epoch "
                f"{progress.epoch} (step {progress.epoch * spe})")
  return progress.epoch


def _after_chunk(states: Any, progress: Progress, dead: list[int], members: list[Member],
                 console: Console, between_chunks: Callable | None) -> Any:
  """The states after a recorded chunk: the diverged dropped (and said), then the population
  step (which may reorder or stop members: their kept bests move with their states)."""
  for i in dead:
    c = members[i].config
    console.say(f"{members[i].run_name}: loss is NaN/inf or above --diverge-above "
                f"({c.diverge_above:g}) at epoch {progress.diverged[i]}; stopped (diverged)")
  if dead:
    states = prune(states, progress, dead)
  if between_chunks and progress.alive:
    states = between_chunks(states, progress)
  return states


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
