"""Writing outputs so that a reader never sees half a file, and removing run folders.

A full disk or a kill mid-write leaves the previous file (or none), never a
truncated one: every output is written to a temporary name in the same folder
and renamed over the target (atomic on POSIX). On failure the temporary file is
removed and the OSError propagates for the caller to report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import Any, Iterator


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
