#!/usr/bin/env bash
# The GPU check of issue 21 ("Ready for a GPU"): at most 8 minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh             # run it (needs CUDA and CIFAR-10 under $SAM_DATA)
#   bash benchmarks/gpu_check.sh --dry-run   # print the steps and the predicted time only
#
# Steps, each under its own time limit (the limits add up to 8 minutes):
#   1. the gpu-marked tests (pytest -m gpu)
#   2. benchmarks/cifar_epoch.py: ResNet-18 1x epoch time, the suite's path against a plain
#      DataLoader loop, and SAM/base on CUDA (2 rounds)
#   3. a CIFAR-10 ResNet-18 width trend: sweeps/gpu-check.yaml (4 widths x base/SAM x 2 seeds,
#      short schedule) into results/gpu-check/
#   4. runners/report.py --results results/gpu-check (tables, figures, findings)
# Each step's output and wall time go to results/gpu-check/gpu_check.log; a failed step is
# reported and the next one still runs; the exit code is the number of failed steps.
# Commit results/gpu-check/ afterwards (runs.sqlite, tables, figures, the log; not checkpoints).
set -u
cd "$(dirname "$0")/.."

DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument $arg (expected --dry-run)" >&2; exit 2 ;;
    esac
done

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
RESULTS=results/gpu-check
LOG="$RESULTS/gpu_check.log"

# name | time limit (s) | predicted (s) | command
STEPS=(
    "gpu tests|75|40|$PYTHON -m pytest -q -m gpu -p no:cacheprovider tests"
    "cifar_epoch|120|90|$PYTHON benchmarks/cifar_epoch.py --rounds 2"
    "width trend|255|220|$PYTHON runners/sweep.py sweeps/gpu-check.yaml --results $RESULTS --device cuda --workers 1"
    "report|30|15|$PYTHON runners/report.py --results $RESULTS"
)

total_limit=0
total_predicted=0
for step in "${STEPS[@]}"; do
    IFS='|' read -r _ limit predicted _ <<< "$step"
    total_limit=$((total_limit + limit))
    total_predicted=$((total_predicted + predicted))
done

if [ "$DRY_RUN" = 1 ]; then
    echo "gpu_check.sh --dry-run: ${#STEPS[@]} steps, nothing is run"
    i=0
    for step in "${STEPS[@]}"; do
        i=$((i + 1))
        IFS='|' read -r name limit predicted cmd <<< "$step"
        printf '  %d. %-12s predicted %4ds (limit %ds): %s\n' "$i" "$name" "$predicted" "$limit" "$cmd"
    done
    echo "predicted total: ${total_predicted}s (~$(( (total_predicted + 59) / 60 )) min); limits add up to ${total_limit}s"
    echo "output: $RESULTS/ (store, tables, figures) and $LOG; data root: ${SAM_DATA:-the user cache}"
    exit 0
fi

if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "gpu_check.sh: no CUDA device visible to torch; use --dry-run to see the steps" >&2
    exit 2
fi

mkdir -p "$RESULTS"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))' | tee "$LOG"
failed=0
start=$SECONDS
for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit predicted cmd <<< "$step"
    echo "=== $name (limit ${limit}s, predicted ${predicted}s): $cmd" | tee -a "$LOG"
    t0=$SECONDS
    timeout --kill-after=10 "$limit" $cmd 2>&1 | tee -a "$LOG"
    code=${PIPESTATUS[0]}
    echo "=== $name: exit $code after $((SECONDS - t0))s" | tee -a "$LOG"
    if [ "$code" != 0 ]; then failed=$((failed + 1)); fi
done
echo "gpu_check.sh: ${failed} of ${#STEPS[@]} steps failed; $((SECONDS - start))s in all" | tee -a "$LOG"
exit "$failed"
