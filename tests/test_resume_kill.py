"""kill -9 in the middle of a run, then the same command: bit for bit the uninterrupted result."""

from helpers import killed_and_resumed, read_scalars, strip


def test_kill_9_then_rerun_equals_uninterrupted(tmp_path):
  # Two seeds x two variants, with BatchNorm: its running statistics must come back too.
  args = ["--dataset", "digits", "--epochs", "6", "--seeds", "2", "--train-size", "600",
          "--batch-norm"]
  a, b, again = killed_and_resumed("experiments.dropout", args, tmp_path)
  assert "Resuming dropout+no_dropout from epoch" in again.stdout
  assert strip(a) == strip(b)  # bit for bit: floats compared exactly
  # TensorBoard: each epoch exactly once after the purge of the killed run's extra points.
  steps = [s for s, _ in read_scalars(str(tmp_path / "run" / "dropout-seed0"))["Loss"]]
  assert steps == list(range(1, 7))
