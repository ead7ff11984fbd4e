#!/usr/bin/env bash
# The first check on a lent accelerator (one GPU, at most ~8 minutes), in one script:
#
#   benchmarks/gpu_check.sh DATA_DIR [OUT_DIR]
#
# DATA_DIR: a prepared TFDS dir holding CIFAR-10 with the full 50k training split (the
# machine has no internet, so the prepared dir travels with the code). OUT_DIR (default
# benchmarks/results) receives gpu_check_<device>_<date>.json and .md; the runs' own
# workdirs go to a temporary dir. Every step runs under its own time limit, and a step
# that fails is recorded and the next one still runs, so a partial check still reports.
#
# The steps: the tests that exercise the compiled core on the accelerator; start_here;
# dropout on the full 50k, 3 seeds vmapped, 10 epochs; modern's full recipe, 1 seed; the
# train-step benchmark (images/s and MFU against the chip's peak) in f32 and bf16; the
# (members, data) mesh rows of benchmarks.mesh on every accelerator there is (skipped, and
# the row says so, on one; GPU_CHECK_PLATFORM=tpu on a TPU host).
#
# GPU_CHECK_TINY=1 runs the same steps at toy sizes on any machine (digits instead of
# CIFAR-10, 1 epoch, the benchmark in bf16 only; DATA_DIR unused), which is how the test suite keeps this script from
# rotting. GPU_CHECK_TESTS overrides the test selection.
set -uo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: benchmarks/gpu_check.sh DATA_DIR [OUT_DIR]" >&2
  exit 2
fi
DATA_DIR=$1
OUT_DIR=${2:-benchmarks/results}
TINY=${GPU_CHECK_TINY:-0}
PY=${PYTHON:-python}
if [[ $TINY != 1 && ! -d $DATA_DIR ]]; then
  echo "error: DATA_DIR: $DATA_DIR is not a directory (a prepared TFDS dir with CIFAR-10)" >&2
  exit 2
fi
mkdir -p "$OUT_DIR" || exit 2
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
STEPS=$WORK/steps.jsonl
# One process on one accelerator at a time: no preallocating 75% of its memory.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

# step NAME LIMIT_S CMD...: run CMD under a time limit, log to $WORK/NAME.log, and append
# {name, command, rc, seconds} to $STEPS.
step() {
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout "$limit" "$@" >"$WORK/$name.log" 2>&1
  local rc=$?
  tail -n 3 "$WORK/$name.log"
  "$PY" -c 'import json, sys; print(json.dumps({"name": sys.argv[1], "rc": int(sys.argv[2]),
    "seconds": int(sys.argv[3]), "command": sys.argv[4:]}))' \
    "$name" "$rc" "$((SECONDS - t0))" "$@" >>"$STEPS"
}

if [[ $TINY == 1 ]]; then
  TESTS=${GPU_CHECK_TESTS:-tests/test_models.py -k parameter_counts}
  DATA=(--dataset digits --train-size 300)  # 300 of digits' 1437: seconds, not half a minute
  NET=(--net conv8-pool-fc16)  # the same path as the tutorial's CNN, compiled in a few seconds
  EPOCHS=1
  MODERN=(--variants tutorial)
  BENCH=(--batch-sizes 32 --images 64 --repeats 1 --vmap-seeds 1 --no-compile-times --compile-cache)
  PRECISIONS=(bf16)  # f32 is the same path with the default dtype; one keeps the test short
  MESH_PLATFORM=cpu  # one CPU device: the step records why it is skipped
else
  TESTS=${GPU_CHECK_TESTS:-tests/test_train_step.py tests/test_augment.py tests/test_models.py tests/test_record_recipes.py}
  DATA=(--data-dir "$DATA_DIR")
  NET=()
  export DL101_TEST_OPTIMIZE=1  # the tests compile as users' runs do (tests/helpers.py)
  EPOCHS=10
  MODERN=()
  BENCH=(--batch-sizes 96,2000 --repeats 3 --vmap-seeds 1,8)
  PRECISIONS=(f32 bf16)
  MESH_PLATFORM=${GPU_CHECK_PLATFORM:-gpu}
fi

# shellcheck disable=SC2086  # TESTS is a list of test paths
step tests 120 "$PY" -m pytest -q -n 0 $TESTS
step start_here 30 "$PY" -m experiments.start_here --workdir "$WORK/start_here"
step dropout 120 "$PY" -m experiments.dropout "${DATA[@]}" "${NET[@]}" --seeds 3 --epochs "$EPOCHS" \
  --workdir "$WORK/dropout"
step modern 120 "$PY" -m experiments.modern "${DATA[@]}" --seeds 1 --epochs "$EPOCHS" \
  "${MODERN[@]}" --workdir "$WORK/modern"
for p in "${PRECISIONS[@]}"; do
  step "train_step_$p" 45 "$PY" -m benchmarks.train_step --frameworks dl101_jax "${BENCH[@]}" \
    --precision "$p" --json "$WORK/train_step_$p.json"
done

# The (members, data) mesh rows: every accelerator there is (benchmarks.mesh --devices 0);
# on one chip, or on the CPU of a tiny check, the row says it was skipped and why.
step mesh 900 "$PY" -m benchmarks.mesh --platform "$MESH_PLATFORM" --devices 0 \
  --out "$WORK/mesh.json"

"$PY" -m benchmarks.gpu_report "$WORK" "$OUT_DIR"
