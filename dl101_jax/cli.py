"""Command line from the frozen config dataclass (tyro), with one-line errors.

Every failure a user can cause ends as `error: --flag: what is allowed`, exit
status 2, no traceback. SIGINT/SIGTERM save a checkpoint and exit 130/143.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import sys
from typing import Callable, TypeVar

C = TypeVar("C")

_BOX = re.compile(r"[│╭╮╰╯─┌┐└┘]")


def _tyro_message(text: str) -> str:
  """The body of tyro's boxed error (title and help hints dropped), on one line."""
  body = []
  for raw in text.splitlines():
    if "╭" in raw or "╰" in raw:  # top border holds the title; bottom ends the box
      continue
    line = _BOX.sub("", raw).strip()
    if not line and body:
      break
    if "─" in raw and not line:  # a separator rule: the message is over
      if body:
        break
      continue
    if line.startswith(("For full helptext", "Argument helptext")):
      break
    if line:
      body.append(line)
  msg = " ".join(body) or " ".join(_BOX.sub("", text).split())[:300]
  # "Error parsing Config: --epochs: must be ..." / "Error parsing --epochs: ..." -> "--epochs: ..."
  return re.sub(r"^Error parsing (?:[A-Za-z_]+: )?", "", msg)


def fail(message: str, code: int = 2):
  print(f"error: {message}", file=sys.stderr)
  raise SystemExit(code)


def parse(default: C, args: list[str] | None = None, *, prog: str | None = None,
          description: str | None = None) -> C:
  """A config of default's type from the command line, defaults taken from `default`."""
  import tyro

  from dl101_jax.config import ConfigError

  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err):
      return tyro.cli(type(default), default=default, args=args, prog=prog,
                      description=description)
  except ConfigError as e:  # older tyro lets __post_init__'s error through
    fail(str(e), 2)
  except SystemExit as e:
    if e.code not in (0, None):
      fail(_tyro_message(err.getvalue()), 2)
    raise


def preflight(config) -> None:
  """Checks that need the file system, before any data loading or compiling."""
  from dl101_jax.config import ConfigError

  if config.data_dir is not None and not os.path.isdir(os.path.expanduser(config.data_dir)):
    raise ConfigError("data_dir", f"must be an existing directory, got {config.data_dir!r}")
  wd = config.run_dir
  try:
    os.makedirs(wd, exist_ok=True)
    probe = os.path.join(wd, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
  except OSError as e:
    raise ConfigError("workdir", f"must be a directory that can be created and written, "
                      f"got {wd!r} ({e.strerror})") from None


def _invocation() -> str:
  """'python -m experiments.dropout' when run with -m, else 'python path/to/script.py'."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  return f"python -m {spec.name}" if spec and spec.name else f"python {sys.argv[0]}"


def resume_command() -> str:
  args = [a for a in sys.argv[1:] if a != "--restart"]
  return " ".join([_invocation(), *map(shlex.quote, args)])


def main(run: Callable[[C], object], default: C, args: list[str] | None = None) -> None:
  """Parse flags, run, and turn expected failures into one-line errors."""
  from dl101_jax.checkpoint import CheckpointError
  from dl101_jax.config import ConfigError
  from dl101_jax.data import DataError
  from dl101_jax.loop import Interrupted, install_signal_handlers

  module = sys.modules.get(run.__module__)
  doc = (module.__doc__ or "").strip().split("\n\n")[0] if module else None
  try:
    config = parse(default, args, prog=_invocation(), description=doc)
  except BrokenPipeError:  # `--help | head`: the reader left; exit quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(1) from None
  try:
    preflight(config)
    install_signal_handlers()
    run(config)
  except ConfigError as e:
    fail(str(e), 2)
  except CheckpointError as e:
    fail(str(e), 2)
  except DataError as e:
    fail(str(e), 1)
  except Interrupted as e:
    print(f"\nInterrupted: checkpoint saved in {config.run_dir}/checkpoints. "
          f"To resume: {resume_command()}", file=sys.stderr)
    raise SystemExit(e.code) from None
  except KeyboardInterrupt:
    print(f"\nInterrupted before a checkpoint. To resume from the last one: "
          f"{resume_command()}", file=sys.stderr)
    raise SystemExit(130) from None
