"""Orbax checkpoints of a group: stacked train states plus a JSON of everything else.

Layout: <workdir>/checkpoints/<group>/<epoch>/{state,meta}. `meta` holds the
epoch, the global step, which members are still alive, the history so far and
the configs, so a resumed run continues exactly and a changed config is caught.
Orbax writes into a temporary directory and renames it when complete, so a save
killed halfway is never seen as a checkpoint.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any, Callable

# Fields whose change does not change what is computed: resuming across them is fine.
# `epochs` too: a finished run continues when asked for more epochs.
_IGNORED = {"name", "log_every", "workdir", "checkpoint_every", "keep_checkpoints", "restart",
            "debug_nans", "variants", "devices", "platform", "coordinator", "num_processes",
            "process_id", "compilation_cache", "epochs", "data_dir", "seeds"}


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be used; the message names the directory and the way out."""


def config_diff(saved: list[dict], current: list[dict]) -> list[str]:
  """Names of the fields that differ between two groups' member configs."""
  if len(saved) != len(current):
    return ["variants/seeds (number of members)"]
  fields = set()
  for a, b in zip(saved, current):
    fields |= {k for k in set(a) | set(b) if k not in _IGNORED and a.get(k) != b.get(k)}
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

      self._mngr = ocp.CheckpointManager(
          self.directory, item_names=("state", "meta"),
          options=ocp.CheckpointManagerOptions(max_to_keep=self.keep, create=True,
                                               enable_async_checkpointing=True))
    return self._mngr

  def steps(self) -> list[int]:
    if not os.path.isdir(self.directory):
      return []
    return sorted(self.mngr.all_steps())

  def save(self, epoch: int, state: Any, meta: dict) -> None:
    import orbax.checkpoint as ocp

    self.mngr.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def wait(self) -> None:
    if self._mngr is not None:
      self._mngr.wait_until_finished()

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


def clear(directory: str) -> bool:
  """Delete a checkpoint tree; True if there was one."""
  if os.path.isdir(directory):
    shutil.rmtree(directory)
    return True
  return False
