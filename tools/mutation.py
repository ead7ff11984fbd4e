"""Mutation score of the core: mutmut's one-line bugs, and which of them the tests catch.

    pip install -r tools/requirements-mutation.txt -c constraints.txt
    python tools/mutation.py                  # ~1 h on 2 cores; writes docs/results/mutation.json
    python tools/mutation.py --only dl101_jax/core/augment.py --jobs 1   # one module
    python tools/mutation.py --rejudge docs/results/mutation.json   # only its survivors

Not part of CI. Each module is mutated in its own copy of the repository's tracked files
under --scratch (mutmut edits the source in place), --jobs modules at once, since mutmut
runs one mutant after another. Every mutant is written to disk and judged by a fresh
pytest process over that module's TESTS, stopping at the first failure. The triage of
the survivors (equivalent or accepted, each with its reason) is docs/results/mutation.md;
tools/mutation_doc.py rewrites its numbers from the json and keeps each triage, naming any
survivor that has none.

mutmut 2.x rather than 3.x: 3.x forks one process that has imported the code and picks
the mutant at call time, and jax.jit caches traces, so a function traced before the fork
would run unmutated; 2.x's fresh process per mutant sees only the mutant.

--rejudge PREV judges again only PREV's survivors, against the tests as they are now, and
carries PREV's kills: sound while each module's source is PREV's (checked; mutmut numbers a
module's mutants in the order of its `list_mutations`, so PREV's ids name the same mutants,
and each rebuilt mutant's diff is checked against PREV's) and the selections only grew.
PREV's modules outside --only are carried unchanged, and the output is rewritten as each
module ends, so a long rejudge can be split across sittings. A module whose source changed
since PREV is judged in full:

    python tools/mutation.py --rejudge docs/results/mutation.json --only dl101_jax/core/train.py --out r1.json
    python tools/mutation.py --rejudge r1.json --only dl101_jax/core/augment.py --out r2.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

from mutation_map import tests_by_line  # tools/ is this script's path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
P, TS, M, R, S = ("tests/test_properties.py", "tests/test_train_step.py", "tests/test_modern.py",
                  "tests/test_record_recipes.py", "tests/test_search.py")
ANCHOR = f"{P}::test_one_epoch_of_the_tutorial_net_equals_a_reference_sgd_epoch"
MUON = [f"{R}::test_muon_steps_are_airbench94_muons_rule_written_out",
        f"{R}::test_muon_whitening_bias_falls_to_zero_then_freezes",
        f"{R}::test_muon_lr_is_a_per_member_value", f"{R}::test_the_muon_head"]
MODERN = [f"{M}::test_{t}" for t in (
    "label_smoothing_is_cross_entropy_against_smoothed_targets",
    "nesterov_is_pytorchs_sgd_with_weight_decay",
    "the_schedule_scales_each_update_and_keeps_the_member_hyperparameters",
    "ema_follows_the_params_and_is_what_evaluation_uses", "lookahead_is_airbenchs",
    "tta_levels_are_airbenchs", "airbench_parameter_groups",
    "alternating_flips_see_every_image_both_ways_every_two_epochs")]
AUGMENT = [f"{M}::test_translate_moves_every_pixel_by_the_shift",
           f"{M}::test_translate_fills_from_the_reflection_and_stays_in_bounds",
           f"{M}::test_tta_levels_are_airbenchs"] + [f"{R}::test_cutout_{t}" for t in (
               "sets_one_inner_square_to_the_fill_and_leaves_the_rest",
               "corners_cover_their_range_uniformly", "is_applied_to_normalized_training_inputs_only")]
SEARCH = [f"{S}::test_{t}" for t in (
    "exploit_copies_exact_states_from_the_top", "explore_and_sample_stay_within_bounds",
    "explore_perturbs_by_the_pbt_factors_when_not_resampling",
    "a_rung_keeps_exactly_the_top_ceil_n_over_eta", "ancestry_follows_copied_weights_back")]
# Each core module and the tests that exercise it in seconds (the end-to-end runs would
# add minutes per mutant); with -x, the broadest come first.
SEARCH += [f"{S}::test_{t}" for t in (
    "the_prior_is_log_uniform_for_the_learning_rate_and_uniform_for_the_rest",
    "pbt_replaces_a_fraction_of_the_population_at_least_one_at_most_half",
    "donors_are_drawn_from_the_whole_top_and_ties_rank_the_lower_index_first",
    "the_jitted_pbt_step_is_exploit_explore", "a_searchs_keys_are_its_seed_tag_and_epoch")]
PURPOSES = f"{P}::test_every_purpose_folds_its_own_tag_into_the_seed"
PROGRAM, OPTIM = "tests/test_program.py", "tests/test_optim.py"
TESTS = {
    "dl101_jax/core/models.py": [ANCHOR, "tests/test_models.py", TS, *MUON[3:], MODERN[6]],
    "dl101_jax/core/train.py": [ANCHOR, PROGRAM, P, TS, "tests/test_units.py", *MODERN,
                                AUGMENT[-1]],
    "dl101_jax/core/optim.py": [ANCHOR, OPTIM, TS, *MODERN[1:4], *MODERN[4:7], *MUON],
    "dl101_jax/core/augment.py": [P, "tests/test_augment.py", *AUGMENT],
    "dl101_jax/core/population.py": [*SEARCH, PURPOSES],
    "dl101_jax/verdict.py": ["tests/test_verdict.py",
                             f"{M}::test_each_rungs_gain_gets_the_projects_verdict"],
    "dl101_jax/core/member_state.py": [
      ANCHOR, "tests/test_member_state.py", PROGRAM, TS, "tests/test_kept_best.py",
      "tests/test_models.py::test_batchnorm_trains_on_the_batch_and_evaluates_on_running_averages",
      *MODERN[3:5], SEARCH[0], MUON[2], P],
}
STATUSES = ("killed", "survived", "timeout", "suspicious", "skipped", "untested")


def count_mutants(path: str, root: str = ROOT) -> int:
  from mutmut import Context, list_mutations

  with open(os.path.join(root, path)) as f:
    return len(list_mutations(Context(source=f.read(), filename=path)))


def copy_tree(dest: str, rev: str = "HEAD") -> None:
  """The repository's files at `rev` (committed files only: no venv, caches or runs)."""
  shutil.rmtree(dest, ignore_errors=True)
  os.makedirs(dest)
  archive = subprocess.run(["git", "archive", rev], cwd=ROOT, capture_output=True, check=True)
  subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)


# mutmut 2 counts every exit status but 1 as "tests pass": a mutant that breaks an import
# (pytest's 2, or 4 when conftest's import fails) or crashes pytest (3) would survive. This
# runner makes every failure 1 (the node ids are checked to exist, so 4 is never a typo).
PREFIX = (f"{sys.executable} -c \"import sys, pytest; c = pytest.main(sys.argv[1:]); "
          f"sys.exit(1 if c else 0)\" -x -q -n 0 -p no:cacheprovider")


def runner(path: str) -> str:
  return PREFIX + " " + " ".join(dict.fromkeys(TESTS[path]))


def _env(copy: str) -> dict:
  # PYTHONDONTWRITEBYTECODE: mutmut restores the original by a move that keeps its mtime,
  # so a cached .pyc of one mutant could otherwise stand in for the next of the same size.
  env = dict(os.environ, PYTHONPATH=copy, DL101_OFFLINE="1", DL101_KEEP_TEST_ORDER="1",
             XDG_CACHE_HOME=os.path.join(copy, ".cache"), PYTHONDONTWRITEBYTECODE="1")
  env.pop("XLA_FLAGS", None)
  return env


def mutmut(copy: str, *args: str, **kw) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=copy, env=_env(copy),
                        text=True, **kw)


def collect(copy: str) -> dict:
  """Statuses per mutant id, and each survivor's file, line and diff. mutmut's "suspicious"
  is a mutant the tests killed, slowly: a kill, with no diff to triage."""
  out = {s: [int(i) for i in mutmut(copy, "result-ids", s, capture_output=True).stdout.split()]
         for s in STATUSES}
  survivors = []
  for i in out["survived"] + out["timeout"]:
    diff = mutmut(copy, "show", str(i), capture_output=True).stdout
    head = next((ln for ln in diff.splitlines() if ln.startswith("--- ")), "")
    survivors.append({"id": i, "file": head[4:].strip().removeprefix("a/"), "diff": diff.strip()})
  return {"ids": out, "survivors": survivors}


HOOK = '''"""mutmut's hook (written by tools/mutation.py): each mutant runs the tests that execute
its line (coverage's per-test contexts); lines run at import get the whole selection."""
import json

TESTS = json.load(open("tests_by_line.json"))
PREFIX = {prefix!r}


def pre_mutation(context):
  tests = TESTS.get(str(context.mutation_id.line_number + 1))
  if tests:
    context.config.test_command = PREFIX + " " + " ".join(tests)
'''


def run_module(path: str, scratch: str, rev: str) -> dict:
  """mutmut over one module, in its own copy of the repository (mutmut edits in place)."""
  copy = os.path.join(scratch, path.replace("/", "_").removesuffix(".py"))
  copy_tree(copy, rev)
  t0 = time.time()
  with open(os.path.join(copy, "tests_by_line.json"), "w") as f:
    json.dump(tests_by_line(copy, path, TESTS[path], _env(copy)), f)
  with open(os.path.join(copy, "mutmut_config.py"), "w") as f:
    f.write(HOOK.format(prefix=PREFIX))
  with open(copy + ".log", "w") as log:
    mutmut(copy, "run", "--paths-to-mutate", path, "--tests-dir", "tests",
           "--runner", runner(path), "--no-progress", stdout=log, stderr=subprocess.STDOUT)
  return {"module": path, "commit": rev, "mutants": count_mutants(path, copy), "tests": TESTS[path],
          "seconds": round(time.time() - t0), **collect(copy)}


def rejudge_module(prev: dict, scratch: str, rev: str) -> dict:
  """PREV's survivors of one module judged again (see the docstring); its kills carried."""
  import difflib

  from mutmut import Context, list_mutations, mutate

  path, prev_rev = prev["module"], prev["commit"]  # a carried module keeps its own commit
  if subprocess.run(["git", "diff", "--quiet", prev_rev, rev, "--", path], cwd=ROOT).returncode:
    # PREV's ids name other mutants now: every mutant of the new source is judged.
    print(f"{path} changed since {prev_rev[:8]}: all its mutants are judged", flush=True)
    return run_module(path, scratch, rev)
  copy = os.path.join(scratch, path.replace("/", "_").removesuffix(".py"))
  copy_tree(copy, rev)
  t0 = time.time()
  by_line = tests_by_line(copy, path, TESTS[path], _env(copy))
  timeout = max(120.0, 5 * (time.time() - t0))  # the coverage run is the baseline
  target = os.path.join(copy, path)
  with open(target) as f:
    source = f.read()
  mutants = list_mutations(Context(source=source, filename=path))
  ids = {s: [] for s in STATUSES}
  ids["killed"] = sorted(prev["ids"]["killed"] + prev["ids"]["suspicious"])
  survivors = []
  for s in prev["survivors"]:
    if s["id"] in prev["ids"]["suspicious"]:
      continue
    mutant_id = mutants[s["id"] - 1]
    mutated, _ = mutate(Context(source=source, mutation_id=mutant_id, filename=path))
    diff = "\n".join(difflib.unified_diff(source.splitlines(), mutated.splitlines(),
                                          "a/" + path, "b/" + path, lineterm=""))
    lines = lambda d: [ln for ln in d.splitlines()  # the changed lines, blank ones aside
                       if ln[:1] in "+-" and ln[:3] not in ("---", "+++") and ln[1:].strip()]
    if lines(diff) != lines(s["diff"]):
      raise SystemExit(f"--rejudge: {path} mutant {s['id']} is not the one {prev_rev[:8]} ran")
    tests = by_line.get(str(mutant_id.line_number + 1)) or TESTS[path]
    with open(target, "w") as f:
      f.write(mutated)
    try:
      rc = subprocess.run(PREFIX + " " + " ".join(tests), shell=True, cwd=copy, env=_env(copy),
                          capture_output=True, timeout=timeout).returncode
      status = "survived" if rc == 0 else "killed"
    except subprocess.TimeoutExpired:
      status = "timeout"
    finally:
      with open(target, "w") as f:
        f.write(source)
    ids[status].append(s["id"])
    print(f"{path} mutant {s['id']}: {status}", flush=True)
    if status != "killed":
      survivors.append({"id": s["id"], "file": path, "diff": diff})
  ids["killed"].sort()
  return {"module": path, "commit": rev, "mutants": len(mutants), "tests": TESTS[path],
          "seconds": round(time.time() - t0), "ids": ids, "survivors": survivors}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--jobs", type=int, default=2, help="modules mutated at once")
  ap.add_argument("--only", nargs="*", default=list(TESTS), help="modules to mutate")
  ap.add_argument("--scratch", default=os.path.join(ROOT, ".mutation"))
  ap.add_argument("--rev", default="HEAD", help="the commit whose code and tests are mutated")
  ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "mutation.json"))
  ap.add_argument("--rejudge", metavar="PREV", help="judge only PREV's survivors again")
  a = ap.parse_args()
  unknown = [p for p in a.only if p not in TESTS]
  if unknown or a.jobs < 1:
    ap.error(f"--only: not a core module: {unknown[0]} (one of {', '.join(TESTS)})"
             if unknown else "--jobs: an integer >= 1")
  t0 = time.time()
  rev = subprocess.run(["git", "rev-parse", a.rev], cwd=ROOT, capture_output=True, text=True,
                       check=True).stdout.strip()
  prev = None
  if a.rejudge:
    with open(a.rejudge) as f:
      prev = json.load(f)
    done = {m["module"]: {"commit": prev["commit"], **m} for m in prev["modules"]}
    order = sorted((p for p in a.only if p in done),
                   key=lambda p: len(done[p]["survivors"]), reverse=True)
    job = lambda p: rejudge_module(done[p], a.scratch, rev)  # noqa: E731
  else:
    order = sorted(a.only, key=count_mutants, reverse=True)  # longest first: jobs end together
    job = lambda p: run_module(p, a.scratch, rev)  # noqa: E731
  print(f"{sum(map(count_mutants, order))} mutants in {len(order)} modules, {a.jobs} at a time;"
        f" logs in {a.scratch}", flush=True)
  # With --rejudge, PREV's modules outside --only are carried as they are, and the result is
  # written again as each module ends: a run cut off keeps what it finished, and the rest can
  # be rejudged later from its output with --only.
  finished = {}

  def write() -> dict:
    modules = list(({**done, **finished} if prev else finished).values())
    total = {s: sum(len(m["ids"][s]) for m in modules) for s in STATUSES}
    judged = total["killed"] + total["survived"] + total["timeout"] + total["suspicious"]
    result = {
        "tool": "mutmut " + _version(), "date": datetime.date.today().isoformat(), "commit": rev,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "seconds": round(time.time() - t0), "counts": total,
        # mutmut's "suspicious" is a mutant the tests killed, slowly: a kill.
        "kill_rate": round((total["killed"] + total["suspicious"]) / max(judged, 1), 4),
        **({"rejudged": {"from": prev["commit"], "date": prev["date"],
                         "modules": sorted(finished)}} if prev else {}),
        "modules": sorted(modules, key=lambda m: m["module"])}
    with open(a.out, "w") as f:
      json.dump(result, f, indent=1)
    return result

  with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
    futures = {pool.submit(job, p): p for p in order}
    for future in concurrent.futures.as_completed(futures):
      finished[futures[future]] = future.result()
      result = write()
  if not order:
    result = write()
  total = result["counts"]
  judged = total["killed"] + total["survived"] + total["timeout"] + total["suspicious"]
  print(f"{total['killed'] + total['suspicious']}/{judged} killed ({result['kill_rate']:.1%}) in {result['seconds']} s;"
        f" {total['survived']} survived, {total['timeout']} timed out; {a.out}")


def _version() -> str:
  from importlib.metadata import version

  return version("mutmut")


if __name__ == "__main__":
  main()
