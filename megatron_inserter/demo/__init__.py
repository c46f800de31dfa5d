"""``inserter demo``: the whole InSerter pipeline on a CPU, end to end, in a few minutes.

    inserter demo [--workdir runs/demo] [--smoke] [--force]

Stages (each writes ``stages/NAME.done.json`` once its outputs are complete; a re-run skips finished
stages, and an interrupted training resumes from its last checkpoint):

  corpus      the English + Chinese corpus shipped with the package (``assets/demo_corpus.jsonl``)
  synth       spans read aloud by espeak-ng -> interleaved webdataset shards   (``inserter synth``)
  tokenizer   a SentencePiece model with the audio tokens                     (``inserter train-tokenizer``)
  preprocess  indexed datasets: interleaved, its ASR-style view, and text-only (``inserter preprocess``)
  train       InSerter pre-training of the ``tiny`` preset on the blend
              interleaved 0.4 + ASR-style 0.3 + text 0.3                       (``inserter train``)
  generate    greedy text continuation of a spoken prompt, from the checkpoint
  summary     stage timings, throughput, losses and the after-speech / after-text losses at start and end:
              printed and written to ``summary.json``; the loss curve is ``train/logs/loss_curve.png``.

Modules in reading order: ``cli`` (the command), ``stages`` (configuration and stages), ``continuation``
(a spoken prompt from the shards and the model's text continuation of it), ``report`` (the summary).
"""
