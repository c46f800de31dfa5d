#!/usr/bin/env bash
# The tiny CPU recipe, command by command: what `inserter demo` does, with the commands a user runs at scale.
# About 5 minutes on 2 cores. Needs espeak-ng (apt-get install espeak-ng) and the package installed
# (make setup). Usage: [TRAIN_ITERS=300] examples/tiny_cpu_demo.sh [WORKDIR]
set -euo pipefail

WORK=${1:-runs/tiny_cpu}
TRAIN_ITERS=${TRAIN_ITERS:-300}
CORPUS=$(python -c "import importlib.resources as r; print(r.files('megatron_inserter') / 'assets' / 'demo_corpus.jsonl')")
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
mkdir -p "$WORK"

# 1. Read 30% of each document aloud (word-level spans of 5-15 words, espeak-ng voices) -> webdataset shards.
inserter synth --input "$CORPUS" --output-dir "$WORK/shards" --tts espeak --span-mode word --speech-ratio 0.3 \
    --shard-size 32 --workers 2

# 2. A SentencePiece tokenizer with <|audio_bos|>, <|audio_eos|>, <|AUDIO|> and <|endoftext|>.
inserter train-tokenizer --input "$CORPUS" --vocab-size 2000 --output "$WORK/tokenizer/demo.model"

# 3. Indexed datasets: interleaved (+ its ASR-style view, PREFIX_asr) from the shards, text-only from the jsonl.
TOK=(--tokenizer-type sentencepiece --tokenizer-model "$WORK/tokenizer/demo.model")
inserter preprocess --input "$WORK/shards" --output-prefix "$WORK/data/interleaved" "${TOK[@]}"
inserter preprocess --input "$CORPUS" --output-prefix "$WORK/data/text" "${TOK[@]}"

# 4. InSerter pre-training of the tiny preset on the 40/30/30 blend (loss on text only). Re-running the
#    same command resumes from the last checkpoint.
LOAD=()
[ -f "$WORK/train/latest_checkpointed_iteration.txt" ] && LOAD=(--load "$WORK/train")
inserter train --model-type inserter --model-preset tiny "${TOK[@]}" \
    --data-path 0.4 "$WORK/data/interleaved" 0.3 "$WORK/data/interleaved_asr" 0.3 "$WORK/data/text" \
    --split 95,5,0 --seq-length 256 --micro-batch-size 4 --global-batch-size 4 --train-iters "$TRAIN_ITERS" \
    --lr 1e-3 --min-lr 1e-4 --lr-warmup-iters $((TRAIN_ITERS / 15)) --lr-decay-style cosine --clip-grad 1.0 \
    --eval-interval 100 --eval-iters 4 --log-interval 20 --num-workers 0 \
    --save "$WORK/train" --save-interval 100 --tensorboard-dir "$WORK/train/tensorboard" "${LOAD[@]}"

# 5. Continue a spoken prompt in text (any 16 kHz-resamplable audio file works as --audio).
python - "$WORK" <<'PY'
import sys, soundfile as sf
from megatron_inserter.demo.continuation import find_spoken_prompt
from megatron_inserter.data.indexed.audio_store import int16_to_float
before, spoken, audio, after = find_spoken_prompt(sys.argv[1] + "/shards")
sf.write(sys.argv[1] + "/prompt.wav", int16_to_float(audio), 16000)
print(f"spoken: {spoken!r}\nexpected: {after[:80]!r}")
PY
inserter generate --load "$WORK/train" --audio "$WORK/prompt.wav" --prompt-template plain --max-new-tokens 40

echo "loss curve: $WORK/train/logs/loss_curve.png   metrics: $WORK/train/logs/metrics.jsonl"
