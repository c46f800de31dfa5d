"""Generation from prompts that mix speech and text: ``inserter generate``, and the model ``inserter eval``
asks.

In reading order:

  prompt.py           (system, audio, text) -> token ids with one placeholder per audio frame, as training
                      lays speech out, BOS first when the tokenizer has one (``plain`` and ``chatml``)
  loading.py          a checkpoint -> its tokenizer and model (TP = PP = 1), built from its model_config.json
  sampling.py         the next token: greedy, or temperature + top-k + top-p with a seeded generator
  generate.py         batched generation with a key-value cache
  requests.py         what a generation backend is asked: ``EvalRequest``, ``SamplingParams``
  model_responder.py  the model-backed ``Responder`` that evaluation asks (the interface: ``eval.responder``)
  rows.py             the rows of ``inserter generate --input-jsonl``, checked
  cli.py              ``inserter generate``
"""
