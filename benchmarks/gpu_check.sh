#!/usr/bin/env bash
# The GPU check of issue 16 ("The GPU path"): one prepared script for a machine
# with an NVIDIA GPU. It installs nothing; it needs an environment with
# xlt_plugin's dependencies and the synth, study and gpu extras (`make setup`,
# then `pip install -e '.[gpu]'`, or PYTHON=/path/to/python of such a venv).
#
#   bash benchmarks/gpu_check.sh                 # writes under $OUT, else results/gpu_check
#   STEPS=recipe,speed bash benchmarks/gpu_check.sh   # some steps only
#   STUDY_MINUTES=20 STEPS=study bash benchmarks/gpu_check.sh
#
# Steps (STEPS, comma-separated; default all):
#   recipe  EnglishBase, quartznet15x5, on a small realistic corpus made with
#           `xlt synth`: --device=cuda --precision=bf16 --tensorboard=True, then
#           one fp16 epoch (SpeechBrain's GradScaler) and one DDP epoch through
#           torchrun with nccl (one process per GPU)
#   speed   benchmarks/train_speed.py --device cuda, if it exists and takes --device
#   study   `xlt study --profile gpu` under a timeout of STUDY_MINUTES (default 10);
#           its corpora are synthesized first with every CPU core. A rerun with the
#           same $OUT reuses finished runs and corpora.
# Every step's output goes to $OUT/gpu_check.log too, nvidia-smi samples to
# $OUT/nvidia_smi.csv, and one line per step to $OUT/summary.txt. A step that
# fails is reported and the next one runs; the exit status is 1 if any failed.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
OUT=${OUT:-results/gpu_check}
STEPS=${STEPS:-recipe,speed,study}
STUDY_MINUTES=${STUDY_MINUTES:-10}
RECIPE_UTTERANCES=${RECIPE_UTTERANCES:-2000}
RECIPE_EPOCHS=${RECIPE_EPOCHS:-5}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
echo "gpu_check $(date -u +%FT%TZ) in $REPO ($(git rev-parse --short HEAD 2>/dev/null || echo '?')), OUT=$OUT"

fail() {
    echo "gpu_check: $*" >&2
    exit 1
}

# ------------------------------------------------------------------ the GPU
command -v nvidia-smi >/dev/null 2>&1 ||
    fail "no nvidia-smi on this machine: this check needs an NVIDIA GPU and its driver."
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1) ||
    fail "nvidia-smi found no GPU (driver not loaded, or no device): $(nvidia-smi 2>&1 | head -n 1)"
[[ -n "$GPU_NAME" ]] || fail "nvidia-smi lists no GPU."
echo "GPU: $GPU_NAME"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
N_GPUS=$(nvidia-smi --list-gpus | wc -l)

# ---------------------------------------------------------- the environment
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
missing=$("$PYTHON" -c '
import importlib.util
modules = ["torch", "torchaudio", "speechbrain", "hyperpyyaml", "soundfile", "jiwer",
           "espeakng_loader", "wordfreq", "pyroomacoustics", "opencc", "matplotlib",
           "tensorboard"]
print(" ".join(m for m in modules if importlib.util.find_spec(m) is None))
') || fail "$PYTHON does not run."
[[ -z "$missing" ]] ||
    fail "$PYTHON lacks: $missing. This script installs nothing: set PYTHON to an environment with \`pip install -e '.[synth,study,gpu]'\` done."
"$PYTHON" -c '
import sys, torch
if not torch.cuda.is_available():
    sys.exit(f"gpu_check: torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device.")
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)},"
      f" bf16 supported: {torch.cuda.is_bf16_supported()}")
' | tee -a "$OUT/gpu.txt"
XLT=("$PYTHON" -m xlt_plugin.cli)

nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -l 1 \
    >"$OUT/nvidia_smi.csv" 2>/dev/null &
SMI_PID=$!
trap 'kill "$SMI_PID" 2>/dev/null || true' EXIT

: >"$OUT/summary.txt"
FAILED=0
note() {
    echo "$*" | tee -a "$OUT/summary.txt"
}
# `step NAME COMMAND...`: runs it, times it, notes ok or its exit status.
step() {
    local name=$1 start status=0
    shift
    echo "=== $name: $*"
    start=$(date +%s)
    "$@" || status=$?
    if [[ $status -eq 0 ]]; then
        note "$name: ok ($(($(date +%s) - start)) s)"
    else
        note "$name: FAILED, exit $status ($(($(date +%s) - start)) s)"
        FAILED=1
    fi
    return 0
}
wants() {
    [[ ",$STEPS," == *",$1,"* ]]
}

# Seconds per epoch and x realtime of a run's training epochs (metrics.jsonl and
# the durations of its training manifest).
speed() {
    "$PYTHON" - "$1" <<'EOF'
import csv, json, sys
from pathlib import Path
run = Path(sys.argv[1])
audio = sum(float(r["duration"]) for r in csv.DictReader(open(run / "save/train.csv")))
lines = [json.loads(x) for x in open(run / "metrics.jsonl")]
train = [r for r in lines if r["stage"] == "train"]
valid = [r for r in lines if r["stage"] == "valid"]
for r in train:
    print(f"  epoch {r['epoch']}: {r['seconds']:.1f} s, {audio / r['seconds']:.0f}x realtime,"
          f" loss {r['loss']:.3f}")
if valid:
    print(f"  last dev CER {valid[-1]['CER']:.1f}, WER {valid[-1]['WER']:.1f}")
steady = train[1:] or train
if steady:
    mean = sum(r["seconds"] for r in steady) / len(steady)
    print(f"RESULT gpu_train_x_realtime: {audio / mean:.0f} ({audio / 3600:.2f} h per epoch,"
          " epochs after the first)")
EOF
}

# ------------------------------------------------------------------ recipe
if wants recipe; then
    DATA="$OUT/data/en_$RECIPE_UTTERANCES"
    RECIPE="recipes/EnglishBase"
    COMMON=(
        "$RECIPE/hparams/quartznet_small.yaml" "--data_folder=$DATA"
        --encoder_preset=quartznet15x5 --batch_size=32 --num_workers=4
        --pin_memory=True --noprogressbar
    )
    if [[ ! -f "$DATA/validated.tsv" ]]; then
        step synth "${XLT[@]}" synth --lang en --out "$DATA" \
            --utterances "$RECIPE_UTTERANCES" --seed 1 --conditions realistic \
            --accents us,england,rp,nyc --quiet
    fi
    step recipe_bf16 "$PYTHON" "$RECIPE/train.py" "${COMMON[@]}" \
        "--output_folder=$OUT/recipe_bf16" --device=cuda --precision=bf16 \
        --tensorboard=True "--number_of_epochs=$RECIPE_EPOCHS"
    speed "$OUT/recipe_bf16" | tee -a "$OUT/summary.txt" || true
    ls "$OUT/recipe_bf16/tensorboard" | head -n 3 || true
    step recipe_fp16 "$PYTHON" "$RECIPE/train.py" "${COMMON[@]}" \
        "--output_folder=$OUT/recipe_fp16" --device=cuda --precision=fp16 \
        --number_of_epochs=1
    step recipe_ddp_nccl "$PYTHON" -m torch.distributed.run \
        --nproc_per_node="$N_GPUS" "$RECIPE/train.py" "${COMMON[@]}" \
        "--output_folder=$OUT/recipe_ddp" --distributed_backend=nccl \
        --precision=bf16 --number_of_epochs=1
fi

# ------------------------------------------------------------------- speed
if wants speed; then
    if [[ ! -f benchmarks/train_speed.py ]]; then
        note "speed: skipped, benchmarks/train_speed.py does not exist yet"
    elif ! "$PYTHON" benchmarks/train_speed.py --help 2>/dev/null | grep -q -- "--device"; then
        note "speed: skipped, benchmarks/train_speed.py has no --device flag"
    else
        step speed "$PYTHON" benchmarks/train_speed.py --device cuda
    fi
fi

# ------------------------------------------------------------------- study
if wants study; then
    # Corpora first, with every core (`xlt study` synthesizes with --jobs only).
    step study_corpora "$PYTHON" -c '
import os, sys
from pathlib import Path
from xlt_plugin.study.runner import gpu_profile, make_corpora
make_corpora(gpu_profile(), Path(sys.argv[1]) / "data", jobs=os.cpu_count())
' "$OUT/study"
    start=$(date +%s)
    status=0
    timeout --kill-after=60 "${STUDY_MINUTES}m" \
        "${XLT[@]}" study --profile gpu --out "$OUT/study" --jobs 4 || status=$?
    minutes=$(( ($(date +%s) - start) / 60 ))
    if [[ $status -eq 0 ]]; then
        note "study: ok, $minutes min; report $OUT/study/REPORT.md"
    elif [[ $status -eq 124 || $status -eq 137 ]]; then
        note "study: stopped after $STUDY_MINUTES min (rerun with the same OUT to resume)"
        FAILED=1
        # The report of what finished (unfinished runs are left out).
        "${XLT[@]}" report "$OUT/study" || note "study: no partial report"
    else
        note "study: FAILED, exit $status after $minutes min (see $OUT/study/runs/*/log.txt)"
        FAILED=1
    fi
fi

echo "=== summary ($GPU_NAME)"
cat "$OUT/summary.txt"
exit "$FAILED"
