"""Evaluation: ``inserter eval`` (entry point :func:`megatron_inserter.eval.cli.main`).

Reading order:

* ``cli``: the flags of every task (one dataclass each; the generation flags declared once) and the runs.
* ``task``: the one path of every task: rows -> requests -> answers -> gather -> score -> write;
  a task supplies only how to load its rows, build a request, score and write (``EvalTask``).
* ``responder``: the ``Responder`` protocol every evaluation asks for text, ``EvalRequest``, loading the
  model-backed responder (``inference.model_responder``) and choosing its prompt template.
* ``answers``, ``slices``, ``records``: resumable answer logs, data-parallel slices and the gather,
  JSON-lines input and atomic outputs; ``skips``: rows that cannot be used, with id and reason.
* Tasks: ``asr`` (+ ``text_norm``): WER / CER; ``audio_qa``: instruction + audio -> label accuracy
  (``manifest`` reads both manifests); ``speechinstructbench``: closed-ended IFEval checks, open-ended and
  adjustment judged by an LLM; ``attributes`` (+ ``attribute_rows``): who speaks and how (gender, accent,
  pitch, speed, noise...) asked about held-out clips of a DeSTA seeds file or Dynamic-SUPERB rows.
* ``judge`` (+ ``judge_http``): HTTP (OpenAI-compatible) and local judges with retries, deadlines and
  redaction; ``compare``: result files side by side.
"""
