"""The text form of a ``Plan``: one column per pipeline stage, then FLOPs and time."""

from __future__ import annotations

from megatron_inserter.training.memory_model import GIB


def _num(x: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} "


def _duration(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.2f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} hours"
    return f"{seconds:.3g} s"


def format_report(plan) -> str:
    lay, hw, stages = plan.layout, plan.hardware, plan.stages
    nodes = f" ({hw.gpus // hw.gpus_per_node} nodes x {hw.gpus_per_node})" if hw.gpus_per_node else ""
    kernels = "Transformer Engine kernels" if hw.kernels == "te" else "megatron-core local kernels"
    title = (f"inserter plan: {plan.model} ({plan.model_type}), {hw.gpus} x {hw.name}{nodes}, "
             f"{'bf16' if lay.bf16 else 'fp32'}, {kernels}")
    lines = [title]
    extras = [x for x, on in (("sequence parallel", lay.sequence_parallel),
                              ("distributed optimizer", lay.distributed_optimizer),
                              (f"{lay.chunks} virtual stages per rank (interleaved)", lay.chunks > 1),
                              (f"recompute {lay.recompute}", lay.recompute != "none")) if on]
    if plan.fp8:
        lines.append("FP8 GEMMs are planned as bf16 (their inputs are kept smaller, their weight copies add)")
    lines.append(f"layout: TP {lay.tp} x PP {lay.pp} x CP {lay.cp} x DP {lay.dp}"
                 + (f"; {', '.join(extras)}" if extras else ""))
    lines.append(f"batch: global {plan.global_batch_size} = micro-batch {lay.micro_batch_size} x "
                 f"{lay.num_microbatches} micro-batches x DP {lay.dp}; {lay.seq_length} positions per sample")
    if plan.model_type == "inserter":
        c = plan.clips
        lines.append(f"speech: {c.describe()}; {c.clips_per_sample(lay.seq_length):.1f} clips per sample, "
                     f"encoder input {plan.input_mode}")
    lines.append("")

    head = "per GPU, GiB"
    width = 44
    cols = [f"stage {s.rank}" for s in stages]
    lines.append(f"{head:<{width}}" + "".join(f"{c:>12}" for c in cols))

    def row(label: str, values, fmt="{:.2f}") -> None:
        lines.append(f"{label:<{width}}" + "".join(f"{v:>12}" if isinstance(v, str) else f"{fmt.format(v):>12}"
                                                    for v in values))

    dt = "bf16" if lay.bf16 else "fp32"
    do = "distributed" if lay.distributed_optimizer else "replicated"
    row("parameters (millions)", [s.params / 1e6 for s in stages], "{:.1f}")
    row(f"weights ({dt})", [s.weights / GIB for s in stages])
    row("gradients (fp32)", [s.grads / GIB for s in stages])
    row(f"optimizer state ({do})", [s.optimizer / GIB for s in stages])
    row(f"  {'without' if lay.distributed_optimizer else 'with'} the distributed optimizer",
        [s.optimizer_other / GIB for s in stages])
    row(f"activations per micro-batch (recompute {lay.recompute})",
        [s.activations_per_microbatch / GIB for s in stages])
    row("  with full recompute of the LLM layers", [s.activations_full_recompute / GIB for s in stages])
    row("micro-batches in flight at the peak", ["+".join(map(str, s.in_flight)) for s in stages])
    row("LLM activations in flight", [s.llm_activations / GIB for s in stages])
    if plan.model_type == "inserter":
        row("encoder + adapter activations", [s.encoder_activations / GIB for s in stages])
        row("audio and log-mel of a micro-batch", [s.audio / GIB for s in stages])
    row("logits and loss", [s.logits / GIB for s in stages])
    row("CUDA context, NCCL, allocator slack", [s.runtime / GIB for s in stages])
    row(f"total (of {hw.memory_gib:g} GiB)", [s.total / GIB for s in stages])
    row("fits", ["yes" if s.total <= hw.memory_gib * GIB else "NO" for s in stages])
    lines.append("")

    llm, enc = plan.flops["llm"], plan.flops["encoder"]
    ratio = f" (encoder/LLM {enc / llm:.2f})" if plan.model_type == "inserter" and llm else ""
    lines.append(f"model FLOPs per step: LLM {_num(llm)}FLOP, encoder {_num(enc)}FLOP{ratio}")
    tokens = plan.tokens_per_second
    lines.append(f"at {100 * hw.mfu:.0f}% MFU of {hw.peak_tflops:g} TFLOP/s per GPU: {plan.seconds_per_step:.3g} s "
                 f"per step, {tokens:,.0f} tokens/s ({tokens / hw.gpus:,.0f} per GPU)"
                 + (f", pipeline bubble {100 * plan.bubble:.1f}% of the step" if lay.pp > 1 else ""))
    if plan.train_iters is not None:
        lines.append(f"--train-iters {plan.train_iters}: {_duration(plan.train_iters * plan.seconds_per_step)}")
    lines.append("fits: " + ("yes" if plan.fits else "NO: " + plan.overflow_message()))
    return "\n".join(lines)
