import os

# Tests never download: a missing dataset must fail fast with the clear message.
os.environ.setdefault("DL101_OFFLINE", "1")

# Implicit rank promotion (a (C,) array silently broadcast against B x H x W x C) is an
# error in the tests, in this process and in the subprocesses helpers.env() starts.
os.environ["JAX_NUMPY_RANK_PROMOTION"] = "raise"

# This process compiles as the subprocesses do (helpers.TEST_XLA_FLAGS), set before JAX starts.
from helpers import TEST_XLA_FLAGS, _optimized  # noqa: E402

if not _optimized({}):
  os.environ["XLA_FLAGS"] = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), TEST_XLA_FLAGS)
                                     if f)


# xdist (--dist loadfile) hands whole files to the 2 workers in the order of its work queue;
# with the slowest files last, one worker idles while the other finishes them. So the slowest
# go first (longest-processing-time scheduling), and pyproject's addopts pass
# --no-loadscope-reorder: xdist 3.8 otherwise reorders the files by their number of tests,
# which put the slow few-test files (mesh, gpu_check, multihost) last. Ranked by cold plus
# warm seconds per file from `pytest --durations=0` on the idle 2-core CPU, 2026-12-06; only
# the order of files changes, never what runs.
SLOWEST_FIRST = ("test_experiments", "test_hostile", "test_use_model", "test_mesh", "test_search",
                 "test_faults", "test_resume", "test_seeds_auto", "test_parallel",
                 "test_gpu_check", "test_train_step", "test_tensorboard", "test_multihost",
                 "test_resume_kill", "test_models", "test_cli", "test_signals", "test_program",
                 "test_modern", "test_properties", "test_data", "test_record_recipes",
                 "test_notebook", "test_augment", "test_verdict", "test_progress")


def pytest_collection_modifyitems(items):
  if os.environ.get("DL101_KEEP_TEST_ORDER"):  # tools/mutation.py: its order, fastest to fail first
    return
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable within a file


def pytest_configure(config):
  # The test processes themselves use the project's persistent compilation cache, as every
  # run does (parallel.configure_jax), so a second session recompiles nothing.
  import jax

  from dl101_jax.host.parallel import cache_dir

  jax.config.update("jax_compilation_cache_dir", cache_dir())
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
