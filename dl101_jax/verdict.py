"""A verdict per claim, computed from the seeds: a 95% interval, Holm over the family, one rule.

A `Claim` says that one quantity is larger than another, e.g. the dropout
variant's final validation accuracy is larger than no_dropout's. Each side is a
(variant, metric) pair of one experiment's results.json; its samples are one
value per seed. The rule, stated once (RULE) and applied to every claim:

  supported     the 95% interval of mean(larger) - mean(smaller) lies above 0, and
                the claim's Holm-adjusted p-value among the claims judged together is < 0.05;
  contradicted  the same, below 0;
  inconclusive  otherwise (or there are too few samples to tell).

Paired where the sides share seeds: seed s of every variant starts from the same initial
weights (for the same net) and sees the same batches, so the interval is the paired t
over the per-seed differences (scipy's ttest_rel), which removes what the seeds share.
Where the samples are not matched by seed (seconds per step: one value per epoch of two
programs) it is Welch's t (ttest_ind, unequal variances). Where the differences have no
spread at all (a count fixed by the config, like steps per epoch) the interval is the
difference itself. Holm's step-down adjustment keeps the chance of any false verdict
among a family of claims (a report's, a ladder's rungs) at 5%.

Seeds on demand (--seeds auto) look at the claims after each batch of seeds and stop once
every one is decided. Looking K times gives K chances to be fooled, so a run that planned
K looks (results.json's seeds_auto.planned_looks) splits the 5% among them (Bonferroni):
each interval is at 1 - 0.05/K confidence and each p-value is multiplied by K before Holm.
By the union bound the chance of any false verdict at any look stays at or under 5% however
early the run stops; tests/test_seeds_auto.py checks it on simulated runs.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

RULE = ("supported when the 95% confidence interval of the difference excludes 0 in the claimed "
        "direction and its Holm-adjusted p-value among the claims judged together is below "
        "0.05 (paired t over the seeds' differences where both sides share seeds, Welch's t "
        "otherwise), contradicted when the same holds in the other direction, "
        "inconclusive otherwise; a --seeds auto run that planned K looks uses 1 - 0.05/K "
        "intervals and K times the p-values (Bonferroni over looks)")
ALPHA = 0.05


@dataclasses.dataclass(frozen=True)
class Side:
  variant: str
  metric: str  # a METRICS key (its final value), or 'steps_per_epoch' / 'seconds_per_step'


@dataclasses.dataclass(frozen=True)
class Claim:
  """`larger` is claimed to exceed `smaller` (both from one experiment)."""

  id: str
  text: str
  experiment: str
  larger: Side
  smaller: Side
  samples: str = "seeds"  # what one sample is, for the report
  short: str = ""  # a label for narrow tables (the README's); text where empty


@dataclasses.dataclass(frozen=True)
class Verdict:
  claim: Claim
  larger_mean: float
  smaller_mean: float
  difference: float
  low: float
  high: float
  n_larger: int
  n_smaller: int
  verdict: str  # 'supported' | 'contradicted' | 'inconclusive'
  test: str = "welch"  # 'paired' (matched seeds) or 'welch'
  p: float = math.nan  # two-sided, of this claim alone
  p_holm: float = math.nan  # adjusted over the family it was judged in (= p alone)
  looks: int = 1  # planned looks of a --seeds auto run: p is K times the last look's


def samples(variant: dict, metric: str) -> list[float]:
  """One value per seed (per epoch for seconds_per_step) from a results.json variant."""
  return list(seeded(variant, metric).values())


def seeded(variant: dict, metric: str) -> dict:
  """samples() keyed by seed (by ("epoch", i) for seconds_per_step). A variant's seeds are
  its config's seed + 0, 1, ...; a seed without epochs or without the metric is left out."""
  first = variant.get("config", {}).get("effective", {}).get("seed", 0)
  out = {}
  for i, h in enumerate(variant["per_seed"]):
    if not h["epoch"]:
      continue
    spe = h["step"][0] / h["epoch"][0]
    if metric == "steps_per_epoch":
      out[first + i] = float(spe)
    elif metric == "seconds_per_step":
      # Members of one program share its clock, so one seed's epochs are the samples.
      per_step = np.diff([0.0, *h["seconds"]]) / spe
      return {("epoch", j): float(x) for j, x in enumerate(per_step)}
    elif h.get(metric):
      out[first + i] = float(h[metric][-1])
  return out


def _exact(d: float) -> tuple[float, float, float]:
  return d, d, (0.0 if d != 0 else 1.0)


def paired_interval(a: list[float], b: list[float], confidence: float = 0.95
                    ) -> tuple[float, float, float]:
  """(low, high, p) for mean(a - b) over matched pairs (paired t); nan with under 2 pairs."""
  if len(a) != len(b):
    raise ValueError(f"paired samples need equal lengths, got {len(a)} and {len(b)}")
  diff = np.asarray(a, float) - np.asarray(b, float)
  if len(diff) < 2:
    return math.nan, math.nan, math.nan
  # Every pair differs by the same amount (to rounding: 0.71 - 0.61 and 0.70 - 0.60 differ
  # in the last bit): the difference is exact, as a count fixed by the config is.
  if np.ptp(diff) <= 1e-12 * np.max(np.abs(diff)):
    return _exact(float(np.mean(diff)))
  from scipy import stats  # here, not above: importing it costs a one-seed run a second

  res = stats.ttest_rel(a, b)
  ci = res.confidence_interval(confidence)
  return float(ci.low), float(ci.high), float(res.pvalue)


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float]:
  """Interval for mean(a) - mean(b); nan where it cannot be estimated."""
  return welch_test(a, b, confidence)[:2]


def welch_test(a: list[float], b: list[float], confidence: float = 0.95
               ) -> tuple[float, float, float]:
  """(low, high, p) for mean(a) - mean(b), unpaired (Welch's t); nan where unknowable."""
  if len(a) < 2 or len(b) < 2:
    return math.nan, math.nan, math.nan
  if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread on either side: the difference is exact
    return _exact(float(np.mean(a) - np.mean(b)))
  from scipy import stats  # as in paired_interval: only when a test is run

  res = stats.ttest_ind(a, b, equal_var=False)
  ci = res.confidence_interval(confidence)
  return float(ci.low), float(ci.high), float(res.pvalue)


def compare(a: dict, b: dict, confidence: float = 0.95) -> tuple[str, float, float, float]:
  """(test, low, high, p) for two sides' samples keyed by seed: paired when both sides have
  the same seeds, Welch's otherwise (keys that are tuples, such as epochs, never pair)."""
  if a and set(a) == set(b) and not any(isinstance(k, tuple) for k in a):
    keys = sorted(a)
    return ("paired", *paired_interval([a[k] for k in keys], [b[k] for k in keys], confidence))
  return ("welch", *welch_test(list(a.values()), list(b.values()), confidence))


def planned_looks(results: dict) -> int:
  """How many looks a run planned before it started: K of a --seeds auto run, else 1."""
  return int((results.get("seeds_auto") or {}).get("planned_looks", 1))


def holm(ps: list[float]) -> list[float]:
  """Holm's step-down adjusted p-values, in the order given; nan stays nan and does not
  count. Written out because scipy has no Holm (stats.false_discovery_control is
  Benjamini-Hochberg's, which bounds the false discovery rate, not the family-wise error)."""
  known = sorted((p, i) for i, p in enumerate(ps) if not math.isnan(p))
  out, running, m = [math.nan] * len(ps), 0.0, len(known)
  for rank, (p, i) in enumerate(known):
    running = max(running, min(1.0, (m - rank) * p))
    out[i] = running
  return out


def decide(low: float, high: float, p_holm: float = 0.0) -> str:
  """The rule: the interval's position relative to 0, for a claimed positive difference,
  given the claim's Holm-adjusted p-value (0: judged alone, the interval decides)."""
  if math.isnan(low) or math.isnan(high) or not p_holm < ALPHA:
    return "inconclusive"
  if low > 0:
    return "supported"
  if high < 0:
    return "contradicted"
  return "inconclusive"


def judge(claim: Claim, results: dict) -> Verdict:
  """The verdict on one claim alone from its experiment's results.json content."""
  return judge_all([(claim, results)])[0]


def judge_all(pairs: list[tuple[Claim, dict]]) -> list[Verdict]:
  """Verdicts on a family of claims (each with its experiment's results.json), Holm-adjusted
  over the family; a --seeds auto run's claims at its looks' share of the error."""
  raw = []
  for claim, results in pairs:
    by_name = {v["name"]: v for v in results["variants"]}
    a = seeded(by_name[claim.larger.variant], claim.larger.metric)
    b = seeded(by_name[claim.smaller.variant], claim.smaller.metric)
    k = planned_looks(results)
    test, low, high, p = compare(a, b, 1 - ALPHA / k)
    raw.append((claim, a, b, test, low, high, k, min(1.0, k * p) if k > 1 else p))
  adjusted = holm([r[-1] for r in raw])
  out = []
  for (claim, a, b, test, low, high, k, p), ph in zip(raw, adjusted):
    ma = float(np.mean(list(a.values()))) if a else math.nan
    mb = float(np.mean(list(b.values()))) if b else math.nan
    out.append(Verdict(claim, ma, mb, ma - mb, low, high, len(a), len(b),
                       decide(low, high, ph), test, p, ph, k))
  return out


def _num(x: float) -> str:
  if math.isnan(x):
    return "–"
  return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def table(verdicts: list[Verdict]) -> str:
  """Markdown: claim, the two sides, the difference with its interval, the test and Holm's
  p, the verdict. A --seeds auto run's interval names its confidence and the test its looks."""
  rows = ["| claim | larger side (mean) | smaller side (mean) | difference [95% CI] | "
          "test (Holm p) | verdict |", "|---|---|---|---|---|---|"]
  for v in verdicts:
    c = v.claim
    side = lambda s, m, n: f"{s.variant} {s.metric} {_num(m)} (n={n})"
    rows.append(f"| ({c.id}) {c.text} | {side(c.larger, v.larger_mean, v.n_larger)} | "
                f"{side(c.smaller, v.smaller_mean, v.n_smaller)} | {_num(v.difference)} "
                f"[{_num(v.low)}, {_num(v.high)}]{_level(v.looks)} | {v.test}"
                f"{f', {v.looks} looks' if v.looks > 1 else ''} ({_num(v.p_holm)}) | "
                f"**{v.verdict}** |")
  return "\n".join(rows)


def _level(looks: int) -> str:
  """' at 98.75%' for an interval narrower in error than 95% (a run of several looks)."""
  return f" at {100 * (1 - ALPHA / looks):.4g}%" if looks > 1 else ""


def as_json(v: Verdict) -> dict:
  """For REPORT/results JSON: nan (not measurable) becomes null."""
  c = v.claim
  f = lambda x: None if math.isnan(x) else x
  return {"id": c.id, "claim": c.text, "experiment": c.experiment,
          "larger": dataclasses.asdict(c.larger), "smaller": dataclasses.asdict(c.smaller),
          "samples": c.samples, "larger_mean": f(v.larger_mean),
          "smaller_mean": f(v.smaller_mean), "difference": f(v.difference),
          "ci95": [f(v.low), f(v.high)], "confidence": 1 - ALPHA / v.looks, "looks": v.looks,
          "test": v.test, "p": f(v.p), "p_holm": f(v.p_holm), "verdict": v.verdict,
          "rule": RULE}
