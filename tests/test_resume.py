"""Runs that survive: kill -9 and resume bit for bit, SIGTERM, bad checkpoints."""

import json
import os
import shutil
import signal
import time

import pytest

from helpers import popen_module, read_scalars, run_module

TIMING = {"wall_seconds", "seconds", "compile_seconds", "process_seconds"}


def strip(obj):
  """results.json without wall-clock fields and the workdir (they differ by nature)."""
  if isinstance(obj, dict):
    return {k: strip(v) for k, v in obj.items() if k not in TIMING and k != "workdir"}
  if isinstance(obj, list):
    return [strip(v) for v in obj]
  return obj


def checkpoint_steps(wd):
  root = os.path.join(wd, "checkpoints")
  steps = []
  for g in os.listdir(root) if os.path.isdir(root) else []:
    if "." in g:  # <group>.best / <group>.corrupt are not the group's checkpoints
      continue
    steps += [int(d) for d in os.listdir(os.path.join(root, g)) if d.isdigit()]
  return steps


def kill_after_checkpoint(args, wd, sig=signal.SIGKILL):
  p = popen_module("experiments.dropout", *args, "--workdir", str(wd))
  deadline = time.time() + 120
  while time.time() < deadline and p.poll() is None and not checkpoint_steps(wd):
    time.sleep(0.02)
  assert p.poll() is None, "the run ended before it could be killed"
  p.send_signal(sig)
  out, err = p.communicate(timeout=60)
  return p.returncode, out, err


@pytest.mark.parametrize("seeds", ["1", "2"])
def test_kill_9_then_rerun_equals_uninterrupted(tmp_path, seeds):
  args = ["--dataset", "digits", "--epochs", "6", "--seeds", seeds, "--train-size", "600"]
  ref = run_module("experiments.dropout", *args, "--workdir", str(tmp_path / "ref"))
  assert ref.returncode == 0, ref.stderr
  code, _, _ = kill_after_checkpoint(args, tmp_path / "run")
  assert code == -signal.SIGKILL
  again = run_module("experiments.dropout", *args, "--workdir", str(tmp_path / "run"))
  assert again.returncode == 0, again.stderr
  assert "Resuming dropout+no_dropout from epoch" in again.stdout
  a = json.load(open(tmp_path / "ref" / "results.json"))
  b = json.load(open(tmp_path / "run" / "results.json"))
  assert strip(a) == strip(b)  # bit for bit: floats compared exactly
  # TensorBoard: each epoch exactly once after the purge of the killed run's extra points.
  run = "dropout" if seeds == "1" else "dropout-seed0"
  steps = [s for s, _ in read_scalars(str(tmp_path / "run" / run))["Loss"]]
  assert steps == list(range(1, 7))


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_saves_and_exits(tmp_path, sig, code):
  args = ["--dataset", "digits", "--epochs", "40"]
  got, _, err = kill_after_checkpoint(args, tmp_path, sig)
  assert got == code, err
  assert "To resume: python -m experiments.dropout" in err and "Traceback" not in err
  r = run_module("experiments.dropout", *args, "--epochs", "1", "--workdir", str(tmp_path))
  # --epochs 1 is at or below the checkpoint's epoch: the run says it is already finished.
  assert r.returncode == 0 and "Already finished dropout+no_dropout from epoch" in r.stdout


@pytest.fixture()
def finished(tmp_path):
  args = ["--dataset", "digits", "--epochs", "3", "--train-size", "300", "--workdir",
          str(tmp_path)]
  r = run_module("experiments.dropout", *args)
  assert r.returncode == 0, r.stderr
  return tmp_path, args, os.path.join(tmp_path, "checkpoints", "dropout+no_dropout")


def test_orbax_tmp_dir_is_ignored(finished):
  wd, args, gdir = finished
  os.makedirs(os.path.join(gdir, "7.orbax-checkpoint-tmp-1234", "state"))
  r = run_module("experiments.dropout", *args)
  assert r.returncode == 0, r.stderr
  assert "Already finished dropout+no_dropout from epoch 3" in r.stdout


def test_corrupted_latest_falls_back_with_warning(finished):
  wd, args, gdir = finished
  latest = os.path.join(gdir, "3")
  for root, _, files in os.walk(latest):
    for f in files:
      with open(os.path.join(root, f), "wb") as fh:
        fh.write(b"garbage")
  r = run_module("experiments.dropout", *args)
  assert r.returncode == 0, r.stderr
  assert "unreadable" in r.stderr and "Traceback" not in r.stderr
  assert "Resuming dropout+no_dropout from epoch 2" in r.stdout


def test_all_checkpoints_corrupted_one_line_error(finished):
  wd, args, gdir = finished
  for step in os.listdir(gdir):
    if step.isdigit():
      shutil.rmtree(os.path.join(gdir, step, "state"))
      os.makedirs(os.path.join(gdir, step, "state"))
  r = run_module("experiments.dropout", *args)
  assert r.returncode == 2 and "Traceback" not in r.stderr
  err = [l for l in r.stderr.splitlines() if l.startswith("error:")]
  assert len(err) == 1 and gdir in err[0] and "--restart" in err[0]


def test_config_mismatch_names_fields(finished):
  wd, args, _ = finished
  r = run_module("experiments.dropout", *args, "--learning-rate", "0.002", "--seed", "3")
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert "learning_rate" in r.stderr and "seed" in r.stderr and "--restart" in r.stderr


def test_restart_starts_fresh(finished):
  wd, args, gdir = finished
  r = run_module("experiments.dropout", *args, "--restart")
  assert r.returncode == 0 and "--restart: deleted" in r.stdout
  assert "Resuming" not in r.stdout and "Already finished" not in r.stdout
  steps = [s for s, _ in read_scalars(str(wd / "dropout"))["Loss"]]
  assert steps == [1, 2, 3]


def test_more_seeds_than_the_checkpoint_is_a_mismatch_not_corruption(finished):
  wd, args, _ = finished
  r = run_module("experiments.dropout", *args, "--seeds", "2")
  assert r.returncode == 2 and "unreadable" not in r.stderr
  assert "number of members" in r.stderr and "--restart" in r.stderr
