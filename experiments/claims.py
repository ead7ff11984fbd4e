"""The tutorial's claims, each with the metric it is judged on: the one list REPORT.md uses.

Sources: the tutorial's blog post and its notebooks (emilwallner/Deep-Learning-101).
Each claim names two (variant, metric) sides of one experiment; `larger` is the
side the tutorial says comes out higher. Final-epoch values, one per seed, except
seconds_per_step (one per epoch: a group's seeds share one program's clock).
`dl101_jax.verdict` turns each into supported / contradicted / inconclusive: each
experiment judges its own claims as it ends (`judged`), and `python -m experiments`
judges all of them together in REPORT.md.
"""

import dataclasses

from dl101_jax import verdict
from dl101_jax.verdict import Claim, Side

CLAIMS = (
    Claim("0", "three layer sets beat one (~15% more accurate; one set underfits)", "layers",
          Side("three_layer_sets", "val_accuracy"), Side("one_layer_set", "val_accuracy"),
          short="three layer sets beat one"),
    Claim("0b", "without dropout or L2 the net overfits: training accuracy ends above validation",
          "dropout", Side("no_dropout", "train_accuracy"), Side("no_dropout", "val_accuracy"),
          short="no dropout overfits: train > val"),
    Claim("1", "dropout improves validation accuracy", "dropout",
          Side("dropout", "val_accuracy"), Side("no_dropout", "val_accuracy"),
          short="dropout helps"),
    Claim("2", "L2 improves validation accuracy", "regularization",
          Side("l2", "val_accuracy"), Side("no_regularization", "val_accuracy"), short="L2 helps"),
    Claim("2b", "(beside it, not the tutorial's) decoupled weight decay improves validation "
          "accuracy", "regularization",
          Side("weight_decay", "val_accuracy"), Side("no_regularization", "val_accuracy"),
          short="AdamW's decay helps (not claimed)"),
    Claim("3a", "a large batch takes far fewer steps per epoch", "batch_size",
          Side("batch_50", "steps_per_epoch"), Side("batch_2000", "steps_per_epoch"),
          short="batch 2000 takes fewer steps"),
    Claim("3b", "each large-batch step costs more time", "batch_size",
          Side("batch_2000", "seconds_per_step"), Side("batch_50", "seconds_per_step"),
          samples="epochs", short="each batch-2000 step costs more"),
    Claim("4a", "a too-high learning rate (1e-2) fails to converge", "learning_rate",
          Side("lr_1e-3", "val_accuracy"), Side("lr_1e-2", "val_accuracy"),
          short="lr 1e-2 fails to converge"),
    Claim("4b", "a too-low learning rate (1e-4) learns slowly", "learning_rate",
          Side("lr_1e-3", "val_accuracy"), Side("lr_1e-4", "val_accuracy"),
          short="lr 1e-4 learns slowly"),
)


def as_run(claim: Claim, renamed: dict[str, str]) -> Claim:
  """The claim with its sides named as the variants ran (batch_2000 runs as batch_1437 on
  digits' 1437 training images)."""
  side = lambda s: dataclasses.replace(s, variant=renamed.get(s.variant, s.variant))  # noqa: E731
  return dataclasses.replace(claim, larger=side(claim.larger), smaller=side(claim.smaller))


def family(results: dict[str, dict]) -> list[tuple[Claim, dict]]:
  """Every claim whose experiment is in `results` (name -> results.json), named as it ran."""
  return [(c, r) for c, r, missing in _sorted(results) if not missing]


def not_judged(results: dict[str, dict]) -> list[tuple[Claim, list[str]]]:
  """The claims of experiments in `results` whose variants did not run, with those variants."""
  return [(c, missing) for c, _, missing in _sorted(results) if missing]


def _sorted(results: dict[str, dict]) -> list[tuple[Claim, dict, list[str]]]:
  out = []
  for claim in CLAIMS:
    r = results.get(claim.experiment)
    if r:
      c = as_run(claim, r.get("claims", {}).get("renamed", {}))
      ran = {v["name"] for v in r["variants"]}
      out.append((c, r, [n for n in dict.fromkeys((c.larger.variant, c.smaller.variant))
                         if n not in ran]))
  return out


PROTOCOL_EPOCHS = 20  # the README's protocol; the tutorial ran 50


def table_md(verdicts: list, scope: str, results: dict[str, dict] | None = None) -> str:
  """The verdicts' table under the rule; what to run when one seed leaves them open; the
  claims not judged here and why; and, off CIFAR-10 or at few epochs, what the claims are
  about."""
  out = [f"The tutorial's claims, judged {scope}. Rule: {verdict.RULE}."]
  out += ["", verdict.table(verdicts)] if verdicts else []
  out += notes(verdicts, results or {})
  return "\n".join(out)


def notes(verdicts: list, results: dict[str, dict]) -> list[str]:
  """What a table of verdicts leaves unsaid: too few seeds, claims not judged, the data."""
  out = []
  if any(min(v.n_larger, v.n_smaller) < 2 for v in verdicts):
    out += ["", "One sample per side gives no interval and so no verdict either way: run with "
                "--seeds 3 or more (3b's samples are epochs: --epochs 3 or more)."]
  for c, missing in not_judged(results):
    out += ["", f"({c.id}) {c.text}: not judged here: {', '.join(missing)} did not run "
                "(--variants)."]
  if any(r["dataset"]["name"] != "cifar10" or r["config"]["epochs"] < PROTOCOL_EPOCHS
         for r in results.values()):
    out += ["", f"The tutorial's claims are about CIFAR-10 at {PROTOCOL_EPOCHS}+ epochs (its "
                "own runs: 50); on other data or fewer epochs a verdict says what this run "
                "shows, not whether the tutorial holds. Training accuracy is each epoch's "
                "mean with dropout and augmentation on, so early on it can sit below "
                "validation's."]
  return out


class judged:
  """run_experiment's `extra`: this experiment's claims judged on its run, as one family
  (results.json's "claims"; summary.md and the console end with its table). `renamed`:
  variants that ran under another name. --seeds auto asks it between looks (`verdicts`)
  and before training whether the selected variants leave a claim to judge (`claims`)."""

  alpha = verdict.ALPHA  # the error rate --seeds auto's looks share

  def __init__(self, experiment: str, renamed: dict[str, str] | None = None):
    self.experiment, self.renamed = experiment, renamed or {}

  def _mine(self, results_json: dict) -> dict[str, dict]:
    return {self.experiment: {**results_json, "claims": {"renamed": self.renamed}}}

  def claims(self, names) -> list[Claim]:
    """The claims judged when the variants `names` run."""
    ran = {"variants": [{"name": n} for n in names]}
    return [c for c, _, missing in _sorted(self._mine(ran)) if not missing]

  def verdicts(self, results_json: dict) -> list:
    return verdict.judge_all(family(self._mine(results_json)))

  def __call__(self, results) -> dict:
    mine = self._mine(results.json)
    vs = self.verdicts(results.json)
    scope = ("on this run, as one family (python -m experiments judges all of the tutorial's "
             "claims together)")
    return {"claims": {"verdicts": [verdict.as_json(v) for v in vs],
                       "not_judged": [{"id": c.id, "missing": m} for c, m in not_judged(mine)],
                       "table": table_md(vs, scope, mine), "renamed": self.renamed}}
