"""A group's compiled program, run a chunk of epochs at a time: compiled once per
(epochs per call, members alive), compile timed apart, out-of-memory named; on a mesh
with a 'members' axis, the states come and go split over it (placement.py), and only
the chunk's metrics are gathered."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import numpy as np

from dl101_jax.config import Config
from dl101_jax.core import member_state, train
from dl101_jax.host import signals
from dl101_jax.host.group import GroupProgram
from dl101_jax.host.placement import bytes_per_device, spread, width
from dl101_jax.host.parallel import Runtime, is_out_of_memory, out_of_memory, to_host
from dl101_jax.host.per_device import PerDevice
from dl101_jax.host.console import Console, EpochTicker


def chunk_length(c0: Config, decide_every: int = 0, epoch: int = 0) -> int:
  """Epochs in the device call that starts after `epoch`: a log line, a checkpoint, a
  population decision (every `decide_every` epochs) and the histograms all fall on a
  chunk's end, and the last chunk ends at --epochs."""
  per_call = c0.epochs_per_log
  # --tensorboard-verbose measures every epoch's end: one epoch a call.
  for every in (c0.checkpoint_every, decide_every, 1 if c0.tensorboard_verbose else 0):
    per_call = math.gcd(per_call, every) if every else per_call
  return min(per_call - epoch % per_call, c0.epochs - epoch)


class ChunkRunner:
  """Compiles a group's program once per (epochs per call, members alive) and runs it.

  Compiling is timed apart, so epoch seconds are compute only. Out-of-memory at
  either stage becomes parallel.OutOfMemory, naming what to lower.
  """

  def __init__(self, gp: GroupProgram, rt: Runtime, console: Console, group: str,
               ticker: EpochTicker | None):
    self.run = train.compile_run_epochs(gp.prog)
    self.rt, self.console, self.group, self.ticker = rt, console, group, ticker
    self.batch_size = gp.members[0].config.batch_size
    self.keys = jax.device_put(member_state.member_keys([m.config.seed for m in gp.members]),
                               rt.replicated)
    self.compiled: dict[tuple[int, int], Any] = {}
    self.compile_seconds = 0.0
    self.state_bytes = 0  # the most bytes of states one device held after a chunk
    self.spread_over = rt.axes["members"]  # devices the members are split over
    self._gathers: dict[tuple[int, int], Any] = {}
    # --member-loop on a members mesh: the one-device program on each device's rows.
    self.per_device = PerDevice(self.run, rt) if gp.prog.member_loop and self.spread_over > 1 \
        else None

  def _oom(self, e: BaseException, what: str, members: int):
    return out_of_memory(e, what=f"{what} {self.group}", batch_size=self.batch_size,
                         members=members, rt=self.rt)

  def __call__(self, states: Any, alive: list[int], epoch: int, data: train.DeviceData,
               n: int) -> tuple[Any, dict[str, np.ndarray], float]:
    """n epochs from `epoch` for the `alive` members: (their states, placed as they came,
    n_epochs x M metrics on the host, seconds)."""
    keys_M = spread(self.keys, alive, self.rt.member_sharding)  # padded as the states are
    m, mp = len(alive), width(keys_M)
    if width(states) != mp:  # the loop keeps them placed (placement.py); this is its check
      raise AssertionError(f"{self.group}: states hold {width(states)} members, the chunk {mp}")
    args = (states, keys_M, jax.device_put(np.int32(epoch), self.rt.replicated), data)
    try:
      if (n, mp) not in self.compiled:
        t0 = time.perf_counter()
        self.console.say(f"{self.group}: compiling {m} model(s) into one program"
                         + (f" ({mp} over {self.spread_over} devices)"
                            if self.spread_over > 1 else "")
                         + (", a copy for each device" if self.per_device else "") + "...")
        self.compiled[n, mp] = (self.per_device.compile(args, n) if self.per_device else
                                self.run.lower(*args, n_epochs=n).compile())
        self.compile_seconds += time.perf_counter() - t0
        self.console.say(f"{self.group}: compiled in {time.perf_counter() - t0:.1f} s")
    except Exception as e:
      if is_out_of_memory(e):
        raise self._oom(e, "compiling", m) from None
      raise
    signals.stop_if_pending()  # no epoch starts after a signal during loading or compiling
    signals.phase("training")
    if self.ticker:
      self.ticker.start(epoch)
    t0 = time.perf_counter()
    try:
      with jax.transfer_guard("disallow"):  # explicit transfers only, inside the epochs
        states, mets_ExM = self.compiled[n, mp](*args)
      self.state_bytes = max(self.state_bytes, bytes_per_device(states))
      if self.spread_over > 1:  # the states stay split; only the metrics come together
        mets_ExM = self._gather(m, mp)(mets_ExM)
      mets_ExM = to_host(_wait(mets_ExM))  # the only device->host copy: E epochs x M members
    except Exception as e:
      if is_out_of_memory(e):
        raise self._oom(e, "training", m) from None
      raise
    return states, mets_ExM, time.perf_counter() - t0

  def _gather(self, m: int, mp: int) -> Callable:
    """Jitted, so that every process of a multi-host run moves its part: the E x M metrics
    of the first M members, the padding dropped, on every device (to_host reads them)."""
    if (m, mp) not in self._gathers:  # m: a member that diverged leaves fewer
      self._gathers[m, mp] = jax.jit(lambda mets: jax.tree.map(lambda a: a[:, :m], mets),
                                     out_shardings=self.rt.replicated)
    return self._gathers[m, mp]


def _wait(tree: Any) -> Any:
  """Block until `tree` is computed, polling, so that signal handlers run meanwhile.

  A blocking device_get would hold the main thread in C++ for the whole chunk,
  and Python runs signal handlers only between bytecodes.
  """
  leaves = jax.tree.leaves(tree)
  while not all(x.is_ready() for x in leaves):
    time.sleep(0.05)
  return tree
