#!/usr/bin/env bash
# Every photo-world number in docs/results.md comes from these commands (run from the repository
# root, 2 CPU cores). Data: training pictures (seed 1), validation pictures (seed 2: followed
# during training, used to choose the heatmap temperature), test pictures (seed 3: only ever
# evaluated, never tuned on) and training pictures in new clips (seed 4: "seen pictures").
# Pictures of the three splits never overlap (docs/ground_truth.md). Steps whose output exists
# are skipped and training runs resume where they stopped, so the script can simply be rerun
# after an interruption.
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
mkdir -p "$R/eval"
syn() { [ -f "$1/manifest.csv" ] || $PY -m avstudio synth "$@" --world photo --workers 2 --quiet; }
train() { $PY -m avstudio train --threads "$T" --quiet "$@" > /dev/null; }
ev() {  # ev MODEL OUT.json DATA
  [ -f "$2" ] || $PY -m avstudio eval --model "$1" --data "$3" --quiet --out "$2" > /dev/null
}
# the photo architecture, narrowed (24-32-64-96 channels: 1.8x cheaper than 32-48-96-128)
ARCH="--arch photo --arch-set vis_channels=24,32,64,96"
COMMON="--manifest $D/ptrain/manifest.csv --clip-repeats 2 --val-data $D/pval"

syn $D/pval   --clips 240  --sources 1,2,3,4 --seed 2 --pictures val
syn $D/ptrain --clips 3000 --sources 1,1,1,2,2,3,4 --seed 1 --pictures train
syn $D/ptest  --clips 320  --sources 1,2,3,4 --seed 3 --pictures test
syn $D/pseen  --clips 160  --sources 1,2,3,4 --seed 4 --pictures train

case "${1:-all}" in
shipped|ablations|all)
  # stage C1 (1287 one-source clips, 6 epochs of 161 steps): shared by the shipped model and the
  # ablations below
  T=1 train $COMMON $ARCH --arch-set stack=7 --out $R/c1_A --stages 1 --epochs 6 --counter-epochs 0
  ;;
esac

case "${1:-all}" in
shipped|all)
  # stages C2 and C3 from it: a lower learning rate at each stage and a quarter of the steps
  # replaying the simpler levels; then the counter on every labelled clip (encoders frozen)
  train $COMMON --init $R/c1_A/model.safetensors --out $R/c23 --stages 2,3 --epochs 3,3 --lr 5e-4 \
        --stage-lr 0.6 --replay 0.25 --counter-epochs 0
  # the heatmap temperature, chosen on the validation clips (written into the card)
  grep -q '"calibration"' $R/c23/model.json || $PY -m avstudio calibrate $R/c23/model.safetensors --val-data $D/pval --write
  # the counter (encoders frozen) on 2141 clips: every C2-C4 clip and the first 428 C1 clips,
  # so that each count is seen about as often; in parallel with the separator (one thread each)
  [ -f $D/ptrain/manifest_count.csv ] || awk -F, 'NR == 1 || $2 != 1 || ++n <= 428' $D/ptrain/manifest.csv \
        > $D/ptrain/manifest_count.csv
  T=1 train --manifest $D/ptrain/manifest_count.csv --clip-repeats 1 --init $R/c23/model.safetensors --out $R/photo \
        --stages 1,2 --epochs 0 --counter-epochs 6 &
  # the separator, in the visual space of that localizer (two-clip mixtures, solo then duet)
  [ -f $R/sep_photo/separator.safetensors ] || $PY -m avstudio train-separator --av-model $R/c23/model.safetensors \
        --out $R/sep_photo --manifest $D/ptrain/manifest.csv --stages 1,2 --epochs 12 --steps 60 \
        --later-stages mixed --threads 1 --seed 0 --max-minutes 45 --quiet > /dev/null
  wait
  # the shipped folder: localizer (AV + counter) and separator; then the held-out evaluations
  python3 scripts/ship_model.py $R/photo/model.safetensors $R/ship/default/localizer
  python3 scripts/ship_model.py $R/sep_photo/separator.safetensors $R/ship/default/separator
  ev $R/ship/default $R/eval/photo_test.json $D/ptest
  ev $R/ship/default $R/eval/photo_seen.json $D/pseen
  ;;
esac

case "${1:-all}" in
ablations|all)
  # the same C2 + C3 steps with the old recipe: every stage restarts at lr 1e-3, no replay
  train $COMMON --init $R/c1_A/model.safetensors --out $R/abl_c23_plain --stages 2,3 --epochs 3,3 \
        --counter-epochs 0
  # no curriculum: every level mixed from the start, as many steps as C1 -> C2 -> C3
  train $COMMON $ARCH --out $R/abl_mixed --stages 1,2,3 --epochs 6,4,4 --no-curriculum --counter-epochs 0
  # still frames: the same C1 stage with one frame per sample (no motion)
  train $COMMON $ARCH --arch-set stack=1 --out $R/abl_still --stages 1 --epochs 3 --counter-epochs 0
  # a wider frame stack, 9 frames 0.1 s apart (faster at first, then worse on validation)
  train $COMMON $ARCH --arch-set stack=9 --arch-set stack_step_s=0.1 --arch-set heat_temperature=0.3 \
        --out $R/c1_W --stages 1 --epochs 6 --counter-epochs 0
  # four times the batch (64 clips x 2 moments), lr 2e-3, twice the clips of C1
  train $COMMON $ARCH --arch-set stack=7 --batch-clips 64 --lr 2e-3 --out $R/c1_big --stages 1 --epochs 12 \
        --counter-epochs 0
  for m in c1_A/model c23/stages/C2 c23/model abl_c23_plain/stages/C2 abl_c23_plain/model abl_mixed/model; do
    ev "$R/$m.safetensors" "$R/eval/$(echo "$m" | tr / _).json" $D/ptest
  done
  ;;
esac
echo "done: $R/eval/*.json"
