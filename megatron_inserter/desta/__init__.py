"""DeSTA2 alignment data: ``inserter desta {build,answer}`` (entry point :func:`megatron_inserter.desta.cli.main`).

Reading order:

* ``measure``: what a clip sounds like, from its samples: F0 (YIN), speaking rate, loudness, pauses and SNR.
* ``voices``: gender, accent and language from what the shard recorded about the voice.
* ``seeds``: the seeds file: header with the tercile buckets, DeSTA2 seed transcripts, reading it back.
* ``build``: shards -> wav clips + measurements (resumable) -> the seeds file.
* ``prompts``, ``chat_client``, ``answer``: the LLM answers about each seed (our checkpoint or an
  OpenAI-compatible endpoint) -> conversations for ``inserter preprocess --format conversation``.
* ``cli``: the flags of both commands.

The attribute evaluation that uses seeds files is ``inserter eval attributes`` (``eval.attributes``).
"""
