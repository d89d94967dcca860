#!/usr/bin/env bash
# Reproduce lungtk-cls's shipped weights: the small CPU configurations of the seed classifiers, trained on
# phantoms of seed 500 (100 scans; the set scripts/train_seg.sh uses) and, for seed 004's GGN pathology,
# on a ground-glass-rich set of seed 700 (80 scans, 9 nodules in 10 subsolid). Seeds 9100 and up are
# never used here: they are the evaluation phantoms (README, "Learned classification").
#
#   bash scripts/train_cls.sh [WORK_DIR]          # about an hour and a half on 2 CPU cores; --resume-safe
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
small=(--set width=4 --set patch=32 --set spacing=1.0 --set optimizer=adam --set lr=1e-3 --set val_patches=256)

# seed 001, model B: nodule vs non-nodule on the candidates table (nodules and decoys), balanced 1:1
uv run lungtk train nodule-cnn --data "$work/phantoms" --out "$work/nodule-cnn" --seed 0 --steps 1000 \
  "${small[@]}" --set batch_size=16 --set val_every=250 --set monitor=auc $(resume "$work/nodule-cnn")
export_model nodule-cnn nodule-cnn

# seed 001, model C: benign vs malignant (mean rating above 3) on the annotated nodules, both recipes:
# from scratch (shipped when its validation AUC is higher, as the paper chose) and fine-tuned from the
# nodule model (block 4 and the head learn)
uv run lungtk train malignancy-cnn --data "$work/phantoms" --out "$work/malignancy-scratch" --seed 0 --steps 300 \
  "${small[@]}" --set batch_size=8 --set val_every=100 $(resume "$work/malignancy-scratch")
uv run lungtk train malignancy-cnn --data "$work/phantoms" --out "$work/malignancy-finetune" --seed 0 --steps 200 \
  "${small[@]}" --set batch_size=8 --set val_every=50 --set init="$work/nodule-cnn/model.safetensors" --set trainable=2 \
  $(resume "$work/malignancy-finetune")
best=$(uv run python - "$work" <<'PY'
import json, sys
from lungtk.train.modelfile import read_header
runs = {r: read_header(f"{sys.argv[1]}/malignancy-{r}/model.safetensors").metadata["metrics"] for r in ("scratch", "finetune")}
print(max(runs, key=lambda r: runs[r].get("auc", 0.0)))
PY
)
echo "malignancy-cnn: shipping the $best recipe (higher validation AUC)"
export_model "malignancy-$best" malignancy-cnn

# texture: ground-glass / part-solid / solid, the classes in turn, on both sets together (the seed-500 set
# holds few subsolid nodules); a LUNA16 folder of two subsets made of links
mix="$work/texture-data"
if [ ! -d "$mix" ]; then
  mkdir -p "$mix/masks"
  ln -s "$(realpath "$work/phantoms/subset0")" "$mix/subset0"
  ln -s "$(realpath "$work/ggn-phantoms/subset0")" "$mix/subset1"
  for f in "$work"/phantoms/masks/* "$work"/ggn-phantoms/masks/*; do ln -s "$(realpath "$f")" "$mix/masks/"; done
  for t in annotations.csv annotations_excluded.csv annotations_with_malignancy.csv candidates.csv; do
    (head -1 "$work/ggn-phantoms/$t"; tail -n +2 "$work/phantoms/$t"; tail -n +2 "$work/ggn-phantoms/$t") > "$mix/$t"
  done
fi
uv run lungtk train texture-cnn --data "$mix" --out "$work/texture-cnn" --seed 0 --steps 400 \
  "${small[@]}" --set batch_size=8 --set val_every=100 $(resume "$work/texture-cnn")
export_model texture-cnn texture-cnn

# seed 004: the dilated U-Net on the subsolid-rich set, then the cascade with the mask frozen (model c),
# then both networks fine-tuned jointly, L_cls + 1.0 L_seg at a tenth of the learning rate (model d)
uv run lungtk train dilated-unet --data "$work/ggn-phantoms" --out "$work/dilated-unet" --seed 0 --steps 600 \
  --set widths=8,16,32,64 --set batch_size=8 --set lr=1e-3 --set schedule=cosine --set val_every=150 \
  --set val_patches=64 $(resume "$work/dilated-unet")
uv run lungtk models export "$work/dilated-unet/model.safetensors" packages/seg/src/lungtk/seg/weights/dilated-unet.safetensors
ggn=(--set widths=8,16,32,64 --set hidden=64 --set seg_widths=8,16,32,64 --set batch_size=16
     --set lr=1e-3 --set schedule=cosine --set val_every=100 --set val_patches=64)
uv run lungtk train ggn-pathology --data "$work/ggn-phantoms" --out "$work/ggn-frozen" --seed 0 --steps 300 \
  "${ggn[@]}" --set seg_model="$work/dilated-unet/model.safetensors" $(resume "$work/ggn-frozen")
uv run lungtk train ggn-pathology --data "$work/ggn-phantoms" --out "$work/ggn-joint" --seed 0 --steps 150 \
  "${ggn[@]}" --set joint=true --set lr=1e-4 --set init="$work/ggn-frozen/model.safetensors" \
  $(resume "$work/ggn-joint")
export_model ggn-joint ggn-pathology

# not shipped: seed 004's raw-CT baseline (model a) for the README's table, at the frozen cascade's budget
uv run lungtk train ggn-pathology --data "$work/ggn-phantoms" --out "$work/ggn-raw" --seed 0 --steps 300 \
  "${ggn[@]}" --set mask=none $(resume "$work/ggn-raw")
