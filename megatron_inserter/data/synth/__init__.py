"""``inserter synth``: turn a text corpus into interleaved speech-text shards the InSerter way.

One document travels through these modules in order:

  ../text_inputs.py  jsonl/.gz/.zst files -> checked, numbered raw lines (the reader shared with preprocess)
  corpus.py      a line -> ``Document``: id, clean text (no control characters), language; or a skip reason
  language.py    ``lang`` field or a CJK-ratio guess -> "en" / "zh"; the language each span is spoken in
  spans.py       words and sentences -> the spans that are read aloud (keyed on seed, input file and id)
  speakers.py    the espeak speaker pool and how spans pick voices; voices.py the pools of TTS servers
  tts/           text -> 16 kHz mono float32 audio (espeak-ng in-process, NeMo FastPitch + HiFi-GAN, or
                 OpenAI-compatible TTS servers through servers.py: spreading, benching, retries, counters)
  noise.py       coloured noise mixed into a share of spans at a recorded SNR
  asr/           the round-trip check: transcribe a span (ASR servers, Whisper, NeMo) and score it
  interleave.py  one document's spans spoken (under the cap, checked, retried by other voices) and laid out
                 as a ``data.document.ShardDocument`` (unspeakable or failed spans stay text)
  schedule.py    many documents at once over the TTS backend and the transcriber, results in input order
  shards.py      documents -> webdataset tar shards (through ``data.document``), manifests, run arguments
  plan.py        input files -> work units (file, chunk of lines) -> (rank, shard index), duplicate ids
  worker.py      one work unit -> one shard + its completion manifest, in a fresh process
  pipeline.py    schedules units over worker processes, resumes, shows progress, writes stats
  config.py      the run's configuration = the command's flags; stats.py its counters; preload.py what
                 workers start with
  cli.py         the command line (``inserter synth``)
  filter.py      ``inserter synth-filter`` (filter_cli.py): the round-trip check over finished shards
"""
