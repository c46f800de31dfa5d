"""InserterModel checks run in one spawned process by test_inserter.py."""

from __future__ import annotations

import torch

from megatron_inserter.runtime import ParallelConfig, initialize_parallel
from tests.models import inserter_parallel as ip


def _placeholder_runs(tokens: torch.Tensor) -> list[tuple[int, int, int]]:
    """(row, start, length) of each placeholder run, in row-major order."""
    runs = []
    for b, row in enumerate(tokens.tolist()):
        s = 0
        while s < len(row):
            if row[s] == ip.PLACEHOLDER:
                e = s
                while e < len(row) and row[e] == ip.PLACEHOLDER:
                    e += 1
                runs.append((b, s, e - s))
                s = e
            else:
                s += 1
    return runs


def placement():
    """Each placeholder run receives exactly its own clip's frames; other positions keep the text embedding."""
    from megatron_inserter.models.builder import build_model_chunks

    [model] = build_model_chunks(ip.small_config())
    model.eval()
    batch = ip.collate(ip.global_batches(1, seed=21)[0][:ip.SPEECH_SAMPLES])
    tokens, audio, lens = batch["tokens"], batch["audio"], batch["audio_lengths"]
    with torch.no_grad():
        text = model.language_model.embedding(input_ids=tokens, position_ids=batch["position_ids"])
        spliced = model.splice_audio(text, tokens, audio, lens)
        runs = _placeholder_runs(tokens)
        diffs = []
        for j, (b, start, n) in enumerate(runs):
            direct = model.encode_audio(audio[j:j + 1, :int(lens[j])], lens[j:j + 1])  # this clip alone
            assert direct.shape[0] == n, (j, direct.shape, n)
            diffs.append(float((spliced[start:start + n, b] - direct).abs().max()))
        text_kept = bool(torch.equal(spliced[(tokens != ip.PLACEHOLDER).T], text[(tokens != ip.PLACEHOLDER).T]))
        changed = float((spliced - text).abs().max())
        broken = tokens.clone()
        b, start, _ = runs[0]
        broken[b, start] = 5  # one placeholder fewer than frames
        try:
            model.splice_audio(text, broken, audio, lens)
            error = None
        except ValueError as e:
            error = str(e)
    return {"num_clips": int(audio.shape[0]), "num_runs": len(runs), "diffs": diffs, "text_kept": text_kept,
            "changed": changed, "error": error, "placeholders": int((tokens == ip.PLACEHOLDER).sum())}


def freezing(ckpt_dir):
    """Two optimizer steps with some parts frozen: frozen parameters stay bitwise equal, the rest move."""
    from megatron.core.distributed import DistributedDataParallelConfig
    from megatron.core.optimizer import OptimizerConfig

    from megatron_inserter.models.builder import build_model_chunks
    from megatron_inserter.training.engine import (
        build_optimizer,
        configure_model_config,
        train_step,
        wrap_ddp,
    )

    out = {}
    for name, flags in {"encoder+llm": dict(freeze_encoder=True, freeze_llm=True),
                        "adapter": dict(freeze_adapter=True)}.items():
        initialize_parallel(ParallelConfig(seed=1234))
        chunks = build_model_chunks(ip.small_config(**flags))
        ip.load_checkpoint(chunks, ckpt_dir)
        before = {n: p.detach().clone() for n, p in chunks[0].named_parameters()}
        chunks = wrap_ddp(chunks, DistributedDataParallelConfig(grad_reduce_in_fp32=True))
        configure_model_config(chunks, ddp=True)
        optimizer = build_optimizer(chunks, OptimizerConfig(optimizer="adam", lr=1e-2, weight_decay=0.01,
                                                            bf16=False, fp16=False))
        for samples in ip.global_batches(2):
            mbs = ip.microbatches_for_rank(samples, 0, 1)
            train_step(ip.forward_step, iter(mbs), chunks, optimizer, None, len(mbs), ip.SEQ, ip.MBS,
                       increment=ip.GBS)
        after = dict(chunks[0].module.named_parameters())
        report = {}
        for part in ("encoder", "adapter", "language_model"):
            names = [n for n in before if n.startswith(part + ".")]
            report[part] = {
                "frozen": all(not after[n].requires_grad for n in names),
                "unchanged": [n for n in names if torch.equal(before[n], after[n].detach())],
                "count": len(names),
            }
        out[name] = report
    return out


def model_suite(rank, world_size, ckpt_dir):
    initialize_parallel(ParallelConfig(seed=1234))
    from megatron_inserter.models.builder import build_model_chunks

    ip.save_checkpoint(build_model_chunks(ip.small_config()), ckpt_dir)
    return {"placement": placement(), "freezing": freezing(ckpt_dir)}
