"""The console: one live block on a terminal, in-epoch progress, and a stdout that outlives
its reader. What is printed is the run's report (report.py); this is where it goes."""

from __future__ import annotations

import os
import threading
import time
import sys
from typing import Any, TextIO


class Console:
  """One live block updated in place on a terminal; every `every` epochs (and the last) otherwise."""

  def __init__(self, epochs: int, every: int, stream: TextIO | None = None,
               tty: bool | None = None, enabled: bool = True):
    self.stream = stream or sys.stdout
    self.tty = self.stream.isatty() if tty is None else tty
    self.epochs, self.every, self.enabled = epochs, every, enabled
    self._shown = 0
    self._progress = False
    self._lock = threading.Lock()  # progress ticks arrive on a runtime thread

  def progress(self, text: str) -> None:
    """One status line rewritten in place (terminals only), under the live block."""
    if not (self.enabled and self.tty):
      return
    with self._lock:
      self.stream.write("\r\x1b[K" + text)
      self.stream.flush()
      self._progress = True

  def _clear_progress(self) -> None:
    if self._progress:
      self.stream.write("\r\x1b[K")
      self._progress = False

  def show(self, epoch: int, lines: list[str], *, force: bool = False) -> None:
    if not self.enabled:
      return
    with self._lock:
      self._show(epoch, lines, force)

  def _show(self, epoch: int, lines: list[str], force: bool) -> None:
    self._clear_progress()
    if self.tty:
      up = f"\x1b[{self._shown}F\x1b[J" if self._shown else ""
      self.stream.write(up + "\n".join(lines) + "\n")
      self._shown = len(lines)
    elif force or epoch % self.every == 0 or epoch == self.epochs:
      self.stream.write("\n".join(lines) + "\n")
    self.stream.flush()

  def new_block(self) -> None:
    """The next live block starts below whatever is on screen now."""
    self._shown = 0

  def say(self, text: str) -> None:
    if self.enabled:
      with self._lock:
        self._clear_progress()
        self.stream.write(text + "\n")
        self.stream.flush()
        self._shown = 0  # the live block is above this; start a new one


class EpochTicker:
  """In-epoch progress for a terminal: steps done, percent, elapsed and ETA of the epoch.

  `tick(epoch, steps_done)` is the program's callback; `start` is called by the
  host loop right before each chunk of epochs runs.
  """

  def __init__(self, console: Console, steps_per_epoch: int, epochs: int):
    self.console, self.spe, self.epochs = console, steps_per_epoch, epochs
    self.t0, self.epoch0 = time.perf_counter(), 0

  def start(self, epoch0: int) -> None:
    self.t0, self.epoch0 = time.perf_counter(), epoch0

  def tick(self, epoch, steps_done) -> None:
    epoch, done = int(epoch), int(steps_done)
    elapsed = time.perf_counter() - self.t0
    total_done = (epoch - self.epoch0) * self.spe + done
    per_step = elapsed / max(total_done, 1)
    eta = per_step * (self.spe - done)
    self.console.progress(f"epoch {epoch + 1}/{self.epochs}: step {done}/{self.spe} "
                          f"({100 * done // self.spe}%), {elapsed:.0f} s, epoch ETA {eta:.0f} s")


class PipeSafeStdout:
  """sys.stdout that outlives its reader (`| head -1`, quitting `| less`): the first write
  that meets a closed pipe sends fd 1 to /dev/null, and the run goes on to finish, save and
  write its outputs; cli.main then exits with EXIT_PIPE. The console is not the run."""

  def __init__(self, inner: Any):
    self.inner, self.lost = inner, False

  def _guard(self, fn, *a):
    if self.lost:
      return None
    try:
      return fn(*a)
    except BrokenPipeError:
      self.lost = True
      os.dup2(os.open(os.devnull, os.O_WRONLY), self.inner.fileno())
      return None

  def write(self, text: str) -> int:
    self._guard(self.inner.write, text)
    return len(text)

  def flush(self) -> None:
    self._guard(self.inner.flush)

  def __getattr__(self, name: str) -> Any:  # isatty, fileno, encoding, ...
    return getattr(self.inner, name)
