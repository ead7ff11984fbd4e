"""--seeds auto: the looks it plans, where it stops, that stopping keeps the stated error
rate (simulated runs with no true difference), and a run on digits that resumes."""

import json

import numpy as np
import pytest

from dl101_jax import verdict
from dl101_jax.config import Config, ConfigError
from dl101_jax.host import seeds_auto
from dl101_jax.verdict import Claim, Side
from helpers import run_module

BASE = Config(name="t", dataset="digits", net="fc8", epochs=2, seeds="auto")
CLAIM = Claim("c", "a beats b", "exp", Side("a", "val_accuracy"), Side("b", "val_accuracy"))
SELECTED = {"a": BASE, "b": BASE}


def test_decided_means_every_claim_supported_or_contradicted():
  v = lambda outcome: verdict.Verdict(CLAIM, *[0.0] * 5, 3, 3, outcome)  # noqa: E731
  assert seeds_auto.decided([v("supported"), v("contradicted")])
  assert not seeds_auto.decided([v("supported"), v("inconclusive")])
  assert not seeds_auto.decided([])  # nothing judged is nothing decided


def test_plan_looks_every_three_seeds_up_to_the_maximum_and_within_the_budget():
  assert seeds_auto.plan(BASE, 2) == [3, 6, 9, 12]
  assert seeds_auto.plan(BASE.replace(max_seeds=8), 2) == [3, 6, 8]
  assert seeds_auto.plan(BASE.replace(max_seeds=3), 2) == [3]
  # 2 variants x 2 epochs = 4 model-epochs a seed: 6 seeds cost 24, 9 cost 36.
  assert seeds_auto.plan(BASE.replace(seed_budget=35), 2) == [3, 6]
  assert seeds_auto.plan(BASE.replace(seed_budget=36), 2) == [3, 6, 9]
  with pytest.raises(ConfigError, match=r"--seed-budget: must allow the first look: 3 seeds x 2 "
                     r"variant\(s\) x 2 epochs = 12 model-epochs or more, got 11"):
    seeds_auto.plan(BASE.replace(seed_budget=11), 2)


@pytest.mark.parametrize("flags, message", [
    ({"max_seeds": 6}, "--max-seeds: must be 12 (the default) unless --seeds auto, got 6"),
    ({"seed_budget": 100}, "--seed-budget: must be 0 (the default) unless --seeds auto, got 100"),
])
def test_auto_only_flags_are_refused_without_auto(flags, message):
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
    Config(name="t", dataset="digits", net="fc8", **flags)
  Config(name="t", dataset="digits", net="fc8", seeds="auto", **flags)  # with auto: allowed


def test_bad_seed_counts_are_refused():
  for bad in (0, "some", 2.5):
    with pytest.raises(ConfigError, match="--seeds: must be an integer >= 1, or auto"):
      Config(name="t", dataset="digits", net="fc8", seeds=bad)
  with pytest.raises(ConfigError, match="--max-seeds: must be an integer >= 3"):
    BASE.replace(max_seeds=2)
  with pytest.raises(ConfigError, match=r"--seed: must be an integer in \[0, 2147483636\]"):
    BASE.replace(seed=2**31 - 11)  # the twelfth seed must still fit in int32
  BASE.replace(seed=2**31 - 12)  # its last seed is int32's largest


def _results(seeds_a, seeds_b, record=None):
  variant = lambda name, xs: {"name": name, "per_seed": [
      {"epoch": [1], "step": [10], "val_accuracy": [float(x)]} for x in xs]}
  out = {"variants": [variant("a", seeds_a), variant("b", seeds_b)]}
  if record is not None:
    out["seeds_auto"] = record
  return out


def _auto_run(rng, effect=0.0, config=BASE, corrected=True):
  """One --seeds auto run of `seeds_auto.run` on synthetic seeds: each seed's two sides share
  a seed effect (as variants of one seed do), and differ by `effect` plus noise. The final
  verdict, and how many seeds it took. `corrected=False` judges each look as if it were
  the only one (the bias that the rule removes)."""
  drawn = []

  def train(batch, suffix):
    n = next(iter(batch.values())).seeds
    shared = rng.normal(0.7, 0.02, n)
    return [(shared + effect + rng.normal(0, 0.01, n), shared + rng.normal(0, 0.01, n))]

  def judge(groups, record):
    a = np.concatenate([g[0] for g in groups])
    b = np.concatenate([g[1] for g in groups])
    drawn.append(len(a))
    return verdict.judge_all([(CLAIM, _results(a, b, record if corrected else None))])

  groups, record = seeds_auto.run(config, SELECTED, train, judge, lambda line: None,
                                  verdict.ALPHA)
  return record["looks"][-1]["verdicts"]["c"], record["seeds_used"], drawn, record


def test_a_run_stops_at_the_first_look_that_decides_and_records_every_look():
  rng = np.random.default_rng(0)
  v, used, drawn, record = _auto_run(rng, effect=0.2)  # 14 sds of a difference: decided at 3
  assert (v, used, drawn) == ("supported", 3, [3])
  assert record["planned_looks"] == 4 and record["alpha_per_look"] == 0.0125
  assert record["stopped"] == "every claim decided" and len(record["looks"]) == 1
  v, used, drawn, record = _auto_run(rng, effect=0.0)
  assert drawn == [3, 6, 9, 12][:len(drawn)] and used == drawn[-1]
  if v == "inconclusive":  # nothing to find: every planned look is used
    assert used == 12 and record["stopped"] == "--max-seeds reached, claim(s) c still open"
  v, used, _, record = _auto_run(rng, effect=0.0, config=BASE.replace(seed_budget=24))
  assert record["seeds_per_look"] == [3, 6] and used in (3, 6)
  if v == "inconclusive":
    assert record["stopped"] == "--seed-budget reached, claim(s) c still open"
  assert seeds_auto.summary(record).startswith(
      "--seeds auto planned 2 look(s) at 3, 6 seeds, each at error 0.025; 3 seeds: (c) ")


def test_stopping_early_keeps_the_false_verdict_rate_at_or_under_5_percent():
  """With no true difference, over 1000 simulated runs of up to 4 looks: the rate of a
  false verdict (supported or contradicted) stays at or under 5%, and of a false
  "supported" under it (measured: 3.3% and 1.7%). Judging each look as if it were the only
  one, the same runs are fooled far more often (11.7%): the test tells the rule from none."""
  rng = np.random.default_rng(1)
  runs = 1000
  fooled = [_auto_run(rng)[0] for _ in range(runs)]
  naive = [_auto_run(rng, corrected=False)[0] for _ in range(runs)]
  false_any = np.mean([v != "inconclusive" for v in fooled])
  false_supported = np.mean([v == "supported" for v in fooled])
  naive_any = np.mean([v != "inconclusive" for v in naive])
  assert false_any <= 0.05 and false_supported <= 0.05, (false_any, false_supported)
  assert naive_any > 0.08, naive_any


def test_the_rule_keeps_its_power_when_there_is_something_to_find():
  rng = np.random.default_rng(2)
  # A seed's difference has sd 0.014: the effect is 1.4 of them. Measured: 94.5% supported,
  # 7.6 seeds on average.
  found = [_auto_run(rng, effect=0.02) for _ in range(200)]
  assert np.mean([v == "supported" for v, *_ in found]) > 0.85
  assert np.mean([used for _, used, *_ in found]) < 9  # it stops early when it can


@pytest.fixture(scope="module")
def layers_auto(tmp_path_factory):
  wd = tmp_path_factory.mktemp("auto")
  args = ("experiments.layers", "--dataset", "digits", "--epochs", "1", "--seeds", "auto",
          "--max-seeds", "6", "--workdir", str(wd))
  first = run_module(*args, timeout=240)
  assert first.returncode == 0, first.stderr[-3000:]
  return wd, args, first


def test_a_digits_run_adds_a_look_until_its_claim_is_decided(layers_auto):
  wd, _, first = layers_auto
  res = json.load(open(wd / "results.json"))
  auto = res["seeds_auto"]
  # On digits one epoch, three layer sets lose to one; 3 seeds cannot tell at 2.5%, 6 can.
  assert [look["seeds"] for look in auto["looks"]] == [3, 6]
  assert [look["verdicts"]["0"] for look in auto["looks"]] == ["inconclusive", "contradicted"]
  assert auto["seeds_used"] == 6 and auto["stopped"] == "every claim decided"
  assert all(v["seeds"] == 6 for v in res["variants"])
  assert [g["seeds"] for g in res["groups"]] == [[0, 1, 2], [0, 1, 2], [3, 4, 5], [3, 4, 5]]
  v = res["claims"]["verdicts"][0]
  assert (v["looks"], v["confidence"], v["verdict"]) == (2, 0.975, "contradicted")
  assert v["p_holm"] == pytest.approx(auto["looks"][1]["p_holm"]["0"])
  assert "--seeds auto, look 1 of 2 (3 seeds): claim(s) 0 still open; adding seeds 3..5" \
      in first.stdout
  # The outputs so far after look 1 (a long run shows where it stands), then the final ones.
  assert first.stdout.count("layers: outputs in") == 2
  summary = open(wd / "summary.md").read()
  assert "6 seeds (--seeds auto: every claim decided)" in summary
  assert "| paired, 2 looks (" in summary and "at 97.5% |" in summary


def test_rerunning_the_command_resumes_every_look_and_writes_the_same_verdicts(layers_auto):
  wd, args, _ = layers_auto
  before = json.load(open(wd / "results.json"))
  again = run_module(*args, timeout=240)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("Already finished") == 4  # two programs a look, two looks
  after = json.load(open(wd / "results.json"))
  assert after["seeds_auto"] == before["seeds_auto"]
  assert [v["per_seed"] for v in after["variants"]] == [v["per_seed"] for v in before["variants"]]


@pytest.mark.parametrize("args, message", [
    (("experiments.sweep", "--seeds", "auto"), "--seeds: a number for the sweep experiment"),
    (("experiments.dropout", "--seeds", "auto", "--variants", "dropout"),
     "--seeds: a number with --variants dropout: auto needs both sides"),
    (("experiments.layers", "--seeds", "x"), "--seeds: must be an integer or auto, got 'x'"),
    (("experiments.layers", "--max-seeds", "6"),
     "--max-seeds: must be 12 (the default) unless --seeds auto, got 6"),
])
def test_auto_where_there_is_nothing_to_decide_is_one_line_and_status_2(tmp_path, args, message):
  r = run_module(*args, "--dataset", "digits", "--epochs", "1", "--workdir", str(tmp_path),
                 timeout=120)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {message}"), \
      r.stderr[-2000:]


def test_each_look_that_goes_on_writes_the_outputs_so_far():
  seen = []
  rng = np.random.default_rng(3)

  def train(batch, suffix):
    n = next(iter(batch.values())).seeds
    return [(rng.normal(0.7, 0.01, n), rng.normal(0.7, 0.01, n))]

  def judge(groups, record):
    a, b = (np.concatenate([g[i] for g in groups]) for i in (0, 1))
    return verdict.judge_all([(CLAIM, _results(a, b, record))])

  _, record = seeds_auto.run(BASE.replace(max_seeds=9), SELECTED, train, judge, lambda _: None,
                             verdict.ALPHA, after_look=lambda g, r: seen.append((len(g), r)))
  assert record["seeds_used"] == 9  # nothing to find here: two looks went on, the third ended
  assert [(n, r["seeds_used"]) for n, r in seen] == [(1, 3), (2, 6)]
  assert seen[0][1]["stopped"] == "running: look 1 of 3 left claim(s) c open; 6 seeds next"
  assert [len(r["looks"]) for _, r in seen] == [1, 2]  # each as it stood then
  assert seeds_auto.summary(seen[0][1]).endswith(
      "At 3 seeds: running: look 1 of 3 left claim(s) c open; 6 seeds next.")
  assert seeds_auto.summary(record).split(". ")[-1].startswith("Stopped at 9 seeds: ")
