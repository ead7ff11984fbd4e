"""Each experiment end to end on digits, as a user runs it; start_here's golden numbers."""

import json
import os

import numpy as np
import pytest

from helpers import hparam_tags, hparams_ends, read_scalars, run_module

EXPECTED = {
    "layers": ["one_layer_set", "three_layer_sets"],
    "dropout": ["dropout", "no_dropout"],
    "regularization": ["no_regularization", "l2", "weight_decay"],
    "batch_size": ["batch_50", "batch_1437"],  # digits has 1437: batch_2000 is named as run
    "learning_rate": ["lr_1e-4", "lr_1e-3", "lr_1e-2"],
}
TAGS = {"Loss", "Accuracy", "Loss/Validation", "Accuracy/Validation"}


@pytest.fixture(scope="module")
def all_experiments(tmp_path_factory):
  wd = tmp_path_factory.mktemp("all")
  r = run_module("experiments", "--dataset", "digits", "--epochs", "1", "--workdir", str(wd),
                 timeout=300)
  assert r.returncode == 0, r.stderr[-3000:]
  return wd, r


@pytest.mark.parametrize("name", list(EXPECTED))
def test_experiment_outputs(all_experiments, name):
  wd, _ = all_experiments
  res = json.load(open(wd / name / "results.json"))
  for k in ("experiment", "dataset", "devices", "processes", "platform", "config", "variants"):
    assert k in res
  assert res["experiment"] == name
  assert res["dataset"] == {"name": "digits", "train_size": 1437, "test_size": 360,
                            "validation_size": 360, "validation": "the test split"}
  assert res["devices"] >= 1 and res["processes"] == 1 and res["platform"] == "cpu"
  assert [v["name"] for v in res["variants"]] == EXPECTED[name]
  for v in res["variants"]:
    for k in ("name", "seeds", "diverged", "diverged_epoch", "wall_seconds", "final",
              "final_std", "history"):
      assert k in v
    assert set(v["final"]) >= {"train_loss", "train_accuracy", "val_loss", "val_accuracy"}
    assert v["final_std"]["val_accuracy"] == 0.0  # one seed
    eff = v["config"]["effective"]
    assert all(eff[k] == val for k, val in v["config"]["overrides"].items())
    assert set(v["history"]) >= {"epoch", "step", "seconds", "train_loss", "train_accuracy",
                                 "val_loss", "val_accuracy"}
    assert v["history"]["epoch"] == [1] and not v["diverged"]
    scalars = read_scalars(str(wd / name / v["name"]))
    assert TAGS <= set(scalars), scalars.keys()
    assert scalars["Accuracy/Validation"][0] == (1, pytest.approx(v["final"]["val_accuracy"]))
    assert "hparams" in hparam_tags(str(wd / name / v["name"]))
    # Training and validation overlay on one chart: the same tags in train/ and validation/.
    # (add_hparams() would have left a timestamped sub-run; there is none.)
    run = wd / name / v["name"]
    assert {d for d in os.listdir(run) if os.path.isdir(run / d)} == {"train", "validation", "steps"}
    train, val = read_scalars(str(run / "train")), read_scalars(str(run / "validation"))
    assert set(train) == set(val) == {"epoch_loss", "epoch_accuracy"}
    assert val["epoch_accuracy"] == scalars["Accuracy/Validation"]
    assert train["epoch_loss"] == scalars["Loss"]
  png = open(wd / name / "comparison.png", "rb").read()
  assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
  summary = open(wd / name / "summary.md").read()
  assert "| variant | train acc | val acc (mean ± std) |" in summary
  # Each experiment judges its own claims as it ends, under the rule, and says why one seed
  # decides nothing; batch_2000's claims are judged on the batch it ran as (1437).
  from experiments.claims import CLAIMS

  ids = [c.id for c in CLAIMS if c.experiment == name]
  assert [v["id"] for v in res["claims"]["verdicts"]] == ids
  assert all(v["verdict"] == "inconclusive" for v in res["claims"]["verdicts"])
  assert summary.rstrip().endswith(res["claims"]["table"].rstrip())
  assert "run with --seeds 3 or more" in summary and "Rule: supported when" in summary
  assert "The tutorial's claims are about CIFAR-10 at 20+ epochs" in summary  # digits, 1 epoch
  # TensorBoard's Images and Text pages, read back from the workdir's event files.
  from helpers import events

  values = {v.tag: v for ev in events(str(wd / name)) for v in ev.summary.value}
  for tag in ("comparison", "confusion", "predictions", "augmented"):
    picture = values[tag].image
    assert picture.encoded_image_string[:8] == b"\x89PNG\r\n\x1a\n" and picture.width > 300
  assert (values["augmented"].image.width, values["augmented"].image.height) == (8 * 80, 2 * 80)
  texts = {t: values[f"{t}/text_summary"] for t in ("summary", "config")}  # tensorboardX's tags
  assert {v.metadata.plugin_data.plugin_name for v in texts.values()} == {"text"}
  texts = {t: v.tensor.string_val[0].decode() for t, v in texts.items()}
  assert texts["summary"].startswith(f"# {name}") and f'"name": "{name}"' in texts["config"]
  for i in ids:
    assert f"| ({i}) " in summary
  if name == "batch_size":
    assert res["claims"]["renamed"] == {"batch_2000": "batch_1437"}
    assert "batch_1437 steps_per_epoch 1 (n=1)" in summary


def test_report_links_every_picture(all_experiments):
  wd, r = all_experiments
  report = open(wd / "REPORT.md").read()
  for name in EXPECTED:
    assert f"({name}/comparison.png)" in report and f"## {name}" in report
  assert "| Adam" in r.stdout and "val_acc" in r.stdout
  # Every epoch line names its variant (each experiment has several), one step line each.
  for name in ("one_layer_set", "three_layer_sets", "batch_50", "batch_1437", "lr_1e-2"):
    assert f"| Adam:{name} | epoch: 001 |" in r.stdout, name
  assert "| Adam | epoch:" not in r.stdout
  assert "Rule: supported when the 95% confidence interval" in report
  # With one seed no interval can be estimated: every claim is inconclusive, none is dropped
  # (3a and 3b are judged on batch_1437, what batch_2000 ran as on digits).
  assert report.count("| **inconclusive** |") == 9 and "batch_1437 seconds_per_step" in report


def test_batch_size_plots_steps_and_seconds(all_experiments):
  wd, _ = all_experiments
  res = json.load(open(wd / "batch_size" / "results.json"))
  steps = {v["name"]: v["history"]["step"][0] for v in res["variants"]}
  assert steps == {"batch_50": 29, "batch_1437": 1}  # 1437 examples; 2000 capped to 1437
  used = {v["name"]: v["config"]["effective"]["batch_size"] for v in res["variants"]}
  assert used == {"batch_50": 50, "batch_1437": 1437}
  assert "batch_1437" in open(wd / "batch_size" / "summary.md").read()
  assert set(res["software"]) >= {"python", "jax", "jaxlib", "flax", "optax", "git_commit"}


def test_one_variant_run_lists_the_other_claims_as_not_judged_and_logs_its_learning_rate(
    tmp_path, capsys):
  from dl101_jax.host import cli
  from experiments import dropout

  cli.main(dropout.run, dropout.CONFIG, ["--dataset", "digits", "--epochs", "3",
                                         "--train-size", "300", "--variants", "dropout",
                                         "--optimizer", "nesterov", "--schedule", "warmup_linear",
                                         "--learning-rate", "0.05", "--checkpoint-every", "0",
                                         "--workdir", str(tmp_path)])
  res = json.load(open(tmp_path / "results.json"))
  assert res["claims"]["verdicts"] == []
  assert res["claims"]["not_judged"] == [{"id": "0b", "missing": ["no_dropout"]},
                                         {"id": "1", "missing": ["no_dropout"]}]
  out = capsys.readouterr().out
  assert ("(1) dropout improves validation accuracy: not judged here: no_dropout did not run "
          "(--variants).") in out
  assert "| claim |" not in open(tmp_path / "summary.md").read()  # no empty table
  # TensorBoard's LearningRate: airbench94's shape, written out: 0.2x at step 0, 1x at 23% of
  # the T = 3 x 4 steps, then down to 0.07x at T; each epoch's point is its last step's.
  T, peak = 12, int(0.23 * 12)
  f = lambda t: 0.2 + 0.8 * t / peak if t <= peak else 1 - 0.93 * (t - peak) / (T - peak)  # noqa: E731
  got = read_scalars(str(tmp_path / "dropout"))["LearningRate"]
  assert [e for e, _ in got] == [1, 2, 3]
  assert [x for _, x in got] == pytest.approx([0.05 * f(4 * e - 1) for e in (1, 2, 3)], rel=1e-5)


def test_start_here_golden(tmp_path):
  r = run_module("experiments.start_here", "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr
  out = r.stdout
  assert "Training Step: 2000" in out and "| SGD | epoch: 2000 | loss:" in out
  assert "Testing OR operator" in out
  res = json.load(open(tmp_path / "results.json"))
  p = res["predictions"]
  # The tutorial: 0.0401, 0.9749, 0.9754, 0.99997, loss 0.00072.
  assert p["0 or 0"] == pytest.approx(0.04, abs=0.02)
  assert p["0 or 1"] == pytest.approx(0.975, abs=0.015)
  assert p["1 or 0"] == pytest.approx(0.975, abs=0.015)
  assert p["1 or 1"] > 0.9995
  assert res["final_loss"] == pytest.approx(0.0007, abs=0.0003)
  scalars = read_scalars(str(tmp_path / "or"))
  assert [s for s, _ in scalars["Loss"]] == list(range(1, 2001))
  assert scalars["Loss"][-1][1] == pytest.approx(res["final_loss"], rel=1e-5)
  # It names what it wrote, and only that: no checkpoints for a run this short.
  assert f"outputs in {tmp_path}/ (results.json, summary.md, TensorBoard runs)" in out
  assert not (tmp_path / "checkpoints").exists()
  assert "or: 4 train / 0 test examples, 2000 epochs" in open(tmp_path / "summary.md").read()


def test_divergence_is_a_result(tmp_path):
  r = run_module("experiments.sweep", "--dataset", "digits", "--epochs", "2",
                 "--learning-rates", "1e-3,10", "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr
  res = json.load(open(tmp_path / "results.json"))
  by = {v["name"]: v for v in res["variants"]}
  bad, good = "lr_10-dropout_0.5-wd_0", "lr_0.001-dropout_0.5-wd_0"
  assert by[bad]["diverged"] and by[bad]["diverged_epoch"] == 1
  assert not by[good]["diverged"] and by[good]["history"]["epoch"] == [1, 2]
  assert "yes (epoch 1)" in open(tmp_path / "summary.md").read()
  # In TensorBoard's HParams: the diverged run failed, the other succeeded (api_pb2.Status).
  assert hparams_ends(str(tmp_path / bad)) == [2] and hparams_ends(str(tmp_path / good)) == [1]


def test_a_sweep_whose_every_setting_diverges_says_so(tmp_path):
  r = run_module("experiments.sweep", "--dataset", "digits", "--epochs", "1",
                 "--learning-rates", "10,20", "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr  # it crashed formatting a best that did not exist
  sweep = json.load(open(tmp_path / "results.json"))["sweep"]
  assert sweep["best"] is None and all(p["diverged"] for p in sweep["points"])
  assert "Every one of the 2 settings diverged" in r.stdout


def test_sweep_grid_is_one_program(tmp_path):
  r = run_module("experiments.sweep", "--dataset", "digits", "--epochs", "1", "--seeds", "2",
                 "--learning-rates", "1e-3,1e-2", "--dropouts", "0,0.5", "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr
  res = json.load(open(tmp_path / "results.json"))
  sw = res["sweep"]
  assert sw["programs"] == 1 and len(sw["points"]) == 4
  assert {(p["learning_rate"], p["dropout"]) for p in sw["points"]} == {
      (1e-3, 0.0), (1e-3, 0.5), (1e-2, 0.0), (1e-2, 0.5)}
  assert sw["best"]["val_accuracy"] == max(p["val_accuracy"] for p in sw["points"])
  # Selection on 10% held out of the training set; the test split scored once, for the best.
  assert res["dataset"]["train_size"] == 1437 - 143 and res["dataset"]["validation_size"] == 143
  assert sw["selected_on"] == "143 examples held out of the training set"
  assert len(sw["best"]["test_accuracy_per_seed"]) == 2 and 0 < sw["best"]["test_accuracy"] <= 1
  assert all("test_accuracy" not in p for p in sw["points"])
  assert all(v["seeds"] == 2 and v["final_std"]["val_accuracy"] is not None
             for v in res["variants"])
  assert open(tmp_path / "sweep.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
  assert "one compiled program" in r.stdout
  # Two seeds: TensorBoard gets a mean run per variant beside its seeds' runs, the mean of
  # the seeds' curves, overlaid train and validation like theirs.
  for v in res["variants"]:
    mean = read_scalars(str(tmp_path / f"{v['name']}-mean"))
    seeds = [read_scalars(str(tmp_path / f"{v['name']}-seed{s}")) for s in (0, 1)]
    want = np.mean([s["Accuracy/Validation"][0][1] for s in seeds])
    assert mean["Accuracy/Validation"] == [(1, pytest.approx(want, rel=1e-6))]
    assert read_scalars(str(tmp_path / f"{v['name']}-mean" / "validation"))[
        "epoch_accuracy"] == mean["Accuracy/Validation"]


def test_the_learning_rate_finder_is_one_program_and_suggests_the_lowest_loss(tmp_path):
  import matplotlib.image

  r = run_module("experiments.lr_find", "--dataset", "digits", "--train-size", "400",
                 "--lr-range", "1e-4,10", "--lr-points", "6", "--seeds", "2",
                 "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.load(open(tmp_path / "results.json"))
  found = res["lr_find"]
  assert found["rates"] == pytest.approx(list(np.geomspace(1e-4, 10, 6)))
  assert len(res["groups"]) == 1 and len(res["variants"]) == 6  # one program, all rates
  # Judged on the held-out split, as the finder says; the suggestion is the lowest mean loss,
  # recomputed here from each seed's history; 10 (Adam) diverges and is left out.
  assert found["selected_on"] == "40 examples held out of the training set"
  mean = {}
  for v, rate in zip(res["variants"], found["rates"]):
    finals = [h["val_loss"][-1] for h in v["per_seed"] if h["val_loss"]]
    if not v["diverged"] and len(finals) == 2 and all(np.isfinite(finals)):
      mean[rate] = np.mean(finals)
  assert found["diverged"][-1] and found["val_loss"][-1] is None
  assert [x is None for x in found["val_loss"]] == [r not in mean for r in found["rates"]]
  assert found["suggested"] == min(mean, key=mean.get)
  assert f"Suggested learning rate: {found['suggested']:.3g}" in r.stdout
  picture = matplotlib.image.imread(tmp_path / "lr_find.png")
  assert picture.shape[0] > 300 and picture.shape[1] > 500


@pytest.mark.parametrize("flags, message", [
    (["--lr-range", "1e-3,1e-4"], "--lr-range: needs 0 < lo < hi"),
    (["--lr-range", "0,1"], "--lr-range: needs 0 < lo < hi"),
    (["--lr-range", "1e-3,inf"], "--lr-range: needs 0 < lo < hi, both finite"),
    (["--lr-range", "1e-3"], "--lr-range: must be 'lo,hi'"),
    (["--lr-points", "1"], "--lr-points: must be an integer in 2..64"),
    (["--lr-points", "65"], "--lr-points: must be an integer in 2..64")])
def test_the_finders_flags_are_checked_in_one_line(flags, message, capsys, tmp_path):
  from dl101_jax.host import cli
  from experiments import lr_find

  with pytest.raises(SystemExit) as e:
    cli.main(lr_find.run, lr_find.CONFIG, [*flags, "--dataset", "digits",
                                           "--workdir", str(tmp_path)])
  err = capsys.readouterr().err
  assert e.value.code == 2 and message in err and "Traceback" not in err
  assert not os.listdir(tmp_path)  # refused before anything was written


def test_runs_without_checkpoints(tmp_path):
  # --checkpoint-every 0: no checkpoints at all, and the kept-best params survive donation.
  r = run_module("experiments.dropout", "--dataset", "digits", "--epochs", "2",
                 "--train-size", "300", "--checkpoint-every", "0", "--workdir", str(tmp_path))
  assert r.returncode == 0, r.stderr
  assert not (tmp_path / "checkpoints").exists()
  res = json.load(open(tmp_path / "results.json"))
  assert all(len(v["per_class_accuracy"]) == 10 for v in res["variants"])
