"""Ctrl-C and SIGTERM in every phase: before training, during an epoch, after the last one."""

import json
import os
import signal
import time

import pytest

from dl101_jax.host import cli, plots
from experiments import dropout
from helpers import hparams_columns, hparams_ends, hparams_sessions, popen_module


def _wait_for(p, text, timeout=120):
  """Read p's stdout until a line contains text; returns the lines read."""
  lines, deadline = [], time.time() + timeout
  while time.time() < deadline:
    line = p.stdout.readline()
    if not line:
      break
    lines.append(line)
    if text in line:
      return lines
  raise AssertionError(f"{text!r} never appeared: {''.join(lines)}")


def test_ctrl_c_while_loading_stops_before_any_epoch(tmp_path):
  p = popen_module("experiments.dropout", "--dataset", "digits", "--epochs", "3",
                   "--workdir", str(tmp_path))
  _wait_for(p, "loading digits")
  p.send_signal(signal.SIGINT)
  out, err = p.communicate(timeout=60)
  assert p.returncode == 130, err
  assert "Ctrl-C: stopping before training starts" in err
  assert "Stopped before the next epoch started" in err and "Traceback" not in err
  assert "epoch:" not in out  # no epoch ran
  assert not os.path.exists(tmp_path / "checkpoints")


def test_ctrl_c_during_an_epoch_is_acknowledged_at_once(tmp_path):
  # 180 steps per epoch (batch 8), so the signal lands inside an epoch.
  args = ["--dataset", "digits", "--epochs", "30", "--batch-size", "8", "--workdir",
          str(tmp_path)]
  p = popen_module("experiments.dropout", *args)
  _wait_for(p, "compiled in")
  time.sleep(0.3)
  t0 = time.time()
  p.send_signal(signal.SIGINT)
  # The acknowledgement is the first stderr line, and it comes before the epoch ends.
  first = ""
  while not first.strip():
    first = p.stderr.readline()
  ack_seconds = time.time() - t0
  out, err = p.communicate(timeout=120)
  err = first + p.stderr.read() + err if not p.stderr.closed else first + err
  assert first.strip() == ("Ctrl-C: saving at the end of this epoch, then stopping "
                           "(Ctrl-C again to stop now)"), err
  assert p.returncode == 130
  assert ack_seconds < 1.0
  saved = [int(d) for d in os.listdir(tmp_path / "checkpoints" / "dropout+no_dropout")
           if d.isdigit()]
  assert saved and max(saved) < 30
  # Stopped, not ended: TensorBoard's HParams shows no status for it, never "success".
  run = str(tmp_path / "dropout")
  assert hparams_sessions(run) and hparams_ends(run) == []


def test_signal_after_the_last_epoch_still_writes_the_outputs(tmp_path, monkeypatch, capsys):
  drawn = plots.comparison

  def interrupted_while_drawing(results, path):
    os.kill(os.getpid(), signal.SIGTERM)  # arrives while the outputs are being written
    drawn(results, path)

  monkeypatch.setattr(plots, "comparison", interrupted_while_drawing)
  try:
    with pytest.raises(SystemExit) as e:
      cli.main(dropout.run, dropout.CONFIG, ["--dataset", "digits", "--epochs", "1",
                                             "--train-size", "300", "--workdir", str(tmp_path)])
  finally:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
  assert e.value.code == 143
  assert "SIGTERM: writing the results first" in capsys.readouterr().err
  res = json.load(open(tmp_path / "results.json"))
  assert [v["name"] for v in res["variants"]] == ["dropout", "no_dropout"]
  assert (tmp_path / "summary.md").exists()
  assert open(tmp_path / "comparison.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_hparams_describe_the_training_and_follow_a_resume(tmp_path, capsys):
  # In-process: this is about what the event files hold, not about the process.
  args = ["--dataset", "digits", "--train-size", "300", "--workdir", str(tmp_path)]
  cli.main(dropout.run, dropout.CONFIG, [*args, "--epochs", "1"])
  cli.main(dropout.run, dropout.CONFIG, [*args, "--epochs", "2"])
  assert "Resuming dropout+no_dropout from epoch 1" in capsys.readouterr().out
  # One session per run, rewritten by the resume: TensorBoard keeps the first metadata of a
  # tag, so a second session start beside the first would still show epochs=1.
  sessions = hparams_sessions(str(tmp_path / "dropout"))
  assert [s["epochs"] for s in sessions] == [2.0] and sessions[0]["variant"] == "dropout"
  assert hparams_ends(str(tmp_path / "dropout")) == [1]  # STATUS_SUCCESS, once it ended
  # The dashboard's columns: the variant and what differs between the runs, not the 30
  # fields they share.
  assert hparams_columns(str(tmp_path)) == {"variant": ["dropout", "no_dropout"],
                                            "dropout": [0.5, 0.0]}
  # Fewer epochs than the checkpoint holds: refused in one line, nothing rewritten (it would
  # report epoch 2's results as a 1-epoch run's).
  before = (tmp_path / "results.json").read_text()
  with pytest.raises(SystemExit) as e:
    cli.main(dropout.run, dropout.CONFIG, [*args, "--epochs", "1"])
  err = capsys.readouterr().err
  assert e.value.code == 2 and "Traceback" not in err
  assert ("--epochs: the checkpoint of dropout+no_dropout holds 2 epochs, more than the 1 "
          "asked for; give --epochs 2") in err
  assert (tmp_path / "results.json").read_text() == before
  keys = set(sessions[-1])
  assert {"learning_rate", "dropout", "net", "batch_size", "epochs", "seed"} <= keys
  assert not keys & {"workdir", "data_dir", "process_id", "coordinator", "compilation_cache",
                     "name", "seeds", "variants"}
  assert sessions[-1]["dropout"] == 0.5
