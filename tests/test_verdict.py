"""The per-claim verdict: paired and Welch intervals, Holm's adjustment and the rule, on numbers
known in advance; and the pairing's premise, that seed s of every variant starts from the same
weights and sees the same batches."""

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
  v = _judge([0.70, 0.71, 0.72], [0.60, 0.62, 0.61])
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
      "| claim | larger side (mean) | smaller side (mean) | difference [95% CI] | "
      "test (Holm p) | verdict |", "|---|---|---|---|---|---|"]
  assert len(lines) == 4 and lines[2] == lines[3]
  assert lines[2] == ("| (x) a beats b | a val_accuracy 0.71 (n=3) | b val_accuracy 0.61 (n=3) "
                      "| 0.1 [0.1, 0.1] | paired (0) | **supported** |")
  assert verdict._num(0.0) == "0" and verdict._num(1e-3) == "0.001"
  assert verdict._num(2.5e-4) == "2.50e-04" and verdict._num(-2.5e-4) == "-2.50e-04"
  assert verdict._num(math.nan) == "–"
  j = verdict.as_json(v)
  assert j == {"id": "x", "claim": "a beats b", "experiment": "exp",
               "larger": {"variant": "a", "metric": "val_accuracy"},
               "smaller": {"variant": "b", "metric": "val_accuracy"}, "samples": "seeds",
               "larger_mean": v.larger_mean, "smaller_mean": v.smaller_mean,
               "difference": v.difference, "ci95": [v.low, v.high], "confidence": 0.95,
               "looks": 1, "test": "paired",
               "p": 0.0, "p_holm": 0.0, "verdict": "supported", "rule": verdict.RULE}
  j = verdict.as_json(_judge([0.9], [0.1]))
  assert j["ci95"] == [None, None] and j["p_holm"] is None and j["verdict"] == "inconclusive"
  assert verdict.RULE.startswith("supported when the 95% confidence interval")
  assert verdict.RULE.endswith("K times the p-values (Bonferroni over looks)")
  for part in ("excludes 0 in the claimed direction", "Holm-adjusted p-value", "below 0.05",
               "paired t over the seeds' differences", "Welch's t otherwise",
               "contradicted when the same holds in the other direction",
               "inconclusive otherwise", "1 - 0.05/K intervals"):
    assert part in verdict.RULE, part


def test_claims_and_verdicts_are_frozen():
  v = _judge([0.9], [0.1])
  for obj, field in ((CLAIM, "id"), (CLAIM.larger, "variant"), (v, "verdict")):
    with pytest.raises(AttributeError):
      setattr(obj, field, "changed")
  assert (CLAIM.samples, CLAIM.short) == ("seeds", "")


def test_paired_interval_by_hand_and_where_pairing_decides():
  a, b = [0.60, 0.70, 0.80, 0.65], [0.59, 0.69, 0.78, 0.64]
  d = np.subtract(a, b)  # 0.01, 0.01, 0.02, 0.01: the seeds move both sides together
  half = stats.t.ppf(0.975, 3) * np.std(d, ddof=1) / 2
  low, high, p = verdict.paired_interval(a, b)
  assert (low, high) == pytest.approx((0.0125 - half, 0.0125 + half))
  assert p == pytest.approx(2 * stats.t.sf(0.0125 / (np.std(d, ddof=1) / 2), 3))
  assert 0 < low and p < 0.05
  # Unpaired, the seeds' spread (0.60 .. 0.80) swamps the 0.0125 difference.
  wl, wh, wp = verdict.welch_test(a, b)
  assert wl < 0 < wh and wp > 0.5
  # judge pairs them by seed and says so; shuffling one side's seeds breaks the pairing.
  v = _judge(a, b)
  assert (v.test, v.verdict) == ("paired", "supported") and v.low == pytest.approx(low)
  assert _judge(a, b[::-1]).verdict == "inconclusive"
  # Every pair differing by the same amount is an exact difference, as no spread is for Welch:
  # certain (p 0) unless it is 0 (p 1).
  assert verdict.paired_interval([1.0, 2.0], [0.5, 1.5]) == (0.5, 0.5, 0.0)
  assert verdict.paired_interval([2.0, 3.0], [1.0, 2.0]) == (1.0, 1.0, 0.0)
  assert verdict.paired_interval([1.0, 2.0], [1.0, 2.0]) == (0.0, 0.0, 1.0)
  assert all(math.isnan(x) for x in verdict.paired_interval([1.0], [0.5]))
  with pytest.raises(ValueError, match=r"^paired samples need equal lengths, got 2 and 1$"):
    verdict.paired_interval([1.0, 2.0], [1.0])


def test_pairing_needs_the_same_seeds_on_both_sides():
  def with_seed(v, first):
    return {**v, "config": {"effective": {"seed": first}}}
  a = with_seed(_variant("a", [0.6, 0.7, 0.8]), 0)
  assert verdict.seeded(a, "val_accuracy") == {0: 0.6, 1: 0.7, 2: 0.8}
  assert verdict.seeded(with_seed(a, 5), "val_accuracy") == {5: 0.6, 6: 0.7, 7: 0.8}
  b = _variant("b", [0.5, 0.6, 0.7])
  for other, test in ((with_seed(b, 0), "paired"), (with_seed(b, 1), "welch")):
    v = verdict.judge(CLAIM, {"variants": [a, {**other, "name": "b"}]})
    assert v.test == test
  # Without a recorded config (hand-made variants) the seeds count from 0; counts per seed too.
  assert verdict.seeded(_variant("b", [0.5, 0.6]), "val_accuracy") == {0: 0.5, 1: 0.6}
  assert verdict.seeded(a, "steps_per_epoch") == {0: 100.0, 1: 100.0, 2: 100.0}
  # Epochs of two programs are not matched samples: seconds per step is always Welch's.
  t = verdict.seeded(_variant("a", [0.5, 0.6], seconds=[2.0, 6.0]), "seconds_per_step")
  assert t == {("epoch", 0): pytest.approx(0.02), ("epoch", 1): pytest.approx(0.04)}
  assert verdict.compare(t, t)[0] == "welch"


def test_holm_by_hand():
  # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, then max(0.06, 0.04).
  assert verdict.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
  assert verdict.holm([0.2, math.nan, 0.01]) == pytest.approx([0.2, math.nan, 0.02],
                                                               nan_ok=True)
  assert verdict.holm([0.6, 0.7]) == [1.0, 1.0] and verdict.holm([]) == []


def test_holm_turns_a_lone_support_inconclusive_in_a_family():
  # Alone, a 3-seed paired difference with p 0.039 is supported; judged with two claims
  # that carry no evidence, Holm multiplies its p by 3 and it is no longer.
  a, b = [0.70, 0.72, 0.71], [0.68, 0.69, 0.695]  # differences 0.02, 0.03, 0.015
  alone = _judge(a, b)
  assert alone.verdict == "supported" and 0.05 / 3 < alone.p < 0.05
  results = {"variants": [_variant("a", a), _variant("b", b)]}
  null = {"variants": [_variant("a", [0.5, 0.6, 0.7]), _variant("b", [0.6, 0.5, 0.7])]}
  family = verdict.judge_all([(CLAIM, results), (CLAIM, null), (CLAIM, null)])
  assert family[0].p == pytest.approx(alone.p)
  assert family[0].p_holm == pytest.approx(3 * alone.p)
  assert [v.verdict for v in family] == ["inconclusive"] * 3
  # A decisive claim stays decisive among them: its p is far below 0.05 / 3.
  strong = {"variants": [_variant("a", [0.70, 0.80, 0.90]), _variant("b", [0.60, 0.71, 0.80])]}
  assert verdict.judge_all([(CLAIM, strong), (CLAIM, null)])[0].verdict == "supported"


@pytest.mark.parametrize("experiment", ["layers", "dropout", "regularization", "batch_size",
                                        "learning_rate"])
def test_seed_s_of_every_variant_starts_alike_and_sees_the_same_batches(experiment):
  # The premise of the paired verdicts: a member's initial weights and its epoch's order are
  # drawn from its seed alone, so variants differ only in what they vary.
  import dataclasses
  import importlib

  import jax

  from dl101_jax.host import chunks, data, experiment as exp, group, parallel

  mod = importlib.import_module(f"experiments.{experiment}")
  config = dataclasses.replace(mod.CONFIG, dataset="digits", seeds=2, epochs=1)
  ds = data.load_digits()
  rt = parallel.runtime(config)
  norm = data.Normalizer.fit(ds.x_train, config.norm)
  # digits has 1437 training images: batch_2000 runs there at 1437 (what it varies is kept)
  variants = {n: {**v, "batch_size": min(v["batch_size"], ds.train_size)} if "batch_size" in v
              else v for n, v in mod.VARIANTS.items()}
  members = exp.make_members(exp.select_variants(config, variants))
  weights, keys = {}, {}
  for g in exp.make_groups(members):
    gp = group.GroupProgram.build(g, ds, rt, data=group.device_data(ds, norm, rt))
    states = gp.init(list(range(len(g))))
    given = chunks.ChunkRunner(gp, rt, None, "g", None).keys  # what the program is handed
    for i, m in enumerate(g):
      params = jax.tree.map(lambda x: np.asarray(x[i]), states.params)
      weights.setdefault((m.config.net, m.config.seed), []).append((m.variant, params))
      keys.setdefault(m.config.seed, []).append((m.variant, np.asarray(given[i])))
  nets = {m.config.net for m in members}
  assert len(weights) == 2 * len(nets) and len(keys) == 2
  for (net, seed), same in weights.items():
    for name, params in same[1:]:
      for x, y in zip(jax.tree.leaves(same[0][1]), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(x, y, err_msg=f"{name} vs {same[0][0]}, seed {seed}")
  # The epoch's order and every step's draws come from the member's key and the epoch
  # (test_properties checks that): the same key for seed s in every variant, another for s+1.
  for seed, same in keys.items():
    assert len(same) == len(mod.VARIANTS)
    for name, key in same[1:]:
      np.testing.assert_array_equal(key, same[0][1], err_msg=f"{name}, seed {seed}")
  assert not np.array_equal(keys[0][0][1], keys[1][0][1])


def test_holm_keeps_a_familys_false_verdicts_at_five_percent_where_no_difference_exists():
  # 1000 reports of 5 claims, 3 paired seeds each, every true difference 0 (a shared seed
  # effect plus noise). Without Holm, a report would carry a false verdict about 23% of the
  # time (1 - 0.95**5); with it, at most 5%. The bound 0.05 + 4 standard errors fails a
  # correct rule with probability about 3e-5 (measured: 0.052 at 2000 reports).
  rng = np.random.default_rng(0)
  n, any_false, any_raw = 1000, 0, 0
  for _ in range(n):
    seed_effect = rng.normal(0.0, 0.05, size=(5, 1, 3))
    a_b = seed_effect + rng.normal(0.0, 0.01, size=(5, 2, 3))
    tests = [verdict.paired_interval(list(x), list(y)) for x, y in a_b]
    ps = [t[2] for t in tests]
    any_raw += any(p < 0.05 for p in ps)
    any_false += any(verdict.decide(lo, hi, ph) != "inconclusive"
                     for (lo, hi, _), ph in zip(tests, verdict.holm(ps)))
  se = math.sqrt(0.05 * 0.95 / n)
  assert any_false / n <= 0.05 + 4 * se
  assert any_raw / n > 0.15  # the family-wise error that Holm removes


def test_a_run_of_k_looks_judges_at_its_share_of_the_error():
  """--seeds auto's rule on known numbers: with 4 planned looks the interval is scipy's paired
  t at 1 - 0.05/4 and the p-value 4 times the paired t's. These differences are decided alone
  (p = 0.0253) and open at 4 looks (p = 0.101)."""
  a, b = [0.72, 0.745, 0.73, 0.715], [0.70, 0.70, 0.70, 0.70]
  res = stats.ttest_rel(a, b)
  assert res.pvalue == pytest.approx(0.0253, abs=1e-4)
  alone = _judge(a, b)
  assert (alone.verdict, alone.looks, alone.p) == ("supported", 1, pytest.approx(res.pvalue))
  results = {"variants": [_variant("a", a), _variant("b", b)], "seeds_auto": {"planned_looks": 4}}
  v = verdict.judge(CLAIM, results)
  ci = res.confidence_interval(1 - 0.05 / 4)
  assert (v.low, v.high) == (pytest.approx(ci.low), pytest.approx(ci.high)) and v.low < 0
  assert v.p == v.p_holm == pytest.approx(4 * res.pvalue) and v.looks == 4
  assert v.verdict == "inconclusive"
  assert verdict.as_json(v)["confidence"] == 0.9875 and verdict.as_json(v)["looks"] == 4
  assert "[-0.008164, 0.06316] at 98.75% | paired, 4 looks (0.1012) |" in verdict.table([v])
  assert verdict.planned_looks({}) == 1 and verdict.planned_looks({"seeds_auto": None}) == 1


def test_two_looks_double_the_p_value_cap_it_at_1_and_say_so_in_the_table():
  a, b = [0.72, 0.745, 0.73, 0.715], [0.70, 0.70, 0.70, 0.70]
  res = stats.ttest_rel(a, b)
  two = verdict.judge(CLAIM, {"variants": [_variant("a", a), _variant("b", b)],
                              "seeds_auto": {"planned_looks": 2}})
  assert two.p == pytest.approx(2 * res.pvalue) and two.looks == 2
  assert (two.low, two.high) == tuple(pytest.approx(x) for x in res.confidence_interval(0.975))
  assert "at 97.5% | paired, 2 looks (" in verdict.table([two])
  # Ten looks of a p-value of 0.25: 2.5 is no probability; it is 1.
  c, d = [0.70, 0.72, 0.69, 0.71], [0.70, 0.70, 0.70, 0.70]
  raw = stats.ttest_rel(c, d).pvalue
  assert 0.1 < raw < 1
  many = verdict.judge(CLAIM, {"variants": [_variant("a", c), _variant("b", d)],
                               "seeds_auto": {"planned_looks": 10}})
  assert many.p == many.p_holm == 1.0
  # A verdict made without looks is one look's: 95%, and no looks in the table.
  plain = verdict.Verdict(CLAIM, 0.7, 0.6, 0.1, 0.05, 0.15, 3, 3, "supported")
  assert plain.looks == 1 and verdict.as_json(plain)["confidence"] == 0.95
  assert "looks" not in verdict.table([plain]) and " at " not in verdict.table([plain])
