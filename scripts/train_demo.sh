#!/usr/bin/env bash
# Training demo: a small LAVT learns the synthetic dataset from scratch on the
# CPU (about 10 minutes of training on 2 cores), then is evaluated on the val
# split with and without swapped expressions. Run directory: runs/synthetic_demo
# (continue an interrupted run by passing --resume auto to this script).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
DATA=data/synthetic
[ -f "$DATA/refcoco/refs(unc).p" ] || lavt synth --output "$DATA" --images 4000 --seed 0
# two processes of one thread each use the 2 cores better than one process of two
torchrun --standalone --nproc_per_node 2 -m lavt train --config configs/synthetic_demo.yaml "$@"
for swap in "" "--swap-expressions"; do
  echo "== val split ${swap:-(as annotated)} =="
  lavt evaluate --checkpoint runs/synthetic_demo/best.pt --data-root "$DATA" --dataset refcoco \
    --splitBy unc --split val --output "runs/synthetic_demo/eval${swap:+_swapped}" $swap
done
