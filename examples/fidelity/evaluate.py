"""Evaluate the checkpoints of one or more runs in one process (the model stack is initialized once).

    python examples/fidelity/evaluate.py --save-dir RUN/arms/a RUN/arms/b --output RUN/eval/a.json RUN/eval/b.json \
        --heldout-shards RUN/shards/heldout --asr-manifest RUN/eval/asr.jsonl --probe RUN/eval/probe.jsonl

Every checkpoint of ``--save-dir`` (``iter_XXXXXXX``) gets the held-out modality gap (``gap.py``); the last
one also gets the ASR word error rate (``inserter eval asr``'s task with the pre-training layout: the clip,
then its transcript) and the spoken and written instruction probe (``probe.py``). Writes one json file.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gap
import probe


def heldout_documents(shards_dir: str) -> list:
    from collections import Counter

    from megatron_inserter.data.indexed.sources import read_shard

    skipped: Counter = Counter()
    docs = [doc for path in sorted(glob.glob(os.path.join(shards_dir, "*.tar"))) for doc in read_shard(path, skipped)]
    if not docs:
        raise SystemExit(f"evaluate: no documents in {shards_dir}")
    return docs


def checkpoints(save_dir: str) -> list[tuple[int, str]]:
    found = []
    for path in glob.glob(os.path.join(save_dir, "iter_*")):
        name = os.path.basename(path)
        if name[5:].isdigit() and os.path.isdir(path):
            found.append((int(name[5:]), path))
    return sorted(found)


def asr_wer(loaded, manifest: str, out_dir: str, batch_size: int) -> float:
    from pathlib import Path

    from megatron_inserter.eval.asr import AsrConfig, run_asr
    from megatron_inserter.inference.model_responder import ModelResponder
    from megatron_inserter.inference.requests import SamplingParams

    config = AsrConfig(output_dir=Path(out_dir), name="asr", language="en", prompts={"en": "", "zh": ""},
                       sampling=SamplingParams(max_new_tokens=48), nemo_cross_check=False, progress=False,
                       batch_size=batch_size)
    run_asr(Path(manifest), ModelResponder(loaded, template="plain", batch_size=batch_size), config)
    with open(os.path.join(out_dir, "asr_results.json"), encoding="utf-8") as f:
        return float(json.load(f)["metrics"]["en/wer"])


def run_probe(loaded, probe_path: str, batch_size: int) -> dict:
    from megatron_inserter.inference.generate import GenerationConfig, generate
    from megatron_inserter.inference.prompt import EncodedPrompt, audio_tokens, stop_ids

    tok, spec = loaded.tokenizer, loaded.config.frame_spec()
    import numpy as np
    import soundfile as sf

    with open(probe_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    bos = [tok.bos_id] if tok.bos_id is not None else []
    head, tail = bos + list(tok.tokenize(probe.PREFIX)), list(tok.tokenize(probe.SUFFIX))
    base = os.path.dirname(os.path.abspath(probe_path))
    prompts = {"written": [], "spoken": []}
    for row in rows:
        prompts["written"].append(EncodedPrompt(head + list(tok.tokenize(" " + row["instruction"])) + tail, []))
        audio, rate = sf.read(os.path.join(base, row["audio_filepath"]), dtype="float32")
        assert rate == 16000, f"{row['audio_filepath']}: {rate} Hz"
        speech = audio_tokens(tok, np.asarray(audio, dtype=np.float32), spec)
        prompts["spoken"].append(EncodedPrompt(head + speech.ids + tail, speech.clips))
    cfg = GenerationConfig(max_new_tokens=12, temperature=0.0)
    result: dict = {"items": len(rows), "answers": []}
    for mode, batch in prompts.items():
        outs = []
        for start in range(0, len(batch), batch_size):
            outs += generate(loaded.model, batch[start:start + batch_size], cfg, stop_ids(tok, "plain"),
                             pad_id=tok.pad_id)
        texts = [tok.detokenize(ids) for ids in outs]
        right = [probe.is_right(t, row["answer"]) for t, row in zip(texts, rows)]
        result[f"{mode}_accuracy"] = sum(right) / len(rows) if rows else float("nan")
        for row, t, ok in zip(rows, texts, right):
            result["answers"].append({"id": row["id"], "mode": mode, "expected": row["answer"], "generated": t,
                                      "right": ok})
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save-dir", required=True, nargs="+")
    p.add_argument("--heldout-shards", required=True)
    p.add_argument("--asr-manifest", required=True)
    p.add_argument("--probe", required=True)
    p.add_argument("--output", required=True, nargs="+", help="one json file per --save-dir")
    p.add_argument("--max-targets", type=int, default=32)
    p.add_argument("--max-pairs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=8)
    a = p.parse_args()

    if len(a.save_dir) != len(a.output):
        raise SystemExit(f"evaluate: {len(a.save_dir)} --save-dir but {len(a.output)} --output")
    docs = heldout_documents(a.heldout_shards)
    state = {"initialized": False, "pairs": None}
    for save_dir, output in zip(a.save_dir, a.output):
        evaluate_run(save_dir, output, docs, a, state)
    return 0


def evaluate_run(save_dir: str, output: str, docs: list, a, state: dict) -> None:
    from megatron_inserter.files import write_json_atomic
    from megatron_inserter.inference.loading import load_for_inference

    found = checkpoints(save_dir)
    if not found:
        raise SystemExit(f"evaluate: no iter_XXXXXXX checkpoint in {save_dir}")
    report: dict = {"save_dir": save_dir, "gap_by_step": []}
    for n, (iteration, path) in enumerate(found):
        loaded = load_for_inference(path, initialize=not state["initialized"])
        state["initialized"] = True
        if state["pairs"] is None:  # the same pairs for every run (one tokenizer)
            pairs = gap.pairs_from_documents(docs, loaded.tokenizer, loaded.config.frame_spec(), a.max_targets)
            state["pairs"] = pairs[: a.max_pairs] if a.max_pairs else pairs
        pairs = state["pairs"]
        report["heldout"] = {"documents": len(docs), "pairs": len(pairs)}
        g = gap.modality_gap(loaded.model, pairs, loaded.tokenizer.pad_id, a.batch_size)
        report["gap_by_step"].append({"iteration": iteration, "gap": g.gap, "spoken_loss": g.spoken_loss,
                                      "written_loss": g.written_loss, "targets": g.targets})
        print(f"evaluate: {save_dir} iteration {iteration}: gap {g.gap:.4f} (spoken {g.spoken_loss:.4f}, "
              f"written {g.written_loss:.4f}, {g.targets} targets)", file=sys.stderr, flush=True)
        if n == len(found) - 1:
            report["final"] = report["gap_by_step"][-1]
            asr_dir = os.path.join(os.path.dirname(output), os.path.basename(output).rsplit(".", 1)[0] + "_asr")
            shutil.rmtree(asr_dir, ignore_errors=True)  # answers of an earlier checkpoint must not be resumed
            report["asr_wer"] = asr_wer(loaded, a.asr_manifest, asr_dir, a.batch_size)
            report["probe"] = run_probe(loaded, a.probe, a.batch_size)
    write_json_atomic(output, report)


if __name__ == "__main__":
    sys.exit(main())
