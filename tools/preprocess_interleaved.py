#!/usr/bin/env python3
"""Same as `inserter preprocess`: shards or jsonl -> megatron-core indexed datasets."""

import sys

from megatron_inserter.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
