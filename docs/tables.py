"""The README's tables, generated from the measured results in docs/results/.

    python docs/tables.py           # rewrite every generated table in README.md
    python docs/tables.py --check   # exit 1, naming the tables, when README.md differs

A measured number has one home, docs/results/; the README shows it through this script.
Each table sits between `<!-- table NAME -->` and `<!-- end table -->`; tests/test_readme.py
fails when the README and the files disagree.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
README = os.path.join(ROOT, "README.md")
BLOCK = re.compile(r"(<!-- table (\w+) -->\n)(.*?)(<!-- end table -->)", re.S)


def _load(name: str) -> dict:
  with open(os.path.join(RESULTS, name)) as f:
    return json.load(f)


def _pm(values: list[float], digits: int = 3) -> str:
  import numpy as np

  return f"{np.mean(values):.{digits}f} ± {np.std(values):.{digits}f}"


def _ci(low: float | None, high: float | None, digits: int = 3) -> str:
  f = lambda x: "–" if x is None or math.isnan(x) else f"{x:+.{digits}f}"
  return f"[{f(low)}, {f(high)}]"


def _verdict(verdict: str | None, low: float | None, high: float | None,
             p_holm: float | None) -> str:
  """The verdict, bold when decided; Holm's p in brackets where the interval alone excludes 0
  but the family's adjustment leaves the claim undecided (the column says "(Holm p)")."""
  if verdict in ("supported", "contradicted"):
    return f"**{verdict}**"
  alone = low is not None and high is not None and (low > 0 or high < 0)
  return f"{verdict} ({p_holm:.2g})" if alone and p_holm is not None else (verdict or "")


def claims() -> str:
  """The tutorial's claims, judged on the protocol's five results files."""
  sys.path.insert(0, ROOT)
  from experiments.__main__ import verdicts

  results = {n: _load(f"{n}.json") for n in
             ("layers", "dropout", "regularization", "batch_size", "learning_rate")}
  rows = ["| claim | means | difference [95% CI] | seeds | verdict (Holm p) |",
          "|---|---|---|---|---|"]
  for v in verdicts(results):
    auto = results[v.claim.experiment].get("seeds_auto")
    # A --seeds auto run's K looks share the 5%: its interval is at 1 - 0.05/K.
    seeds = (f"{min(v.n_larger, v.n_smaller)}"
             + (f" (auto, {100 * (1 - 0.05 / v.looks):.4g}%)" if auto else "")
             if v.claim.samples == "seeds" else f"{min(v.n_larger, v.n_smaller)} epochs")
    metric = v.claim.larger.metric
    if metric == "steps_per_epoch":
      measured, diff = f"{v.larger_mean:.0f} vs {v.smaller_mean:.0f} steps", (
          f"{v.difference:+.0f} (exact)")
    elif metric == "seconds_per_step":
      measured = f"{v.larger_mean:.3g} s vs {v.smaller_mean:.3g} s"
      diff = f"{v.difference:+.3g} s {_ci(v.low, v.high, 1)}"
    else:
      measured = f"{v.larger_mean:.3f} vs {v.smaller_mean:.3f}"
      diff = f"{v.difference:+.3f} {_ci(v.low, v.high)}"
    rows.append(f"| ({v.claim.id}) {v.claim.short or v.claim.text} | {measured} | {diff} | "
                f"{seeds} | {_verdict(v.verdict, v.low, v.high, v.p_holm)} |")
  return "\n".join(rows)


def search() -> str:
  """Grid, halving and PBT at equal compute, mean ± std over the search seeds."""
  stored = _load("search_compare.json")
  runs, versus = stored["runs"], {c["method"]: c for c in stored["versus_grid"]}
  labels = {"grid": "grid (all train to the end)", "halving": "successive halving",
            "pbt": "PBT"}
  rows = ["| method | members | seeds | best val acc | winner's test acc | "
          "vs grid [95% CI] (Holm p) |", "|---|---|---|---|---|---|"]
  for method, label in labels.items():
    rs = [r for r in runs if r["method"] == method]
    c = versus.get(method)
    vs = (f"{c['difference']:+.3f} {_ci(*c['ci95'])} "
          f"{_verdict(c['verdict'], *c['ci95'], c['p_holm'])}") if c else ""
    rows.append(f"| {label} | {rs[0]['members']} | {len(rs)} | "
                f"{_pm([r['val_accuracy'] for r in rs])} | "
                f"{_pm([r['test_accuracy'] for r in rs])} | {vs} |")
  return "\n".join(rows)


def clean() -> str:
  """The full recipe on clean pixels beside airbench94 in PyTorch, one seed each."""
  m, ref = _load("modern_clean.json"), _load("airbench_reference_clean.json")
  by = {r["rung"]: r for r in m["ladder"]}
  epochs = m["variants"][0]["config"]["effective"]["epochs"]
  return "\n".join([
      "| recipe | with TTA | without | training | epochs |", "|---|---|---|---|---|",
      f"| dl101_jax, `experiments.modern` | **{by['+ tta']['val_accuracy']:.4f}** | "
      f"{by['+ lookahead']['val_accuracy']:.4f} | {by['+ lookahead']['seconds'] / 60:.1f} min | "
      f"{epochs} |",
      f"| airbench94 in PyTorch | **{ref['val_accuracy_tta']:.4f}** | "
      f"{ref['val_accuracy']:.4f} | {ref['train_seconds'] / 60:.1f} min | {ref['epochs']} |"])


def ladder() -> str:
  """Each rung's final validation accuracy, its gain over the row it is compared with."""
  rows = ["| rung | seeds | val acc (mean ± std) | gain [95% CI] | verdict (Holm p) | min |",
          "|---|---|---|---|---|---|"]
  for r in _load("modern_ladder.json")["ladder"]:
    name = r["rung"] + (f" vs {r['vs']}" if r.get("vs") else "")
    gain = "" if r["gain"] is None else f"{r['gain']:+.3f} {_ci(*r['gain_ci95'])}"
    cost = "same run" if r["rung"] == "+ tta" else f"{r['seconds'] / 60:.0f}"
    verdict = _verdict(r["verdict"], *(r["gain_ci95"] or [None, None]), r.get("p_holm"))
    seeds = len(r.get("seeds") or r["val_accuracy_per_seed"])
    rows.append(f"| {name} | {seeds} | {_pm(r['val_accuracy_per_seed'])} | {gain} | {verdict} | "
                f"{cost} |")
  return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {"claims": claims, "search": search, "clean": clean,
                                        "ladder": ladder}


def update(text: str) -> tuple[str, list[str]]:
  """`text` with every generated table rendered anew, and the names of those that changed."""
  changed = []

  def one(m: re.Match) -> str:
    name = m.group(2)
    if name not in TABLES:
      raise KeyError(f"README names an unknown table {name!r} (known: {', '.join(TABLES)})")
    body = TABLES[name]() + "\n"
    if body != m.group(3):
      changed.append(name)
    return m.group(1) + body + m.group(4)

  return BLOCK.sub(one, text), changed


def main(argv: list[str]) -> int:
  with open(README) as f:
    text = f.read()
  new, changed = update(text)
  if "--check" in argv:
    if changed:
      print(f"README.md is out of date with docs/results/ in: {', '.join(changed)} "
            "(python docs/tables.py rewrites it)", file=sys.stderr)
      return 1
    return 0
  with open(README, "w") as f:
    f.write(new)
  print(f"README.md: {', '.join(changed) or 'nothing'} rewritten")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
