"""megatron-inserter: speech-text LLMs pre-trained the InSerter way on megatron-core, aligned the DeSTA2 way.

The packages, in the order a document travels through them:

  data/        text -> spans read aloud -> shards -> indexed datasets -> packed samples and batches
  models/      Whisper-style encoder + adapter + megatron-core GPTModel (``InserterModel``), presets
  runtime/     process start-up: distributed environment, megatron parallel state, seeds, CPU bridges
  training/    ``inserter train`` and ``inserter plan``: flags, batches, losses, the loop, checkpoints
  inference/   prompts that mix speech and text -> generated text (``inserter generate``)
  eval/        SpeechInstructBench, ASR, audio QA and attribute evaluations (``inserter eval``)
  convert/     Hugging Face <-> megatron-inserter checkpoints (``inserter convert``)
  desta/       DeSTA2 alignment data: seed transcripts and the LLM's own answers (``inserter desta``)
  demo/        the whole pipeline on a CPU in minutes (``inserter demo``)

  cli.py       the ``inserter`` command: one module per subcommand, imported only when used
  flags.py     the one flag pattern (dataclass fields -> argparse) and the one error path
  errors.py    ``InserterError`` and its kinds: ``UsageError`` (bad flags), ``DataError`` (bad input)
  files.py     the one atomic write (temporary name with the pid, fsync, rename)
  lifetime.py  helper processes (pool workers, loader workers, checkpoint writers) die with their parent

How one document becomes a loss, file by file: README.md, "How a document becomes a loss", and
tests/test_sample_journey.py, which runs that path and checks every step.
"""
