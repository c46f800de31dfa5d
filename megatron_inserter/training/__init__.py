"""Pre-training on megatron-core: ``inserter train`` and ``inserter plan``.

``inserter train``, in reading order:

  cli.py            the command: torchrun, slurm's srun or one process
  arguments.py      the flags: one dataclass of Megatron-style names, an optional YAML file
  flag_checks.py    checks across flags and the machine; ``load_checks.py``: a ``--load`` checked before
                    any model is built
  setup.py          what a run builds before its first step: process groups, model chunks, optimizer, schedule
  models.py         the model a run trains (InSerter, or the LLM alone): build, forward, FLOPs
  data.py           blended datasets -> this rank's micro-batches, collated with the modality-gap masks
  broadcast.py      a micro-batch sent to the tensor-parallel peers
  losses.py         the loss over text targets and its split: after speech, after text, the control
  engine.py         one optimizer step: mcore DDP, the Megatron optimizer, the pipeline schedules
  trainer.py        the loop: steps, logging, validation, checkpoints
  metrics.py        log lines, TensorBoard, ``metrics.jsonl``, the loss curve; ``run_summary.py`` the
                    headline numbers of a finished run
  checkpointing.py  dist checkpoints published atomically; ``rng_state.py`` every generator for exact
                    resumption; ``safe_load.py`` loading that runs no code from a checkpoint

``inserter plan`` (will a run fit, how long will it take): ``plan_cli.py`` the command, ``plan.py`` the
plan, ``memory_model.py`` bytes per GPU, ``clip_stats.py`` speech per sample, ``flops.py`` peak FLOP/s
and who counts the encoder, ``plan_report.py`` the table.
"""
