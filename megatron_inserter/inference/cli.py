"""``inserter generate``: answer one speech+text prompt (or a jsonl of them) from a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys

from megatron_inserter.inference.prompt import TEMPLATES


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="inserter generate", description=__doc__)
    p.add_argument("--load", required=True, help="checkpoint directory (training --save)")
    p.add_argument("--audio", help="audio file (any rate; resampled to 16 kHz mono)")
    p.add_argument("--prompt", default="", help="text placed after the audio")
    p.add_argument("--system-prompt", default=None)
    p.add_argument("--input-jsonl", help="rows with 'audio' and/or 'prompt'; answers go to --output-jsonl")
    p.add_argument("--output-jsonl")
    p.add_argument("--prompt-template", choices=TEMPLATES, default="plain")
    p.add_argument("--tokenizer-model", help="override the tokenizer path stored in the checkpoint")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--micro-batch-size", type=int, default=8)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.input_jsonl and not (args.audio or args.prompt):
        print("inserter generate: give --audio and/or --prompt, or --input-jsonl", file=sys.stderr)
        return 2
    if args.input_jsonl and not args.output_jsonl:
        print("inserter generate: --input-jsonl needs --output-jsonl", file=sys.stderr)
        return 2
    from megatron_inserter.inference.requests import EvalRequest, SamplingParams
    from megatron_inserter.inference.responder import build_responder

    responder = build_responder(args.load, template=args.prompt_template, batch_size=args.micro_batch_size,
                                tokenizer_model=args.tokenizer_model)
    sampling = SamplingParams(temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
                              max_new_tokens=args.max_new_tokens, seed=args.seed)
    if not args.input_jsonl:
        req = EvalRequest(text_prompt=args.prompt, audio_path=args.audio, system_prompt=args.system_prompt,
                          sampling=sampling)
        print(responder.respond([req])[0])
        return 0
    with open(args.input_jsonl, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    reqs = [EvalRequest(text_prompt=r.get("prompt", ""), audio_path=r.get("audio"),
                        system_prompt=r.get("system", args.system_prompt), sampling=sampling) for r in rows]
    answers = responder.respond(reqs)
    tmp = args.output_jsonl + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for row, answer in zip(rows, answers):
            f.write(json.dumps({**row, "response": answer}, ensure_ascii=False) + "\n")
    import os

    os.replace(tmp, args.output_jsonl)
    return 0
