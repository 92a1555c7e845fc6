#!/usr/bin/env bash
# Every CUDA path once, and the speed tables, in one run of at most ~8 minutes on one GPU.
#
#   bash tools/gpu_check.sh [OUT_DIR] [--quick]
#
# Writes everything under OUT_DIR (default: $OUT, else ./gpu_check_out):
#   summary.txt        one line per section: ok / failed (exit N) / timeout / skipped, seconds, log
#   commands.txt       the exact command of each section
#   env.txt            GPU, driver, torch/CUDA/cuDNN versions, CPUs
#   <section>.out/.log stdout (tables) / stderr (progress) of each section
#   pytest_cuda.xml    the CUDA-marked tests (tests/test_cuda.py), JUnit XML
#   bench_*.json       tools/bench.py reports; tables.txt all their tables
#   train/             a short real training with --data-backend gpu (log, checkpoints, summary.json)
#
# Sections, in order of value (a time budget, GPU_CHECK_BUDGET seconds, default 470, caps each
# section's limit; the torch.compile runs come last and take what is left):
#   env, pytest_cuda, bench_compute (+ _<size> for each other image size of the registered
#   networks, e.g. _299), bench_loaders (+ _<size>), train_gpu, eval_gpu, bench_compiled_<net>
#   (one per registered net, so that a timeout keeps the others).
#
# Without CUDA (e.g. this project's CPU machines) it is a dry run: the CUDA tests are collected
# and skipped, the other sections run on the CPU at tiny sizes (the same commands and outputs,
# no GPU figures), the compile runs are skipped; summary.txt says which. --quick uses the tiny
# sizes on a GPU too. PYTHON picks the interpreter (default: python). Exit status: 0 when no
# section failed or timed out, else 1.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

QUICK=0
DIR=""
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h|--help) sed -n '2,25p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "error: unknown option '$arg'; usage: bash tools/gpu_check.sh [OUT_DIR] [--quick]" >&2; exit 2 ;;
        *) DIR="$arg" ;;
    esac
done
DIR="${DIR:-${OUT:-gpu_check_out}}"
PY="${PYTHON:-python}"
BUDGET="${GPU_CHECK_BUDGET:-470}"
mkdir -p "$DIR" || { echo "error: cannot create '$DIR'" >&2; exit 2; }
DIR="$(cd "$DIR" && pwd)"
SUMMARY="$DIR/summary.txt"
: > "$SUMMARY"
: > "$DIR/commands.txt"
START=$(date +%s)
FAILED=0

CUDA=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
CPUS=$("$PY" -c "import os; print(len(os.sched_getaffinity(0)))" 2>/dev/null || nproc)
if [ "$CUDA" = 1 ]; then DEVICE=cuda; else DEVICE=cpu; QUICK=1; fi

record() {  # name status seconds detail
    printf '%-24s %-22s %5ss  %s\n' "$1" "$2" "$3" "$4" | tee -a "$SUMMARY"
}

section() {  # name limit_s command...: run it under the smaller of its limit and the budget left
    local name=$1 limit=$2
    shift 2
    local left=$(( BUDGET - ($(date +%s) - START) ))
    [ "$left" -lt "$limit" ] && limit=$left
    if [ "$limit" -lt 20 ]; then
        record "$name" "skipped" 0 "time budget (${BUDGET}s) spent"
        return
    fi
    printf '%s (limit %ss):' "$name" "$limit" >> "$DIR/commands.txt"
    printf ' %q' "$@" >> "$DIR/commands.txt"
    echo >> "$DIR/commands.txt"
    local t0 rc status
    t0=$(date +%s)
    timeout --kill-after=15 "$limit" "$@" > "$DIR/$name.out" 2> "$DIR/$name.log"
    rc=$?
    case $rc in
        0) status="ok" ;;
        124|137) status="timeout after ${limit}s"; FAILED=$((FAILED + 1)) ;;
        *) status="failed (exit $rc)"; FAILED=$((FAILED + 1)) ;;
    esac
    record "$name" "$status" $(( $(date +%s) - t0 )) "$DIR/$name.log"
}

peak_tflops() {  # dense bf16 tensor-core peak of the card, for utilisation (MFU); PEAK_TFLOPS wins
    if [ -n "${PEAK_TFLOPS:-}" ]; then echo "$PEAK_TFLOPS"; return; fi
    local name
    name=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0))" 2>/dev/null)
    case "$name" in
        *H100*PCIe*) echo 756 ;;
        *H100*NVL*) echo 835 ;;
        *H100*|*H200*|*H800*|*GH200*) echo 989 ;;
        *A100*|*A800*) echo 312 ;;
        *L40S*) echo 362 ;;
        *) echo "" ;;
    esac
}

# ---------------------------------------------------------------------------- env
{
    echo "date: $(date -u +%FT%TZ)"
    echo "device: $DEVICE (quick sizes: $QUICK), host CPUs: $CPUS, budget: ${BUDGET}s"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm \
        --format=csv 2>&1
    "$PY" -c "import torch, torchvision; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn',
torch.backends.cudnn.version(), 'torchvision', torchvision.__version__);
print('gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none')" 2>&1
} > "$DIR/env.txt"
record env ok 0 "$DIR/env.txt"
if [ "$CUDA" != 1 ]; then
    echo "note: no CUDA device: a dry run on the CPU at tiny sizes; CUDA tests skip, compile runs are skipped, no figure here is a GPU figure" | tee -a "$SUMMARY"
fi

# ---------------------------------------------------------------------------- CUDA tests
PYTEST_TARGET=tests
[ "$CUDA" = 1 ] || PYTEST_TARGET=tests/test_cuda.py  # the dry run: collect (and skip) the CUDA file only
section pytest_cuda 200 "$PY" -m pytest -n 0 -m cuda -rs -q "$PYTEST_TARGET" --junitxml="$DIR/pytest_cuda.xml"
SKIPS=$(grep -c "^SKIPPED" "$DIR/pytest_cuda.out" 2>/dev/null)
[ "${SKIPS:-0}" -gt 0 ] && record pytest_cuda "$(tail -n 1 "$DIR/pytest_cuda.out" | tr -d '=' | xargs)" 0 \
    "skips: $(grep -m1 '^SKIPPED' "$DIR/pytest_cuda.out" | sed 's/.*: //')"

# ---------------------------------------------------------------------------- sizes
# Every registered network (models.list_models()), grouped by its default recipe's image size:
# one compute and one loader section per group (the first network's group: bench_compute and
# bench_loaders; the others: bench_compute_<size>, bench_loaders_<size>), batch 256 up to 224 px
# and 128 above. Quick sizes: the first network of each group at 64 px (or its minimum), batch 4;
# GPU_CHECK_NET: that one network only, at 64 px (the tests' dry run: tinynet).
if [ "$QUICK" = 1 ] && [ -n "${GPU_CHECK_NET:-}" ]; then
    NET_SIZES="$GPU_CHECK_NET 64 0"  # that one network at the quick size (no registry query to wait for)
else  # "name recipe_image_size min_image_size", one line per network
    NET_SIZES=$("$PY" -c 'import models
for n in models.list_models(): print(n, models.get_recipe(models.default_recipe(n)).image_size, models.min_image_size(n))')
    [ -n "$NET_SIZES" ] || { echo "error: cannot list the networks (python -c 'import models' failed)" >&2; exit 2; }
fi
G_NETS=(); G_SIZE=(); G_BATCH=(); G_NAME=(); G_COUNT=()
while read -r net size min; do
    i=0
    while [ "$i" -lt "${#G_SIZE[@]}" ] && [ "${G_SIZE[$i]}" != "$size" ]; do i=$((i + 1)); done
    if [ "$i" = "${#G_SIZE[@]}" ]; then  # a new group
        G_SIZE+=("$size"); G_NETS+=("$net"); G_COUNT+=(1)
        G_NAME+=("$([ "$i" = 0 ] || echo "_$size")")
        if [ "$QUICK" = 1 ]; then G_BATCH+=(4); else G_BATCH+=("$([ "$size" -le 224 ] && echo 256 || echo 128)"); fi
        QUICK_SIZE[$i]=$([ "$min" -gt 64 ] && echo "$min" || echo 64)
    elif [ "$QUICK" != 1 ]; then
        G_NETS[$i]+=",$net"; G_COUNT[$i]=$((G_COUNT[$i] + 1))
    fi
done <<< "$NET_SIZES"
if [ "$QUICK" = 1 ]; then
    for i in "${!G_SIZE[@]}"; do G_SIZE[$i]=${QUICK_SIZE[$i]}; done
    STEPS=(--steps 2 --warmup 1 --repeat 1); LOADER_STEPS=("${STEPS[@]}")
    PHOTOS=8; WORKERS=1; TRAIN=(-a "${G_NETS[0]}" --image-size 64 -b 4 --epochs 1 --workers 1)
else
    STEPS=(--steps 30 --warmup 5 --repeat 2); PHOTOS=300; WORKERS=$CPUS
    LOADER_STEPS=(--steps 40 --warmup 2 --repeat 1)  # loaders skip their first max(warmup, workers) batches
    TRAIN=(-a googlenet --image-size 224 -b 32 --epochs 25 --workers "$CPUS" -p 50)  # 9 steps/epoch: 225 steps
fi
PEAK=()
[ "$CUDA" = 1 ] && [ -n "$(peak_tflops)" ] && PEAK=(--peak-tflops "$(peak_tflops)")
BENCH=("$PY" tools/bench.py --device "$DEVICE" "${PEAK[@]}")
limit() {  # limit GROUP NETS PER_NET FIRST: seconds for a section, PER_NET per network, at least FIRST
    local t=$(( $2 * $3 )) least=90  # for the first group, else 90
    [ "$1" = 0 ] && least=$4
    [ "$t" -lt "$least" ] && t=$least
    echo "$t"
}

# ---------------------------------------------------------------------------- compute tables
for i in "${!G_SIZE[@]}"; do
    section "bench_compute${G_NAME[$i]}" "$(limit "$i" "${G_COUNT[$i]}" 50 150)" "${BENCH[@]}" "${STEPS[@]}" \
        --arch "${G_NETS[$i]}" -b "${G_BATCH[$i]}" --image-size "${G_SIZE[$i]}" --modes baseline,fast \
        --json-out "$DIR/bench_compute${G_NAME[$i]}.json"
done

# ---------------------------------------------------------------------------- loaders + end to end
for i in "${!G_SIZE[@]}"; do
    PHOTO_ARGS=(--data "$DIR/photos")
    [ "$i" = 0 ] && PHOTO_ARGS=(--make-photos "$DIR/photos" --num-photos "$PHOTOS")
    section "bench_loaders${G_NAME[$i]}" "$(limit "$i" "${G_COUNT[$i]}" 65 200)" "${BENCH[@]}" "${LOADER_STEPS[@]}" \
        "${PHOTO_ARGS[@]}" --loader pil,gpu,reference --workers "$WORKERS" --arch "${G_NETS[$i]}" \
        -b "${G_BATCH[$i]}" --image-size "${G_SIZE[$i]}" --json-out "$DIR/bench_loaders${G_NAME[$i]}.json"
done

# ---------------------------------------------------------------------------- a short real training
[ -e "$DIR/photos/val" ] || ln -s train "$DIR/photos/val"  # validate on the training photos (timing data)
section train_gpu 180 "$PY" main.py "$DIR/photos" --device "$DEVICE" --data-backend gpu "${TRAIN[@]}" \
    --output-dir "$DIR/train"
section eval_gpu 60 "$PY" main.py "$DIR/photos" --device "$DEVICE" --data-backend gpu "${TRAIN[@]}" -e \
    --resume "$DIR/train/model_best.pth.tar" --output-dir "$DIR/eval"

# ---------------------------------------------------------------------------- torch.compile, last
if [ "$CUDA" = 1 ]; then
    for i in "${!G_SIZE[@]}"; do
        for net in ${G_NETS[$i]//,/ }; do
            section "bench_compiled_$net" 240 "${BENCH[@]}" "${STEPS[@]}" --arch "$net" -b "${G_BATCH[$i]}" \
                --image-size "${G_SIZE[$i]}" --modes baseline,fast,compiled --json-out "$DIR/bench_compiled_$net.json"
        done
    done
else
    record bench_compiled skipped 0 "no CUDA (torch.compile takes minutes per net on a CPU)"
fi

# ---------------------------------------------------------------------------- tables
for f in "$DIR"/bench_*.out; do
    [ -s "$f" ] && { echo "### $(basename "$f" .out)"; cat "$f"; echo; }
done > "$DIR/tables.txt"
echo "total: $(( $(date +%s) - START ))s, $FAILED section(s) failed; tables in $DIR/tables.txt" | tee -a "$SUMMARY"
[ "$FAILED" = 0 ]
