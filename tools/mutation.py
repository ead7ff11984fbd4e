"""Mutation score of the core: mutmut's one-line bugs, and which of them the tests catch.

    pip install -r tools/requirements-mutation.txt -c constraints.txt
    python tools/mutation.py                  # ~1 h on 2 cores; writes docs/results/mutation.json
    python tools/mutation.py --only dl101_jax/core/augment.py --jobs 1   # one module

Not part of CI. Each module is mutated in its own copy of the repository's tracked files
under --scratch (mutmut edits the source in place), --jobs modules at once, since mutmut
runs one mutant after another. Every mutant is written to disk and judged by a fresh
pytest process over that module's TESTS, stopping at the first failure. The triage of
the survivors (equivalent, accepted or fixed by a new test) is docs/results/mutation.md,
written by hand from this script's output.

mutmut 2.x rather than 3.x: 3.x forks one process that has imported the code and picks
the mutant at call time, and jax.jit caches traces, so a function traced before the fork
would run unmutated; 2.x's fresh process per mutant sees only the mutant.
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
TESTS = {
    "dl101_jax/core/models.py": [ANCHOR, "tests/test_models.py", TS, *MUON[3:], MODERN[6]],
    "dl101_jax/core/train.py": [ANCHOR, P, TS, "tests/test_units.py", *MODERN, AUGMENT[-1]],
    "dl101_jax/core/optim.py": [ANCHOR, TS, *MODERN[1:4], *MODERN[4:7], *MUON],
    "dl101_jax/core/augment.py": [P, "tests/test_augment.py", *AUGMENT],
    "dl101_jax/core/population.py": SEARCH,
    "dl101_jax/verdict.py": ["tests/test_verdict.py",
                             f"{M}::test_each_rungs_gain_gets_the_projects_verdict"],
    "dl101_jax/core/member_state.py": [ANCHOR, TS, *MODERN[3:5], SEARCH[0], P],
}
STATUSES = ("killed", "survived", "timeout", "suspicious", "skipped", "untested")


def count_mutants(path: str) -> int:
  from mutmut import Context, list_mutations

  with open(os.path.join(ROOT, path)) as f:
    return len(list_mutations(Context(source=f.read(), filename=path)))


def copy_tree(dest: str) -> None:
  """The tracked files only (no venv, caches or runs)."""
  tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
  shutil.rmtree(dest, ignore_errors=True)
  for rel in filter(None, tracked):
    os.makedirs(os.path.dirname(os.path.join(dest, rel)) or dest, exist_ok=True)
    shutil.copy2(os.path.join(ROOT, rel), os.path.join(dest, rel))


def runner(path: str) -> str:
  return (f"{sys.executable} -m pytest -x -q -n 0 -p no:cacheprovider "
          + " ".join(dict.fromkeys(TESTS[path])))


def mutmut(copy: str, *args: str, **kw) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHONPATH=copy, DL101_OFFLINE="1", DL101_KEEP_TEST_ORDER="1",
             XDG_CACHE_HOME=os.path.join(copy, ".cache"))
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=copy, env=env,
                        text=True, **kw)


def collect(copy: str) -> dict:
  """Statuses per mutant id, and each survivor's file, line and diff."""
  out = {s: [int(i) for i in mutmut(copy, "result-ids", s, capture_output=True).stdout.split()]
         for s in STATUSES}
  survivors = []
  for i in out["survived"] + out["timeout"] + out["suspicious"]:
    diff = mutmut(copy, "show", str(i), capture_output=True).stdout
    head = next((ln for ln in diff.splitlines() if ln.startswith("--- ")), "")
    survivors.append({"id": i, "file": head[4:].strip().removeprefix("a/"), "diff": diff.strip()})
  return {"ids": out, "survivors": survivors}


def run_module(path: str, scratch: str) -> dict:
  """mutmut over one module, in its own copy of the repository (mutmut edits in place)."""
  copy = os.path.join(scratch, path.replace("/", "_").removesuffix(".py"))
  copy_tree(copy)
  t0 = time.time()
  with open(copy + ".log", "w") as log:
    mutmut(copy, "run", "--paths-to-mutate", path, "--tests-dir", "tests",
           "--runner", runner(path), "--no-progress", stdout=log, stderr=subprocess.STDOUT)
  return {"module": path, "mutants": count_mutants(path), "tests": TESTS[path],
          "seconds": round(time.time() - t0), **collect(copy)}


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--jobs", type=int, default=2, help="modules mutated at once")
  ap.add_argument("--only", nargs="*", default=list(TESTS), help="modules to mutate")
  ap.add_argument("--scratch", default=os.path.join(ROOT, ".mutation"))
  ap.add_argument("--out", default=os.path.join(ROOT, "docs", "results", "mutation.json"))
  a = ap.parse_args()
  unknown = [p for p in a.only if p not in TESTS]
  if unknown or a.jobs < 1:
    ap.error(f"--only: not a core module: {unknown[0]} (one of {', '.join(TESTS)})"
             if unknown else "--jobs: an integer >= 1")
  t0 = time.time()
  order = sorted(a.only, key=count_mutants, reverse=True)  # longest first: the jobs end together
  print(f"{sum(map(count_mutants, order))} mutants in {len(order)} modules, {a.jobs} at a time;"
        f" logs in {a.scratch}", flush=True)
  with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
    modules = list(pool.map(lambda p: run_module(p, a.scratch), order))
  total = {s: sum(len(m["ids"][s]) for m in modules) for s in STATUSES}
  judged = total["killed"] + total["survived"] + total["timeout"] + total["suspicious"]
  result = {
      "tool": "mutmut " + _version(), "date": datetime.date.today().isoformat(),
      "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
      "seconds": round(time.time() - t0), "counts": total,
      "kill_rate": round(total["killed"] / max(judged, 1), 4), "modules": modules}
  with open(a.out, "w") as f:
    json.dump(result, f, indent=1)
  print(f"{total['killed']}/{judged} killed ({result['kill_rate']:.1%}) in {result['seconds']} s;"
        f" {total['survived']} survived, {total['timeout']} timed out; {a.out}")


def _version() -> str:
  from importlib.metadata import version

  return version("mutmut")


if __name__ == "__main__":
  main()
