"""Spoken conversations as training data: jsonl ``messages`` rows -> token sequences whose loss mask covers
the assistant's tokens only.

    messages.py   one row's ``messages`` checked (roles, content parts, audio paths) -> ``Conversation``
    templates.py  chat templates: built-in ``chatml`` (Qwen2) and ``llama3``, or a local Hugging Face
                  tokenizer's own ``chat_template`` (jinja2, sandboxed), each rendered as pieces that say
                  which text belongs to the assistant
    encode.py     a conversation -> token sequences with a mode each (assistant text, context text, speech)
                  and the PCM of its audio parts
    writer.py     ``inserter preprocess --format conversation``: rows of jsonl files -> the indexed datasets
    demo_rows.py  a few conversations from synthesized shards, for the tiny stage-two recipes

The loss mask is stored with the data: every sequence of the ``.idx`` carries megatron-core's mode byte, and
context text (system and user turns, template headers) has a mode of its own (``MODE_CONTEXT``), so the
training samples need no template knowledge.
"""
