"""Judges the stored results in docs/results/ again by today's rule (dl101_jax.verdict),
without training anything: the ladders' gains, the search methods against grid (json and
page for both), and the tutorial's claims in REPORT.md. Run it after the rule changes, then docs/tables.py.

    python docs/rescore.py           # rewrite the verdicts stored in docs/results/
    python docs/rescore.py --check   # exit 1, naming the files, when a stored verdict is stale

The per-seed numbers are the measurements and stay as they are; only what the rule makes of
them (intervals, p-values, verdicts) is rewritten. tests/test_readme.py runs --check.
"""

from __future__ import annotations

import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
RESULTS = os.path.join(ROOT, "docs", "results")
LADDERS = ("modern_ladder", "modern_ladder_cutout", "modern_airbench94_8epochs", "modern_clean")
TUTORIAL = ("layers", "dropout", "regularization", "batch_size", "learning_rate")


def _load(name: str) -> dict:
  with open(os.path.join(RESULTS, name)) as f:
    return json.load(f)


def _dump(obj: dict) -> str:
  return json.dumps(obj, indent=1, allow_nan=False) + "\n"  # as files.write_json writes


def ladder(results: dict) -> dict:
  """A ladder's rows judged anew. Rows stored before rows carried "seeds" ran every rung on
  the run's seeds from its first seed on (the ladder and its later rungs all used 0 and 1)."""
  from experiments import modern

  first = results["variants"][0]["config"]["effective"]["seed"]
  rows = [{**r, "seeds": r.get("seeds") or
           list(range(first, first + len(r["val_accuracy_per_seed"])))}
          for r in results["ladder"]]
  return {**results, "ladder": modern.compare_rungs(rows)}


def search(results: dict) -> dict:
  from experiments import search_compare

  return {**results, "versus_grid": search_compare.versus_grid(results["runs"])}


def report(current: str) -> str:
  """REPORT.md with its claims judged anew (the rest of the page as the run wrote it)."""
  from experiments.__main__ import report_md

  md = report_md({n: _load(f"{n}.json") for n in TUTORIAL})
  for n in TUTORIAL:  # the pictures sit beside the page here, not in per-run folders
    md = md.replace(f"({n}/comparison.png)", f"({n}.png)")
  return md


def ladder_page(md: str, rows: list[dict]) -> str:
  """A ladder's summary page with its table (the first that starts with "| rung |") made
  from `rows`."""
  from experiments import modern

  lines = md.split("\n")
  start = next(i for i, ln in enumerate(lines) if ln.startswith("| rung |"))
  end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
  return "\n".join(lines[:start] + modern.ladder_table(rows).split("\n") + lines[end:])


def rescored() -> dict[str, str]:
  """File name -> its content judged by today's rule."""
  out = {}
  for n in LADDERS:
    results = ladder(_load(f"{n}.json"))
    out[f"{n}.json"] = _dump(results)
    with open(os.path.join(RESULTS, f"{n}.md")) as f:
      out[f"{n}.md"] = ladder_page(f.read(), results["ladder"])
  from experiments import search_compare

  compared = search(_load("search_compare.json"))
  out["search_compare.json"] = _dump(compared)
  with open(os.path.join(RESULTS, "search_compare.md")) as f:
    page = f.read().split(search_compare.VERSUS)[0].rstrip("\n") + "\n"
  out["search_compare.md"] = page + search_compare.versus_text(compared["versus_grid"])
  with open(os.path.join(RESULTS, "REPORT.md")) as f:
    out["REPORT.md"] = report(f.read())
  return out


def _same(path: str, text: str) -> bool:
  with open(path) as f:
    old = f.read()
  if path.endswith(".json"):  # compare values, not float formatting
    return json.loads(old) == json.loads(text)
  return re.sub(r"\s+$", "", old) == re.sub(r"\s+$", "", text)


def main(argv: list[str]) -> int:
  new = rescored()
  stale = [n for n, text in new.items() if not _same(os.path.join(RESULTS, n), text)]
  if "--check" in argv:
    if stale:
      print(f"docs/results/ holds verdicts by an older rule in: {', '.join(stale)} "
            "(python docs/rescore.py rewrites them)", file=sys.stderr)
      return 1
    return 0
  for n in stale:
    with open(os.path.join(RESULTS, n), "w") as f:
      f.write(new[n])
  print(f"docs/results/: {', '.join(stale) or 'nothing'} rejudged")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
