"""Ctrl-C and SIGTERM, acknowledged at once in every phase of a run.

Phases, set by the code that runs them:
  "setup"     loading data, compiling: a signal is acknowledged and the run stops when
              that step returns, before any epoch starts;
  "training"  the first signal prints one line; the run saves at the end of the
              current epoch (the loop asks `pending()` between chunks) and stops;
              a second Ctrl-C stops at once;
  "finishing" after the last epoch: results.json, summary and pictures are still
              written, then the run exits with the signal's status.
The CLI installs the handlers; the loop only calls the `should_stop` it is
given, which defaults to `pending`.
"""

from __future__ import annotations

import signal
import sys

_pending: list[int] = []
_phase = ["setup"]


# Both derive from BaseException, as KeyboardInterrupt does: raised from a signal handler
# anywhere, they must pass through the `except Exception` of library code unharmed.
class Interrupted(BaseException):
  """A signal arrived during training and a checkpoint was saved; `code` is 130 or 143."""

  def __init__(self, code: int):
    self.code = code
    super().__init__(f"interrupted ({code})")


class StoppedEarly(BaseException):
  """A signal arrived before training started; `code` is 130 or 143."""

  def __init__(self, code: int):
    self.code = code
    super().__init__(f"stopped before training ({code})")


def exit_code(signum: int) -> int:
  return 130 if signum == signal.SIGINT else 143


def _on_signal(signum, frame):
  name = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
  if _phase[0] == "setup":
    # Recorded and acknowledged, never raised from here: a raise that lands in a gc callback
    # or destructor is only printed ("Exception ignored") and lost. stop_if_pending() stops
    # the run at the next boundary (after loading, before any epoch); a second Ctrl-C now.
    if _pending and signum == signal.SIGINT:
      raise KeyboardInterrupt
    if not _pending:
      print(f"\n{name}: stopping before training starts", file=sys.stderr, flush=True)
    _pending.append(signum)
    return
  if _pending and signum == signal.SIGINT:
    raise KeyboardInterrupt  # a second Ctrl-C: stop now
  if not _pending:
    what = ("saving at the end of this epoch, then stopping (Ctrl-C again to stop now)"
            if _phase[0] == "training" else "writing the results first, then stopping")
    print(f"\n{name}: {what}", file=sys.stderr, flush=True)
  _pending.append(signum)


def install() -> None:
  """Handle SIGINT/SIGTERM as above (the CLI calls this before loading anything)."""
  _pending.clear()
  _phase[0] = "setup"
  signal.signal(signal.SIGINT, _on_signal)
  signal.signal(signal.SIGTERM, _on_signal)


def phase(name: str) -> None:
  """Enter 'setup', 'training' or 'finishing' (see the module docstring)."""
  _phase[0] = name


def stop_if_pending() -> None:
  """In setup, raise StoppedEarly if a signal came in (called where setup gives way to
  training). During training the loop itself saves and stops at the end of the epoch."""
  if _pending and _phase[0] == "setup":
    raise StoppedEarly(exit_code(_pending[0]))


def pending() -> int | None:
  """The first signal received during training, or None."""
  return _pending[0] if _pending else None
