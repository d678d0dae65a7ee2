#!/usr/bin/env bash
# Every photo-world number in docs/results.md comes from these commands (run from the repository
# root). Data: training pictures (seed 1), validation pictures (seed 2: followed during training,
# used to choose the heatmap temperature), test pictures (seed 3: only ever evaluated, never tuned
# on) and training pictures in new clips (seed 4: "seen pictures"). Pictures of the three splits
# never overlap (docs/ground_truth.md). Steps whose output exists are skipped and training runs
# resume where they stopped, so the script can simply be rerun after an interruption.
#
#   bash scripts/experiments_photo.sh data        # the four sets (~25 CPU-min)
#   bash scripts/experiments_photo.sh shipped     # the shipped localizer, counter and separator
#   bash scripts/experiments_photo.sh ablations   # curriculum vs mixed, replay, still frames
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
T=${THREADS:-2}
D=${DATA:-data}
R=${RUNS:-runs}
syn() { [ -f "$1/manifest.csv" ] || $PY -m avstudio synth "$@" --world photo --workers 2 --quiet; }
train() { $PY -m avstudio train --threads "$T" --quiet "$@" > /dev/null; }
ev() {  # ev MODEL OUT.json DATA
  [ -f "$2" ] || $PY -m avstudio eval --model "$1" --data "$3" --quiet --out "$2" > /dev/null
}
ARCH="--arch photo --arch-set vis_channels=24,32,64,96"
COMMON="--manifest $D/ptrain/manifest.csv --clip-repeats 2 --val-data $D/pval"

case "${1:-all}" in
data|shipped|ablations|all)
  syn $D/pval   --clips 240  --sources 1,2,3,4 --seed 2 --pictures val
  syn $D/ptrain --clips 3000 --sources 1,1,1,2,2,3,4 --seed 1 --pictures train
  syn $D/ptest  --clips 320  --sources 1,2,3,4 --seed 3 --pictures test
  syn $D/pseen  --clips 160  --sources 1,2,3,4 --seed 4 --pictures train
  ;;
esac

case "${1:-all}" in
shipped|all)
  # C1: 6 epochs, then 10 more at a lower rate; C2 and C3 with replay of the simpler levels;
  # then the counter on every labelled clip
  train $COMMON $ARCH --out $R/c1_A --stages 1 --epochs 6 --counter-epochs 0
  train $COMMON --init $R/c1_A/model.safetensors --out $R/c1_B --stages 1 --epochs 10 --lr 7e-4 --counter-epochs 0
  train $COMMON --init $R/c1_B/model.safetensors --out $R/c23 --stages 2,3 --epochs 8,8 --lr 5e-4 \
        --stage-lr 0.6 --replay 0.25 --counter-epochs 0
  train $COMMON --init $R/c23/model.safetensors --out $R/photo --stages 1,2 --epochs 0 --counter-epochs 6
  $PY -m avstudio calibrate $R/photo/model.safetensors --val-data $D/pval --write
  ev $R/photo/model.safetensors $R/eval/photo_test.json $D/ptest
  ev $R/photo/model.safetensors $R/eval/photo_seen.json $D/pseen
  ;;
esac
echo "done"
