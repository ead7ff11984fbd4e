"""Use what you trained: per-class results, pictures, best epoch, export and predict."""

import json
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from dl101_jax.host import cli
from dl101_jax import export, predict
from experiments import dropout
from helpers import popen_module, run_module

# 300 images, as test_resume and test_faults: the same programs, compiled once (the cache).
ARGS = ["--dataset", "digits", "--epochs", "3", "--train-size", "300"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  wd = tmp_path_factory.mktemp("dropout")
  r = run_module("experiments.dropout", *ARGS, "--workdir", str(wd))
  assert r.returncode == 0, r.stderr
  return wd, r


def test_results_say_what_the_network_is_and_where_it_errs(trained):
  wd, r = trained
  res = json.load(open(wd / "results.json"))
  assert "| conv1_1 | 4x4x64 | 36,928 |" in r.stdout and "192,458 parameters per model" in r.stdout
  digits = [str(d) for d in range(10)]
  for v in res["variants"]:
    assert v["parameters"] == 192_458
    assert list(v["per_class_accuracy"]) == digits
    assert all(0 <= a <= 1 for a in v["per_class_accuracy"].values())
    h = v["per_seed"][0]
    assert v["best_epoch_per_seed"] == [h["epoch"][int(np.argmax(h["val_accuracy"]))]]
  err = res["errors"]
  best = max(res["variants"], key=lambda v: v["final"]["val_accuracy"])
  assert err["best_variant"] == best["name"] and err["classes"] == digits
  cm = np.asarray(err["confusion"])
  assert cm.shape == (10, 10) and cm.sum() == 360  # every validation image once
  # Per-class accuracy is the confusion matrix's diagonal over its rows.
  np.testing.assert_allclose(np.diag(cm) / cm.sum(1),
                             [best["per_class_accuracy"][d] for d in digits], atol=1e-6)
  np.testing.assert_allclose(np.trace(cm) / 360, best["final"]["val_accuracy"], atol=1e-6)
  summary = open(wd / "summary.md").read()
  assert "Per-class validation accuracy" in summary and "| 9 |" in summary
  for name in ("confusion.png", "predictions.png"):
    img = Image.open(wd / name)
    assert img.size[0] > 500 and img.size[1] > 300


def _test_png(tmp_path, k):
  from dl101_jax.host import data

  ds = data.load_digits()
  path = tmp_path / f"digit{k}.png"
  Image.fromarray(ds.x_val[k][..., 0]).save(path)
  return str(path), ds


def test_exported_model_classifies_a_png_as_the_trained_model_does(trained, tmp_path):
  wd, _ = trained
  # The variant whose predictions results.json keeps (the best one), so the comparison
  # with the training run's own predictions below always runs.
  res = json.load(open(wd / "results.json"))
  variant = res["errors"]["best_variant"]
  r = run_module("dl101_jax.export", "--workdir", str(wd), "--variant", variant)
  assert r.returncode == 0, r.stderr
  model_dir = wd / "export" / f"{variant}-seed0"
  spec = json.load(open(model_dir / "model.json"))
  assert spec["variant"] == variant and spec["seed"] == 0 and spec["epoch"] == 3
  preds = res["errors"]["predictions_first_seed"]
  files = [_test_png(tmp_path, k)[0] for k in range(4)]
  r = run_module("dl101_jax.predict", str(model_dir), *files, "--json")
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout)
  assert [o["file"] for o in out] == files and all(len(o["top"]) == 3 for o in out)
  for o in out:
    probs = [p for _, p in o["top"]]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
  # The in-process model: the same member's params, applied to the same test images.
  from dl101_jax import predict

  model = predict.load(str(model_dir))
  _, ds = _test_png(tmp_path, 0)
  top1 = np.argmax(model.probabilities(ds.x_val[:4]), axis=1)
  assert [o["top"][0][0] for o in out] == [str(k) for k in top1]
  assert [int(o["top"][0][0]) for o in out] == preds[:4]  # the training run's own
  text = run_module("dl101_jax.predict", str(model_dir), files[0]).stdout
  assert text.startswith(f"{files[0]}: {out[0]['top'][0][0]} ")


def test_best_epoch_export(trained):
  wd, _ = trained
  r = run_module("dl101_jax.export", "--workdir", str(wd), "--variant", "no_dropout", "--best",
                 "--out", str(wd / "best"))
  assert r.returncode == 0, r.stderr
  spec = json.load(open(wd / "best" / "model.json"))
  res = json.load(open(wd / "results.json"))
  v = next(v for v in res["variants"] if v["name"] == "no_dropout")
  assert spec["best"] and spec["epoch"] == v["best_epoch_per_seed"][0]


@pytest.mark.parametrize("args,needle", [
    (["MISSING_DIR", "x.png"], "is not an exported model"),
    (["MODEL", "/no/such.png"], "no such file or folder: /no/such.png"),
    (["MODEL", "NOT_IMAGE"], "is not an image that can be read"),
])
def test_predict_bad_input_is_one_line(trained, tmp_path, args, needle):
  wd, _ = trained
  if not (wd / "export" / "dropout-seed0").exists():
    assert run_module("dl101_jax.export", "--workdir", str(wd), "--variant", "dropout"
                      ).returncode == 0
  (tmp_path / "notes.png").write_text("not an image")
  subst = {"MISSING_DIR": str(tmp_path), "MODEL": str(wd / "export" / "dropout-seed0"),
           "NOT_IMAGE": str(tmp_path / "notes.png")}
  r = run_module("dl101_jax.predict", *[subst.get(a, a) for a in args])
  assert r.returncode == 2 and "Traceback" not in r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


def test_export_bad_input_is_one_line(trained):
  wd, _ = trained
  for args, needle in [(["--workdir", str(wd), "--variant", "nope"], "no variant 'nope'"),
                       (["--workdir", str(wd), "--variant", "dropout", "--seed", "7"],
                        "has seeds [0]"),
                       (["--workdir", "/nonexistent", "--variant", "dropout"], "no checkpoints")]:
    r = run_module("dl101_jax.export", *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert needle in r.stderr


def test_export_mid_run_and_after_a_resume(tmp_path, capsys):
  args = ["--dataset", "digits", "--epochs", "40", "--batch-size", "16", "--train-size", "600",
          "--workdir", str(tmp_path)]
  p = popen_module("experiments.dropout", *args)
  gdir = tmp_path / "checkpoints" / "dropout+no_dropout"
  deadline = time.time() + 120
  while time.time() < deadline and not (gdir.exists() and any(d.isdigit()
                                                              for d in os.listdir(gdir))):
    time.sleep(0.05)
  p.send_signal(signal.SIGKILL)
  p.communicate()
  # The rest in-process: the kill above is what needs a process of its own.
  export.main(["--workdir", str(tmp_path), "--variant", "dropout", "--out", str(tmp_path / "mid")])
  epoch_mid = json.load(open(tmp_path / "mid" / "model.json"))["epoch"]
  assert 1 <= epoch_mid < 40
  cli.main(dropout.run, dropout.CONFIG, [*args[:2], "--epochs", str(epoch_mid + 1), *args[4:]])
  assert "Resuming" in capsys.readouterr().out
  export.main(["--workdir", str(tmp_path), "--variant", "dropout", "--out",
               str(tmp_path / "after")])
  assert json.load(open(tmp_path / "after" / "model.json"))["epoch"] == epoch_mid + 1
  digit = tmp_path / "d.png"
  Image.fromarray(np.full((8, 8), 200, np.uint8)).save(digit)
  capsys.readouterr()
  predict.main([str(tmp_path / "after"), str(digit), "--json"])
  assert len(json.loads(capsys.readouterr().out)[0]["top"]) == 3


def test_or_neuron_exports_and_predicts(tmp_path):
  r = run_module("experiments.start_here", "--checkpoint-every", "1000", "--workdir",
                 str(tmp_path))
  assert r.returncode == 0, r.stderr
  assert run_module("dl101_jax.export", "--workdir", str(tmp_path), "--variant", "or"
                    ).returncode == 0
  r = run_module("dl101_jax.predict", str(tmp_path / "export" / "or-seed0"), "--inputs", "0,1",
                 "--json")
  top = json.loads(r.stdout)[0]["top"]
  assert top[0][0] == "1" and top[0][1] > 0.9


@pytest.mark.parametrize("average", [["--ema", "0.9"], ["--lookahead", "5"]])
def test_a_batchnorm_averaged_tta_model_exports_as_it_was_evaluated(tmp_path, capsys, average):
  """BatchNorm's statistics (Lookahead's averaged ones), the weights' average and
  test-time augmentation all travel with the exported model: it predicts what the run's
  evaluation did."""
  from dl101_jax.host import data

  cli.main(dropout.run, dropout.CONFIG, ["--dataset", "digits", "--epochs", "2", "--train-size",
                                         "300", "--variants", "no_dropout", "--batch-norm",
                                         *average, "--tta", "2", "--workdir", str(tmp_path)])
  export.main(["--workdir", str(tmp_path), "--variant", "no_dropout", "--out",
               str(tmp_path / "m")])
  model = predict.load(str(tmp_path / "m"))
  assert set(model.variables) == {"params", "batch_stats"}
  assert float(np.abs(model.variables["batch_stats"]["bn0_0"]["mean"]).sum()) > 0  # trained
  res = json.load(open(tmp_path / "results.json"))
  x = data.load_digits().x_val[:32]
  # Standalone, in evaluation mode (running statistics): the training run's own predictions.
  assert np.argmax(model.probabilities(x), axis=1).tolist() == \
      res["errors"]["predictions_first_seed"]
