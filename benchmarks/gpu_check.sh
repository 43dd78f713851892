#!/usr/bin/env bash
# The whole GPU verification of minicnn in one run, from the working tree, with nothing to install:
#
#     benchmarks/gpu_check.sh OUTDIR            # about 6 minutes on one GPU
#     benchmarks/gpu_check.sh OUTDIR --dry-run  # the steps, their time limits and commands; runs nothing
#
# Steps, each under its own `timeout`, each going on whatever the one before did:
#   nvidia-smi     the GPU, its driver and memory
#   versions       Python, NumPy, Numba, CuPy (and its CUDA), PyTorch (and its CUDA): versions.json
#   gpu-tests      every GPU test, `pytest -m gpu` (kernels against the reference, layer gradient
#                  checks, a training step, moving models, fit, the fused kernels, graph capture);
#                  a test that skips fails the step
#   train-1epoch   examples/train_mnist.py --backend cupy, 60,000 images, batch 64, augmentation on
#   train-5epochs  the same for five epochs: epoch times and test accuracy
#   bench          benchmarks/bench_backends.py: cupy, cupy-graph (CUDA graph) and PyTorch eager on CUDA,
#                  training at batch 64 and 256, inference at 1000, GPU memory: bench.json, bench.png
# Each step writes OUTDIR/STEP.log; OUTDIR/summary.txt has one line per step and OUTDIR/summary.json
# the same with the figures read from the logs.  The exit status is 0 when every step passed.
# PYTHON names the interpreter (default python3, else python); GPU_CHECK_TIME_SCALE multiplies every time limit.
set -u

usage() { echo "usage: $0 OUTDIR [--dry-run]" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
OUT=$1
DRY=0
if [ $# -eq 2 ]; then [ "$2" = "--dry-run" ] && DRY=1 || usage; fi
case "$OUT" in -*) usage ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-$(command -v python3 || command -v python)}
SCALE=${GPU_CHECK_TIME_SCALE:-1}
if [ $DRY -eq 0 ]; then
    if ! mkdir -p "$OUT" 2>/dev/null || [ ! -w "$OUT" ]; then
        echo "$0: cannot write to OUTDIR $OUT; expected a folder this user can create or write" >&2
        exit 2
    fi
    OUT=$(cd "$OUT" && pwd)
    : > "$OUT/steps.tsv"
    : > "$OUT/summary.txt"
fi
FAILED=0

# step NAME SECONDS COMMAND...: run COMMAND under `timeout`, log to OUT/NAME.log, one summary line.
step() {
    local name=$1 limit seconds rc status start detail
    limit=$(awk -v s="$2" -v k="$SCALE" 'BEGIN { printf "%d", s * k + 0.5 }')
    shift 2
    if [ $DRY -eq 1 ]; then
        printf '%-14s %4ss  %s\n' "$name" "$limit" "$*"
        return 0
    fi
    start=$(date +%s.%N)
    timeout --kill-after=10 "$limit" "$@" > "$OUT/$name.log" 2>&1
    rc=$?
    seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $rc in
        0) status=ok ;;
        124|137) status=TIMEOUT ;;
        *) status=FAIL ;;
    esac
    [ $rc -eq 0 ] || FAILED=1
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$seconds" "$limit" >> "$OUT/steps.tsv"
    detail=$("$PY" benchmarks/gpu_check_report.py detail "$OUT" "$name" 2>/dev/null) || detail=$(tail -n 1 "$OUT/$name.log")
    printf '%-14s %-7s %7ss (limit %ss, exit %s)  %s\n' "$name" "$status" "$seconds" "$limit" "$rc" "$detail" \
        | tee -a "$OUT/summary.txt"
}

[ $DRY -eq 1 ] || { echo "minicnn GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git'), output in $OUT"; }

step nvidia-smi 20 nvidia-smi
step versions 45 "$PY" benchmarks/gpu_check_report.py versions "$OUT/versions.json"
step gpu-tests 150 "$PY" benchmarks/gpu_check_report.py tests "$OUT/gpu-tests.xml"
step train-1epoch 75 "$PY" examples/train_mnist.py --backend cupy --epochs 1 --quiet --out "$OUT/train-1epoch"
step train-5epochs 120 "$PY" examples/train_mnist.py --backend cupy --epochs 5 --quiet --out "$OUT/train-5epochs"
step bench 120 "$PY" benchmarks/bench_backends.py --backends cupy --torch-devices cuda --cuda-graph \
    --train-batches 64 256 --repeats 5 --train-steps 50 --settle 0.1 --json "$OUT/bench.json" --plot "$OUT/bench.png"

[ $DRY -eq 1 ] && exit 0
"$PY" benchmarks/gpu_check_report.py summary "$OUT" || FAILED=1
echo "summary: $OUT/summary.txt, $OUT/summary.json"
exit $FAILED
