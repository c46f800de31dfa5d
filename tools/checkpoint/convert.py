"""Checkpoint conversion between Hugging Face and megatron-inserter; the same as ``inserter convert``.

    python tools/checkpoint/convert.py hf-to-mcore --hf-dir Qwen2-Audio-7B --output ckpt/qwen2-audio
    python tools/checkpoint/convert.py mcore-to-hf --load ckpt/run --output hf/run
"""

import sys

from megatron_inserter.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
