"""Command line from the frozen config dataclass (tyro), with one-line errors.

Every failure a user can cause ends as `error: --flag: what is allowed`, exit
status 2, no traceback. SIGINT/SIGTERM save a checkpoint and exit 130/143.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import shlex
import sys
from typing import Any, Callable, TypeVar

from dl101_jax.host.cli_tyro import Rejected, event_message, flags_of, tyro_message

C = TypeVar("C")

_given: set[str] = set()


def given_fields() -> set[str]:
  """Config fields set explicitly on the last parsed command line."""
  return set(_given)


def _record_given(config_type: type, args: list[str]) -> None:
  _given.clear()
  for f in dataclasses.fields(config_type):
    flag = "--" + f.name.replace("_", "-")
    if any(a == flag or a.startswith(flag + "=") or a == "--no-" + flag[2:] for a in args):
      _given.add(f.name)


# Exit statuses beyond 0: 1 data could not be loaded, 2 bad input, 130/143 Ctrl-C/SIGTERM,
# these two (sysexits.h's EX_IOERR and EX_OSERR), and 141: the run finished, but stdout's
# reader had left.
EXIT_DISK = 74
EXIT_MEMORY = 71
EXIT_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose pipe closed


def _newest(config) -> str:
  """'newest intact checkpoint: epoch 3 (dropout+no_dropout)', from the workdir's checkpoints."""
  from dl101_jax.host.checkpoint import newest_epoch

  root = os.path.join(config.run_dir, "checkpoints")
  groups = sorted(os.listdir(root)) if os.path.isdir(root) else []
  found = [(g, newest_epoch(os.path.join(root, g))) for g in groups]
  found = [f"epoch {n} ({g})" for g, n in found if n is not None]
  return "newest intact checkpoint: " + (", ".join(found) if found else "none")


def say_error(text: str) -> None:
  """One line on the real stderr (a failed or interrupted save silenced fd 2 against orbax's
  thread noise; this writes past it)."""
  from dl101_jax.host.checkpoint import real_stderr

  if real_stderr() == 2:
    print(text, file=sys.stderr, flush=True)
  else:
    os.write(real_stderr(), (text + "\n").encode())


def fail(message: str, code: int = 2, *, quiet_after: bool = False):
  """Print the one line and exit. `quiet_after`: drop whatever library threads still
  print while the process shuts down (orbax after a failed write), so this line is the last."""
  say_error(f"error: {message}")
  if quiet_after:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
  raise SystemExit(code)


def parse(default: C, args: list[str] | None = None, *, prog: str | None = None,
          description: str | None = None, hidden: frozenset[str] = frozenset()) -> C:
  """A config of default's type from the command line, defaults taken from `default`.
  `hidden`: fields the experiment refuses, left out of --help."""
  import tyro

  from dl101_jax.config import ConfigError

  argv = sys.argv[1:] if args is None else list(args)
  if any(a in ("-h", "--help", "--help-all") for a in argv):
    from dl101_jax.host.cli_help import render

    full = "--help-all" in argv
    sys.stdout.write(render(default, prog or _invocation(), description, hidden=hidden,
                            full=full))
    sys.stdout.flush()
    raise SystemExit(0)
  _record_given(type(default), argv)
  flags = flags_of(type(default))

  def hook(event):
    msg = event_message(event, flags)
    if msg:
      raise Rejected(msg)

  # tyro >= 1.0 reports parse failures as structured events; older ones only as text.
  errors = getattr(getattr(tyro, "_errors", None), "on_parse_error", None)
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err), (errors(hook) if errors else contextlib.nullcontext()):
      return tyro.cli(type(default), default=default, args=argv, prog=prog,
                      description=description)
  except Rejected as e:
    fail(str(e), 2)
  except ConfigError as e:  # older tyro lets __post_init__'s error through
    fail(str(e), 2)
  except SystemExit as e:
    if e.code not in (0, None):
      fail(tyro_message(err.getvalue()), 2)
    raise


def preflight(config) -> None:
  """Checks that need the file system, before any data loading or compiling."""
  from dl101_jax.config import ConfigError

  if config.data_dir is not None and not os.path.isdir(os.path.expanduser(config.data_dir)):
    raise ConfigError("data_dir", f"must be an existing directory, got {config.data_dir!r}")
  wd = config.run_dir
  # The highest directory this probe creates: removed again, so a run refused later
  # (a bad flag found after parsing) leaves nothing behind.
  created = os.path.abspath(wd)
  while not os.path.exists(os.path.dirname(created)) and os.path.dirname(created) != created:
    created = os.path.dirname(created)
  created = None if os.path.exists(created) else created
  try:
    os.makedirs(wd, exist_ok=True)
    probe = os.path.join(wd, ".write_test")
    with open(probe, "w") as f:
      f.write("ok")
    os.remove(probe)
    if created:
      from dl101_jax.host.files import remove_tree

      remove_tree(created)
  except OSError as e:
    raise ConfigError("workdir", f"must be a directory that can be created and written, "
                      f"got {wd!r} ({e.strerror})") from None


def _invocation() -> str:
  """'python -m experiments.dropout' when run with -m, else 'python path/to/script.py'."""
  spec = getattr(sys.modules.get("__main__"), "__spec__", None)
  if spec and spec.name:
    return f"python -m {spec.name.removesuffix('.__main__')}"
  return f"python {sys.argv[0]}"


def resume_command() -> str:
  args = [a for a in sys.argv[1:] if a != "--restart"]
  return " ".join([_invocation(), *map(shlex.quote, args)])


def describe(docstring: str) -> str:
  """--help's description: the docstring's first line and its example commands."""
  paras = docstring.strip().split("\n\n")
  examples = [p for p in paras[1:2] if p.startswith("    python")]
  if not examples:
    return paras[0]
  # tyro reflows the lines of a paragraph unless they are indented, as commands are here.
  cmds = "\n".join("    " + line.strip() for line in examples[0].splitlines())
  return f"{paras[0]}\n\nExamples:\n\n{cmds}"


def _refused(module) -> frozenset[str]:
  """What an experiment refuses as flags (left out of --help): what its variants set, and its
  REFUSED (search's)."""
  return frozenset({k for v in getattr(module, "VARIANTS", {}).values() for k in v}
                   | set(getattr(module, "REFUSED", {})))


def main(run: Callable[[C], object], default: C, args: list[str] | None = None) -> None:
  """Parse flags, run, and turn expected failures into one-line errors."""
  from dl101_jax.host import console

  module = sys.modules.get(run.__module__)
  doc = describe(module.__doc__ or "") if module else None
  try:
    config = parse(default, args, prog=_invocation(), description=doc, hidden=_refused(module))
  except BrokenPipeError:  # `--help | head`: the reader left; exit quietly
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise SystemExit(1) from None
  sys.stdout = stdout = console.PipeSafeStdout(sys.stdout)
  try:
    with _one_line_errors(config):
      _run(run, config, stdout)
  finally:
    sys.stdout = stdout.inner  # main may run again in this process (tests, notebooks)


def _run(run: Callable[[C], object], config: C, stdout: Any) -> None:
  from dl101_jax.host import signals

  preflight(config)
  signals.install()
  run(config)
  late = signals.pending()
  if late:  # arrived after the last epoch: the outputs are written; now stop as asked
    raise SystemExit(signals.exit_code(late))
  if stdout.lost:
    say_error(f"note: stdout was closed before the run ended; it finished anyway, with "
              f"its outputs in {config.run_dir}/")
    raise SystemExit(EXIT_PIPE)


@contextlib.contextmanager
def _one_line_errors(config: Any):
  """Each expected failure as one line and its exit status, with how to go on."""
  from dl101_jax.host import signals
  from dl101_jax.host.checkpoint import CheckpointError, SaveError
  from dl101_jax.config import ConfigError
  from dl101_jax.host.data import DataError
  from dl101_jax.host.parallel import OutOfMemory

  try:
    yield
  except (ConfigError, CheckpointError) as e:
    fail(str(e), 2)
  except DataError as e:
    fail(str(e), 1)
  except SaveError as e:
    fail(f"{e}. Free space or use another --workdir, then re-run the same command to resume.",
         EXIT_DISK, quiet_after=True)
  except OSError as e:  # outputs, event files: written atomically, so nothing is half-written
    where = e.filename or "an output file"
    fail(f"could not write {where} ({e.strerror or e}); {_newest(config)}. Free space or use "
         f"another --workdir, then re-run the same command to continue.", EXIT_DISK,
         quiet_after=True)
  except OutOfMemory as e:
    fail(str(e), EXIT_MEMORY, quiet_after=True)
  except signals.Interrupted as e:
    say_error(f"\nInterrupted: checkpoint saved in {config.run_dir}/checkpoints. "
              f"To resume: {resume_command()}")
    raise SystemExit(e.code) from None
  except signals.StoppedEarly as e:
    say_error(f"\nStopped before the next epoch started (finished checkpoints are kept). "
              f"To continue: {resume_command()}")
    raise SystemExit(e.code) from None
  except KeyboardInterrupt:
    say_error(f"\nInterrupted before a checkpoint. To resume from the last one: "
              f"{resume_command()}")
    raise SystemExit(130) from None
