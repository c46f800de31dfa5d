"""Data: a text corpus -> interleaved speech-text shards -> indexed datasets -> packed training samples.

In the order a document travels:

  text_inputs.py  the one reader of jsonl inputs (``.jsonl``, ``.jsonl.gz``, ``.jsonl.zst``; files, globs or
                  directories) for synth and preprocess: checked, numbered lines
  synth/          ``inserter synth``: spans of each document read aloud -> webdataset tar shards
  document.py     the shard format: one document = ordered text and speech segments, to / from tar members
  tokenizers.py   SentencePiece and local Hugging Face tokenizers behind one interface (audio tokens, BOS)
  frames.py       how many placeholder positions a clip occupies (shared with the model: ``FrameSpec``)
  indexed/        ``inserter preprocess``: shards or jsonl -> megatron-core ``.bin``/``.idx``; packed samples,
                  blends and micro-batches for training
  conversation/   ``inserter preprocess --format conversation``: chat rows -> datasets that train the
                  assistant's tokens only
"""
