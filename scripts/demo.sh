#!/usr/bin/env bash
# The main job, on any machine and without downloads: set up .venv, generate a
# synthetic validation set in the RefCOCO layout, evaluate the bundled default
# model on it with the published protocol (with and without swapped
# expressions; overlays of the 8 lowest-IoU expressions, ground truth against
# prediction), then predict every object of four val scenes (one expression
# each): a mask and an overlay per (scene, expression), and one
# predictions.jsonl listing all of them. Everything goes to demo_output/
# (override with DEMO_OUT); running it again replaces its own files.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
OUT=${DEMO_OUT:-demo_output}
DATA="$OUT/synthetic"

# new scenes (another seed than the default model's training data)
lavt synth --output "$DATA" --images 1000 --seed 2026 --image-size 64 64 --overwrite

echo "== default model, synthetic val split (published protocol) =="
lavt evaluate --data-root "$DATA" --dataset refcoco --splitBy unc --split val \
  --output "$OUT/eval" --save-worst 8
echo "== the same, each expression swapped for another object's in the same image =="
lavt evaluate --data-root "$DATA" --dataset refcoco --splitBy unc --split val \
  --output "$OUT/eval_swapped" --swap-expressions

# overlays for the first scenes of the val split, every expression of each
python - "$DATA" "$OUT/scenes.tsv" <<'EOF'
import sys
from lavt.data.refer import ReferIndex

index = ReferIndex(sys.argv[1], "refcoco", "unc")
rows, images = [], []
for ref in index.split("val"):
    if ref.image_id not in images:
        if len(images) == 4:
            continue
        images.append(ref.image_id)
    rows.append(f"{index.image_path(ref.image_id)}\t{ref.sentences[0].text}")
with open(sys.argv[2], "w") as f:
    f.write("\n".join(rows) + "\n")
EOF
cut -f1 "$OUT/scenes.tsv" | uniq | while read -r image; do
  mapfile -t texts < <(awk -F'\t' -v img="$image" '$1 == img {print $2}' "$OUT/scenes.tsv")
  lavt predict --image "$image" --text "${texts[@]}" --output "$OUT/overlays" >/dev/null
done
echo "== outputs =="
echo "metrics:  $OUT/eval/metrics.md, $OUT/eval_swapped/metrics.md"
echo "overlays: $OUT/overlays/ ($(wc -l < "$OUT/overlays/predictions.jsonl") lines in predictions.jsonl, $(cut -f1 "$OUT/scenes.tsv" | uniq | wc -l) scenes)"
echo "worst 8:  $OUT/eval/worst_val/ (ground truth in green, prediction in magenta)"
