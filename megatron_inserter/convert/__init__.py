"""Checkpoint conversion between Hugging Face and megatron-inserter (``inserter convert``).

  cli.py            command line (``main(argv)``; flags as dataclasses)
  hf_to_mcore.py    Qwen2 / Llama LLMs, Qwen2-Audio, LLM + Whisper composition -> dist checkpoint
  mcore_to_hf.py    dist checkpoint -> Qwen2-Audio, or the LLM alone as Qwen2 / Llama
  hf_llm.py         LLM configs and tensor names (GPTModel <-> Qwen2 / Llama)
  hf_audio.py       Whisper / Qwen2-Audio encoder and projector (SpeechEncoder / SpeechAdapter)
  qkv.py            fused QKV layout
  hf_io.py          lazy safetensors reading, sharded safetensors writing
  mcore_io.py       meta-device models, filling and reading sharded state dicts
  mcore_checkpoint.py  the trainer's checkpoint layout (tracker, iter_0000000, common state)
  builders.py       the models conversion builds (as training builds them)
  layout.py         output directories (staged, renamed into place)
  errors.py         ``ConversionError``: input that cannot be converted, named, before anything is written

The model a checkpoint holds is read from and written to ``model_config.json`` by ``models/config_file.py``.
"""
