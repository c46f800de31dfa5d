#!/usr/bin/env bash
# InSerter stage two on the tiny preset, CPU: supervised fine-tuning on spoken-instruction conversations
# blended 50/50 with text, from the stage-one checkpoint of examples/tiny_cpu_demo.sh (--finetune, lr 1e-5).
# Runs stage one first (TRAIN_ITERS=100) when WORKDIR has no checkpoint. About 2 minutes on 2 cores after it.
# Usage: examples/sft_inserter_tiny.sh [WORKDIR]
set -euo pipefail

WORK=${1:-runs/tiny_cpu}
HERE=$(cd "$(dirname "$0")" && pwd)
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ ! -f "$WORK/train/latest_checkpointed_iteration.txt" ]; then
    TRAIN_ITERS=${TRAIN_ITERS:-100} bash "$HERE/tiny_cpu_demo.sh" "$WORK"
fi
TOK=(--tokenizer-type sentencepiece --tokenizer-model "$WORK/tokenizer/demo.model")

# 1. Conversations from the stage-one shards: each speech span in a user turn, alternately "Write down what
#    is said." -> its transcript and "<text before> <audio> Continue the text." -> the text after it.
python -m megatron_inserter.data.conversation.demo_rows --shards "$WORK/shards" \
    --output "$WORK/sft/conversations.jsonl" --style sft

# 2. Indexed conversations in Qwen2's chat format; the stored loss mask covers the assistant's tokens only.
#    Conversations longer than a training sample are skipped here and counted.
inserter preprocess --format conversation --chat-template chatml --seq-length 512 \
    --input "$WORK/sft/conversations.jsonl" --output-prefix "$WORK/data/sft_dialogue" "${TOK[@]}"

# 3. SFT: dialogue + 50% text, from the stage-one weights (re-running resumes the SFT run itself).
LOAD=(--load "$WORK/train")
[ -f "$WORK/sft/train/latest_checkpointed_iteration.txt" ] && LOAD=(--load "$WORK/sft/train" --no-finetune)
inserter train --config "$HERE/sft_inserter_tiny.yaml" "${TOK[@]}" \
    --data-path 0.5 "$WORK/data/sft_dialogue" 0.5 "$WORK/data/text" \
    --save "$WORK/sft/train" "${LOAD[@]}"

echo "SFT metrics: $WORK/sft/train/logs/metrics.jsonl   checkpoint: $WORK/sft/train"
