"""The suite's own schedule: the slowest files go first, and xdist keeps that order."""

import os
import pathlib
import tomllib
import types

import conftest
from helpers import ROOT


def test_every_ranked_file_exists_and_is_ranked_once():
  names = conftest.SLOWEST_FIRST
  assert len(set(names)) == len(names)
  missing = [n for n in names if not os.path.exists(os.path.join(ROOT, "tests", n + ".py"))]
  assert not missing, f"SLOWEST_FIRST names files that are gone: {missing}"


def test_items_are_sorted_slowest_file_first_and_stable_within_a_file(monkeypatch):
  monkeypatch.delenv("DL101_KEEP_TEST_ORDER", raising=False)
  item = lambda stem, k: types.SimpleNamespace(path=pathlib.Path(f"tests/{stem}.py"), k=k)  # noqa: E731
  first, second = conftest.SLOWEST_FIRST[:2]
  items = [item("test_unranked", 0), item(second, 1), item(first, 2), item(second, 3),
           item(first, 4)]
  conftest.pytest_collection_modifyitems(items)
  assert [(i.path.stem, i.k) for i in items] == [
      (first, 2), (first, 4), (second, 1), (second, 3), ("test_unranked", 0)]


def test_xdist_is_told_to_keep_the_order():
  # pytest-xdist 3.8's --loadscope-reorder (on by default) re-sorts the files by their number
  # of tests, which put the slow few-test files last and left one worker idle at the end.
  addopts = tomllib.load(open(os.path.join(ROOT, "pyproject.toml"), "rb"))[
      "tool"]["pytest"]["ini_options"]["addopts"].split()
  assert "--no-loadscope-reorder" in addopts
  assert addopts[addopts.index("--dist") + 1] == "loadfile"
