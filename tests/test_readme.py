"""The README against the files it speaks for: its tables are generated from docs/results/
(docs/tables.py), the verdicts stored there are today's rule's (docs/rescore.py), its two
commands are CI's, its links resolve, and it stays short."""

import importlib.util
import json
import os
import re
import shutil

import pytest

from helpers import ROOT


def _tables(name="tables"):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "docs", f"{name}.py"))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_the_verdicts_stored_in_docs_results_are_todays_rules(tmp_path, monkeypatch, capsys):
  rescore = _tables("rescore")
  assert rescore.main(["--check"]) == 0, capsys.readouterr().err
  # One seed of grid's winner changed: the stored comparison with grid is stale, and named.
  results = tmp_path / "results"
  shutil.copytree(os.path.join(ROOT, "docs", "results"), results,
                  ignore=shutil.ignore_patterns("*.png"))
  d = json.loads((results / "search_compare.json").read_text())
  d["runs"][0]["test_accuracy"] -= 0.05
  (results / "search_compare.json").write_text(json.dumps(d))
  monkeypatch.setattr(rescore, "RESULTS", str(results))
  assert rescore.main(["--check"]) == 1
  assert "in: search_compare.json, search_compare.md (python docs/rescore.py" in capsys.readouterr().err
  assert rescore.main([]) == 0 and rescore.main(["--check"]) == 0
  versus = json.loads((results / "search_compare.json").read_text())["versus_grid"]
  assert [c["test"] for c in versus] == ["paired", "paired"]
  assert versus[1]["difference"] == pytest.approx(0.0127 + 0.05 / 3, abs=1e-4)


def _readme() -> str:
  with open(os.path.join(ROOT, "README.md")) as f:
    return f.read()


def test_every_table_in_the_readme_is_the_one_docs_results_gives():
  tables = _tables()
  text = _readme()
  assert set(m.group(2) for m in tables.BLOCK.finditer(text)) == set(tables.TABLES)
  new, changed = tables.update(text)
  assert changed == [], f"python docs/tables.py: README.md differs from docs/results/ in {changed}"
  assert new == text


def test_a_changed_number_in_docs_results_fails_the_check(tmp_path, monkeypatch):
  tables = _tables()
  results = tmp_path / "results"
  shutil.copytree(os.path.join(ROOT, "docs", "results"), results,
                  ignore=shutil.ignore_patterns("*.png"))
  d = json.loads((results / "search_compare.json").read_text())
  d["runs"][0]["test_accuracy"] += 0.05  # one seed of grid's winner
  (results / "search_compare.json").write_text(json.dumps(d))
  monkeypatch.setattr(tables, "RESULTS", str(results))
  readme = tmp_path / "README.md"
  readme.write_text(_readme())
  monkeypatch.setattr(tables, "README", str(readme))
  assert tables.main(["--check"]) == 1
  new, changed = tables.update(readme.read_text())
  assert changed == ["search"]
  assert "| grid (all train to the end) | 8 | 3 | 0.610 ± 0.009 | 0.617 ± 0.028 |" in new
  assert tables.main([]) == 0 and tables.main(["--check"]) == 0  # rewritten, then in step


def test_an_unknown_table_name_is_an_error():
  with pytest.raises(KeyError, match="unknown table 'nope'"):
    _tables().update("<!-- table nope -->\n| x |\n<!-- end table -->")


def test_the_two_commands_are_the_ones_ci_runs():
  text = _readme()
  commands = re.findall(r"^(python3\.11 -m venv .venv && .*)$", text, re.M)
  assert len(commands) == 2 and "experiments.start_here" in commands[0]
  with open(os.path.join(ROOT, ".ci", "run")) as f:
    assert commands[1] in f.read().splitlines()


def test_short_lines_and_links_that_resolve():
  text = _readme()
  lines = text.splitlines()
  assert len(lines) <= 220
  fenced, long = False, []
  for line in lines:
    if line.startswith("```"):
      fenced = not fenced
    elif not fenced and len(line) > (120 if line.startswith("|") else 100) and "http" not in line:
      long.append(line)  # prose within 100 characters; a table's row within 120
  assert long == []
  for target in re.findall(r"\]\(([^)#]+)\)", text):
    if not target.startswith("http"):
      assert os.path.exists(os.path.join(ROOT, target)), target
  for target in re.findall(r"!\[[^]]*\]\(([^)]+)\)", text):
    assert os.path.exists(os.path.join(ROOT, target)), target


@pytest.mark.parametrize("page", sorted(f for f in os.listdir(os.path.join(ROOT, "docs"))
                                        if f.endswith(".md")))
def test_the_docs_pages_links_resolve(page):
  with open(os.path.join(ROOT, "docs", page)) as f:
    text = f.read()
  for target in re.findall(r"\]\(([^)#]+)\)", text):
    if not target.startswith("http"):
      assert os.path.exists(os.path.join(ROOT, "docs", target)), (page, target)
