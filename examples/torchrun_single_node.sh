#!/usr/bin/env bash
# One node, 8 GPUs: InSerter pre-training of the Whisper-small + Qwen2.5-1.5B preset.
# TP=2 x DP=4, sequence parallel, bf16, distributed optimizer.
#
#   DATA=/data/inserter TOKENIZER=/models/Qwen2.5-1.5B CKPT=/ckpt/inserter-1.5b examples/torchrun_single_node.sh
#
# DATA holds `inserter preprocess` outputs: interleaved, interleaved_asr (written alongside) and text.
# TOKENIZER is a local Hugging Face tokenizer directory (tokenizer.json); nothing is downloaded.
# To start from pretrained weights, convert them first (`inserter convert`) and pass LOAD=<converted dir>.
set -euo pipefail

: "${DATA:?set DATA to the directory of the preprocessed datasets}"
: "${TOKENIZER:?set TOKENIZER to a local Hugging Face tokenizer directory}"
CKPT=${CKPT:-runs/inserter-1.5b}
GPUS=${GPUS:-8}
export CUDA_DEVICE_MAX_CONNECTIONS=1  # lets tensor-parallel communication overlap with compute

LOAD_ARGS=()
if [ -f "$CKPT/latest_checkpointed_iteration.txt" ]; then
    LOAD_ARGS=(--load "$CKPT")                 # resume this run
elif [ -n "${LOAD:-}" ]; then
    LOAD_ARGS=(--load "$LOAD" --finetune)      # start from converted pretrained weights
fi

torchrun --standalone --nproc-per-node "$GPUS" -m megatron_inserter.cli train \
    --model-type inserter --model-preset qwen2.5-1.5b-whisper-small \
    --tokenizer-type huggingface --tokenizer-model "$TOKENIZER" \
    --data-path 0.4 "$DATA/interleaved" 0.3 "$DATA/interleaved_asr" 0.3 "$DATA/text" --split 998,2,0 \
    --tensor-model-parallel-size 2 --pipeline-model-parallel-size 1 --sequence-parallel \
    --seq-length 4096 --micro-batch-size 2 --global-batch-size 256 --train-iters 20000 \
    --lr 1e-4 --min-lr 1e-5 --lr-decay-style cosine --lr-warmup-iters 500 --weight-decay 0.1 --clip-grad 1.0 \
    --adam-beta1 0.9 --adam-beta2 0.95 --bf16 --use-distributed-optimizer \
    --save "$CKPT" --save-interval 1000 --eval-interval 1000 --eval-iters 20 \
    --log-interval 10 --tensorboard-dir "$CKPT/tensorboard" --num-workers 4 \
    "${LOAD_ARGS[@]}" "$@"
