"""``inserter synth``: turn a text corpus into interleaved speech-text shards the InSerter way.

One document travels through these modules in order:

  ../text_inputs.py  jsonl/.gz/.zst files -> checked, numbered raw lines (the reader shared with preprocess)
  corpus.py      a line -> ``Document``: id, clean text (no control characters), language; or a skip reason
  language.py    ``lang`` field or a CJK-ratio guess -> "en" / "zh"; the language each span is spoken in
  spans.py       words and sentences -> the spans that are read aloud (deterministic per seed + id)
  speakers.py    the synthetic speaker pools a span's voice is drawn from (``voices.py``: the voice pools
                 of TTS servers, ``--tts-voices``)
  tts/           text -> 16 kHz mono float32 audio (espeak-ng in-process, NeMo FastPitch + HiFi-GAN, or
                 OpenAI-compatible TTS servers through ``servers.py``, a pool of interchangeable servers)
  noise.py       generated coloured noise mixed into a share of spans at a chosen SNR
  asr/           round-trip ASR of a spoken span: its WER / CER against the transcript (``--max-span-wer``)
  interleave.py  spans + audio -> a ``data.document.ShardDocument`` (unspeakable or failed spans stay text)
  schedule.py    many documents in flight over one backend, results handed back in input order
  shards.py      documents -> webdataset tar shards (through ``data.document``), manifests, run arguments
  plan.py        input files -> work units (file, chunk of lines) -> (rank, shard index), duplicate ids
  worker.py      one work unit -> one shard + its completion manifest, in a fresh process
  pipeline.py    schedules units over worker processes, resumes, shows progress, writes stats
  config.py      the run's configuration = the command's flags; stats.py its counters; preload.py what
                 workers start with
  cli.py         the command line (``inserter synth``)
"""
