#!/usr/bin/env bash
# The device check (issue 15): one prepared run on a GPU machine, within a fixed wall-time budget.
#
#   bash bench/device_check.sh           # on the GPU machine: 8 minutes at most
#   bash bench/device_check.sh --smoke   # every step at tiny sizes, on a CPU: 2 minutes at most
#
# Steps, in order, each under `timeout` sized to what is left of the budget
# (a step that no longer fits is skipped, and the log says so):
#   env    environment: nvidia-smi, jax.devices(), versions          -> env.txt
#   perf   python -m bench perf at L = 16384, d = 256 and 512, float32
#          and --layer-dtype bfloat16, NumPy left out (--no-numpy)  -> perf.txt
#          (with the certified rows: verdict-only and search, float32 and
#          bfloat16 products, and the rows settled per stage)
#   rounding python -m jaxattn_bench.rounding_probe: the certified bound
#          against exact rationals on adversarial tiles, on the device  -> rounding.txt
#   tiles  bench perf --sweep-tiles at L = 16384, d = 512, per dtype:
#          ja.verify and the search over (rows, keys) tiles, the best -> tiles.txt
#   preset python -m bench run --preset paper as far as time allows
#          (stopped with SIGINT when its time is up; it resumes), then
#          --plan: per-point seconds and the share of the preset done  -> preset.log, results.sqlite
#   plots  python -m plots over the results; figure (a) is kept       -> a_d_vs_length.png
# --smoke: L = 64, d = 16, float32 only (bfloat16 products: the same commands with
# --layer-dtype, which tests/test_perf.py runs), tiles of 16 and 64 rows by 64 keys,
# --repeats 1, the rounding probe at d = 1 and 2 only (the suite probes every d:
# tests/test_certify.py), and a tiny preset written to a temporary folder instead of paper.
# and device_check.log, the steps and a summary: at most 8 files, flat, in $OUT
# (a new temporary folder if OUT is unset). The repository needs no install:
# jaxattn_bench and jaxattn_plots are links to bench/ and plots/ in a
# temporary folder on PYTHONPATH. Compiled programs are shared between the
# steps' processes through a temporary JAX compilation cache (no timed run
# includes a compile either way). DEVICE_CHECK_BUDGET=SECONDS overrides the
# budget. PYTHON=INTERPRETER runs the steps with that interpreter (default: python from
# PATH; the tests pass their own). Exit status: 0 unless a step failed (a step stopped at its time
# limit is not a failure).
set -u -o pipefail

case "${1:-}" in
  "") SMOKE=0 ;;
  --smoke) SMOKE=1 ;;
  *) echo "usage: bash bench/device_check.sh [--smoke]" >&2; exit 2 ;;
esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/shim"
ln -s "$ROOT/bench" "$WORK/shim/jaxattn_bench"
ln -s "$ROOT/plots" "$WORK/shim/jaxattn_plots"
export PYTHONPATH="$ROOT:$WORK/shim" PYTHONUNBUFFERED=1 JAX_COMPILATION_CACHE_DIR=$WORK/jax-cache \
  JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
cd "$ROOT" || exit 2
PYTHON=${PYTHON:-python}

if (( SMOKE )); then
  BUDGET=120 LENGTH=64 DIMS=16 SWEEP_D=16 REPEATS=1 DTYPES=float32
  PERF_MIN=5 TILES_MIN=5 PRESET_MIN=5 TAIL=25 ROUND_MIN=5 ROUND_MAX_D=2
  TILES=(--tile-rows 16,64 --tile-keys 64)
  PRESET=$WORK/tiny.toml
  cat >"$PRESET" <<'EOF'
description = "device_check.sh --smoke: a tiny grid"
trials = 2
delta = 0.5
family = "random_regular"
method = "jl"
a_min = 0.5
eps2 = 0.5
[[grid]]
length = [8, 16]
nnz = 1
eps1 = 1.0
d_grid = [16, 32, 64, 128]
EOF
else
  BUDGET=480 LENGTH=16384 DIMS="256 512" SWEEP_D=512 REPEATS=5 DTYPES="float32 bfloat16"
  PERF_MIN=20 TILES_MIN=30 PRESET_MIN=60 TAIL=40 ROUND_MIN=20 ROUND_MAX_D=4096
  TILES=()  # bench perf's default tiles: rows 512, 1024, 2048 x keys 256, 512, 1024, 2048
  PRESET=paper
fi
# *_MIN: the least time worth starting a step with; TAIL: kept back for the
# preset's progress report and the figures. GRACE: seconds between SIGINT and
# SIGKILL when a step runs out of time.
GRACE=5
BUDGET=${DEVICE_CHECK_BUDGET:-$BUDGET}
RESULTS=$WORK/results.sqlite
LOG=$OUT/device_check.log
START=$SECONDS
FAILED=()

log() { echo "[$(( SECONDS - START )) s] $*" | tee -a "$LOG"; }

# step NAME FILE RESERVE MIN CAP CMD...: CMD with its output appended to $OUT/FILE,
# under a timeout of min(CAP, what is left of the budget - RESERVE - GRACE);
# skipped if that is under MIN seconds.
step() {
  local name=$1 file=$2 reserve=$3 min=$4 cap=$5
  shift 5
  local left=$(( BUDGET - (SECONDS - START) - reserve - GRACE ))
  local limit=$(( left < cap ? left : cap ))
  if (( limit < min )); then
    log "SKIP $name: ${left} s left (after ${reserve} s kept for later steps), needs ${min} s"
    return 0
  fi
  log "STEP $name: start, limit ${limit} s"
  echo "### $name: $*" >>"$OUT/$file"
  local began=$SECONDS rc=0
  timeout -s INT -k "$GRACE" "$limit" "$@" >>"$OUT/$file" 2>&1 || rc=$?
  if (( rc == 0 )); then
    log "STEP $name: done rc=0 in $(( SECONDS - began )) s"
  elif (( rc == 124 || rc == 137 )); then
    log "STEP $name: TIMEOUT, stopped after $(( SECONDS - began )) s"
  else
    log "STEP $name: FAILED rc=$rc in $(( SECONDS - began )) s (see $file)"
    FAILED+=("$name")
  fi
}

environment() {
  date -u
  uname -a
  if command -v nvidia-smi >/dev/null; then nvidia-smi; else echo "nvidia-smi: not found"; fi
  "$PYTHON" - <<'EOF'
import importlib.metadata
import jax
import jaxattn
from jaxattn_bench import perf
print(perf.environment())
print("jax.devices():", jax.devices())
print("default backend:", jax.default_backend(), "default tiles (rows, keys):",
      jaxattn.default_tiles())
for name in ("jax", "jaxlib", "numpy", "scipy", "optax", "matplotlib", "tqdm", "jaxtyping"):
  try:
    print(f"{name} {importlib.metadata.version(name)}")
  except importlib.metadata.PackageNotFoundError:
    print(f"{name} not installed")
EOF
}

log "device_check.sh$( (( SMOKE )) && echo " --smoke"): budget ${BUDGET} s, OUT=$OUT, root $ROOT"
# Each step keeps back the minimum of every later one.
set -- $DTYPES
ndtypes=$#
set -- $DIMS
keep=$(( ndtypes * $# * PERF_MIN + ROUND_MIN + ndtypes * TILES_MIN + PRESET_MIN + TAIL ))
export -f environment
export PYTHON
step env env.txt "$keep" 5 60 bash -c environment
for dtype in $DTYPES; do
  for d in $DIMS; do
    keep=$(( keep - PERF_MIN ))
    step "perf d=$d $dtype" perf.txt "$keep" "$PERF_MIN" 90 \
      "$PYTHON" -m jaxattn_bench perf --length "$LENGTH" --d "$d" --layer-dtype "$dtype" \
      --repeats "$REPEATS" --no-numpy
  done
done
keep=$(( keep - ROUND_MIN ))
step rounding rounding.txt "$keep" "$ROUND_MIN" 120 \
  "$PYTHON" -m jaxattn_bench.rounding_probe --max-d "$ROUND_MAX_D"
for dtype in $DTYPES; do
  keep=$(( keep - TILES_MIN ))
  step "tiles $dtype" tiles.txt "$keep" "$TILES_MIN" 120 \
    "$PYTHON" -m jaxattn_bench perf --sweep-tiles --length "$LENGTH" --d "$SWEEP_D" \
    --layer-dtype "$dtype" --repeats "$REPEATS" --no-numpy ${TILES[@]+"${TILES[@]}"}
done
step "preset $(basename "$PRESET" .toml)" preset.log "$TAIL" "$PRESET_MIN" "$BUDGET" \
  "$PYTHON" -m jaxattn_bench run --preset "$PRESET" --results "$RESULTS" --no-figures
if [[ -f $RESULTS ]]; then
  # --plan reads the store (rolling back a point cut short) and reports the share done.
  step progress preset.log 10 3 30 \
    "$PYTHON" -m jaxattn_bench run --preset "$PRESET" --results "$RESULTS" --plan
  step plots preset.log 0 3 60 "$PYTHON" -m jaxattn_plots --results "$RESULTS" --out "$WORK/figures"
  cp "$RESULTS" "$OUT/results.sqlite"
  cp "$WORK/figures/a_d_vs_length.png" "$OUT/" 2>/dev/null || log "no figure (a) was drawn"
else
  log "SKIP progress, plots: no results file"
fi

log "summary:"
grep -h -e '^a/d' -e '^e/a' -e '^L=' "$OUT/perf.txt" 2>/dev/null | tee -a "$LOG"
grep -h '^best' "$OUT/tiles.txt" 2>/dev/null | tee -a "$LOG"
grep -h 'products: worst' "$OUT/rounding.txt" 2>/dev/null | tee -a "$LOG"
grep -h '^progress:' "$OUT/preset.log" 2>/dev/null | tail -n 1 | tee -a "$LOG"
log "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
if (( ${#FAILED[@]} )); then
  log "FAILED steps: ${FAILED[*]}"
  exit 1
fi
log "finished in $(( SECONDS - START )) s"
