# shellcheck shell=bash
# The one helper behind the ModelZoo launcher scripts in test/ (docs/architecture.md, "Contracts").
#
# Each script is two lines:
#     source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
#     launcher_main <full|performance|eval> <1p|8p> "$@"
#
# launcher_main maps the ModelZoo flags onto main.py / main_8p.py, asks Python once what the run
# would use (`main.py --check` / `main_8p.py --check`, classify/check.py: the device kind, the
# processes, the data layout, the checkpoint; a mistake is its one-line error and exit 1), runs
# the trainer with its output copied into test/output/<device id>/train_<device id>.log, and
# reads the numbers back from that log (the log line formats of docs/architecture.md). No training,
# device or data logic lives here: the recipe, the demo profile, device resolution, worker
# counts, batch splitting, lr scaling and the data and checkpoint checks are Python's.

# Steps of a performance run (--stop_step_num= overrides): on an accelerator a steady-state
# window far longer than the 10 warm-up steps main.py leaves out of FPS (about a minute for
# GoogLeNet on 8 devices); on a CPU few enough to finish in a minute or two.
PERF_STEPS_ACCELERATOR=300
PERF_STEPS_CPU=20

LAUNCHER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$LAUNCHER_DIR")

# A per-model folder's scripts (models/<net>/test/*.sh, the same in every folder) call
# `model_launcher MODE SCALE "$@"` instead of launcher_main: the arch is fixed to the folder's
# name, the folder's own entry points run (models/<net>/main.py, and models/<net>/main_8p.py where
# the folder has one: they fix the arch and the net's log format), CaseName and Network use the
# net's seed network name (its registry entry's, e.g. AlexNet_ID2663_for_PyTorch, as the check
# prints it), and the outputs go to models/<net>/test/output/<id>/.
MODEL_ARCH="" NETWORK="" MODEL_DIR=""
model_launcher() {
    local script=${BASH_SOURCE[${#BASH_SOURCE[@]} - 1]}  # models/<net>/test/<script>, as the user ran it
    MODEL_ARCH=$(basename "$(cd "$(dirname "$script")/.." && pwd)")
    MODEL_DIR=models/$MODEL_ARCH
    launcher_main "$@"
}

_die() {  # one line on stderr, exit 1
    echo "error: $SCRIPT: $*" >&2
    exit 1
}

_abspath() {  # relative to the directory the user ran the script from
    local p=$1
    [[ $p == "~" || $p == "~/"* ]] && p=$HOME${p#\~}
    [[ $p == /* || $p == pipe:* ]] && printf '%s\n' "$p" || printf '%s\n' "$USER_CWD/$p"
}

_usage() {
    cat <<EOF
usage: bash ${MODEL_DIR:+$MODEL_DIR/}test/$SCRIPT [--data_path=DIR] [--arch=NAME] [--recipe=NAME] [--batch_size=N]
          [--epochs=N] [--lr=X] [--workers=N] [--image_size=N] [--device=auto|cpu|cuda|npu]
          [--device_id=N] [--rank_size=N] [--stop_step_num=N] [--pth_path=FILE] [main.py flags...]

  --data_path   ImageFolder root holding train/ and val/, or val/ itself for the eval scripts;
                or WebDataset shards (a folder with index.json, a brace pattern, a pipe: URL)
                (default: the built-in demo set)
  --batch_size  global batch of the node (main.py -b); --rank_size: processes (8p scripts;
                default every visible device from --device_id on, 2 gloo processes on cpu)
  --device      auto (default): npu if torch_npu imports and sees an NPU, else cuda if
                available, else cpu
  --device_id   first device; outputs go to ${MODEL_DIR:+$MODEL_DIR/}test/output/<device_id>/ (default 0)
  --pth_path    checkpoint to evaluate (eval scripts; default ${MODEL_DIR:+$MODEL_DIR/}test/output/<id>/model_best.pth.tar)
  --fresh       full runs: start over in ${MODEL_DIR:+$MODEL_DIR/}test/output/<id>/ (its run moves to previous-<time>/);
                without it a full run continues the run there, or refuses one of other data/flags
Any other flag goes to main.py unchanged (e.g. --amp, --print-freq=50). Ctrl-C or SIGTERM: the
trainer saves a checkpoint and the same command continues it. CLASSIFY_TEST_OUTPUT_ROOT=DIR in the
environment: outputs in DIR/<device_id>/ instead of ${MODEL_DIR:+$MODEL_DIR/}test/output/<device_id>/. See README.md.
EOF
}

# Sets DATA_PATH ARCH RECIPE BATCH_SIZE EPOCHS LR WORKERS IMAGE_SIZE DEVICE DEVICE_ID
# RANK_SIZE STOP_STEP_NUM PTH_PATH and EXTRA (the flags passed through to main.py). Only the
# flags themselves are checked here (a value, a whole number, the script that takes them);
# what they name (devices, data, checkpoints) is the check's.
_parse_args() {
    DATA_PATH="" DATA_GIVEN=0 ARCH="" RECIPE="" BATCH_SIZE="" EPOCHS="" LR="" WORKERS=""
    IMAGE_SIZE="" DEVICE=auto DEVICE_ID="" RANK_SIZE="" STOP_STEP_NUM="" PTH_PATH=""
    EXTRA=()
    local arg key value
    while (($#)); do
        arg=$1
        shift
        case $arg in
            -h | --help) _usage; exit 0 ;;
            --*=*) key=${arg%%=*} value=${arg#*=} ;;
            --*) key=$arg value="" ;;
            *) EXTRA+=("$arg"); continue ;;
        esac
        key=${key#--}
        key=${key//-/_}
        case $key in
            data_path | data | data_dir | arch | recipe | batch_size | epochs | lr | workers | image_size | \
                device | device_id | rank_size | stop_step_num | pth_path) ;;
            *) EXTRA+=("$arg"); continue ;;
        esac
        if [[ $arg != *=* ]]; then  # the --key value form
            [[ $# -gt 0 && $1 != --* ]] || _die "--$key needs a value"
            value=$1
            shift
        fi
        [[ -n $value ]] || _die "--$key is empty; give it a value or drop it"
        case $key in
            data_path | data | data_dir) DATA_PATH=$value DATA_GIVEN=1 ;;
            arch) ARCH=$value ;;
            recipe) RECIPE=$value ;;
            batch_size) BATCH_SIZE=$value ;;
            epochs) EPOCHS=$value ;;
            lr) LR=$value ;;
            workers) WORKERS=$value ;;
            image_size) IMAGE_SIZE=$value ;;
            device) DEVICE=$value ;;
            device_id) DEVICE_ID=$value ;;
            rank_size) RANK_SIZE=$value ;;
            stop_step_num) STOP_STEP_NUM=$value ;;
            pth_path) PTH_PATH=$value ;;
        esac
    done
    local name
    for name in DEVICE_ID RANK_SIZE STOP_STEP_NUM; do
        [[ -z ${!name} || ${!name} =~ ^[0-9]+$ ]] || _die "--${name,,}=${!name} is not a whole number"
    done
    [[ $RANK_SIZE != 0 ]] || _die "--rank_size must be at least 1"
    [[ $STOP_STEP_NUM != 0 ]] || _die "--stop_step_num must be at least 1"
    [[ $SCALE == 8p || -z $RANK_SIZE || $RANK_SIZE == 1 ]] ||
        _die "--rank_size=$RANK_SIZE: this script runs one device; use ${SCRIPT/_1p/_8p} for several"
    [[ -z $MODEL_ARCH || -z $ARCH || $ARCH == "$MODEL_ARCH" ]] ||
        _die "--arch=$ARCH: this is $MODEL_ARCH's folder; use models/$ARCH/test/$SCRIPT (or the top-level test/)"
    ARCH=${ARCH:-$MODEL_ARCH}
    [[ $MODE == eval || -z $PTH_PATH ]] ||
        _die "--pth_path is for train_eval_*.sh; to continue a run pass --resume=FILE (main.py's flag)"
}

_find_python() {
    local py=${PYTHON:-}
    if [[ -z $py ]]; then
        if command -v python >/dev/null 2>&1; then py=python; else py=python3; fi
    fi
    read -r -a PY <<<"$py"
    command -v "${PY[0]}" >/dev/null 2>&1 || _die "no '${PY[0]}' found; activate your environment or set PYTHON"
}

# Sets ENTRY (main.py or main_8p.py) and ARGS, its flags for this run: the check's and the
# trainer's, less the performance runs' step count (it depends on the device kind).
_build_args() {
    # a model folder's own entry point where it has one (it fixes the arch and the log format)
    ENTRY=main.py
    [[ $SCALE == 8p ]] && ENTRY=main_8p.py
    [[ -n $MODEL_DIR && -f $REPO_ROOT/$MODEL_DIR/$ENTRY ]] && ENTRY=$MODEL_DIR/$ENTRY
    ARGS=("--device=$DEVICE" "--device-id=$DEVICE_ID")  # ignored on cpu
    [[ -n $RANK_SIZE && $SCALE == 8p ]] && ARGS+=("--nproc_per_node=$RANK_SIZE")
    ((DATA_GIVEN)) && ARGS+=("--data_path=$(_abspath "$DATA_PATH")")
    [[ -n $ARCH ]] && ARGS+=("--arch=$ARCH")
    [[ -n $RECIPE ]] && ARGS+=("--recipe=$RECIPE")
    [[ -n $BATCH_SIZE ]] && ARGS+=("--batch-size=$BATCH_SIZE")
    [[ -n $EPOCHS ]] && ARGS+=("--epochs=$EPOCHS")
    [[ -n $LR ]] && ARGS+=("--lr=$LR")
    [[ -n $WORKERS ]] && ARGS+=("--workers=$WORKERS")
    [[ -n $IMAGE_SIZE ]] && ARGS+=("--image-size=$IMAGE_SIZE")
    case $MODE in
        performance)
            [[ -n $STOP_STEP_NUM ]] && ARGS+=("--stop-step-num=$STOP_STEP_NUM")
            ARGS+=(--no-val) ;;
        full)
            [[ -n $STOP_STEP_NUM ]] && ARGS+=("--stop-step-num=$STOP_STEP_NUM")
            # Never lose work: a full run whose output dir holds a checkpoint continues from it
            # (a --resume among the other flags comes later and wins).
            ARGS+=(--resume=auto) ;;
        eval)
            local pth=$OUTPUT_DIR/model_best.pth.tar
            [[ -n $PTH_PATH ]] && pth=$(_abspath "$PTH_PATH")
            ARGS+=(-e "--resume=$pth") ;;
    esac
    ARGS+=("--output-dir=$RUN_DIR" "${EXTRA[@]}")
}

# The one question to Python: what would this run use? Sets CHECK_<key> for each
# `key = value` line of `$ENTRY --check` (classify/check.py). A mistake is the check's one
# line on stderr and exit 1, before anything is created or started. The check sees the
# Ascend environment (test/env_npu.sh) whenever the device may be npu, as the run will.
_check() {
    local out line key
    out=$(
        if [[ ($DEVICE == auto || $DEVICE == npu) && -f $LAUNCHER_DIR/env_npu.sh ]]; then
            # shellcheck source=env_npu.sh
            source "$LAUNCHER_DIR/env_npu.sh" >/dev/null 2>&1
        fi
        "${PY[@]}" "$ENTRY" --check "${ARGS[@]}"
    ) || exit 1
    while IFS= read -r line; do
        [[ $line == *" = "* ]] || continue
        key=${line%% = *}
        [[ $key =~ ^[a-z_]+$ ]] && printf -v "CHECK_$key" '%s' "${line#* = }"
    done <<<"$out"
    [[ -n ${CHECK_device:-} && -n ${CHECK_world_size:-} ]] ||
        _die "no device in the output of $ENTRY --check; is $REPO_ROOT this suite's checkout?"
}

# Sets DEVICE RANK_SIZE (what the check resolved), RESUMING and CMD: the trainer's command line.
_build_command() {
    DEVICE=$CHECK_device
    RANK_SIZE=$CHECK_world_size
    [[ -n $MODEL_DIR ]] && NETWORK=${CHECK_network:-$MODEL_ARCH}  # a folder's CaseName: its seed's network name
    if [[ $DEVICE == npu && -f $LAUNCHER_DIR/env_npu.sh ]]; then
        # shellcheck source=env_npu.sh
        source "$LAUNCHER_DIR/env_npu.sh"
    fi
    CMD=("${PY[@]}" "$ENTRY")
    local arg
    RESUMING=0
    for arg in "${ARGS[@]}"; do
        if [[ $arg == --resume=auto && $MODE == full ]]; then
            # only when it found a checkpoint to continue (else the run starts fresh, without it)
            [[ $CHECK_checkpoint == *" (--resume auto)" ]] || continue
            echo "=> $RUN_DIR holds a checkpoint of this run: continuing it (--resume auto);" \
                "pass --fresh to start over (the old run moves to previous-<time>/)"
            RESUMING=1
        fi
        [[ $arg == --device=* ]] && arg=--device=$DEVICE  # the kind the check resolved
        if [[ $arg == --no-val && $MODE == performance && -z $STOP_STEP_NUM ]]; then
            local steps=$PERF_STEPS_ACCELERATOR
            [[ $DEVICE == cpu ]] && steps=$PERF_STEPS_CPU
            CMD+=("--stop-step-num=$steps")
        fi
        CMD+=("$arg")
    done
}

# ----------------------------------------------------------------------------- the trainer's process
# Signals and the log copy (#17). SIGINT/SIGTERM/SIGHUP to this script -- Ctrl-C (the whole
# process group), a scheduler's or `kill`'s SIGTERM (this PID alone), SIGTERM to the group --
# reach the trainer exactly once, from _forward: it runs in its own process group, so a
# terminal's Ctrl-C does not hit it directly. main.py finishes its step, saves and exits 130 /
# 143; main_8p.py (torchrun's agent) passes the signal to its workers and waits for them. The
# tees copying its output into TRAIN_LOG ignore the signals, so the log and the trainer's last
# lines survive; the script waits for both, and nothing it started outlives it.

# Starts CMD with stdin from /dev/null and stdout/stderr each through a tee appending to
# TRAIN_LOG. Sets TRAINER_PID (also its process group) and TEE_PIDS.
_start_trainer() {
    local out err
    exec {out}> >(trap '' INT TERM HUP; exec tee -a "$TRAIN_LOG")
    TEE_PIDS=("$!")
    exec {err}> >(trap '' INT TERM HUP; exec tee -a "$TRAIN_LOG" >&2)
    TEE_PIDS+=("$!")
    set -m  # job control for this one command: its own process group, SIGINT not ignored
    "${CMD[@]}" </dev/null >&"$out" 2>&"$err" &
    TRAINER_PID=$!
    set +m
    exec {out}>&- {err}>&-
}

_forward() {  # $1: the signal this script received; the trainer gets it (SIGHUP as SIGTERM)
    local sig=$1
    [[ $sig == HUP ]] && sig=TERM
    STOP_SIGNAL=${STOP_SIGNAL:-$sig}
    kill -s "$sig" "$TRAINER_PID" 2>/dev/null
}

# Waits for the trainer (through any number of forwarded signals), then for what is left of
# its process group (a loader worker, briefly) and for the tees. Sets RC.
_wait_trainer() {
    trap '_forward INT' INT
    trap '_forward TERM' TERM
    trap '_forward HUP' HUP
    while kill -0 "$TRAINER_PID" 2>/dev/null; do
        wait "$TRAINER_PID"  # returns early when a trapped signal arrives
    done
    wait "$TRAINER_PID"  # bash keeps the status of a reaped background job
    RC=$?
    local i
    for i in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 -- "-$TRAINER_PID" 2>/dev/null || break
        ((i < 10)) && sleep 0.5 || kill -KILL -- "-$TRAINER_PID" 2>/dev/null
    done
    wait "${TEE_PIDS[@]}" 2>/dev/null
    trap - INT TERM HUP
}

# An earlier log is never truncated (#23): a full run that continues the run in its folder
# (RESUMING) appends to it, main.py's `=> resumed from ...` line marking where; any other run or
# an evaluation first moves it to train_<id>.<time>.log (the seeds' grep pipelines keep reading
# train_<id>.log, which then holds this run's lines).
_keep_log() {
    if [[ ! -s $TRAIN_LOG ]]; then
        : >"$TRAIN_LOG"
        return
    fi
    ((RESUMING)) && return
    local stamp aside n=1
    stamp=$(date +%Y%m%d-%H%M%S)
    aside=${TRAIN_LOG%.log}.$stamp.log
    while [[ -e $aside ]]; do
        n=$((n + 1))
        aside=${TRAIN_LOG%.log}.$stamp-$n.log
    done
    mv "$TRAIN_LOG" "$aside" || _die "cannot move the previous log $TRAIN_LOG aside"
    echo "=> the previous ${TRAIN_LOG##*/} moved to ${aside#"$REPO_ROOT"/}"
}

# Runs CMD: stdout and stderr go to the terminal as they are and both into TRAIN_LOG.
# Sets RC (the trainer's exit code), STOP_SIGNAL (INT | TERM when one was forwarded) and
# E2E_TIME (seconds).
_run_trainer() {
    local start
    start=$(date +%s)
    _keep_log
    [[ $CHECK_data != demo ]] || echo "=> no --data_path: using the built-in demo set and its short schedule" \
        "(generated on first use; pass --data_path=DIR for real data)" | tee -a "$TRAIN_LOG"
    echo "=> ${CMD[*]}" | tee -a "$TRAIN_LOG"
    export PYTHONUNBUFFERED=1
    STOP_SIGNAL=""
    _start_trainer
    _wait_trainer
    E2E_TIME=$(($(date +%s) - start))
}

# The one line for a run stopped by a signal (instead of the closing lines): where the
# checkpoint is and how to continue. On stderr and in TRAIN_LOG.
_stopped() {
    local ckpt=$RUN_DIR/checkpoint.pth.tar how
    if [[ $MODE == eval ]]; then
        how="nothing to continue; run the same command to evaluate again"
    elif [[ ! -f $ckpt ]]; then
        how="no checkpoint was written yet; the same command starts the run again"
    elif [[ $MODE == performance ]]; then
        how="checkpoint ${ckpt#"$REPO_ROOT"/}; a performance run starts over: run the same command again"
    else
        how="checkpoint ${ckpt#"$REPO_ROOT"/}; run the same command to continue it (--resume auto)"
    fi
    echo "=> $SCRIPT: stopped by SIG$STOP_SIGNAL (exit $RC); $how" | tee -a "$TRAIN_LOG" >&2
}

_summary_fields() {  # prints "arch global_batch_size" from summary.json (rank 0 writes it last)
    "${PY[@]}" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["arch"], d["global_batch_size"])' \
        "$RUN_DIR/summary.json" 2>/dev/null
}

_token_after() {  # $1 = line regex, $2 = token; prints the token after $2 on the last such line
    awk -v re="$1" -v tok="$2" '$0 ~ re { for (i = 1; i < NF; i++) if ($i == tok) { v = $(i + 1); break } }
        END { print (v == "" ? "N/A" : v) }' "$TRAIN_LOG"
}

_report() {
    local network batch fps acc loss step_ms case_name
    read -r network batch < <(_summary_fields)
    network=${NETWORK:-${network:-${ARCH:-googlenet}}}
    batch=${batch:-${BATCH_SIZE:-N/A}}
    case_name="${network}_bs${batch}_${RANK_SIZE}p_${CASE_KIND}"
    # the previous reports of this kind (checkpoints stay: the eval scripts read them)
    rm -f "$OUTPUT_DIR"/*_[0-9]*p_"$CASE_KIND".log "$OUTPUT_DIR"/train_*_"$CASE_KIND"_loss.txt
    # the token after "Loss" (or "loss:" in the torchvision log format of models/googlenet/)
    awk '/^Epoch: \[/ { for (i = 1; i < NF; i++) if ($i == "Loss" || $i == "loss:") { print $(i + 1); break } }' \
        "$TRAIN_LOG" >"$OUTPUT_DIR/train_${case_name}_loss.txt"
    loss=$(tail -n 1 "$OUTPUT_DIR/train_${case_name}_loss.txt")
    fps=$(awk '/FPS@all/ { v = $NF } END { print (v == "" ? "N/A" : v) }' "$TRAIN_LOG")
    acc=N/A
    [[ $MODE != performance ]] && acc=$(_token_after ' \\* Acc@1 ' Acc@1)  # also "[npu id: 0 ] [AVG-ACC] * Acc@1 X"
    step_ms=N/A
    if [[ $fps != N/A && $batch != N/A ]]; then
        step_ms=$(awk -v b="$batch" -v f="$fps" 'BEGIN { if (f > 0) printf "%.2f", b * 1000 / f; else print "N/A" }')
    fi
    {
        echo "Network = $network"
        echo "RankSize = $RANK_SIZE"
        echo "BatchSize = $batch"
        echo "DeviceType = $DEVICE"
        echo "CaseName = $case_name"
        echo "ActualFPS = $fps"
        echo "TrainingTime = $step_ms"
        echo "TrainAccuracy = $acc"
        echo "ActualLoss = ${loss:-N/A}"
        echo "E2ETrainingTime = $E2E_TIME"
    } >"$OUTPUT_DIR/$case_name.log"
    echo "Final Performance images/sec : $fps"
    echo "Final Train Accuracy : $acc"
    echo "E2E Training Duration sec : $E2E_TIME"
}

# launcher_main MODE SCALE ARGS...: MODE full | performance | eval, SCALE 1p | 8p.
launcher_main() {
    MODE=$1 SCALE=$2
    shift 2
    SCRIPT=$(basename "${BASH_SOURCE[${#BASH_SOURCE[@]} - 1]}")  # the script the user ran
    USER_CWD=$PWD
    _parse_args "$@"
    DEVICE_ID=${DEVICE_ID:-0}
    cd "$REPO_ROOT" || _die "cannot cd to $REPO_ROOT"
    _find_python
    CASE_KIND=${MODE/full/acc}
    CASE_KIND=${CASE_KIND/performance/perf}
    # CLASSIFY_TEST_OUTPUT_ROOT: another folder in place of test/output (the test suite's tmp dirs)
    OUTPUT_DIR=${CLASSIFY_TEST_OUTPUT_ROOT:-$REPO_ROOT/${MODEL_DIR:+$MODEL_DIR/}test/output}/$DEVICE_ID
    TRAIN_LOG=$OUTPUT_DIR/train_$DEVICE_ID.log
    # main.py's --output-dir: the accuracy run's folder itself; evaluation writes its
    # summary.json into eval/ and performance runs all of theirs into perf/ (a throughput run's
    # 20-step checkpoint never replaces the accuracy run's).
    RUN_DIR=$OUTPUT_DIR
    [[ $MODE == eval ]] && RUN_DIR=$OUTPUT_DIR/eval
    [[ $MODE == performance ]] && RUN_DIR=$OUTPUT_DIR/perf
    _build_args
    _check
    _build_command
    mkdir -p "$OUTPUT_DIR" || _die "cannot create $OUTPUT_DIR"
    # perf/ is the performance runs' scratch: each one replaces the last (nothing there is
    # ever continued). Whether the accuracy run's folder may be reused is main.py's decision
    # (its config.json; the check above refused a folder of another run).
    [[ $MODE == performance ]] && rm -rf "$RUN_DIR"
    _run_trainer
    if [[ -n $STOP_SIGNAL ]] && ((RC == 130 || RC == 143)); then
        _stopped
        return "$RC"
    fi
    if ((RC != 0)); then
        echo "error: $SCRIPT: the trainer exited with code $RC; see ${TRAIN_LOG#"$REPO_ROOT"/}" >&2
        return "$RC"
    fi
    _report
}
