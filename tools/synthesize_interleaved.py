#!/usr/bin/env python3
"""Same as `inserter synth`: a jsonl text corpus -> interleaved speech-text webdataset shards."""

import sys

from megatron_inserter.cli import main

if __name__ == "__main__":
    sys.exit(main(["synth", *sys.argv[1:]]))
