"""Writing outputs so that a reader never sees half a file, removing run folders, manifests.

A full disk or a kill mid-write leaves the previous file (or none), never a
truncated one: every output is written to a temporary name in the same folder
and renamed over the target (atomic on POSIX). On failure the temporary file is
removed and the OSError propagates for the caller to report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from typing import Any, Iterator

from dl101_jax.config import ConfigError

# What python -m dl101_jax.export writes and predict reads. 3: + manifest.json (checked before
# use); 2: variables/ (params, batch_stats); 1: params/. Here, beside the manifest, so that
# predict can refuse a damaged export before it imports JAX or orbax.
EXPORT_FORMAT = "dl101_jax.export/3"
OLD_EXPORT_FORMATS = ("dl101_jax.export/2", "dl101_jax.export/1")  # read unverified


def cache_root() -> str:
  """The project's cache (compiled programs, the digits split): $XDG_CACHE_HOME/dl101_jax."""
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(base, "dl101_jax")


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
  """Yields a temporary path next to `path`; renamed to `path` when the block succeeds."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  root, ext = os.path.splitext(path)
  tmp = f"{root}.tmp-{os.getpid()}{ext}"  # same extension: matplotlib picks the format from it
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def write_text(path: str, text: str) -> None:
  with atomic_path(path) as tmp:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())


def write_json(path: str, obj: Any) -> None:
  write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def remove_tree(directory: str) -> bool:
  """Delete a folder and everything in it; True if there was one."""
  if os.path.isdir(directory):
    shutil.rmtree(directory)
    return True
  return False


LOCK_NAME = ".lock"


class WorkdirBusy(ConfigError):
  """Another live process holds the workdir; `pid` is what its lock file says. The CLI
  prints it as one line naming --workdir, exit status 2."""

  def __init__(self, directory: str, pid: str):
    self.directory, self.pid = directory, pid
    super().__init__("workdir", f"{directory} is in use by another run (pid {pid or '?'}); "
                     f"wait for it to finish, stop it, or use another --workdir")


@contextlib.contextmanager
def hold_workdir(directory: str) -> Iterator[None]:
  """One run per workdir: an exclusive fcntl.flock on <directory>/.lock, holding our pid.

  The kernel drops a flock when its process ends, however it ends (kill -9 included), so a
  crashed run never leaves the lock stuck: the file stays, but the next run takes it over.
  Raises WorkdirBusy while another live process holds it. A workdir that cannot be written
  is not refused here; the run reports it in its own words when it first writes.
  (No library in the requirements does file locks; fcntl is the standard library's.)
  """
  import fcntl

  path = os.path.join(directory, LOCK_NAME)
  try:
    os.makedirs(directory, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError:
    yield
    return
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise WorkdirBusy(directory, os.pread(fd, 32, 0).decode(errors="replace").strip()) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    yield
  finally:
    os.close(fd)  # releases the flock


MANIFEST = "manifest.json"


def _digest(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def write_manifest(directory: str) -> None:
  """manifest.json: every file under `directory` with its size and sha256, written last and
  atomically, so a folder with a manifest is complete."""
  listed = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      rel = os.path.relpath(path, directory)
      if rel != MANIFEST:
        listed[rel] = {"bytes": os.path.getsize(path), "sha256": _digest(path)}
  write_json(os.path.join(directory, MANIFEST), {"files": dict(sorted(listed.items()))})


def check_manifest(directory: str) -> str | None:
  """What is wrong with the folder against its manifest (the first problem), or None."""
  try:
    with open(os.path.join(directory, MANIFEST)) as f:
      listed = json.load(f)["files"]
    items = [(rel, int(v["bytes"]), str(v["sha256"])) for rel, v in listed.items()]
  except FileNotFoundError:
    return f"it has no {MANIFEST} (an interrupted export?)"
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return f"its {MANIFEST} is not a manifest"
  for rel, size, digest in items:
    path = os.path.join(directory, rel)
    if not os.path.isfile(path):
      return f"{rel} is missing"
    if os.path.getsize(path) != size:
      return f"{rel} has {os.path.getsize(path)} bytes, not {size}"
    if _digest(path) != digest:
      return f"{rel} was changed since export (its sha256 differs)"
  return None
