#!/usr/bin/env bash
# The GPU checks of issue 10 in one run: the gpu tests, then `lavt benchmark` for Swin-B 480
# (inference bf16 batch 1/32 eager and compiled, fp32 batch 8; training batch 8 fp32 vs bf16,
# compiled + channels-last, with and without gradient checkpointing; evaluation batched vs one
# expression at a time), a torch.profiler summary of one bf16 inference and one training step,
# versions, and a summary table. Every step has its own timeout: the whole run ends within
# 8 minutes on one H100.
#
#   scripts/gpu_check.sh            # on a CUDA machine
#   scripts/gpu_check.sh --dry-run  # the same sequence on the CPU with tiny sizes
#   scripts/gpu_check.sh --skip-tests  # benchmarks only
#
# A second, shorter call: GPU_CHECK_STEPS="name ..." runs only the named steps (gpu_tests,
# infer_bf16_b32, ..., profile, train_bf16_b8_compile_cl, and the side by side with the
# reference, sbs_ref_train_b8 ... sbs_lavt_train_b8_bf16_compile_cl, which run only with
# LAVT_REF_DIR set, and serve_model + serve_load / bulk_manifest; see the step names below),
# GPU_CHECK_TESTS_K="expr" selects tests (pytest -k); GPU_CHECK_BUDGET, GPU_CHECK_TEST_LIMIT,
# GPU_CHECK_COMPILE_LIMIT and GPU_CHECK_TRAIN_COMPILE_LIMIT set the time limits (seconds).
#
# Output folder: $OUT when set (the device tool's), else ./gpu_check_out. It receives at most
# 8 files: summary.md, results.json (every figure), pytest.log, profile_infer.txt,
# profile_train.txt, versions.json, gpu_check.tar.gz (all raw files, per-step logs included).
# Needs: torch, transformers, tokenizers, safetensors, numpy, pillow, pyyaml, tqdm and
# pycocotools (training/evaluation masks); without pycocotools installed, wheels in ./.whl
# are installed into /tmp/site first (see BENCHMARKS.md, "GPU").
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0 TESTS=1
for arg in "$@"; do
  case $arg in
    --dry-run) DRY=1 ;;
    --skip-tests) TESTS=0 ;;  # benchmarks only (the tests were run on their own)
    *) echo "usage: $0 [--dry-run] [--skip-tests]" >&2; exit 2 ;;
  esac
done
DEST=${OUT:-./gpu_check_out}
mkdir -p "$DEST"
RAW=$(mktemp -d -t gpu_check.XXXXXX)
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import pycocotools" 2>/dev/null && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
    .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

if [ "$DRY" = 1 ]; then
  DEVICE=cpu PRESET=tiny SIZE=64 B_SMALL=1 B_LARGE=2 B_TRAIN=2 B_EVAL=2 W_EVAL=0 TEST_PROCS=2
  # generous: a dry run checks the sequence, and a shared 2-core machine can be 10x slower
  REPS=(--warmup 1 --repeats 2 --threads 2) TEST_LIMIT=1500 BENCH_LIMIT=300 COMPILE_LIMIT=600
  TRAIN_COMPILE_LIMIT=600 SERVE_LIMIT=600 SERVE_REQUESTS=64 BULK_IMAGES=4 BULK_SIZE=(96 64)
  BUDGET=${GPU_CHECK_BUDGET:-5000}
  export LAVT_TEST_DEVICE=cpu OMP_NUM_THREADS=1
else
  DEVICE=cuda PRESET=base SIZE=480 B_SMALL=1 B_LARGE=32 B_TRAIN=8 B_EVAL=16 W_EVAL=8 TEST_PROCS=6
  REPS=(--warmup 3 --repeats 10) TEST_LIMIT=${GPU_CHECK_TEST_LIMIT:-200} BENCH_LIMIT=45
  # on an H200 (2026-11-26): Swin-B inference compiled in about 80 s, training not in 85 s
  COMPILE_LIMIT=${GPU_CHECK_COMPILE_LIMIT:-110} BUDGET=${GPU_CHECK_BUDGET:-470}
  TRAIN_COMPILE_LIMIT=${GPU_CHECK_TRAIN_COMPILE_LIMIT:-180}
  SERVE_LIMIT=${GPU_CHECK_SERVE_LIMIT:-240} SERVE_REQUESTS=2000 BULK_IMAGES=400 BULK_SIZE=(640 480)
fi
export LAVT_TEST_REPORT_DIR="$RAW"
START=$SECONDS

# step NAME LIMIT_S CMD...: run with a timeout unless the budget is spent; log its exit code.
# GPU_CHECK_STEPS="name ..." runs only the steps named (a second, shorter device call);
# GPU_CHECK_TESTS_K selects gpu tests by a pytest -k expression.
step() {
  local name=$1 limit=$2
  shift 2
  if [ -n "${GPU_CHECK_STEPS:-}" ] && [[ " $GPU_CHECK_STEPS " != *" $name "* ]]; then
    return
  fi
  local left=$((BUDGET - (SECONDS - START)))
  if [ "$left" -lt 10 ]; then
    echo "== $name: skipped (time budget spent)"
    printf '{"name": "%s", "rc": "skipped", "seconds": 0}\n' "$name" >>"$RAW/steps.jsonl"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*"
  local t0=$SECONDS
  timeout --kill-after=5 "$limit" "$@" >"$RAW/log_$name.txt" 2>&1
  local rc=$?
  tail -n 15 "$RAW/log_$name.txt"
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  printf '{"name": "%s", "rc": %d, "seconds": %d, "command": "%s"}\n' \
    "$name" "$rc" "$((SECONDS - t0))" "$*" >>"$RAW/steps.jsonl"
}

# bench NAME LIMIT_S FLAGS...: one `lavt benchmark` with its JSON figures
bench() {
  local name=$1 limit=$2
  shift 2
  step "$name" "$limit" "$PY" -m lavt benchmark --preset "$PRESET" --img-size "$SIZE" \
    --device "$DEVICE" "${REPS[@]}" --json "$RAW/bench_$name.json" "$@"
}

"$PY" - "$RAW/versions.json" <<'EOF'
import json, platform, subprocess, sys
import torch
v = {"python": platform.python_version(), "torch": torch.__version__,
     "cuda": str(torch.version.cuda), "cudnn": str(torch.backends.cudnn.version()),
     "fp32 matmul tf32": torch.backends.cuda.matmul.allow_tf32,
     "fp32 cudnn tf32": torch.backends.cudnn.allow_tf32}
if torch.cuda.is_available():
    v["device"] = torch.cuda.get_device_name()
    smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,memory.total",
                          "--format=csv,noheader"], capture_output=True, text=True)
    v["driver, memory"] = smi.stdout.strip()
else:
    v["device"] = "cpu: " + platform.processor()
json.dump(v, open(sys.argv[1], "w"), indent=2)
print(v)
EOF

if [ "$TESTS" = 1 ]; then
  # in parallel processes where pytest-xdist is there (correctness only: no timings here),
  # each test under its own limit where pytest-timeout is, so one hang cannot take the rest
  PAR=()
  "$PY" -c "import xdist" 2>/dev/null && PAR+=(-n "$TEST_PROCS")
  "$PY" -c "import pytest_timeout" 2>/dev/null && PAR+=(--timeout "$((TEST_LIMIT - 20))")
  [ -n "${GPU_CHECK_TESTS_K:-}" ] && PAR+=(-k "$GPU_CHECK_TESTS_K")
  step gpu_tests "$TEST_LIMIT" "$PY" -m pytest -m gpu tests/gpu -p no:cacheprovider -v -rfEs \
    --durations 12 "${PAR[@]}" --junitxml "$RAW/pytest.xml"
  [ -f "$RAW/log_gpu_tests.txt" ] && cp "$RAW/log_gpu_tests.txt" "$DEST/pytest.log"
fi

GC=()
if "$PY" -m lavt benchmark --help 2>/dev/null | grep -q -- --grad-checkpointing; then
  GC=(--grad-checkpointing)
fi

# the issue's targets first (inference bf16 batch 32, training fp32 vs bf16, evaluation)
bench infer_bf16_b32 "$BENCH_LIMIT" --mode infer --dtype bf16 --batch-size "$B_LARGE"
bench train_fp32_b8 "$BENCH_LIMIT" --mode train --dtype fp32 --batch-size "$B_TRAIN"
bench train_bf16_b8 "$BENCH_LIMIT" --mode train --dtype bf16 --batch-size "$B_TRAIN"
bench eval_bf16 "$BENCH_LIMIT" --mode eval --dtype bf16 --batch-size "$B_EVAL" --workers "$W_EVAL"
bench infer_bf16_b1 "$BENCH_LIMIT" --mode infer --dtype bf16 --batch-size "$B_SMALL"
bench infer_fp32_b8 "$BENCH_LIMIT" --mode infer --dtype fp32 --batch-size "$B_TRAIN"
if [ ${#GC[@]} -gt 0 ]; then
  bench train_bf16_b8_gc "$BENCH_LIMIT" --mode train --dtype bf16 --batch-size "$B_TRAIN" "${GC[@]}"
fi
step profile "$BENCH_LIMIT" "$PY" benchmarks/profile_step.py --device "$DEVICE" \
  --preset "$PRESET" --img-size "$SIZE" --batch-size "$B_TRAIN" --dtype bf16 --out "$RAW"
# compiled runs last, the most telling first: each compiles Swin-B anew (about a minute);
# TORCH_LOGS=recompiles names any recompilation in the step's log
export TORCH_LOGS=recompiles
bench infer_bf16_b32_compile "$COMPILE_LIMIT" --mode infer --dtype bf16 \
  --batch-size "$B_LARGE" --compile
bench train_bf16_b8_compile_cl "$TRAIN_COMPILE_LIMIT" --mode train --dtype bf16 \
  --batch-size "$B_TRAIN" --compile --channels-last
bench infer_bf16_b1_cudagraphs "$COMPILE_LIMIT" --mode infer --dtype bf16 \
  --batch-size "$B_SMALL" --compile --compile-mode reduce-overhead
if [ ${#GC[@]} -gt 0 ]; then
  bench train_bf16_b8_compile_cl_gc "$TRAIN_COMPILE_LIMIT" --mode train --dtype bf16 \
    --batch-size "$B_TRAIN" --compile --channels-last "${GC[@]}"
fi
unset TORCH_LOGS

# side by side with the reference implementation on the same device (issue 25), each side in its
# own process (its own peak memory): needs the reference's files (LAVT_REF_DIR, made by the
# harness's extract.sh) and the harness (LAVT_HARNESS_DIR, default ../shared/reference/harness)
HARNESS=${LAVT_HARNESS_DIR:-../shared/reference/harness}
if [ -n "${LAVT_REF_DIR:-}" ] && [ -f "$HARNESS/official.py" ]; then
  export LAVT_REF_DIR
  sbs() {
    local name=$1 limit=$2
    shift 2
    step "$name" "$limit" "$PY" benchmarks/gpu_side_by_side.py --device "$DEVICE" \
      --preset "$PRESET" --img-size "$SIZE" --harness "$HARNESS" "${REPS[@]}" \
      --json "$RAW/sbs_$name.json" "$@"
  }
  sbs sbs_ref_train_b8 "$BENCH_LIMIT" --impl reference --mode train --batch-size "$B_TRAIN"
  sbs sbs_lavt_train_b8_bf16 "$BENCH_LIMIT" --impl lavt --mode train --dtype bf16 \
    --batch-size "$B_TRAIN"
  for b in "$B_SMALL" "$B_TRAIN"; do
    sbs "sbs_ref_infer_b$b" "$BENCH_LIMIT" --impl reference --mode infer --batch-size "$b" \
      --save-mask "$RAW/mask_sbs_ref_infer_b$b.npy"
    for dt in bf16 fp32; do
      sbs "sbs_lavt_infer_b${b}_$dt" "$BENCH_LIMIT" --impl lavt --mode infer --dtype "$dt" \
        --batch-size "$b" --save-mask "$RAW/mask_sbs_lavt_infer_b${b}_$dt.npy"
    done
  done
  sbs sbs_lavt_train_b8_bf16_compile_cl "$TRAIN_COMPILE_LIMIT" --impl lavt --mode train \
    --dtype bf16 --batch-size "$B_TRAIN" --compile --channels-last
else
  echo "== side by side with the reference: skipped (LAVT_REF_DIR unset or no $HARNESS/official.py)"
fi

# lavt serve and lavt predict --manifest on the device against the model's batched rate
# (issue 25): a random-weight model folder of the preset; two servers (--max-batch B_LARGE and
# 1), 32 clients (needs the serve extras: fastapi, uvicorn, python-multipart,
# prometheus-client, wheels in .whl/); the bulk run against a Predictor loop and the model alone
SERVE_MODEL="$RAW/random_$PRESET"
step serve_model "$BENCH_LIMIT" "$PY" - "$PRESET" "$SERVE_MODEL" <<'EOF'
import sys
import torch
from lavt.assets import bert_vocab_path
from lavt.modeling import build_model
from lavt.modeling.config import preset_config
torch.manual_seed(0)
vocab = bert_vocab_path().read_text(encoding="utf-8").splitlines()
model = build_model(preset_config(sys.argv[1], variant="lavt_one"), vocab=vocab)
print(model.save_pretrained(sys.argv[2]))
EOF
if [ -d "$SERVE_MODEL" ]; then
  step serve_load "$SERVE_LIMIT" "$PY" scripts/load_test.py --checkpoint "$SERVE_MODEL" \
    --device "$DEVICE" --dtype bf16 --max-batch "$B_LARGE" --clients 32 \
    --requests "$SERVE_REQUESTS" --warmup 64 --rounds 2 --ceiling-repeats 10 \
    --output "$RAW/serve_load.json"
  step bulk_manifest "$SERVE_LIMIT" "$PY" scripts/bench_manifest.py throughput \
    --images "$BULK_IMAGES" --size "${BULK_SIZE[@]}" --repeats 1 --device "$DEVICE" \
    --checkpoint "$SERVE_MODEL" --dtype bf16 --batch-size "$B_LARGE" \
    --bulk-args "--batch-size $B_LARGE" --output "$RAW/bulk_manifest.json"
fi

"$PY" benchmarks/gpu_check_summary.py "$RAW" "$DEST"
for f in profile_infer.txt profile_train.txt versions.json; do
  [ -f "$RAW/$f" ] && cp "$RAW/$f" "$DEST/"
done
tar -czf "$DEST/gpu_check.tar.gz" -C "$RAW" .
echo "gpu_check: $((SECONDS - START)) s; results in $DEST"
rm -rf "$RAW"
