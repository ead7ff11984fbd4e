"""kill -9 in the middle of a run, then the same command: bit for bit the uninterrupted result."""

import json
import signal

import pytest

from helpers import kill_after_checkpoint, read_scalars, run_module, strip


@pytest.mark.parametrize("seeds", ["2"])  # seeds 1 takes the same path with 2 members
def test_kill_9_then_rerun_equals_uninterrupted(tmp_path, seeds):
  # With BatchNorm: its running statistics must come back from the checkpoint too.
  args = ["--dataset", "digits", "--epochs", "6", "--seeds", seeds, "--train-size", "600",
          "--batch-norm"]
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
