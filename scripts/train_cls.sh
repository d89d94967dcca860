#!/usr/bin/env bash
# Reproduce lungtk-cls's shipped weights: the small CPU configurations of the seed classifiers, trained on
# phantoms of seed 500 (100 scans; the set scripts/train_seg.sh uses) and, for seed 004's GGN pathology,
# on a ground-glass-rich set of seed 700 (80 scans, 9 nodules in 10 subsolid). Seeds 9100 and up are
# never used here: they are the evaluation phantoms (README, "Learned classification").
#
#   bash scripts/train_cls.sh [WORK_DIR]          # about two hours on 2 CPU cores; --resume-safe
#
# On a GPU, drop the --set overrides to train the papers' configurations (`lungtk train TASK --show-config`).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-runs}
weights=packages/cls/src/lungtk/cls/weights
mkdir -p "$work" "$weights"
resume() { [ -f "$1/checkpoints/last.pt" ] && echo --resume || true; }
export_model() { uv run lungtk models export "$work/$1/model.safetensors" "$weights/$2.safetensors"; }

[ -d "$work/phantoms" ] || uv run lungtk phantom --out "$work/phantoms" --n 100 --seed 500
[ -d "$work/ggn-phantoms" ] || uv run lungtk phantom --out "$work/ggn-phantoms" --n 80 --seed 700 --ggn-fraction 0.9

# The CPU configuration of seed 001's LunaModel: width 4 (the paper's 8 halved), 32^3 crops at 1 mm (the
# paper's 32 x 48 x 48 voxels cost 3.5 times as much), Adam instead of SGD for a short budget.
small=(--set width=4 --set patch=32 --set spacing=1.0 --set optimizer=adam --set lr=1e-3 --set batch_size=16
       --set val_every=250 --set val_patches=256)

# seed 001, model B: nodule vs non-nodule on the candidates table (nodules and decoys), balanced 1:1
uv run lungtk train nodule-cnn --data "$work/phantoms" --out "$work/nodule-cnn" --seed 0 --steps 1500 \
  "${small[@]}" --set monitor=auc $(resume "$work/nodule-cnn")
export_model nodule-cnn nodule-cnn
