#!/usr/bin/env bash
# The "own data" worked example, timed (README "Fine-tune on your own data"):
# LabelMe files of a domain the bundled model has never seen (lavt synth
# --own-data: new shapes, colours, textured backgrounds, compass words) ->
# lavt data import -> the bundled model evaluated on the test split -> fine-tuned
# with configs/finetune.yaml as 2 processes of 1 thread (torchrun) -> evaluated
# again, as annotated and with swapped expressions. Writes
# benchmarks/finetune_example.json (override with FT_JSON); the training time
# is the wall time of the torchrun command, to be taken on an idle 2-core machine.
#
#   bash scripts/finetune_example.sh            # uses .venv (scripts/setup.sh)
#   LAVT_PYTHON=/path/to/python bash scripts/finetune_example.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${LAVT_PYTHON:-.venv/bin/python}
OUT=${FT_OUT:-ft_example}
JSON=${FT_JSON:-benchmarks/finetune_example.json}
RAW="$OUT/raw" DATA="$OUT/data" RUN="$OUT/runs/finetune_shapes"
export OMP_NUM_THREADS=1

rm -rf "$RAW" "$DATA" "$OUT/runs" "$OUT"/eval_*  # only what this script writes
"$PY" -m lavt synth --own-data --output "$RAW" --images 3000 --seed 0 --format labelme
"$PY" -m lavt data import labelme "$RAW/labelme" --output "$DATA" --name shapes
"$PY" -m lavt data check "$DATA" --dataset shapes --json > "$OUT/check.json"

evaluate() {  # CHECKPOINT NAME [--swap-expressions]
  "$PY" -m lavt evaluate --checkpoint "$1" --data-root "$DATA" --dataset shapes \
    --split test --device cpu --output "$OUT/eval_$2" "${@:3}" | tail -1
}
evaluate synthetic before
evaluate synthetic before_swapped --swap-expressions

start=$(date +%s.%N)
"$PY" -m torch.distributed.run --standalone --nproc_per_node 2 -m lavt train \
  --config configs/finetune.yaml data_root="$DATA" output_dir="$OUT/runs" progress=false \
  > "$OUT/train_summary.json"
end=$(date +%s.%N)

evaluate "$RUN/best.pt" after
evaluate "$RUN/best.pt" after_swapped --swap-expressions

"$PY" - "$OUT" "$JSON" "$start" "$end" <<'EOF'
import json, os, platform, re, sys, time
from pathlib import Path

out, dest, start, end = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
oiou = {
    name: json.loads((out / f"eval_{name}" / "metrics.json").read_text())["test"]["overall_iou"]
    for name in ("before", "before_swapped", "after", "after_swapped")
}
summary = json.loads((out / "train_summary.json").read_text())
log = (out / "runs" / "finetune_shapes" / "train.log").read_text()
found = re.search(r"vocabulary: (\d+) new words", log)
cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")), platform.processor())
result = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "cpu": cpu, "cores": os.cpu_count(), "load_average_1min_at_end": os.getloadavg()[0],
    "command": "torchrun --standalone --nproc_per_node 2 -m lavt train --config configs/finetune.yaml",
    "train_wall_s": round(end - start, 1),
    "train_loop_s": round(summary["wall_s"], 1),
    "iterations": summary["iterations"], "epochs": summary["epochs"],
    "new_words": int(found.group(1)) if found else 0,
    "dataset": json.loads((out / "check.json").read_text()),
    "test_overall_iou": oiou,
    "gain_points": round(oiou["after"] - oiou["before"], 2),
    "swap_drop_points": round(oiou["after"] - oiou["after_swapped"], 2),
}
dest.write_text(json.dumps(result, indent=1) + "\n")
print(json.dumps({k: v for k, v in result.items() if k != "dataset"}, indent=1))
EOF
