"""Imported once by the worker fork server, so every worker starts with these ready (jieba's dictionary
loaded, the synthesis modules imported) but with no TTS state: the server itself never synthesizes."""

from megatron_inserter.data.synth import interleave, worker  # noqa: F401
from megatron_inserter.data.synth.spans import warm_up_segmenter
from megatron_inserter.data.synth.tts import espeak  # noqa: F401

warm_up_segmenter()
