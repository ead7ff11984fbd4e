"""docs/results/mutation.md from docs/results/mutation.json, keeping the triage it already has.

    python tools/mutation.py --rejudge docs/results/mutation.json   # writes the json
    python tools/mutation_doc.py                                    # rewrites the page's numbers

The page is its own template: its headline, its score table and its table of survivors are
rewritten from the json; every other line stays. A survivor keeps the verdict and reason of
the row that shows the same change (matched by the changed lines, since mutant ids move when a
module changes); a survivor without one is written as "untriaged", named here, and the exit
status is 1 until someone reads it and writes its verdict (tests/test_mutation_doc.py accepts
only "equivalent" and "accepted").
"""

from __future__ import annotations

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JSON = os.path.join(ROOT, "docs", "results", "mutation.json")
PAGE = os.path.join(ROOT, "docs", "results", "mutation.md")
ROW = re.compile(r"^\| `(\w+\.py)` #(\d+) \| (\w+) \| `(.*)` → `(.*)` \| (.+) \|$")


def change(diff: str) -> tuple[str, str]:
  """A mutant's removed and added lines, as the page shows them (' / ' between lines)."""
  side = lambda sign: " / ".join(  # noqa: E731
      ln[1:].strip() for ln in diff.splitlines()
      if ln.startswith(sign) and not ln.startswith(sign * 3) and ln[1:].strip())
  return side("-"), side("+") or "(line removed)"


def _cell(text: str) -> str:
  return text.replace("|", "\\|")


def render(run: dict, page: str) -> tuple[str, list[str]]:
  """The page with its numbers made from `run`, and the survivors left untriaged."""
  known = {}
  for line in page.splitlines():
    m = ROW.match(line)
    if m:
      known[(m[1], m[4].replace("\\|", "|"), m[5].replace("\\|", "|"))] = (m[3], m[6])
  rows, scores, untriaged, totals = [], [], [], [0] * 5
  for mod in run["modules"]:
    name, eq = os.path.basename(mod["module"]), 0
    for s in mod["survivors"]:
      old, new = change(s["diff"])
      verdict, why = known.get((name, old, new), ("untriaged", "to be read"))
      untriaged += [f"{name} #{s['id']}: {old} -> {new}"] if verdict == "untriaged" else []
      eq += verdict == "equivalent"
      rows.append(f"| `{name}` #{s['id']} | {verdict} | `{_cell(old)}` → `{_cell(new)}` | {why} |")
    killed = len(mod["ids"]["killed"]) + len(mod["ids"]["suspicious"])
    row = [mod["mutants"], killed, mod["mutants"] - killed, eq, mod["mutants"] - killed - eq]
    totals = [a + b for a, b in zip(totals, row)]
    scores.append(f"| `{mod['module']}` | {' | '.join(map(str, row))} | "
                  f"{killed / mod['mutants']:.1%} | {killed / (mod['mutants'] - eq):.1%} |")
  n, k, _, e, _ = totals
  scores.append(f"| all | {' | '.join(map(str, totals))} | {k / n:.1%} | {k / (n - e):.1%} |")
  out, table = [], None
  for line in page.splitlines():
    if line.startswith("**") and "mutants killed" in line:
      line = (f"**{k} of {n} mutants killed ({k / n:.1%}); of the {n - e} that are not "
              f"equivalent, {k / (n - e):.1%}.**")
    if line.startswith("| module |") or line.startswith("| mutant |"):
      table = scores if line.startswith("| module |") else rows
      out.append(line)
      continue
    if table is not None and line.startswith("| ---"):
      out += [line, *table]
      continue
    if table is not None and line.startswith("|"):
      continue  # the old rows
    table = None
    out.append(line)
  return "\n".join(out) + "\n", untriaged


def main() -> int:
  with open(JSON) as f:
    run = json.load(f)
  with open(PAGE) as f:
    page, untriaged = render(run, f.read())
  with open(PAGE, "w") as f:
    f.write(page)
  for u in untriaged:
    print(f"untriaged: {u}", file=sys.stderr)
  return 1 if untriaged else 0


if __name__ == "__main__":
  sys.exit(main())
