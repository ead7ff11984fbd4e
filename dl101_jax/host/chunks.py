"""A group's compiled program, run a chunk of epochs at a time: compiled once per
(epochs per call, members alive), compile timed apart, out-of-memory named; on a mesh
with a 'members' axis, the members padded and spread over it for the chunk."""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from dl101_jax.config import Config
from dl101_jax.core import member_state, train
from dl101_jax.host import signals
from dl101_jax.host.group import GroupProgram, select
from dl101_jax.host.parallel import Runtime, is_out_of_memory, out_of_memory, to_host
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
    self.spread_over = rt.axes["members"]  # devices the members are split over
    self._moves: dict[tuple[str, int, int], Any] = {}

  def _oom(self, e: BaseException, what: str, members: int):
    return out_of_memory(e, what=f"{what} {self.group}", batch_size=self.batch_size,
                         members=members, rt=self.rt)

  def __call__(self, states: Any, alive: list[int], epoch: int, data: train.DeviceData,
               n: int) -> tuple[Any, dict[str, np.ndarray], float]:
    """n epochs from `epoch` for the `alive` members: (states, n_epochs x M metrics on the
    host, seconds)."""
    keys_M = select(self.keys, alive)
    m = keys_M.shape[0]
    mp = -(-m // self.spread_over) * self.spread_over  # members padded to fill the axis
    if self.spread_over > 1:
      states, keys_M = self._move("spread", m, mp)(states, keys_M)
    args = (states, keys_M, jax.device_put(np.int32(epoch), self.rt.replicated), data)
    try:
      if (n, mp) not in self.compiled:
        t0 = time.perf_counter()
        self.console.say(f"{self.group}: compiling {m} model(s) into one program"
                         + (f" ({mp} over {self.spread_over} devices)"
                            if self.spread_over > 1 else "") + "...")
        self.compiled[n, mp] = self.run.lower(*args, n_epochs=n).compile()
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
      if self.spread_over > 1:
        states, mets_ExM = self._move("gather", m, mp)(states, mets_ExM)
      mets_ExM = to_host(_wait(mets_ExM))  # the only device->host copy: E epochs x M members
    except Exception as e:
      if is_out_of_memory(e):
        raise self._oom(e, "training", m) from None
      raise
    return states, mets_ExM, time.perf_counter() - t0

  def _move(self, way: str, m: int, mp: int) -> Callable:
    """Jitted, so that every process of a multi-host run moves its part. 'spread': the M
    members' states and keys padded to mp (copies of the last member, whose results are
    dropped) and split over the 'members' devices; 'gather': the first M members' states
    and E x M metrics back on every device, as the host side keeps them between chunks."""
    if (way, m, mp) not in self._moves:  # m: a member that diverged leaves fewer
      if way == "spread":
        pad = lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], mp - m, axis=0)])  # noqa: E731
        fn = lambda states, keys: jax.tree.map(pad, (states, keys))  # noqa: E731
        out = self.rt.member_sharding
      else:
        fn = lambda states, mets: (jax.tree.map(lambda a: a[:m], states),  # noqa: E731
                                   jax.tree.map(lambda a: a[:, :m], mets))
        out = self.rt.replicated
      self._moves[way, m, mp] = jax.jit(fn, out_shardings=out)
    return self._moves[way, m, mp]


def _wait(tree: Any) -> Any:
  """Block until `tree` is computed, polling, so that signal handlers run meanwhile.

  A blocking device_get would hold the main thread in C++ for the whole chunk,
  and Python runs signal handlers only between bytecodes.
  """
  leaves = jax.tree.leaves(tree)
  while not all(x.is_ready() for x in leaves):
    time.sleep(0.05)
  return tree
