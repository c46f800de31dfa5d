"""Evaluation: ``inserter eval`` (entry point :func:`megatron_inserter.eval.cli.main`).

* ``responder``: the ``Responder`` protocol every evaluation asks for text, and ``EvalRequest``.
* ``speechinstructbench``: SpeechInstructBench (closed-ended IFEval checks, open-ended and adjustment
  judged by an LLM).
* ``asr`` (+ ``text_norm``): WER / CER; ``audio_qa``: instruction + audio -> label accuracy;
  ``compare``: result files side by side.
* ``judge``: HTTP (OpenAI-compatible) and local judges with retries; ``generate``, ``records``,
  ``parallel``: resumable, data-parallel generation and atomic outputs.
"""
