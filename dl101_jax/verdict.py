"""A verdict per claim, computed from the seeds: Welch's 95% interval and one rule.

A `Claim` says that one quantity is larger than another, e.g. the dropout
variant's final validation accuracy is larger than no_dropout's. Each side is a
(variant, metric) pair of one experiment's results.json; its samples are one
value per seed. The rule, stated once (RULE) and applied to every claim:

  supported     the 95% interval of mean(larger) - mean(smaller) lies above 0;
  contradicted  it lies below 0;
  inconclusive  it contains 0 (or there are too few samples to tell).

The interval is Welch's t (unequal variances) from scipy. Where both sides have
no spread at all (a count fixed by the config, like steps per epoch) the
interval is the difference itself.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

RULE = ("supported when the 95% confidence interval of the difference (Welch's t over seeds) "
        "excludes 0 in the claimed direction, contradicted when it excludes 0 in the other "
        "direction, inconclusive otherwise")


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


def samples(variant: dict, metric: str) -> list[float]:
  """One value per seed (per epoch for seconds_per_step) from a results.json variant."""
  out = []
  for h in variant["per_seed"]:
    if not h["epoch"]:
      continue
    spe = h["step"][0] / h["epoch"][0]
    if metric == "steps_per_epoch":
      out.append(float(spe))
    elif metric == "seconds_per_step":
      # Members of one program share its clock, so one seed's epochs are the samples.
      return list(np.diff([0.0, *h["seconds"]]) / spe)
    elif h.get(metric):
      out.append(float(h[metric][-1]))
  return out


def welch_interval(a: list[float], b: list[float], confidence: float = 0.95) -> tuple[float, float]:
  """Interval for mean(a) - mean(b); nan where it cannot be estimated."""
  from scipy import stats

  d = float(np.mean(a) - np.mean(b))
  if len(a) < 2 or len(b) < 2:
    return math.nan, math.nan
  if np.ptp(a) == 0 and np.ptp(b) == 0:  # no spread on either side: the difference is exact
    return d, d
  ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(confidence)
  return float(ci.low), float(ci.high)


def decide(low: float, high: float) -> str:
  """The rule: the interval's position relative to 0, for a claimed positive difference."""
  if math.isnan(low) or math.isnan(high):
    return "inconclusive"
  if low > 0:
    return "supported"
  if high < 0:
    return "contradicted"
  return "inconclusive"


def judge(claim: Claim, results: dict) -> Verdict:
  """The verdict on one claim from its experiment's results.json content."""
  by_name = {v["name"]: v for v in results["variants"]}
  a = samples(by_name[claim.larger.variant], claim.larger.metric)
  b = samples(by_name[claim.smaller.variant], claim.smaller.metric)
  low, high = welch_interval(a, b)
  ma = float(np.mean(a)) if a else math.nan
  mb = float(np.mean(b)) if b else math.nan
  return Verdict(claim, ma, mb, ma - mb, low, high, len(a), len(b), decide(low, high))


def _num(x: float) -> str:
  if math.isnan(x):
    return "–"
  return f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def table(verdicts: list[Verdict]) -> str:
  """Markdown: claim, the two sides, the difference with its interval, the verdict."""
  rows = ["| claim | larger side (mean) | smaller side (mean) | difference [95% CI] | verdict |",
          "|---|---|---|---|---|"]
  for v in verdicts:
    c = v.claim
    side = lambda s, m, n: f"{s.variant} {s.metric} {_num(m)} (n={n})"
    rows.append(f"| ({c.id}) {c.text} | {side(c.larger, v.larger_mean, v.n_larger)} | "
                f"{side(c.smaller, v.smaller_mean, v.n_smaller)} | {_num(v.difference)} "
                f"[{_num(v.low)}, {_num(v.high)}] | **{v.verdict}** |")
  return "\n".join(rows)


def as_json(v: Verdict) -> dict:
  """For REPORT/results JSON: nan (not measurable) becomes null."""
  c = v.claim
  f = lambda x: None if math.isnan(x) else x
  return {"id": c.id, "claim": c.text, "experiment": c.experiment,
          "larger": dataclasses.asdict(c.larger), "smaller": dataclasses.asdict(c.smaller),
          "samples": c.samples, "larger_mean": f(v.larger_mean),
          "smaller_mean": f(v.smaller_mean), "difference": f(v.difference),
          "ci95": [f(v.low), f(v.high)], "verdict": v.verdict, "rule": RULE}
