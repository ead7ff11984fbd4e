"""tools/compare_runs.py: the largest per-seed differences between two workdirs, read back."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tools"))
import compare_runs  # noqa: E402


def _write(wd, name, per_seed, mesh):
  os.makedirs(wd / name, exist_ok=True)
  (wd / name / "results.json").write_text(json.dumps({
      "experiment": name, "mesh": mesh,
      "variants": [{"name": "v", "per_seed": per_seed}]}))


def _seed(val_loss):
  return {"epoch": [1, 2], "train_loss": [2.0, 1.0], "val_loss": val_loss}


def test_differences_are_the_largest_over_seeds_at_epoch_1_and_the_last(tmp_path, capsys):
  _write(tmp_path / "a", "dropout", [_seed([1.5, 0.5]), _seed([1.4, 0.4])],
         {"members": 8, "data": 1})
  _write(tmp_path / "b", "dropout", [_seed([1.5, 0.5]), _seed([1.4 + 3e-4, 0.4 - 2e-3])],
         {"members": 1, "data": 1})
  out = tmp_path / "cmp"
  assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
  c = json.load(open(str(out) + ".json"))
  row = c["experiments"]["dropout"]
  assert row["seeds"] == 2 and row["mesh"] == [{"members": 8, "data": 1}, {"members": 1, "data": 1}]
  assert abs(row["val_loss"]["epoch_1"] - 3e-4) < 1e-9
  assert abs(row["val_loss"]["last_epoch"] - 2e-3) < 1e-9
  assert row["train_loss"] == {"epoch_1": 0.0, "last_epoch": 0.0}
  # Every value but the placement: the experiment's and the variant's names, and 2 seeds x
  # (2 epochs + 2 train + 2 val losses); the mesh is left out. Two differ.
  assert (row["numbers"], row["numbers_differing"]) == (14, 2)
  assert row["first_differing"] == ["/variants[0]/per_seed[1]/val_loss[0]",
                                    "/variants[0]/per_seed[1]/val_loss[1]"]
  md = open(str(out) + ".md").read()
  assert "| dropout | 2 | 8×1 vs 1×1 |" in md and "3.0e-04 / 2.0e-03" in md
  assert "| 2 of 14 |" in md
  assert md in capsys.readouterr().out


def test_a_missing_seed_or_a_shorter_history_fails(tmp_path):
  _write(tmp_path / "a", "layers", [_seed([1.0, 0.5]), _seed([1.0, 0.5])], None)
  _write(tmp_path / "b", "layers", [_seed([1.0, 0.5])], None)
  assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1
  _write(tmp_path / "b", "layers", [_seed([1.0, 0.5]), _seed([1.0])], None)
  c = compare_runs.compare(str(tmp_path / "a"), str(tmp_path / "b"))
  assert c["problems"] == ["layers ('v', 1): val_loss has 2 vs 1 epochs"]


def test_common_seeds_compares_the_seeds_both_ran(tmp_path):
  _write(tmp_path / "a", "learning_rate", [_seed([1.0, 0.5]), _seed([1.0, 0.5])], None)
  _write(tmp_path / "b", "learning_rate", [_seed([1.0, 0.5 + 1e-2]), _seed([1.0, 0.5]),
                                           _seed([9.0, 9.0])], None)
  assert compare_runs.main([str(tmp_path / "a"), str(tmp_path / "b")]) == 1  # seed 2: only b
  c = compare_runs.compare(str(tmp_path / "a"), str(tmp_path / "b"), common_seeds=True)
  row = c["experiments"]["learning_rate"]
  assert not c["problems"] and row["seeds"] == 2  # b's third seed is left out, not compared
  assert row["val_loss"] == {"epoch_1": 0.0, "last_epoch": pytest.approx(1e-2)}
  _write(tmp_path / "b", "learning_rate", [], None)  # nothing in common: a problem, not a 0
  assert compare_runs.compare(str(tmp_path / "a"), str(tmp_path / "b"), True)["problems"]
