"""The per-claim verdict: Welch's interval and the rule, on numbers known in advance."""

import math

import numpy as np
import pytest
from scipy import stats

from dl101_jax import verdict
from dl101_jax.verdict import Claim, Side
from experiments import __main__ as suite
from experiments.claims import CLAIMS


def _variant(name, finals, train=None, steps=100, seconds=None):
  per_seed = []
  for i, f in enumerate(finals):
    per_seed.append({"epoch": [1, 2], "step": [steps, 2 * steps],
                     "seconds": seconds or [1.0, 2.0],
                     "val_accuracy": [0.1, f], "train_accuracy": [0.1, (train or finals)[i]]})
  return {"name": name, "per_seed": per_seed}


CLAIM = Claim("x", "a beats b", "exp", Side("a", "val_accuracy"), Side("b", "val_accuracy"))


def _judge(a, b):
  return verdict.judge(CLAIM, {"variants": [_variant("a", a), _variant("b", b)]})


def test_supported():
  v = _judge([0.70, 0.71, 0.72], [0.60, 0.61, 0.62])
  assert v.verdict == "supported"
  assert v.difference == pytest.approx(0.10)
  assert 0 < v.low < 0.10 < v.high


def test_contradicted():
  v = _judge([0.60, 0.61, 0.62], [0.70, 0.71, 0.72])
  assert v.verdict == "contradicted" and v.high < 0


def test_inconclusive():
  v = _judge([0.60, 0.70, 0.65], [0.62, 0.66, 0.64])
  assert v.verdict == "inconclusive" and v.low < 0 < v.high


def test_interval_is_welchs_by_hand():
  a, b = [1.0, 2.0, 3.0], [0.5, 0.6, 0.4]
  va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
  df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
  half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
  low, high = verdict.welch_interval(a, b)
  assert low == pytest.approx(1.5 - half) and high == pytest.approx(1.5 + half)
  assert verdict.decide(low, high) == "inconclusive"  # [-0.95, 3.95]


def test_no_spread_is_exact_and_one_seed_is_inconclusive():
  assert verdict.welch_interval([200.0] * 3, [5.0] * 3) == (195.0, 195.0)
  assert verdict.decide(195.0, 195.0) == "supported"
  v = _judge([0.9], [0.1])  # one seed: no spread to estimate, no verdict either way
  assert v.verdict == "inconclusive" and math.isnan(v.low)


def test_samples_per_metric():
  v = _variant("a", [0.5, 0.6], train=[0.8, 0.9], steps=200, seconds=[2.0, 6.0])
  assert verdict.samples(v, "val_accuracy") == [0.5, 0.6]
  assert verdict.samples(v, "train_accuracy") == [0.8, 0.9]
  assert verdict.samples(v, "steps_per_epoch") == [200.0, 200.0]
  assert verdict.samples(v, "seconds_per_step") == pytest.approx([2 / 200, 4 / 200])


def test_every_claim_names_variants_of_its_experiment():
  import importlib

  for c in CLAIMS:
    mod = importlib.import_module(f"experiments.{c.experiment}")
    assert {c.larger.variant, c.smaller.variant} <= set(mod.VARIANTS), c.id


def test_report_shows_rule_and_verdicts():
  results = {"dropout": {
      "experiment": "dropout", "dataset": {"name": "cifar10", "train_size": 10, "test_size": 2},
      "config": {"epochs": 2, "seeds": 3}, "devices": 1, "platform": "cpu",
      "groups": [{"wall_seconds": 60.0}],
      "variants": [
          {**_variant("dropout", [0.70, 0.71, 0.72], train=[0.7, 0.7, 0.7]),
           "final": {"train_accuracy": 0.7, "val_accuracy": 0.71},
           "final_std": {"val_accuracy": 0.01}, "best": None, "wall_seconds": 60.0,
           "diverged": False, "seeds": 3},
          {**_variant("no_dropout", [0.60, 0.61, 0.62], train=[0.9, 0.91, 0.92]),
           "final": {"train_accuracy": 0.91, "val_accuracy": 0.61},
           "final_std": {"val_accuracy": 0.01}, "best": None, "wall_seconds": 60.0,
           "diverged": False, "seeds": 3}]}}
  md = suite.report_md(results)
  assert verdict.RULE in md
  assert "(1) dropout improves validation accuracy" in md and "**supported**" in md
  assert md.count("| **supported** |") == 2  # table rows 0b and 1; no other experiment's claim


def test_edges_of_the_rule():
  # One side with one sample is enough to make the interval unknowable.
  assert all(math.isnan(x) for x in verdict.welch_interval([0.9, 0.8], [0.1]))
  assert all(math.isnan(x) for x in verdict.welch_interval([0.9], [0.1, 0.2]))
  # ... even where the other side has no spread: one seed is never an exact difference.
  assert all(math.isnan(x) for x in verdict.welch_interval([0.9], [0.1, 0.1]))
  assert all(math.isnan(x) for x in verdict.welch_interval([0.1, 0.1], [0.9]))
  # Spread on one side only: Welch's interval, not the exact difference.
  low, high = verdict.welch_interval([1.0, 1.0, 1.0], [0.0, 0.5, 1.0])
  assert low < 0.5 < high
  low, high = verdict.welch_interval([0.0, 0.5, 1.0], [1.0, 1.0, 1.0])
  assert low < -0.5 < high
  # An interval touching 0 does not exclude it; half-unknown is unknown.
  assert verdict.decide(0.0, 0.3) == verdict.decide(-0.3, 0.0) == "inconclusive"
  assert verdict.decide(math.nan, 0.3) == verdict.decide(0.1, math.nan) == "inconclusive"


def test_samples_skip_seeds_without_epochs_and_take_the_final_value():
  v = _variant("a", [0.5, 0.6])
  v["per_seed"].insert(0, {"epoch": [], "step": [], "seconds": [], "val_accuracy": []})
  v["per_seed"][1]["val_accuracy"] = [0.1, 0.3, 0.5]
  v["per_seed"][1]["epoch"], v["per_seed"][1]["step"] = [2, 4, 6], [50, 100, 150]
  assert verdict.samples(v, "val_accuracy") == [0.5, 0.6]
  assert verdict.samples(v, "steps_per_epoch") == [25.0, 100.0]


def test_the_table_and_the_json_of_a_verdict():
  v = _judge([0.70, 0.71, 0.72], [0.60, 0.61, 0.62])
  lines = verdict.table([v, v]).split("\n")
  assert lines[:2] == [
      "| claim | larger side (mean) | smaller side (mean) | difference [95% CI] | verdict |",
      "|---|---|---|---|---|"]
  assert len(lines) == 4 and lines[2] == lines[3]
  assert lines[2] == (f"| (x) a beats b | a val_accuracy 0.71 (n=3) | b val_accuracy 0.61 (n=3) "
                      f"| 0.1 [{v.low:.4g}, {v.high:.4g}] | **supported** |")
  assert verdict._num(0.0) == "0" and verdict._num(1e-3) == "0.001"
  assert verdict._num(2.5e-4) == "2.50e-04" and verdict._num(-2.5e-4) == "-2.50e-04"
  assert verdict._num(math.nan) == "–"
  j = verdict.as_json(v)
  assert j == {"id": "x", "claim": "a beats b", "experiment": "exp",
               "larger": {"variant": "a", "metric": "val_accuracy"},
               "smaller": {"variant": "b", "metric": "val_accuracy"}, "samples": "seeds",
               "larger_mean": v.larger_mean, "smaller_mean": v.smaller_mean,
               "difference": v.difference, "ci95": [v.low, v.high], "verdict": "supported",
               "rule": verdict.RULE}
  assert verdict.as_json(_judge([0.9], [0.1]))["ci95"] == [None, None]
  assert verdict.RULE.startswith("supported when the 95% confidence interval")
  assert verdict.RULE.endswith("inconclusive otherwise")
  assert "excludes 0 in the claimed direction, contradicted when it excludes 0 in the other " in verdict.RULE


def test_claims_and_verdicts_are_frozen():
  v = _judge([0.9], [0.1])
  for obj, field in ((CLAIM, "id"), (CLAIM.larger, "variant"), (v, "verdict")):
    with pytest.raises(AttributeError):
      setattr(obj, field, "changed")
  assert (CLAIM.samples, CLAIM.short) == ("seeds", "")
