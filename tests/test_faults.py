"""Faults survived: a full disk (checkpoints, outputs) and exhausted memory; then the same
command, with space or memory back, ends equal to an uninterrupted run."""

import errno
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dl101_jax.host import cli, plots
from experiments import dropout
from helpers import ROOT, env, run_module

ARGS = ["--dataset", "digits", "--epochs", "3", "--train-size", "300"]  # test_resume's programs


def _finals(path):
  res = json.load(open(path))
  return {v["name"]: [v["final"][k] for k in ("train_loss", "val_loss", "val_accuracy")]
          for v in res["variants"]}


def _assert_equal_runs(a, b):
  fa, fb = _finals(a), _finals(b)
  assert fa.keys() == fb.keys()
  for k in fa:
    np.testing.assert_allclose(fa[k], fb[k], rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  wd = tmp_path_factory.mktemp("ref")
  r = run_module("experiments.dropout", *ARGS, "--workdir", str(wd))
  assert r.returncode == 0, r.stderr
  return wd / "results.json"


def _one_error_line(stderr):
  assert "Traceback" not in stderr, stderr
  lines = [l for l in stderr.strip().splitlines() if l.strip()]
  assert len(lines) == 1 and lines[0].startswith("error: "), stderr
  return lines[0]


@pytest.fixture()
def small_disk(tmp_path):
  """A 5 MB tmpfs: room for one checkpoint of the digits dropout pair (~4 MB), not two."""
  if os.geteuid() != 0:
    pytest.skip("needs root to mount a small tmpfs")
  mnt = tmp_path / "small"
  mnt.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mnt)]).returncode:
    pytest.skip("mounting a tmpfs is not allowed here")
  yield mnt
  subprocess.run(["umount", "-l", str(mnt)])


def test_disk_full_while_checkpointing(small_disk, reference):
  wd = small_disk / "w"
  r = run_module("experiments.dropout", *ARGS, "--workdir", str(wd))
  assert r.returncode == cli.EXIT_DISK, r.stderr
  line = _one_error_line(r.stderr)
  gdir = wd / "checkpoints" / "dropout+no_dropout"
  assert "checkpoint" in line and str(gdir) in line and "newest intact checkpoint:" in line
  assert "re-run the same command" in line
  assert not glob.glob(str(gdir / "*orbax-checkpoint-tmp*"))  # no half-written save left
  kept = sorted(int(d) for d in os.listdir(gdir) if d.isdigit())
  assert (f"epoch {kept[-1]}" if kept else "none") in line
  # More space, the same command: it resumes and ends as if nothing had happened.
  subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
  again = run_module("experiments.dropout", *ARGS, "--workdir", str(wd))
  assert again.returncode == 0, again.stderr
  assert ("Resuming" in again.stdout) == bool(kept)
  _assert_equal_runs(wd / "results.json", reference)


def test_disk_full_while_writing_outputs(tmp_path, reference, monkeypatch, capsys):
  drawn = plots.comparison

  def disk_full(results, path):
    raise OSError(errno.ENOSPC, "No space left on device", path)

  monkeypatch.setattr(plots, "comparison", disk_full)
  with pytest.raises(SystemExit) as e:
    cli.main(dropout.run, dropout.CONFIG, [*ARGS, "--workdir", str(tmp_path)])
  assert e.value.code == cli.EXIT_DISK
  line = _one_error_line(capsys.readouterr().err)
  assert str(tmp_path / "comparison.png") in line and "No space left on device" in line
  assert "newest intact checkpoint: epoch 3 (dropout+no_dropout)" in line
  assert not (tmp_path / "comparison.png").exists()
  assert not glob.glob(str(tmp_path / "*.tmp*"))  # no half-written file under another name
  # Space back: the re-run writes the outputs from the final checkpoint, no retraining.
  monkeypatch.setattr(plots, "comparison", drawn)
  cli.main(dropout.run, dropout.CONFIG, [*ARGS, "--workdir", str(tmp_path)])
  out = capsys.readouterr().out
  assert "Already finished dropout+no_dropout from epoch 3" in out and "compiling" not in out
  assert open(tmp_path / "comparison.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  _assert_equal_runs(tmp_path / "results.json", reference)


def test_atomic_json_leaves_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
  from dl101_jax.host import files

  path = tmp_path / "results.json"
  files.write_json(str(path), {"a": 1})

  def fail(*a, **k):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(files.os, "fsync", fail)
  with pytest.raises(OSError):
    files.write_json(str(path), {"a": 2})
  assert json.load(open(path)) == {"a": 1} and os.listdir(tmp_path) == ["results.json"]


def test_out_of_memory_is_one_line(tmp_path):
  # 16 models x batch 1437 need a ~2.8 GB buffer; 3 GB of address space is not enough.
  args = ["--dataset", "digits", "--epochs", "1", "--batch-size", "1437", "--seeds", "8",
          "--workdir", str(tmp_path / "w")]
  # The limit is set in the child itself, then it execs the run (no fork hook in this
  # JAX-threaded test process).
  capped = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "os.execv(sys.executable, [sys.executable, '-m', 'experiments.dropout', *sys.argv[1:]])")
  r = subprocess.run([sys.executable, "-c", capped, *args], cwd=ROOT, env=env(),
                     capture_output=True, text=True, timeout=300)
  if r.returncode < 0 or "bad_alloc" in r.stderr:
    pytest.skip("the C++ allocator aborted before XLA could report (address space too small)")
  assert r.returncode == cli.EXIT_MEMORY, r.stderr
  line = _one_error_line(r.stderr)
  assert "out of memory" in line and "batch 1437" in line and "16 model(s)" in line
  assert "1 cpu device(s)" in line and "--batch-size" in line and "--seeds" in line
  # Memory back: the same command finishes.
  again = run_module("experiments.dropout", *args)
  assert again.returncode == 0, again.stderr
