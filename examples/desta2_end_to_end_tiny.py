"""DeSTA2 on the tiny preset, CPU, end to end: demo checkpoint -> seeds -> the backbone's own answers ->
adapter-only training -> attribute evaluation of the base and the aligned checkpoint.

    python examples/desta2_end_to_end_tiny.py --workdir runs/desta_e2e [--train-iters 40]
    # independent steps side by side, then the summary:
    python examples/desta2_end_to_end_tiny.py --workdir W --only desta_answer &
    python examples/desta2_end_to_end_tiny.py --workdir W --only eval_base,eval_base_sampled &
    wait; python examples/desta2_end_to_end_tiny.py --workdir W

Steps (each skipped when its output exists, so a rerun resumes):

 1. ``inserter demo`` (stage one: synthesis, tokenizer, 300 pre-training steps) unless WORKDIR/demo has
    a checkpoint.
 2. ``inserter desta build`` on the demo's shards -> desta/seeds.jsonl.
 3. ``inserter desta answer --load demo/train``: the tiny backbone describes each seed (sampled: greedy
    decoding of a model this small tends to answer with whitespace) -> desta/conversations.jsonl.
 4. ``inserter preprocess --format conversation`` (chatml) -> data/desta.
 5. ``inserter train`` with examples/desta2_adapter_tiny.yaml from the demo checkpoint: ``--finetune
    --freeze-encoder --freeze-llm``, only the adapter trains.
 6. Held-out clips: ``inserter synth`` of the demo corpus with another seed (other spans and voices) and
    coloured noise in half of the spans, then ``inserter desta build`` on them.
 7. ``inserter eval attributes`` on the held-out seeds for the demo checkpoint and the aligned one, decoded
    greedily and sampled.
 8. The two checkpoints compared tensor by tensor (encoder, adapter, LLM).

Everything lands in WORKDIR/summary.json and WORKDIR/summary.md: counts at each step, the wall time of each
step, the training loss, accuracy per task next to chance for both checkpoints, and which weights moved.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TASKS = "gender,accent,language,pitch,speed,volume,noise"
# Attribute answers decoded greedily, and sampled as `desta answer` samples (a tiny model's greedy answer is
# often empty).
DECODING = {"greedy": [], "sampled": ["--temperature", "0.8", "--top-p", "0.95", "--seed", "1234"]}


def inserter(*args: str) -> list[str]:
    return [sys.executable, "-m", "megatron_inserter.cli", *args]


class Steps:
    """Runs each step once (its output marks it done); wall times are kept in WORKDIR/logs/times.json."""

    def __init__(self, work: Path, only: set[str] | None = None):
        self.work, self.logs, self.only = work, work / "logs", only
        self.logs.mkdir(parents=True, exist_ok=True)
        self.times_file = self.logs / "times.json"
        self.times = json.loads(self.times_file.read_text()) if self.times_file.exists() else {}

    def record(self, name: str, seconds: float) -> None:
        current = json.loads(self.times_file.read_text()) if self.times_file.exists() else {}
        current[name] = self.times[name] = round(seconds, 1)
        self.times_file.write_text(json.dumps(current, indent=1) + "\n")

    def run(self, name: str, cmd: list[str], done: Path | None = None) -> None:
        if self.only is not None and name not in self.only:
            return
        if done is not None and done.exists():
            print(f"[e2e] {name}: done earlier ({done})", flush=True)
            return
        print(f"[e2e] {name}: {' '.join(cmd[2:] if cmd[0] == sys.executable else cmd)}", flush=True)
        start = time.monotonic()
        with open(self.logs / f"{name}.log", "w") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(), check=False)
        self.record(name, time.monotonic() - start)
        if proc.returncode != 0:
            tail = (self.logs / f"{name}.log").read_text(errors="replace").splitlines()[-15:]
            sys.exit(f"[e2e] {name} failed (exit {proc.returncode}); last lines of {self.logs / name}.log:\n"
                     + "\n".join(tail))
        print(f"[e2e] {name}: {self.times[name]} s", flush=True)

    def last_line(self, name: str, containing: str) -> str | None:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return None
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if containing in ln]
        return lines[-1] if lines else None


def _env() -> dict:
    """Offline, and a free rendezvous port per step (steps may run side by side, see --only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def seed_counts(path: Path) -> dict:
    rows = _jsonl(path)
    seeds = [r for r in rows if not r.get("header")]
    counts: dict = {"seeds": len(seeds)}
    for key in ("gender", "accent", "pitch", "speed", "volume", "noise"):
        values: dict = {}
        for seed in seeds:
            value = seed.get("attributes", {}).get(key)
            if value is not None:
                label = "SNR" if key == "noise" and value != "Clean" else str(value)  # noise: Clean or SNR N dB
                values[label] = values.get(label, 0) + 1
        counts[key] = values
    return counts


def checkpoint_tensors(directory: Path) -> dict:
    """The model tensors (no optimizer state) of a dist checkpoint, read without a process group."""
    import torch
    from torch.distributed.checkpoint import FileSystemReader, load
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    iteration = int((directory / "latest_checkpointed_iteration.txt").read_text().strip())
    folder = directory / f"iter_{iteration:07d}"
    metadata = FileSystemReader(str(folder)).read_metadata()
    state = {k: torch.empty(m.size, dtype=m.properties.dtype) for k, m in metadata.state_dict_metadata.items()
             if isinstance(m, TensorStorageMetadata) and not k.startswith("optimizer.")}
    load(state, storage_reader=FileSystemReader(str(folder)), no_dist=True)
    return state


def compare_checkpoints(base: Path, tuned: Path) -> dict:
    import torch

    before, after = checkpoint_tensors(base), checkpoint_tensors(tuned)
    parts: dict = {}
    for key in sorted(set(before) | set(after)):
        part = parts.setdefault(key.split(".")[0], {"tensors": 0, "bitwise_equal": 0, "max_abs_diff": 0.0,
                                                    "missing": 0})
        part["tensors"] += 1
        if key not in before or key not in after or before[key].shape != after[key].shape:
            part["missing"] += 1
            continue
        equal = torch.equal(before[key], after[key])
        part["bitwise_equal"] += equal
        if not equal:
            diff = (before[key].double() - after[key].double()).abs().max().item()
            part["max_abs_diff"] = max(part["max_abs_diff"], diff)
    return parts


def losses(metrics: Path) -> dict:
    train = [r for r in _jsonl(metrics) if r.get("kind") == "train" and "lm loss" in r]
    valid = [r for r in _jsonl(metrics) if r.get("kind") in ("valid", "validation") and "lm loss" in r]
    out = {"logged_steps": len(train)}
    if train:
        window = max(1, len(train) // 4)  # single steps of a small batch are noisy: means of the first/last quarter
        out.update(first=(train[0]["iteration"], train[0]["lm loss"]), last=(train[-1]["iteration"], train[-1]["lm loss"]),
                   first_quarter_mean=sum(r["lm loss"] for r in train[:window]) / window,
                   last_quarter_mean=sum(r["lm loss"] for r in train[-window:]) / window)
    if valid:
        out.update(valid_first=(valid[0]["iteration"], valid[0]["lm loss"]),
                   valid_last=(valid[-1]["iteration"], valid[-1]["lm loss"]))
    return out


def attribute_table(folder: Path) -> dict:
    results = json.loads((folder / "attributes_results.json").read_text())
    return {task: {k: e[k] for k in ("accuracy", "chance", "majority", "scored", "correct", "unmatched",
                                     "unanswered")}
            for task, e in results["details"]["labels"].items()}


def _acc(entry: dict) -> str:
    return "–" if entry.get("accuracy") is None else f"{entry['accuracy']:.1f}"


def markdown(summary: dict) -> str:
    lines = ["# DeSTA2 tiny end to end (CPU)", "", "| step | wall time (s) |", "|---|---|"]
    lines += [f"| {name} | {seconds} |" for name, seconds in summary["wall_s"].items()]
    lines += ["", "```", json.dumps(summary["counts"], indent=1, ensure_ascii=False), "```"]
    for decoding in DECODING:
        suffix = "" if decoding == "greedy" else f"_{decoding}"
        base, aligned = summary["attributes"]["base" + suffix], summary["attributes"]["aligned" + suffix]
        lines += ["", f"Decoding: {decoding}", "",
                  ("| task | chance (%) | majority (%) | base acc (%) | base unmatched | aligned acc (%) | "
                   "aligned unmatched |"), "|---|---|---|---|---|---|---|"]
        for task in sorted(set(base) | set(aligned)):
            b, a = base.get(task, {}), aligned.get(task, {})
            ref = b or a
            lines.append(f"| {task} | {ref['chance']:.1f} | {ref['majority']:.1f} | {_acc(b)} | "
                         f"{b.get('unmatched', '–')}/{b.get('scored', '–')} | {_acc(a)} | "
                         f"{a.get('unmatched', '–')}/{a.get('scored', '–')} |")
    lines += ["", "| part | tensors | bitwise equal | max abs diff |", "|---|---|---|---|"]
    for part, e in summary["weights"].items():
        lines.append(f"| {part} | {e['tensors']} | {e['bitwise_equal']} | {e['max_abs_diff']:.3g} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="runs/desta_e2e")
    parser.add_argument("--demo", default=None, help="an existing `inserter demo` work directory "
                        "(default: WORKDIR/demo, run when it has no checkpoint)")
    parser.add_argument("--train-iters", type=int, default=40, help="adapter-only training steps")
    parser.add_argument("--demo-train-iters", type=int, default=None, help="pre-training steps of the demo "
                        "(default: the demo's 300)")
    parser.add_argument("--answer-limit", type=int, default=0, help="seeds answered by the backbone (0: all)")
    parser.add_argument("--answer-tokens", type=int, default=48, help="longest answer of `desta answer`")
    parser.add_argument("--batch-size", type=int, default=32, help="requests per generation batch")
    parser.add_argument("--only", default=None, help="comma-separated steps to run now (the others are left "
                        "for another call; the summary is written when every step is done)")
    parser.add_argument("--heldout-limit", type=int, default=240, help="held-out speech segments measured")
    parser.add_argument("--max-per-task", type=int, default=40, help="evaluation rows per attribute task")
    args = parser.parse_args(argv)

    work = Path(args.workdir).resolve()
    demo = Path(args.demo).resolve() if args.demo else work / "demo"
    only = set(args.only.split(",")) if args.only else None
    steps = Steps(work, only)
    batch = ["--batch-size", str(args.batch_size), "--responder-arg", f"batch_size={args.batch_size}"]
    demo_iters = ["--train-iters", str(args.demo_train_iters)] if args.demo_train_iters else []
    tok = ["--tokenizer-type", "sentencepiece", "--tokenizer-model", str(demo / "tokenizer" / "demo.model")]
    desta, held, evals = work / "desta", work / "heldout", work / "eval"

    steps.run("demo", inserter("demo", "--workdir", str(demo), *demo_iters), demo / "train" / "latest_checkpointed_iteration.txt")
    steps.run("desta_build", inserter("desta", "build", "--shards", str(demo / "shards"), "--output",
                                      str(desta / "seeds.jsonl"), "--workers", "2", "--no-progress"),
              desta / "seeds.jsonl")
    steps.run("desta_answer", inserter("desta", "answer", "--seeds", str(desta / "seeds.jsonl"), "--output",
                                       str(desta / "conversations.jsonl"), "--load", str(demo / "train"),
                                       "--temperature", "0.8", "--top-p", "0.95", "--seed", "1234",
                                       "--max-new-tokens", str(args.answer_tokens), "--limit",
                                       str(args.answer_limit), *batch, "--no-progress"),
              desta / "conversations.jsonl")
    steps.run("preprocess", inserter("preprocess", "--format", "conversation", "--chat-template", "chatml",
                                     "--seq-length", "512", "--input", str(desta / "conversations.jsonl"),
                                     "--output-prefix", str(work / "data" / "desta"), *tok),
              work / "data" / "desta.idx")
    steps.run("train_adapter", inserter("train", "--config", str(HERE / "desta2_adapter_tiny.yaml"), *tok,
                                        "--data-path", str(work / "data" / "desta"), "--load", str(demo / "train"),
                                        "--finetune", "--freeze-encoder", "--freeze-llm",
                                        "--train-iters", str(args.train_iters),
                                        "--lr-warmup-iters", str(max(1, args.train_iters // 10)),
                                        "--eval-interval", str(max(1, args.train_iters // 2)),
                                        "--log-interval", "1", "--save", str(desta / "train")),
              desta / "train" / "latest_checkpointed_iteration.txt")
    steps.run("heldout_synth", inserter("synth", "--input", str(demo / "corpus" / "corpus.jsonl"), "--output-dir",
                                        str(held / "shards"), "--seed", "4321", "--noise-snr-db", "5,20",
                                        "--noise-share", "0.5", "--shard-size", "32", "--workers", "2",
                                        "--no-progress"),
              held / "shards" / "stats.json")
    steps.run("heldout_build", inserter("desta", "build", "--shards", str(held / "shards"), "--output",
                                        str(held / "seeds.jsonl"), "--limit", str(args.heldout_limit),
                                        "--workers", "2", "--no-progress"),
              held / "seeds.jsonl")
    for name, load in (("base", demo / "train"), ("aligned", desta / "train")):
        for decoding, flags in DECODING.items():
            run = name if decoding == "greedy" else f"{name}_{decoding}"
            steps.run(f"eval_{run}", inserter("eval", "attributes", "--seeds", str(held / "seeds.jsonl"), "--load",
                                              str(load), "--output", str(evals / run), "--name", run, "--tasks",
                                              TASKS, "--max-per-task", str(args.max_per_task), "--max-new-tokens",
                                              "16", *flags, *batch, "--no-progress"),
                      evals / run / "attributes_results.json")

    if only is not None:
        return 0
    start = time.monotonic()
    weights = compare_checkpoints(demo / "train", desta / "train")
    steps.record("compare_weights", time.monotonic() - start)
    conversations = _jsonl(desta / "conversations.jsonl")
    answers = [c["messages"][-1]["content"] for c in conversations]
    summary = {
        "wall_s": steps.times,
        "counts": {
            "train_seeds": seed_counts(desta / "seeds.jsonl"),
            "answer": steps.last_line("desta_answer", "conversations in"),
            "conversations": len(conversations),
            "answer_words_mean": round(sum(len(a.split()) for a in answers) / max(1, len(answers)), 1),
            "answer_examples": answers[:3],
            "preprocess": steps.last_line("preprocess", "\"assistant_tokens\""),
            "training_loss": losses(desta / "train" / "logs" / "metrics.jsonl"),
            "heldout_seeds": seed_counts(held / "seeds.jsonl"),
        },
        "attributes": {run: attribute_table(evals / run) for run in ("base", "aligned", "base_sampled",
                                                                     "aligned_sampled")},
        "weights": weights,
    }
    (work / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (work / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
