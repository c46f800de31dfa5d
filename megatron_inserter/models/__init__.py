"""The speech-text model. (How many placeholder positions a clip occupies is data/frames.py, shared
with the data pipeline; ``InserterModelConfig.frame_spec()`` describes this model to it.)

  config.py          EncoderConfig, AdapterConfig, LLMConfig, InserterModelConfig (data; ``frame_spec()``)
  config_file.py     model_config.json: the model a checkpoint holds (the one reader and writer)
  presets.py         named presets and ``resolve(name_or_path)`` (a preset name or a model_config.json)
  llm.py             the GPTModel LLM (Qwen2 / Llama shapes)
  specs.py           megatron-core layer specs (TE on CUDA, local otherwise)
  melspec.py         Whisper log-mel on the model's device
  encoder.py         Whisper encoder on megatron-core
  clip_packing.py    where each clip goes when several clips share the encoder (``input_mode="packed"``)
  adapter.py         pooling/stacking + projection to the LLM width
  qformer.py         the Q-Former adapter (DeSTA2): learned queries reading several encoder layers
  inserter.py        InserterModel: encoder + adapter + GPTModel, audio spliced into the embeddings
  documents.py       packed documents kept apart (``--reset-attention-mask`` / ``--reset-position-ids``)
  context_parallel.py  CP slicing
  flops.py           model FLOPs of a training step (MFU, encoder share)
  builder.py         ``build_model_chunks`` / ``model_provider``

Importing this package is light; megatron-core is imported by the modules that need it.
"""
