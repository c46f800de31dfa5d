"""``inserter synth``: turn a text corpus into interleaved speech-text shards the InSerter way.

One document travels through these modules in order:

  corpus.py    jsonl/.gz/.zst lines -> ``Document`` (or a counted skip reason)
  language.py  ``lang`` field or a CJK-ratio guess -> "en" / "zh"
  spans.py     words and sentences -> the spans that are read aloud (deterministic per seed + id)
  speakers.py  the synthetic speaker pool a span's voice is drawn from
  tts/         text -> 16 kHz mono float32 audio (espeak-ng in-process, or NeMo FastPitch + HiFi-GAN)
  document.py  spans + audio -> the sample's segments (failed spans fall back to text)
  shards.py    samples -> webdataset tar shards, written to a temporary name and renamed when complete
  plan.py      input files -> work units (file, chunk of lines) -> (rank, shard index), a pure function
  worker.py    one work unit -> one shard + its completion manifest, in a fresh process
  pipeline.py  schedules units over worker processes, resumes, shows progress, writes stats
  config.py    the run's dataclass config; stats.py its counters; preload.py what workers start with
  cli.py       the command line (``inserter synth``)
"""
