"""Runs that survive: kill -9 and resume bit for bit, SIGTERM, bad checkpoints."""

import os
import shutil
import signal

import pytest

from helpers import kill_after_checkpoint, read_scalars, run_module

@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_signal_saves_and_exits(tmp_path, sig, code):
  args = ["--dataset", "digits", "--epochs", "40", "--train-size", "300"]  # ARGS' programs
  got, _, err = kill_after_checkpoint(args, tmp_path, sig)
  assert got == code, err
  assert "To resume: python -m experiments.dropout" in err and "Traceback" not in err
  saved = max(int(d) for d in os.listdir(tmp_path / "checkpoints" / "dropout+no_dropout")
              if d.isdigit())
  # --epochs at the checkpoint's epoch: the run says it is already finished (below it, it
  # is refused: test_signals).
  r = run_module("experiments.dropout", *args, "--epochs", str(saved), "--workdir", str(tmp_path))
  assert r.returncode == 0 and f"Already finished dropout+no_dropout from epoch {saved}" in r.stdout


ARGS = ["--dataset", "digits", "--epochs", "3", "--train-size", "300"]


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
  wd = tmp_path_factory.mktemp("finished")
  r = run_module("experiments.dropout", *ARGS, "--workdir", str(wd))
  assert r.returncode == 0, r.stderr
  return wd


@pytest.fixture()
def finished(trained_once, tmp_path):
  """A finished 3-epoch run of its own (a copy: each test damages it differently)."""
  wd = tmp_path / "run"
  shutil.copytree(trained_once, wd)
  return wd, [*ARGS, "--workdir", str(wd)], os.path.join(wd, "checkpoints", "dropout+no_dropout")


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
