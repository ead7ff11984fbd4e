"""docs/results/mutation.md against the run it reports (docs/results/mutation.json, written by
tools/mutation.py): every surviving mutant triaged exactly once, and the score table's numbers
the json's, so that a new run cannot leave the page stale without failing here."""

import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "docs", "results")
ROW = re.compile(r"^\| `(\w+\.py)` #(\d+) \| (equivalent|accepted) \| .+ \| .+ \|$")


def _load():
  with open(os.path.join(RESULTS, "mutation.json")) as f:
    run = json.load(f)
  with open(os.path.join(RESULTS, "mutation.md")) as f:
    page = f.read()
  return run, page


def _triage(page):
  rows = [ROW.match(ln) for ln in page.splitlines() if ln.startswith("| `")]
  return [(m[1], int(m[2]), m[3]) for m in rows if m]


def test_every_survivor_is_triaged_exactly_once_and_nothing_else_is():
  run, page = _load()
  survivors = sorted((os.path.basename(m["module"]), s["id"])
                     for m in run["modules"] for s in m["survivors"])
  triaged = sorted((f, i) for f, i, _ in _triage(page))
  assert len(triaged) == len(set(triaged)), "a mutant is triaged twice"
  assert triaged == survivors


def test_the_score_table_is_the_runs():
  run, page = _load()
  verdicts = {(f, i): v for f, i, v in _triage(page)}
  totals = [0] * 5
  for m in run["modules"]:
    name = os.path.basename(m["module"])
    killed = len(m["ids"]["killed"])
    survived = m["mutants"] - killed
    eq = sum(v == "equivalent" for (f, _), v in verdicts.items() if f == name)
    acc = survived - eq
    row = [m["mutants"], killed, survived, eq, acc]
    totals = [a + b for a, b in zip(totals, row)]
    cells = " | ".join(str(c) for c in row)
    rate = f"{killed / m['mutants']:.1%} | {killed / (m['mutants'] - eq):.1%}"
    assert f"| `{m['module']}` | {cells} | {rate} |" in page, name
  n, killed, _, eq, _ = totals
  assert f"| all | {' | '.join(str(c) for c in totals)} | " \
         f"{killed / n:.1%} | {killed / (n - eq):.1%} |" in page
  assert killed / (n - eq) >= 0.90, "under the 90% of non-equivalent mutants asked for"


def test_the_page_is_the_tools_rendering_and_a_survivor_without_a_triage_is_named():
  import importlib.util

  spec = importlib.util.spec_from_file_location(
      "mutation_doc", os.path.join(ROOT, "tools", "mutation_doc.py"))
  tool = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(tool)
  run, page = _load()
  assert tool.render(run, page) == (page, [])  # python tools/mutation_doc.py changes nothing
  # A survivor whose change no row shows (a new run's) is written and named as untriaged.
  first = next(m for m in run["modules"] if m["survivors"])
  name = os.path.basename(first["module"])
  s = first["survivors"][0]
  old, new = tool.change(s["diff"])
  row = next(ln for ln in page.splitlines() if ln.startswith(f"| `{name}` #{s['id']} |"))
  new_page, untriaged = tool.render(run, page.replace(row + "\n", ""))
  assert untriaged == [f"{name} #{s['id']}: {old} -> {new}"]
  assert f"| `{name}` #{s['id']} | untriaged |" in new_page
  assert not any(ROW.match(ln) and f"#{s['id']} " in ln and ln.startswith(f"| `{name}`")
                 for ln in new_page.splitlines())  # the page's own test refuses it
