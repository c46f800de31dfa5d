#!/usr/bin/env bash
# DeSTA2 alignment on the tiny preset, CPU: adapter-only training (speech encoder and LLM frozen) on
# conversations whose user turn is a clip + "What can you hear from the audio?" and whose assistant turn
# describes it, from the stage-one checkpoint of examples/tiny_cpu_demo.sh. DeSTA2's optimizer settings
# (lr 1e-4, cosine, betas 0.9/0.98, weight decay 0.01, clip 1.0) with the warm-up scaled to 20 steps.
# Runs stage one first (TRAIN_ITERS=100) when WORKDIR has no checkpoint. About 2 minutes on 2 cores after it.
# Usage: examples/desta2_adapter_tiny.sh [WORKDIR]
set -euo pipefail

WORK=${1:-runs/tiny_cpu}
HERE=$(cd "$(dirname "$0")" && pwd)
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
if [ ! -f "$WORK/train/latest_checkpointed_iteration.txt" ]; then
    TRAIN_ITERS=${TRAIN_ITERS:-100} bash "$HERE/tiny_cpu_demo.sh" "$WORK"
fi
TOK=(--tokenizer-type sentencepiece --tokenizer-model "$WORK/tokenizer/demo.model")

# 1. Conversations: every speech span of the shards, described from what the shard records about it
#    (transcript, voice gender, speed, pitch, duration). At scale, `inserter desta build` writes DeSTA2's seed
#    transcripts and `inserter desta answer` has the backbone LLM itself describe each one.
python -m megatron_inserter.data.conversation.demo_rows --shards "$WORK/shards" \
    --output "$WORK/desta/conversations.jsonl" --style desta

# 2. Indexed conversations (the assistant's tokens carry the loss).
inserter preprocess --format conversation --chat-template chatml --seq-length 512 \
    --input "$WORK/desta/conversations.jsonl" --output-prefix "$WORK/data/desta" "${TOK[@]}"

# 3. Adapter-only training from the stage-one weights (re-running resumes this run).
LOAD=(--load "$WORK/train")
[ -f "$WORK/desta/train/latest_checkpointed_iteration.txt" ] && LOAD=(--load "$WORK/desta/train" --no-finetune)
inserter train --config "$HERE/desta2_adapter_tiny.yaml" "${TOK[@]}" --data-path "$WORK/data/desta" \
    --save "$WORK/desta/train" "${LOAD[@]}"

echo "DeSTA2 metrics: $WORK/desta/train/logs/metrics.jsonl   checkpoint: $WORK/desta/train"
