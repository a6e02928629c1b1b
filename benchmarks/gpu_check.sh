#!/usr/bin/env bash
# The GPU measurements of docs/models.md and docs/scale.md, as run on a lent H100/H200 in one
# call. Needs: the wheels of astropy/jsonschema/dask in .whl/ (the machine has torch, h5py,
# scikit-learn, ...) and, in .gpu/, the mock benchmark's training sets packed by
#   python benchmarks/pack_trainset.py pack results/train/lens.h5 .gpu/pk.h5 --step 0.1 \
#       --also results/train/merger.h5 --xz
# Writes under $OUT: gpu.txt, infer_speed.jsonl, train_speed.jsonl, models_rows.jsonl,
# tests.tgz (per-object test logits for benchmarks/completeness.py), log.txt.
#   STAGES="infer speed models"  DEADLINE=520 (seconds after which no model starts)
#   EPOCHS=50  MODELS="lens:r18:resnet18 merger:d4:d4 ..." (in order of priority)
set -u
STAGES=${STAGES:-infer speed models}
DEADLINE=${DEADLINE:-520}
EPOCHS=${EPOCHS:-50}
DEVICE=${DEVICE:-cuda}
MODELS=${MODELS:-lens:r18:resnet18 merger:d4:d4 lens:d4:d4 merger:r18:resnet18 \
lens:dl:deeplens merger:dl:deeplens lens:b3:baseline3 merger:b3:baseline3}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
LOG=$OUT/log.txt
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc; } > "$OUT/gpu.txt" 2>&1
(python3 benchmarks/pack_trainset.py unpack .gpu/pk.h5 /tmp/lens.h5 --task lens &&
 python3 benchmarks/pack_trainset.py unpack .gpu/pk.h5 /tmp/merger.h5 --task merger
 echo "unpacked at $SECONDS s") >> "$LOG" 2>&1 &
UNPACK=$!
if [[ $STAGES == *infer* ]]; then
    # inference cutouts/s end to end (HDF5 -> model -> FITS) vs in memory, bf16
    for arch in ${INFER_ARCHS:-baseline3 d4}; do
        timeout ${INFER_TIMEOUT:-75} python3 benchmarks/infer.py --architecture $arch --n 16384 --batch 4096 \
            --threads 8 --shapes 3x64 4x101 --mem-n >> "$OUT/infer_speed.jsonl" 2>> "$LOG"
        echo "infer speed $arch done at $SECONDS s" >> "$LOG"
    done
fi
wait $UNPACK
if [[ $STAGES == *speed* ]]; then
    # training images/s and GPU utilisation: real loop (images on the GPU) vs in memory
    for b in ${SPEED_BATCHES:-256 1024}; do
        timeout ${SPEED_TIMEOUT:-70} python3 benchmarks/train.py --trainset /tmp/lens.h5 --batch $b \
            --steps $((25600 / b)) --data ram --threads 8 \
            --architectures ${SPEED_ARCHS:-baseline3 resnet18 deeplens d4} >> "$OUT/train_speed.jsonl" \
            2>> "$LOG"
        echo "train speed batch $b done at $SECONDS s" >> "$LOG"
    done
fi
if [[ $STAGES == *models* ]]; then
    # every architecture trained on the same data, scored on its test split (also with TTA)
    for item in $MODELS; do
        IFS=: read -r task name arch <<< "$item"
        left=$((DEADLINE - SECONDS)); [ "$left" -gt 25 ] || break
        timeout $((left < 150 ? left : 150)) python3 benchmarks/models.py \
            --config config/mock_benchmark.yaml --task $task --trainset /tmp/$task.h5 \
            --out /tmp/m --n-boot 500 --models $name:$arch --set train.device=$DEVICE \
            --set train.batch_size=128 --set train.lr=0.003 --set train.epochs=$EPOCHS \
            --set train.patience=10 --set train.threads=8 >> "$OUT/models.txt" 2>> "$LOG"
        echo "model $task $name done at $SECONDS s" >> "$LOG"
    done
    cp /tmp/m/rows.jsonl "$OUT/models_rows.jsonl" 2>/dev/null
    tar czf "$OUT/tests.tgz" -C /tmp/m --exclude='*.pt' --exclude='*.png' . 2>/dev/null
fi
echo "all done at $SECONDS s" >> "$LOG"
