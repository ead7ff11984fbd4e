"""fit(): the host loop around a group's compiled program.

Per call it runs a chunk of epochs on the device, then, on the host: records
metrics, drops members whose loss turned NaN/inf (no more compute for them),
logs, checkpoints, and honours SIGINT/SIGTERM at that safe point.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax import checkpoint as ckpt_lib
from dl101_jax import train
from dl101_jax.config import Config
from dl101_jax.data import Dataset
from dl101_jax.models import make_model
from dl101_jax.optim import LABELS, make_optimizer
from dl101_jax.parallel import Runtime, to_host
from dl101_jax.report import METRICS, Console, TensorBoardRun, epoch_line, step_line


class Interrupted(Exception):
  """SIGINT/SIGTERM arrived; a checkpoint was saved. `code` is 130 or 143."""

  def __init__(self, code: int):
    self.code = code
    super().__init__(f"interrupted ({code})")


_pending_signal: list[int] = []


def _on_signal(signum, frame):
  if _pending_signal and signum == signal.SIGINT:
    raise KeyboardInterrupt  # a second Ctrl-C: stop now
  _pending_signal.append(signum)


def install_signal_handlers() -> None:
  """Turn SIGINT/SIGTERM into a checkpoint-and-exit at the next epoch boundary."""
  _pending_signal.clear()
  signal.signal(signal.SIGINT, _on_signal)
  signal.signal(signal.SIGTERM, _on_signal)


@dataclasses.dataclass(frozen=True)
class Member:
  """One trained model: a variant at one seed."""

  variant: str
  config: Config
  run_name: str


@dataclasses.dataclass
class GroupResult:
  members: list[Member]
  histories: list[dict]
  diverged: list[int | None]
  wall_seconds: float
  states: Any  # final states of the members in `alive`, stacked
  alive: list[int]
  resumed_epoch: int = 0
  compile_seconds: float = 0.0


def _empty_history() -> dict:
  return {k: [] for k in ("epoch", "step", "seconds", *METRICS)}


def _select(tree: Any, idx: list[int]) -> Any:
  ix = np.asarray(idx, np.int32)  # uncommitted: works on global multi-process arrays too
  return jax.tree.map(lambda a: a[ix], tree)


def device_data(ds: Dataset, normalizer, rt: Runtime) -> train.DeviceData:
  """Put a dataset on the device(s) once, replicated."""
  from dl101_jax.parallel import to_device

  arrays = train.DeviceData(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                            normalizer.mean, normalizer.std)
  return to_device(arrays, rt.replicated)


def fit(members: list[Member], ds: Dataset, data: train.DeviceData, rt: Runtime, *,
        group: str, console: Console) -> GroupResult:
  """Train a group of members that share one program; resume from its checkpoints."""
  c0 = members[0].config
  model = make_model(c0, ds.num_classes, dropout=any(m.config.dropout > 0 for m in members),
                     platform=rt.platform)
  tx = make_optimizer(c0.optimizer)
  eval_bs = -(-min(c0.eval_batch_size, max(ds.test_size, 1)) // rt.num_devices) * rt.num_devices
  prog = train.Program(loss=c0.loss, batch_size=c0.batch_size, eval_batch_size=eval_bs,
                       flip=ds.is_image and c0.flip,
                       max_degrees=c0.rotate if ds.is_image else 0.0,
                       batch_sharding=rt.batch_sharding)
  sample_x = jnp.zeros((1, *ds.x_train.shape[1:]), jnp.float32)

  def hparams(idx):
    cs = [members[i].config for i in idx]
    return {"seed": jnp.asarray([c.seed for c in cs], jnp.int32),
            **{k: jnp.asarray([getattr(c, k) for c in cs], jnp.float32)
               for k in ("learning_rate", "weight_decay", "dropout", "l2")}}

  def init(idx):
    return train.init_states(model, tx, sample_x, hparams(idx), rt.replicated)

  configs = [m.config.to_dict() for m in members]

  def abstract(meta):
    """The restore target for a checkpoint's meta, once its config is known to match."""
    diff = ckpt_lib.config_diff(meta["configs"], configs)
    if diff:
      raise ckpt_lib.CheckpointError(
          f"the checkpoint in {ckpt.directory} was written with a different config "
          f"(fields: {', '.join(diff)}); use the old values, another --workdir, or --restart")
    shapes = jax.eval_shape(lambda: train.init_states(model, tx, sample_x, hparams(meta["alive"])))
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=rt.replicated),
                        shapes)

  ckpt = None
  if c0.checkpoint_every:
    ckpt = ckpt_lib.Checkpointer(os.path.join(c0.run_dir, "checkpoints", group), c0.keep_checkpoints)
  restored = ckpt.restore_latest(abstract) if ckpt else None
  if restored:
    states, meta = restored
    epoch, alive = meta["epoch"], list(meta["alive"])
    histories, diverged, wall = meta["histories"], meta["diverged"], meta["wall_seconds"]
  else:
    epoch, alive = 0, list(range(len(members)))
    histories, diverged, wall = [_empty_history() for _ in members], [None] * len(members), 0.0
    states = init(alive)
  resumed = epoch
  if resumed:
    step = max((h["step"][-1] for h in histories if h["step"]), default=0)
    done = epoch >= c0.epochs or not alive
    console.say(f"{'Already finished' if done else 'Resuming'} {group} from epoch {epoch} "
                f"(step {step})")

  run = train.compile_run_epochs(prog)
  compiled, compile_s = {}, 0.0
  keys_all = jax.device_put(train.member_keys([m.config.seed for m in members]), rt.replicated)
  steps_per_epoch = -(-ds.train_size // c0.batch_size)
  per_call = c0.epochs_per_log
  if c0.checkpoint_every:
    per_call = math.gcd(per_call, c0.checkpoint_every)
  tb = {}
  if rt.is_primary:
    if not resumed:  # a fresh start gets fresh curves, not a second set on top
      for m in members:
        ckpt_lib.clear(os.path.join(c0.run_dir, m.run_name))
    tb = {i: TensorBoardRun(os.path.join(c0.run_dir, members[i].run_name),
                            members[i].config.to_dict(), resume_epoch=resumed)
          for i in range(len(members))}

  def save(epoch_done):
    meta = {"epoch": epoch_done, "alive": alive, "histories": histories, "diverged": diverged,
            "wall_seconds": wall, "configs": configs}
    ckpt.save(epoch_done, states, meta)

  try:
    while epoch < c0.epochs and alive:
      n = min(per_call - epoch % per_call, c0.epochs - epoch)
      # Explicit transfers only; inside the epoch call any hidden one is an error.
      args = (states, _select(keys_all, alive), jax.device_put(np.int32(epoch), rt.replicated),
              data)
      if (n, len(alive)) not in compiled:  # compile apart, so epoch seconds are compute only
        t0 = time.perf_counter()
        compiled[n, len(alive)] = run.lower(*args, n_epochs=n).compile()
        compile_s += time.perf_counter() - t0
      t0 = time.perf_counter()
      with jax.transfer_guard("disallow"):
        states, mets = compiled[n, len(alive)](*args)
      mets = to_host(mets)  # the only device->host copy: n_epochs x M metrics
      dt = time.perf_counter() - t0
      newly_dead = []
      for e in range(n):
        ep = epoch + e + 1
        wall += dt / n
        for j, i in enumerate(alive):
          if i in newly_dead:
            continue
          m = {k: float(v[e, j]) for k, v in mets.items()}
          if not all(math.isfinite(v) for v in m.values()) or (
              c0.diverge_above and m["train_loss"] > c0.diverge_above):
            diverged[i] = ep
            newly_dead.append(i)
            continue
          h = histories[i]
          h["epoch"].append(ep), h["step"].append(ep * steps_per_epoch), h["seconds"].append(wall)
          for k, v in m.items():
            h[k].append(v)
          if i in tb:
            tb[i].log(ep, m)
        _show(console, members, histories, ep, c0, steps_per_epoch, ds, dt / n,
              force=bool(newly_dead) and e == n - 1)
      epoch += n
      if newly_dead:
        for i in newly_dead:
          console.say(f"{members[i].run_name}: loss is NaN/inf or above --diverge-above "
                      f"({c0.diverge_above:g}) at epoch {diverged[i]}; stopped (diverged)")
        keep = [j for j, i in enumerate(alive) if i not in newly_dead]
        alive = [alive[j] for j in keep]
        states = _select(states, keep) if keep else None
      for w in tb.values():  # on disk before the checkpoint that covers these epochs
        w.flush()
      stop = _pending_signal[0] if _pending_signal else None
      # With every member diverged there is no state left to save; a resume then
      # recomputes the same divergence from the previous checkpoint.
      if ckpt and alive and (epoch % c0.checkpoint_every == 0 or epoch == c0.epochs or stop):
        save(epoch)
      if stop:
        raise Interrupted(130 if stop == signal.SIGINT else 143)
  finally:
    if ckpt:
      ckpt.close()
    for w in tb.values():
      w.close()
  return GroupResult(members, histories, diverged, wall, states, alive, resumed, compile_s)


def _show(console, members, histories, ep, c0, spe, ds, dt, force=False):
  """One 'Training Step' line, then one TFLearn line per variant (mean over its seeds).

  The label is the optimizer (TFLearn's train-op name), plus the variant when
  the group has several.
  """
  by_variant: dict[str, list[dict]] = {}
  labels = {}
  several = len({m.variant for m in members}) > 1
  for i, mem in enumerate(members):
    h = histories[i]
    labels[mem.variant] = LABELS[mem.config.optimizer] + (f":{mem.variant}" if several else "")
    if h["epoch"] and h["epoch"][-1] == ep:
      by_variant.setdefault(mem.variant, []).append({k: h[k][-1] for k in METRICS if h[k]})
  if not by_variant:
    return
  losses = [m["train_loss"] for ms in by_variant.values() for m in ms]
  lines = [step_line(ep * spe, float(np.mean(losses)), dt)]
  for v, ms in by_variant.items():
    mean = {k: float(np.mean([m[k] for m in ms])) for k in ms[0]}
    lines.append(epoch_line(labels[v], ep, c0.epochs, mean, ds.train_size, acc=ds.num_classes > 1))
  console.show(ep, lines, force=force)
