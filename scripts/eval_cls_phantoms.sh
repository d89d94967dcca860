#!/usr/bin/env bash
# The learned classifiers' figures in the README ("Learned classification"), on phantoms of seeds that no
# training or calibration used: 9100 (12 scans, the LIDC mix of textures) and 9700 (30 scans, 9 nodules in
# 10 subsolid, for texture and GGN pathology).
#
#   bash scripts/eval_cls_phantoms.sh [WORK_DIR] [--weights NAME=FILE ...]   # about 5 min on 2 CPU cores
#
# Extra arguments go to every `lungtk pipeline run` (e.g. --weights nodule-cnn=runs/nodule-cnn/model.safetensors
# to score a model before shipping it).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-eval}
shift || true
mkdir -p "$work"
[ -d "$work/ph9100" ] || uv run lungtk phantom --out "$work/ph9100" --n 12 --seed 9100
[ -d "$work/ph9700" ] || uv run lungtk phantom --out "$work/ph9700" --n 30 --seed 9700 --ggn-fraction 0.9
run() { uv run lungtk pipeline run --threshold 0 "$@" > /dev/null; }
froc() { uv run lungtk eval froc --findings "$1/findings.csv" --annotations "$2/annotations.csv" \
           --excluded "$2/annotations_excluded.csv" | tail -1; }

# nodule-cnn: the blob detector's candidates re-scored (ROC AUC over candidates; FROC against blob alone)
run "$work/ph9100" --detector blob --classifier size --out "$work/blob" "$@"
run "$work/ph9100" --detector blob --classifier nodule-cnn --classifier size --out "$work/blob+nodule-cnn" "$@"
echo "blob alone:        $(froc "$work/blob" "$work/ph9100")"
echo "blob + nodule-cnn: $(froc "$work/blob+nodule-cnn" "$work/ph9100")"
uv run lungtk eval cls --findings "$work/blob+nodule-cnn/findings.csv" --truth "$work/ph9100" --task nodule

# malignancy and texture at the true nodule centres, against the classical size classifier
for set in ph9100 ph9700; do
  for c in size malignancy-cnn texture-cnn; do
    run "$work/$set" --candidates "$work/$set/annotations.csv" --classifier "$c" --out "$work/$set-$c" "$@"
    case $c in  # what each classifier gives (size: both)
      size) tasks=(--task malignancy --task texture) ;;
      malignancy-cnn) tasks=(--task malignancy) ;;
      texture-cnn) tasks=(--task texture) ;;
    esac
    echo "$set $c:"
    uv run lungtk eval cls --findings "$work/$set-$c/findings.csv" --truth "$work/$set" "${tasks[@]}"
  done
done

# seed 004's GGN pathology at the true centres of the subsolid nodules
run "$work/ph9700" --candidates "$work/ph9700/annotations.csv" --classifier ggn-pathology --out "$work/ggn" "$@"
uv run lungtk eval cls --findings "$work/ggn/findings.csv" --truth "$work/ph9700" --task pathology
