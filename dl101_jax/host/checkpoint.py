"""Orbax checkpoints of a group: stacked train states plus a JSON of everything else.

Layout: <workdir>/checkpoints/<group>/<epoch>/{state,meta}. `meta` holds the
epoch, the global step, which members are still alive, the history so far and
the configs, so a resumed run continues exactly and a changed config is caught.
Orbax writes into a temporary directory and renames it when complete, so a save
killed halfway is never seen as a checkpoint. Saves are synchronous: a failed
one (a full disk) is known at once, its temporary directory is removed, and the
older checkpoints are left as they were.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from typing import Any, Callable

from dl101_jax.config import SHAPE, VALUE, fields_with_role

# Only the fields that change what is computed must match to resume; run fields
# may change, and so may `epochs` (a finished run continues when asked for more).
_CHECKED = fields_with_role(VALUE, SHAPE)


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used; the message names the directory and the way out."""


class SaveError(OSError):
  """Writing a checkpoint failed (disk full, read-only, ...); the message says what is intact."""


TMP_MARK = ".orbax-checkpoint-tmp"


def newest_epoch(directory: str) -> int | None:
  """The newest complete checkpoint's epoch in a group's directory, or None."""
  if not os.path.isdir(directory):
    return None
  steps = [int(d) for d in os.listdir(directory) if d.isdigit()]
  return max(steps) if steps else None


_real_stderr: list[int] = []  # the terminal's stderr, once a failed save silenced fd 2


@contextlib.contextmanager
def _stderr_held():
  """Hold what is written to file descriptor 2 meanwhile; replay it unless the block fails.

  A failed orbax write (a full disk) is reported from its worker threads and
  asyncio loops as tracebacks on stderr, during the save and until the process
  exits, and so do they after a second Ctrl-C interrupts a save. The CLI turns either into
  one line; so on failure fd 2 stays silenced for good and the line goes to
  `real_stderr()`. On success
  the held output (warnings, a Ctrl-C notice) is shown.
  """
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    except Exception:  # the save failed: keep orbax's noise away for good
      sys.stderr.flush()
      os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
      _real_stderr.append(saved)
      raise
    except BaseException:  # a second Ctrl-C mid-save: orbax's threads then print their
      sys.stderr.flush()  # tracebacks as the process ends; silence them, keep the real fd
      os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
      _real_stderr.append(saved)
      raise
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    held.seek(0)
    text = held.read()
    if text:
      os.write(2, text)


def real_stderr() -> int:
  """The file descriptor where a one-line error should go (2 unless a save silenced it)."""
  return _real_stderr[0] if _real_stderr else 2


_OS_CAUSE = re.compile(r"No space left on device|Disk quota exceeded|File too large|"
                       r"Read-only file system|Permission denied|Input/output error")


def first_line(e: BaseException) -> str:
  """The cause in a few words: the OS's reason when the message has one, else its first line."""
  text = str(e)
  cause = _OS_CAUSE.search(text)
  if cause:
    return cause.group(0)
  lines = text.strip().splitlines()
  return lines[0][:200] if lines else type(e).__name__


def config_diff(saved: list[dict], current: list[dict],
                defaults: dict | None = None) -> list[str]:
  """Names of the fields that differ between two groups' member configs.

  A field the saved config lacks (added to Config after that checkpoint was
  written) counts as its value in `defaults`, so older checkpoints stay resumable.
  """
  if len(saved) != len(current):
    return ["variants/seeds (number of members)"]
  defaults = defaults or {}
  fields = set()
  for a, b in zip(saved, current):
    a = {**{k: v for k, v in defaults.items() if k not in a}, **a}
    fields |= {k for k in _CHECKED if a.get(k) != b.get(k)}
  return sorted(fields)


class Checkpointer:
  """A CheckpointManager for one group, created lazily (orbax is a heavy import)."""

  def __init__(self, directory: str, keep: int):
    self.directory = os.path.abspath(directory)
    self.keep = keep
    self._mngr = None

  @property
  def mngr(self):
    if self._mngr is None:
      import orbax.checkpoint as ocp

      self._mngr = ocp.CheckpointManager(  # handlers named: item_metadata reads shapes
          self.directory, item_handlers={"state": ocp.StandardCheckpointHandler(),
                                         "meta": ocp.JsonCheckpointHandler()},
          options=ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                               enable_async_checkpointing=False))
    return self._mngr

  def steps(self) -> list[int]:
    if not os.path.isdir(self.directory):
      return []
    return sorted(self.mngr.all_steps())

  def save(self, epoch: int, state: Any, meta: dict) -> None:
    """Write one checkpoint, or raise SaveError with the newest intact one named."""
    import orbax.checkpoint as ocp

    try:
      with _stderr_held():
        self.mngr.save(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    except Exception as e:  # ENOSPC arrives as OSError, or as tensorstore's RESOURCE_EXHAUSTED
      self._discard_partial()
      newest = newest_epoch(self.directory)
      raise SaveError(f"saving the epoch-{epoch} checkpoint in {self.directory} failed "
                      f"({first_line(e)}); newest intact checkpoint: "
                      f"{'none' if newest is None else f'epoch {newest}'}") from None

  def _discard_partial(self) -> None:
    """Close the manager (its threads stop writing), then remove the failed save's temp dirs."""
    mngr, self._mngr = self._mngr, None
    try:
      if mngr is not None:
        mngr.close()
    except Exception:  # it already failed; the error that matters is being raised
      pass
    if os.path.isdir(self.directory):
      for d in os.listdir(self.directory):
        if TMP_MARK in d:
          shutil.rmtree(os.path.join(self.directory, d), ignore_errors=True)

  def close(self) -> None:
    if self._mngr is not None:
      self._mngr.wait_until_finished()
      self._mngr.close()
      self._mngr = None

  def restore_latest(self, abstract_state: Callable[[dict], Any]) -> tuple[Any, dict] | None:
    """(state, meta) of the newest readable checkpoint, or None if there is none.

    `abstract_state(meta)` gives the target structure (it depends on how many
    members are alive). An unreadable checkpoint is skipped with a warning in
    favour of the one before it; if none is readable, CheckpointError.
    """
    import orbax.checkpoint as ocp

    steps = self.steps()
    bad = []
    for step in reversed(steps):
      try:
        meta = self.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        target = abstract_state(meta)
        state = self.mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))["state"]
      except CheckpointError:  # readable, but not ours to resume (a config mismatch)
        raise
      except Exception as e:  # truncated, garbage or missing files
        print(f"warning: checkpoint {os.path.join(self.directory, str(step))} is unreadable "
              f"({type(e).__name__}); trying an older one", file=sys.stderr)
        bad.append(step)
        continue
      self._set_aside(bad)
      return state, meta
    if steps:
      raise CheckpointError(f"no readable checkpoint in {self.directory}; "
                            f"delete it or re-run with --restart")
    return None

  def drop_after(self, step: int) -> None:
    """Delete checkpoints newer than `step` (left by a run killed between two saves)."""
    for s in self.steps():
      if s > step:
        self.mngr.delete(s)

  def restore_step(self, step: int, target: Any) -> tuple[Any, dict] | None:
    """(state, meta) of one step, or None if it is missing or unreadable."""
    import orbax.checkpoint as ocp

    if step not in self.steps():
      return None
    try:
      out = self.mngr.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception:  # unreadable: the caller starts over from what it has
      return None
    return out["state"], out["meta"]

  def state_on_host(self, step: int) -> Any:
    """One step's state as numpy arrays, whatever mesh wrote it: orbax restores a sharded
    array only onto the devices that saved it unless it is given a target, so the target is
    the saved shapes, on the host (export, on any machine, from a run on 8 devices)."""
    import jax
    import numpy as np
    import orbax.checkpoint as ocp

    shapes = self.mngr.item_metadata(step)["state"]
    target = jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes)
    return self.mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]

  def _set_aside(self, steps: list[int]) -> None:
    """Move unreadable newer checkpoints out of the way (the run will write those steps again)."""
    if not steps:
      return
    aside = self.directory + ".corrupt"
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      dst = os.path.join(aside, str(step))
      shutil.rmtree(dst, ignore_errors=True)
      shutil.move(os.path.join(self.directory, str(step)), dst)
    print(f"warning: moved unreadable checkpoint(s) {steps} to {aside}", file=sys.stderr)
    self.mngr.reload()
