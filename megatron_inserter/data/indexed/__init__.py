"""Indexed datasets: preprocessing (shards/jsonl -> .bin/.idx) and packed interleaved training samples.

Preprocessing (``inserter preprocess``; numpy only), in reading order:

  preprocess_cli.py  the command's flags (``tokenizer_cli.py``: ``inserter train-tokenizer``)
  sources.py         inputs: shards (read through ``data.document``) or jsonl text -> ``Document``s of
                     text and speech segments (int16 PCM)
  preprocess.py      inputs cut into partitions, written by worker processes, merged with ``add_index``
  writer.py          documents -> the token dataset (a span stored as three tokens, ``<|audio_bos|>
                     <|AUDIO|> <|audio_eos|>``; BOS first when the tokenizer has one, EOD last), its
                     audio and the ASR view
  builder.py         the ``.bin``/``.idx`` builder (megatron-core's files, in numpy); ``index_format.py``
                     the ``.idx`` format
  audio_store.py     speech as an indexed dataset of int16 PCM, one sequence per span
  metadata.py        the ``PREFIX.meta.json`` sidecar (tokenizer ids, layout); ``binding.py`` ties ``.bin``,
                     ``.idx`` and sidecar together; ``token_check.py`` checks token ids when a dataset opens

Training samples (torch, megatron-core):

  low_level.py       one dataset on disk: tokens, audio and metadata; a document's tokens with every span's
                     placeholder expanded to its frame count (``data.frames``)
  sample_index.py    documents -> samples of ``seq_length + 1`` tokens, never cut inside a span, shuffled
  dataset.py         ``InterleavedDataset``: a sample = tokens, labels, loss mask (0 on speech), audio clips
  blend.py           Megatron's blends and splits through ``BlendedMegatronDatasetBuilder``
  sampler.py         the pretraining batch sampler: per data-parallel rank, resumable
  collate.py         samples -> a micro-batch: stacked token fields, clips padded into ``audio [n, samples]``

The training-side names are imported on first use: preprocessing needs neither torch nor megatron-core,
and importing this package must not pay their seconds of start-up.
"""

from importlib import import_module

_EXPORTS = {
    "InterleavedDataset": "megatron_inserter.data.indexed.dataset",
    "InterleavedDatasetConfig": "megatron_inserter.data.indexed.dataset",
    "PretrainingBatchSampler": "megatron_inserter.data.indexed.sampler",
    "build_datasets": "megatron_inserter.data.indexed.blend",
    "collate_batch": "megatron_inserter.data.indexed.collate",
    "dataset_config": "megatron_inserter.data.indexed.blend",
    "parse_blend": "megatron_inserter.data.indexed.blend",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
