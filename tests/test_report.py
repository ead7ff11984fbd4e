"""Console lines in TFLearn's format, live on a terminal, sparse in a log."""

import io

from dl101_jax.host.console import Console
from dl101_jax.host.report import epoch_line, step_line, summary_table


def test_tflearn_lines():
  assert step_line(2000, 0.00072, 0.002) == "Training Step: 2000  | total loss: 0.00072 | time: 0.002s"
  m = {"train_loss": 0.81234, "train_accuracy": 0.7123, "val_loss": 0.90012, "val_accuracy": 0.689}
  assert epoch_line("Adam", 12, 50, m, 50000) == (
      "| Adam | epoch: 012 | loss: 0.81234 - acc: 0.7123 | val_loss: 0.90012 - val_acc: 0.6890 "
      "-- iter: 50000/50000")
  assert epoch_line("SGD", 2000, 2000, {"train_loss": 0.00072}, 4, acc=False) == (
      "| SGD | epoch: 2000 | loss: 0.00072 -- iter: 4/4")


def test_log_prints_every_n_epochs_and_the_last():
  out = io.StringIO()
  c = Console(epochs=7, every=3, stream=out, tty=False)
  for e in range(1, 8):
    c.show(e, [f"epoch {e}"])
  assert out.getvalue().split() == ["epoch", "3", "epoch", "6", "epoch", "7"]


def test_terminal_updates_one_block_in_place():
  out = io.StringIO()
  c = Console(epochs=3, every=100, stream=out, tty=True)
  for e in range(1, 4):
    c.show(e, [f"step {e}", f"line {e}"])
  text = out.getvalue()
  assert text.count("\x1b[2F\x1b[J") == 2  # epochs 2 and 3 overwrite the 2-line block
  assert text.endswith("step 3\nline 3\n")


def test_summary_table_marks_divergence():
  v = {"name": "lr_10", "final": dict.fromkeys(("train_accuracy", "val_accuracy")),
       "final_std": {"val_accuracy": None}, "best": None, "wall_seconds": 1.0, "diverged": True,
       "diverged_epoch": 1, "seeds": 2}
  row = summary_table({"variants": [v]}).splitlines()[-1]
  assert row == "| lr_10 | – | – | – | 1.0 | yes (epoch 1) |"


def test_summary_table_shows_spread_only_with_several_seeds():
  v = {"name": "a", "final": {"train_accuracy": 0.5, "val_accuracy": 0.25},
       "final_std": {"val_accuracy": 0.0}, "best": None, "wall_seconds": 1.0, "diverged": False,
       "seeds": 1}
  assert "| 0.2500 |" in summary_table({"variants": [v]})  # one seed: no "± 0.0000"
  v.update(seeds=3, final_std={"val_accuracy": 0.01})
  assert "| 0.2500 ± 0.0100 |" in summary_table({"variants": [v]})


def test_sub_millisecond_epochs_are_not_shown_as_zero():
  assert step_line(4, 0.5, 0.000015).endswith("| time: 15µs")


def test_tensorboardx_is_imported_without_torch_and_torch_still_imports_after(tmp_path):
  """tensorboardX's package import pulls in torch whenever it is installed (seconds of every
  run's start). A stand-in torch package on the path shows that the TensorBoard writer
  never imports it, and that a later `import torch` in the same process still works."""
  import subprocess
  import sys

  (tmp_path / "torch").mkdir()
  (tmp_path / "torch" / "__init__.py").write_text("Tensor = object\n")
  code = ("import sys; from dl101_jax.host.report import TensorBoardRun\n"
          f"TensorBoardRun({str(tmp_path / 'run')!r}, {{'lr': 0.1}})\n"
          "assert 'tensorboardX' in sys.modules and 'torch' not in sys.modules, 'torch imported'\n"
          "import torch; assert torch.Tensor is object; print('ok')\n")
  env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{__import__('os').getcwd()}"}
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
