#!/usr/bin/env bash
# Train lungtk-detect's NoduleNet weights and seed 003's ablation (base / Quartet attention / Quartet
# attention + Models Genesis) at an equal budget: small CPU configurations (width 0.25, 64^3 crops at 1 mm)
# on 100 phantoms of seed 600, exported as float16 package data. Seeds 9100 and up are never used here:
# they are the evaluation phantoms (README, "Learned detection").
#
#   bash scripts/train_detect.sh [WORK_DIR]        # several hours on 2 CPU cores; --resume-safe
#
# Each `lungtk train` line can be rerun with --resume after a kill. On a GPU, drop the --set overrides to
# train the reference configurations (`lungtk train nodulenet --show-config`: 128^3 crops, batch 16, width 1).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs}
weights=packages/detect/src/lungtk/detect/weights
data="$work/phantoms-det"
mkdir -p "$work" "$weights"
resume() { [ -f "$1/checkpoints/last.pt" ] && echo --resume || true; }

[ -d "$data" ] || uv run lungtk phantom --out "$data" --n 100 --seed 600

steps=3000  # every nodulenet run: the same budget (the RCNN head trains from 32.5 %, the mask head from 40 %)
small=(--set width=0.25 --set patch=64 --set batch_size=4 --set step_size=$((steps / 2)) --set val_every=250
  --set val_patches=48 --set num_workers=2)

# Models Genesis: FeatureNet (with the attention of the run it will start) restores deformed 32x64x64 cubes
# (1000 steps, about 25 min on 2 CPU cores: an extra budget before the equal-budget runs, as in seed 003)
uv run lungtk train genesis --data "$data" --out "$work/genesis-qam" --seed 0 --steps 1000 \
  --set width=0.25 --set attention=qam --set batch_size=6 --set step_size=1000 --set patience=0 \
  --set val_every=250 --set val_patches=32 --set num_workers=2 $(resume "$work/genesis-qam")

# the ablation: base, QAM, QAM + Models Genesis
uv run lungtk train nodulenet --data "$data" --out "$work/nodulenet" --seed 0 --steps $steps "${small[@]}" \
  $(resume "$work/nodulenet")
uv run lungtk train nodulenet --data "$data" --out "$work/nodulenet-qam" --seed 0 --steps $steps "${small[@]}" \
  --set attention=qam $(resume "$work/nodulenet-qam")
uv run lungtk train nodulenet --data "$data" --out "$work/nodulenet-qam-mg" --seed 0 --steps $steps "${small[@]}" \
  --set attention=qam --set init="$work/genesis-qam/model.safetensors" $(resume "$work/nodulenet-qam-mg")

uv run lungtk models export "$work/nodulenet/model.safetensors" "$weights/nodulenet.safetensors"
# nodulenet-qam ships the Quartet-attention run with the better best validation CPM (each run's own held-out
# phantoms of seed 600; the evaluation phantoms below play no part in the choice)
qam=$(uv run python - "$work" <<'PY'
import json, sys
from pathlib import Path

def best(run):
    lines = (Path(sys.argv[1]) / run / "metrics.jsonl").read_text().splitlines()
    return max(json.loads(l)["val"]["cpm"] for l in lines if '"val"' in l)

print(max(("nodulenet-qam", "nodulenet-qam-mg"), key=best))
PY
)
uv run lungtk models export "$work/$qam/model.safetensors" "$weights/nodulenet-qam.safetensors"

# Evaluation on unseen phantoms: FROC / CPM of each run against blob (and unet25d)
[ -d "$work/ph9100" ] || uv run lungtk phantom --out "$work/ph9100" --n 12 --seed 9100
for run in nodulenet nodulenet-qam nodulenet-qam-mg; do
  uv run lungtk pipeline run "$work/ph9100/subset0" --detector nodulenet \
    --weights nodulenet="$work/$run/model.safetensors" --segmenter nodulenet --out "$work/det-$run"
  uv run lungtk eval froc --findings "$work/det-$run/findings.csv" --annotations "$work/ph9100/annotations.csv" \
    --excluded "$work/ph9100/annotations_excluded.csv"
done
