"""--seeds auto: seeds on demand, a batch at a time, until every claim judged is decided.

    python -m experiments.regularization --data-dir DATA_DIR --epochs 20 --seeds auto

The run plans its looks before it starts: after 3, 6, 9, ... seeds per variant, up to
--max-seeds (12) and within --seed-budget model-epochs. Each look trains its new seeds
as one more vmapped program (checkpointed in a folder of its own, so re-running the same
command resumes where it stopped) and then judges the experiment's claims on every seed
so far; the run stops at the first look where each claim over seeds is supported or
contradicted (a claim over epochs, as 3b's, gains nothing from more seeds). The
rule that keeps the error rate however early it stops is the verdict module's: with K
planned looks each interval is at 1 - 0.05/K and each p-value is multiplied by K
(Bonferroni over looks) before Holm's adjustment over the claims.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from dl101_jax.config import Config, ConfigError

SEEDS_PER_LOOK = 3  # the fewest seeds whose paired interval says much (2 degrees of freedom)


def plan(config: Config, variants: int) -> list[int]:
  """Seeds per variant at each look: 3, 6, ... up to --max-seeds, cut at --seed-budget."""
  looks = list(range(SEEDS_PER_LOOK, config.max_seeds + 1, SEEDS_PER_LOOK))
  if looks[-1] != config.max_seeds:
    looks.append(config.max_seeds)
  if config.seed_budget:
    cost = variants * config.epochs  # model-epochs per seed
    looks = [n for n in looks if n * cost <= config.seed_budget]
    if not looks:
      raise ConfigError("seed_budget", f"must allow the first look: {SEEDS_PER_LOOK} seeds x "
                        f"{variants} variant(s) x {config.epochs} epochs = "
                        f"{SEEDS_PER_LOOK * cost} model-epochs or more, got {config.seed_budget}")
  return looks


def batch(selected: dict[str, Config], first: int, count: int) -> dict[str, Config]:
  """The variants' configs for seeds first .. first+count-1 (counted from --seed): plain
  runs of `count` seeds, as a look trains them."""
  plain = {f.name: f.default for f in dataclasses.fields(Config)
           if f.name in ("max_seeds", "seed_budget")}
  return {n: dataclasses.replace(vc, seed=vc.seed + first, seeds=count, **plain)
          for n, vc in selected.items()}


def decided(verdicts: list) -> bool:
  """The stopping rule: every claim judged is supported or contradicted."""
  return bool(verdicts) and all(v.verdict != "inconclusive" for v in verdicts)


def run(config: Config, selected: dict[str, Config],
        train: Callable[[dict[str, Config], str], list], judge: Callable[[list, dict], list],
        say: Callable[[str], None], alpha: float,
        after_look: Callable[[list, dict], object] | None = None) -> tuple[list, dict]:
  """Train look after look; return every look's groups and results.json's "seeds_auto".

  `train(batch_configs, suffix)` trains one look's new seeds (suffix: its checkpoint
  folder's, '' for the first look, as a plain --seeds 3 run's); `judge(groups, record)`
  judges the claims on every group so far (dl101_jax.verdict's Verdicts), under `record`'s
  planned looks; `alpha`: the error rate the looks share. `after_look(groups, record)`,
  after each look that does not end the run: the outputs so far (record's "stopped" says
  the run goes on).
  """
  looks = plan(config, len(selected))
  record = {"planned_looks": len(looks), "seeds_per_look": looks,
            "max_seeds": config.max_seeds, "seed_budget": config.seed_budget,
            "alpha_per_look": alpha / len(looks), "looks": []}
  groups, done = [], 0
  for k, n in enumerate(looks):
    suffix = f"@seed{config.seed + done}" if done else ""
    groups += train(batch(selected, done, n - done), suffix)
    done = n
    # Only claims over seeds can change with more of them (3b's samples are epochs).
    verdicts = [v for v in judge(groups, record) if v.claim.samples == "seeds"]
    record["looks"].append({"seeds": n, "verdicts": {v.claim.id: v.verdict for v in verdicts},
                            "p_holm": {v.claim.id: None if v.p_holm != v.p_holm else v.p_holm
                                       for v in verdicts}})
    open_ = [v.claim.id for v in verdicts if v.verdict == "inconclusive"]
    stop = decided(verdicts) or k == len(looks) - 1
    say(f"--seeds auto, look {k + 1} of {len(looks)} ({n} seeds): "
        + (f"claim(s) {', '.join(open_)} still open" if open_ else "every claim decided")
        + ("" if stop else f"; adding seeds {config.seed + n}.."
           f"{config.seed + looks[k + 1] - 1}"))
    if stop:
      break
    if after_look:
      after_look(groups, {**record, "looks": list(record["looks"]), "seeds_used": n,
                          "stopped": f"running: look {k + 1} of {len(looks)} left claim(s) "
                                     f"{', '.join(open_)} open; {looks[k + 1]} seeds next"})
  record["seeds_used"] = done
  cut = bool(config.seed_budget) and looks[-1] < config.max_seeds
  record["stopped"] = ("every claim decided" if decided(verdicts) else
                       f"{'--seed-budget' if cut else '--max-seeds'} reached, "
                       f"claim(s) {', '.join(open_)} still open")
  return groups, record


def summary(record: dict) -> str:
  """A line for summary.md: the looks, what each left open, why the run stopped."""
  looks = "; ".join(f"{look['seeds']} seeds: " + (", ".join(
      f"({c}) {v}" for c, v in look["verdicts"].items())) for look in record["looks"])
  return (f"--seeds auto planned {record['planned_looks']} look(s) at "
          f"{', '.join(map(str, record['seeds_per_look']))} seeds, each at error "
          f"{record['alpha_per_look']:.4g}; {looks}. "
          + ("At" if record["stopped"].startswith("running") else "Stopped at")
          + f" {record['seeds_used']} seeds: {record['stopped']}.")
