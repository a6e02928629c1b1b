#!/usr/bin/env bash
# The GPU measurements of docs/models.md, as run on a lent H100/H200 (one call each).
# Needs: the wheels of astropy/jsonschema/dask in .whl/ (the machine has torch, h5py, ...)
# and results/gpu/lens.h5 = benchmarks/pack_trainset.py pack of the mock benchmark's lens
# training set (--step 0.1 --train-keep 0.9 --also .../merger.h5). Writes under $OUT.
#   STAGES="speed infer train" TASK=lens MODELS="d4:d4 dl:deeplens b3:baseline3 r18:resnet18"
#   DEADLINE=390 (seconds after which no further training starts)
set -u
STAGES=${STAGES:-speed infer train}
TASK=${TASK:-lens}
MODELS=${MODELS:-d4:d4 dl:deeplens b3:baseline3 r18:resnet18}
DEADLINE=${DEADLINE:-390}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
LOG=$OUT/log.txt
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  nproc; } > "$OUT/gpu.txt" 2>&1
python3 benchmarks/pack_trainset.py unpack results/gpu/lens.h5 /tmp/$TASK.h5 --task $TASK \
    >> "$LOG" 2>&1
echo "unpacked at $SECONDS s" >> "$LOG"
if [[ $STAGES == *speed* ]]; then
    # training images/s, real loop (HDF5 stream, 8 workers) vs in memory; bf16, channels_last
    timeout 150 python3 benchmarks/train.py --trainset /tmp/$TASK.h5 --batch 256 --steps 120 \
        --workers 8 --threads 8 --architectures baseline3 resnet18 deeplens d4 \
        > "$OUT/train_speed.jsonl" 2>> "$LOG"
    echo "train speed done at $SECONDS s" >> "$LOG"
fi
if [[ $STAGES == *infer* ]]; then
    # inference cutouts/s end to end vs in memory, default model, bf16
    timeout 80 python3 benchmarks/infer.py --architecture d4 --n 4096 --batch 1024 \
        --threads 8 --shapes 3x64 4x101 > "$OUT/infer_speed.jsonl" 2>> "$LOG"
    echo "infer speed done at $SECONDS s" >> "$LOG"
fi
if [[ $STAGES == *train* ]]; then
    # a short real training of every architecture on the same data, scored on its test split
    COMMON="--config config/mock_benchmark.yaml --task $TASK --trainset /tmp/$TASK.h5
        --out /tmp/m --n-boot 500 --set train.device=cuda --set train.batch_size=128
        --set train.lr=0.003 --set train.epochs=25 --set train.patience=6 --set train.threads=8"
    for m in $MODELS; do
        left=$((DEADLINE - SECONDS)); [ "$left" -gt 30 ] || break
        timeout $((left < 90 ? left : 90)) python3 benchmarks/models.py $COMMON --models $m \
            >> "$OUT/models.txt" 2>> "$LOG"
        echo "model $m done at $SECONDS s" >> "$LOG"
    done
    cp /tmp/m/rows.jsonl "$OUT/models_rows.jsonl" 2>/dev/null
    tar czf "$OUT/metrics.tgz" -C /tmp/m --exclude='*.pt' . 2>/dev/null
fi
echo "all done at $SECONDS s" >> "$LOG"
