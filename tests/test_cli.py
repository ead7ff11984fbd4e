"""The command line: --help, and every bad input as one line, exit 2, no traceback."""

import json
import os

import pytest

from dl101_jax.host import cli
from dl101_jax.host import data as data_lib
from dl101_jax.config import Config, ConfigError
from experiments import __main__ as suite
from experiments import (batch_size, dropout, layers, learning_rate, lr_find, regularization,
                         start_here, sweep)
from helpers import run_module


def test_help_lists_every_field_with_default_and_description():
  r = run_module("experiments.start_here", "--help-all")
  assert r.returncode == 0
  out = r.stdout
  for flag, text in [("--epochs", "Passes over the training set"), ("--learning-rate", "2.0"),
                     ("--seed", "First random seed"), ("--workdir", "runs/<name>"),
                     ("--log-every", "Console line every N epochs"), ("--seeds", "mean"),
                     ("--checkpoint-every", "0 disables")]:
    assert flag in out and text in out, (flag, text)
  assert "one sigmoid neuron" in out.lower()


BAD = [
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-3"], "--batch-size"),
    (["--dataset", "digits", "--batch-size", "5000"], "--batch-size"),
    (["--learning-rate", "0"], "--learning-rate"),
    (["--learning-rate", "-1"], "--learning-rate"),
    (["--learning-rate", "nan"], "--learning-rate"),
    (["--learning-rate", "inf"], "--learning-rate"),
    (["--epochs", "0"], "--epochs"),
    (["--seeds", "0"], "--seeds"),
    (["--dropout", "1"], "--dropout"),
    (["--dropout", "-0.1"], "--dropout"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--train-size", "-1"], "--train-size"),
    (["--test-size", "-5"], "--test-size"),
    (["--dataset", "mnist"], "--dataset"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--dataset", "digits", "--variants", "dropout,nope"], "--variants"),
    (["--bogus-flag", "1"], "--bogus-flag"),
    (["--epochs", "three"], "--epochs"),
    (["--data-dir", "/no/such/dir"], "--data-dir"),
    (["--net", "conv32-fc10-pool"], "--net"),
]


@pytest.mark.parametrize("args,flag", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(args, flag, capsys, monkeypatch, tmp_path):
  def no_loading(*a, **k):
    raise AssertionError("data was loaded before the bad input was caught")

  monkeypatch.setattr(data_lib, "load", no_loading)
  with pytest.raises(SystemExit) as e:
    cli.main(dropout.run, dropout.CONFIG, [*args, "--workdir", str(tmp_path / "wd")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert "Traceback" not in err
  assert len(err.splitlines()) == 1, err
  assert err.startswith("error:") and flag in err, err


def test_workdir_under_a_regular_file(tmp_path, capsys):
  f = tmp_path / "file"
  f.write_text("x")
  with pytest.raises(SystemExit) as e:
    cli.main(start_here.run, start_here.CONFIG, ["--workdir", str(f / "sub")])
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: --workdir") and len(err.splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any mode bits")
def test_a_read_only_workdir_is_one_line(tmp_path, capsys):
  wd = tmp_path / "wd"
  wd.mkdir()
  os.chmod(wd, 0o555)
  try:
    with pytest.raises(SystemExit) as e:
      cli.main(start_here.run, start_here.CONFIG, ["--workdir", str(wd)])
  finally:
    os.chmod(wd, 0o755)
  assert e.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error: --workdir") and "Permission denied" in err, err
  assert len(err.splitlines()) == 1


def test_a_unicode_workdir_with_spaces_trains_and_resumes(tmp_path, capsys):
  wd = tmp_path / "résultats ✓ 実験"
  args = ["--dataset", "digits", "--epochs", "1", "--train-size", "100", "--test-size", "50",
          "--variants", "dropout", "--workdir", str(wd)]
  cli.main(dropout.run, dropout.CONFIG, args)
  first = json.loads((wd / "results.json").read_text(encoding="utf-8"))
  capsys.readouterr()
  cli.main(dropout.run, dropout.CONFIG, args)
  assert "Already finished" in capsys.readouterr().out
  again = json.loads((wd / "results.json").read_text(encoding="utf-8"))
  assert again["variants"][0]["history"] == first["variants"][0]["history"]


def test_real_process_exit_status_and_no_traceback(tmp_path):
  r = run_module("experiments.dropout", "--dataset", "digits", "--batch-size", "0",
                 "--workdir", str(tmp_path))
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert r.stderr.strip().startswith("error: --batch-size")
  r = run_module("experiments.learning_rate", "--no-such-flag")
  assert r.returncode == 2 and "Traceback" not in r.stderr and "--no-such-flag" in r.stderr


def test_config_error_names_field_value_and_allowed():
  with pytest.raises(ConfigError) as e:
    Config(dropout=1.5)
  assert e.value.field == "dropout"
  assert "--dropout" in str(e.value) and "1.5" in str(e.value) and "[0, 1)" in str(e.value)


def test_variants_are_replaces():
  c = Config(epochs=2).replace(dropout=0.5)
  assert c.dropout == 0.5 and c.epochs == 2
  with pytest.raises(Exception):
    c.epochs = 3  # frozen


def test_every_config_field_has_a_flag_and_default():
  import dataclasses

  r = run_module("experiments.start_here", "--help-all")
  for f in dataclasses.fields(Config):
    flag = "--" + f.name.replace("_", "-")
    assert flag in r.stdout, flag
  # Each default once: a docstring that states its own default gets no second one.
  assert r.stdout.count("(default:") == len(dataclasses.fields(Config))
  flat = " ".join(r.stdout.split())  # wrapping aside
  assert "(default: runs/<name>)" in flat and "runs/<name>). (default: None)" not in flat


def test_help_fits_a_screen_without_the_flags_the_experiment_refuses():
  short = run_module("experiments.dropout", "--help").stdout
  lines = short.splitlines()
  assert len(lines) <= 80 and "--dataset digits" in short.split("training:")[0]  # an example
  flags = {ln.split()[0] for ln in lines if ln.startswith("  --")}
  assert "--dropout" not in flags and "--epochs" in flags and "--seeds" in flags
  assert "--coordinator" not in flags and "--help-all" in flags
  assert lines[-1] == "Set by this experiment's variants (refused as flags): --dropout."
  everything = run_module("experiments.dropout", "--help-all").stdout
  assert "\n  --coordinator " in everything and "\n  --dropout " not in everything
  n = len([ln for ln in everything.splitlines() if ln.startswith("  --")])
  assert f"every flag ({n - len(flags)} more:" in short


VARIED = [
    (dropout, ["--dropout", "0.3"], "--dropout", "dropout=0.5"),
    (batch_size, ["--batch-size", "64"], "--batch-size", "batch_2000=2000"),
    (learning_rate, ["--learning-rate", "0.05"], "--learning-rate", "lr_1e-2=0.01"),
    (regularization, ["--l2", "0.01"], "--l2", "l2=0.001"),
    (layers, ["--net", "fc10"], "--net", "one_layer_set="),
    (sweep, ["--learning-rate", "0.05"], "--learning-rate", "--learning-rates"),
    (lr_find, ["--learning-rate", "0.05"], "--learning-rate", "--lr-range"),
]


@pytest.mark.parametrize("module,args,flag,names", VARIED,
                         ids=[m.__name__.split(".")[-1] for m, *_ in VARIED])
def test_a_flag_an_experiment_varies_is_refused_not_dropped(module, args, flag, names, capsys,
                                                             monkeypatch, tmp_path):
  def no_loading(*a, **k):
    raise AssertionError("data was loaded before the refusal")

  monkeypatch.setattr(data_lib, "load", no_loading)
  with pytest.raises(SystemExit) as e:
    cli.main(module.run, module.CONFIG, [*args, "--dataset", "digits", "--workdir",
                                         str(tmp_path)])
  err = capsys.readouterr().err.strip()
  assert e.value.code == 2 and len(err.splitlines()) == 1, err
  assert err.startswith(f"error: {flag}:") and names in err, err


def test_suite_applies_given_flags_to_every_experiment_or_refuses():
  cfgs = suite.configs(suite.CONFIG.replace(rotate=0.0, epochs=3), {"rotate", "epochs"})
  assert [c.rotate for c in cfgs] == [0.0] * 5 and [c.epochs for c in cfgs] == [3] * 5
  # Not given: each experiment keeps its own base (batch_size/learning_rate use dropout 0.5).
  assert {c.name: c.dropout for c in cfgs}["batch_size"] == 0.5
  # Given even at the suite's default value: still the same flag for all, so refused where varied.
  with pytest.raises(ConfigError) as e:
    suite.configs(suite.CONFIG, {"dropout"})
  assert e.value.field == "dropout" and "dropout experiment" in str(e.value)
  for f in ("name", "variants"):
    with pytest.raises(ConfigError, match=f"--{f}"):
      suite.configs(suite.CONFIG, {f})


def test_suite_command_line():
  r = run_module("experiments", "--name", "foo", "--dataset", "digits")
  assert r.returncode == 2 and r.stderr.strip().startswith("error: --name:"), r.stderr
  r = run_module("experiments", "--help")
  assert r.returncode == 0 and r.stdout.startswith("usage: python -m experiments ")
  # The module docstring's examples come first, one command per line.
  head = r.stdout[:r.stdout.index("--workdir")]
  assert "Examples:" in head
  assert "\n    python -m experiments --dataset digits --epochs 2" in head


def test_unknown_flag_gets_a_suggestion(capsys):
  with pytest.raises(SystemExit) as e:
    cli.parse(dropout.CONFIG, ["--epoch", "3"])
  err = capsys.readouterr().err.strip()
  assert e.value.code == 2 and err == "error: --epoch: unrecognized flag; did you mean --epochs?"
  with pytest.raises(SystemExit):
    cli.parse(dropout.CONFIG, ["--dataset", "mnist"])
  err = capsys.readouterr().err.strip()
  assert err == "error: --dataset: must be one of or, digits, cifar10, got 'mnist'"


def test_help_is_grouped_with_examples_first():
  r = run_module("experiments.dropout", "--help-all")
  out = r.stdout
  assert r.returncode == 0 and out.startswith("usage: python -m experiments.dropout")
  order = ["Examples:", "training:", "data:", "outputs:", "run control:",
           "scale-out (devices and hosts):"]
  assert [out.index(h) for h in order] == sorted(out.index(h) for h in order)
  at = lambda flag: out.index(f"\n  {flag} ")  # the flag's own line, not an example's
  assert at("--coordinator") > out.index("scale-out") > at("--checkpoint-every")
  assert at("--learning-rate") < out.index("data:") < at("--data-dir")
  sweep_help = run_module("experiments.sweep", "--help-all").stdout
  assert sweep_help.index("this experiment:") < sweep_help.index("  --learning-rates STR")
