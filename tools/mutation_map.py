"""Which tests execute each line of a module: tools/mutation.py runs only those on its mutants.

One coverage run of the module's selection, with a context per test, gives {line: tests}.
Coverage's own per-test contexts (dynamic_context = test_function) get three things wrong
for this code base, so the plugin below sets the contexts itself:
  - they credit the first function named test* that a test enters: for a hypothesis test,
    hypothesis's inner `test`, so its lines were credited to no test (the first rejudge's L2
    sign survived so). Contexts are named after pytest's node id, as pytest-cov's
    --cov-context=test does;
  - jit traces a function once per shape, then runs the cached program: a line inside a
    jitted step would be credited only to the first test that traced it. The caches are
    cleared before each test;
  - a fixture wider than a function (a module's trained state) runs once, in the setup of
    the first test that asks for it, so its lines were credited to that test alone, and a
    mutant there was judged by one test of the several that read its result (member_state's
    seed mutant #86 survived so). Each such fixture's setup is its own context, credited to
    every test that uses the fixture.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

PLUGIN = '''"""pytest plugin (tools/mutation_map.py): each test, and each fixture wider than a test,
its own coverage context; each test's jitted code traced anew."""
import json
import os

import coverage
import jax
import pytest

USES = {}  # node id -> the wide fixtures it uses
_stack = []


def _key(fixturedef):
  return f"fixture:{fixturedef.baseid}::{fixturedef.argname}"


def _switch(context):
  coverage.Coverage.current().switch_context(context)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
  jax.clear_caches()
  node = item.nodeid.split("[")[0]
  info = getattr(item, "_fixtureinfo", None)
  defs = info.name2fixturedefs if info else {}
  wide = {_key(d[-1]) for n in item.fixturenames if (d := defs.get(n)) and d[-1].scope != "function"}
  USES[node] = sorted(set(USES.get(node, [])) | wide)
  _stack[:] = [node]
  _switch(node)


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef, request):
  wide = fixturedef.scope != "function"
  if wide:
    _stack.append(_key(fixturedef))
    _switch(_stack[-1])
  try:
    yield
  finally:
    if wide:
      _stack.pop()
      _switch(_stack[-1] if _stack else "")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
  _switch(item.nodeid.split("[")[0])


def pytest_runtest_teardown(item):
  _switch("")


def pytest_sessionfinish(session):
  with open(os.environ["MUTATION_FIXTURE_USES"], "w") as f:
    json.dump(USES, f)
'''


def tests_by_line(copy: str, path: str, tests: list[str], env: dict) -> dict[str, list[str]]:
  """{line: the tests that execute it} for `path`, from one coverage run of `tests` in the
  repository copy `copy`. A line run in a wide fixture's setup is credited to every test
  that uses the fixture. Lines run at import (constants, defaults, decorators) have no test
  of their own and are left out: their mutants get the module's whole selection."""
  import coverage

  rc = os.path.join(copy, ".coveragerc-mutation")
  with open(rc, "w") as f:
    f.write(f"[run]\nsource = dl101_jax\n"
            f"data_file = {os.path.join(copy, '.coverage-mutation')}\n")
  with open(os.path.join(copy, "mutation_fresh_traces.py"), "w") as f:
    f.write(PLUGIN)
  uses_file = os.path.join(copy, ".mutation-fixture-uses.json")
  subprocess.run([sys.executable, "-m", "coverage", "run", f"--rcfile={rc}", "-m", "pytest",
                  "-q", "-n", "0", "-p", "no:cacheprovider", "-p", "mutation_fresh_traces",
                  *dict.fromkeys(tests)],
                 cwd=copy, env=dict(env, MUTATION_FIXTURE_USES=uses_file),
                 capture_output=True, check=True)
  with open(uses_file) as f:
    uses = json.load(f)
  users: dict[str, list[str]] = {}
  for node, fixtures in uses.items():
    for fixture in fixtures:
      users.setdefault(fixture, []).append(node)
  data = coverage.CoverageData(os.path.join(copy, ".coverage-mutation"))
  data.read()
  source = next(f for f in data.measured_files() if f.endswith(path))
  by_line = {}
  for line, contexts in data.contexts_by_lineno(source).items():
    if "" in contexts:
      continue
    credited = {t for c in contexts for t in (users.get(c, []) if c.startswith("fixture:")
                                              else [c] if "::" in c else [])}
    by_line[line] = sorted(credited)
  real = collected(copy, sorted({t for ts in by_line.values() for t in ts}), env)
  out = {}
  for line, ts in by_line.items():
    ts = [t for t in ts if t in real]
    if ts:
      out[str(line)] = ts
  return out


def collected(copy: str, node_ids: list[str], env: dict) -> set[str]:
  """The node ids pytest can run. A mutant whose selection names one it cannot would end
  in pytest's usage error (exit 4), which mutmut 2 counts as a pass: a false survivor."""
  if not node_ids:  # pytest with no ids would collect every test
    return set()
  out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0",
                        "-p", "no:cacheprovider", *node_ids], cwd=copy, env=env,
                       capture_output=True, text=True, check=True).stdout
  found = {ln.split("[")[0] for ln in out.splitlines() if "::" in ln}
  return {n for n in node_ids if any(c == n or c.startswith(n + "::") for c in found)}
