"""The demo's configuration and its stages; each stage returns what the summary reports about it."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from importlib import resources

from megatron_inserter.errors import DataError
from megatron_inserter.files import write_json_atomic, write_text_atomic

STAGES = ("corpus", "synth", "tokenizer", "preprocess", "train", "generate")


@dataclass(frozen=True)
class DemoConfig:
    num_docs: int | None = None  # None: the whole corpus
    vocab_size: int = 2000
    seq_length: int = 256
    micro_batch_size: int = 4
    global_batch_size: int = 4
    train_iters: int = 300
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 20
    eval_interval: int = 100
    eval_iters: int = 4
    log_interval: int = 20
    save_interval: int = 100
    synth_workers: int = 2
    max_new_tokens: int = 40
    seed: int = 1234


SMOKE = DemoConfig(num_docs=16, vocab_size=700, seq_length=256, micro_batch_size=2, global_batch_size=4,
                   train_iters=8, warmup_iters=2, eval_interval=4, eval_iters=1, log_interval=4, save_interval=4,
                   max_new_tokens=8)


def _write_json(path: str, obj) -> None:
    write_json_atomic(path, obj)


def _log(msg: str) -> None:
    print(f"[demo] {msg}", file=sys.stderr, flush=True)


class Demo:
    def __init__(self, workdir: str, cfg: DemoConfig):
        self.workdir = os.path.abspath(workdir)
        self.cfg = cfg
        self.timings: dict[str, dict] = {}

    def path(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    def check_config(self, force: bool) -> str | None:
        """A work directory belongs to one configuration: reusing it with another would mix outputs.
        Returns an error message, or None when the directory is ready."""
        config_path = self.path("demo_config.json")
        if force and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir)
        if os.path.isfile(config_path):
            with open(config_path, encoding="utf-8") as f:
                if json.load(f) != json.loads(json.dumps(asdict(self.cfg))):
                    return (f"{self.workdir} was made with other settings ({config_path}); "
                            f"use another --workdir or --force")
        _write_json(config_path, asdict(self.cfg))
        return None

    def stage(self, name: str, fn) -> dict:
        marker = self.path("stages", f"{name}.done.json")
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as f:
                info = json.load(f)
            _log(f"{name}: already done ({info['seconds']:.1f} s when it ran)")
            self.timings[name] = {"seconds": info["seconds"], "skipped": True}
            return info
        _log(f"{name}: running")
        t0 = time.perf_counter()
        info = fn() or {}
        info["seconds"] = round(time.perf_counter() - t0, 2)
        _write_json(marker, info)  # last: the stage's outputs are complete
        self.timings[name] = {"seconds": info["seconds"], "skipped": False}
        _log(f"{name}: done in {info['seconds']:.1f} s")
        return info

    # --- stages ------------------------------------------------------------------------------------
    def corpus(self) -> dict:
        src = resources.files("megatron_inserter") / "assets" / "demo_corpus.jsonl"
        lines = [ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if self.cfg.num_docs is not None:  # alternate languages so a small run still has both
            en = [ln for ln in lines if '"lang": "en"' in ln]
            zh = [ln for ln in lines if '"lang": "zh"' in ln]
            mixed = [ln for pair in zip(en, zh) for ln in pair]
            lines = mixed[: self.cfg.num_docs]
        out = self.path("corpus", "corpus.jsonl")
        write_text_atomic(out, "\n".join(lines) + "\n")
        return {"documents": len(lines), "path": out}

    def synth(self) -> dict:
        from megatron_inserter.data.synth.config import ShardSize, SynthConfig
        from megatron_inserter.data.synth.pipeline import run_synthesis

        result = run_synthesis(SynthConfig(
            input=(self.path("corpus", "corpus.jsonl"),), output_dir=self.path("shards"), tts="espeak",
            span_mode="word", speech_ratio=0.3, workers=self.cfg.synth_workers, seed=self.cfg.seed,
            shard_size=ShardSize(max_docs=32), progress=False))
        if not result.ok:
            raise DataError(f"synthesis failed for {result.failed_units}; run `inserter demo` again to retry them")
        s = result.rank_stats.summary()
        return {k: s[k] for k in ("docs_written", "spans", "speech_seconds", "speech_ratio", "x_real_time_per_core")}

    def tokenizer(self) -> dict:
        from megatron_inserter.data.indexed.tokenizer_cli import corpus_texts
        from megatron_inserter.data.tokenizers import build_tokenizer, train_sentencepiece

        path = train_sentencepiece(corpus_texts([self.path("corpus", "corpus.jsonl")]),
                                   self.path("tokenizer", "demo.model"), self.cfg.vocab_size)
        return {"path": path, "vocab_size": build_tokenizer("sentencepiece", path).vocab_size}

    def preprocess(self) -> dict:
        from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess

        common = {"tokenizer_type": "sentencepiece", "tokenizer_model": self.path("tokenizer", "demo.model"),
                      "workers": 1, "progress": False}
        inter = preprocess(PreprocessConfig(inputs=[self.path("shards")],
                                            output_prefix=self.path("data", "interleaved"), **common))
        text = preprocess(PreprocessConfig(inputs=[self.path("corpus", "corpus.jsonl")],
                                           output_prefix=self.path("data", "text"), **common))
        return {"interleaved_tokens": inter.get("tokens"), "asr_tokens": inter.get("asr_tokens"),
                "text_tokens": text.get("tokens"), "speech_hours": inter.get("speech_hours")}

    def train_argv(self) -> list[str]:
        from megatron_inserter.training.checkpointing import read_tracker

        c, data = self.cfg, self.path("data")
        return [
            "--model-type", "inserter", "--model-preset", "tiny",
            "--tokenizer-type", "sentencepiece", "--tokenizer-model", self.path("tokenizer", "demo.model"),
            "--data-path", "0.4", f"{data}/interleaved", "0.3", f"{data}/interleaved_asr", "0.3", f"{data}/text",
            "--split", "95,5,0", "--seq-length", str(c.seq_length), "--micro-batch-size", str(c.micro_batch_size),
            "--global-batch-size", str(c.global_batch_size), "--train-iters", str(c.train_iters),
            "--lr", str(c.lr), "--min-lr", str(c.min_lr), "--lr-warmup-iters", str(c.warmup_iters),
            "--lr-decay-style", "cosine", "--weight-decay", "0.01", "--clip-grad", "1.0",
            "--eval-interval", str(c.eval_interval), "--eval-iters", str(c.eval_iters),
            "--log-interval", str(c.log_interval), "--save", self.path("train"),
            "--save-interval", str(c.save_interval), "--tensorboard-dir", self.path("train", "tensorboard"),
            "--num-workers", "0", "--seed", str(c.seed),
        ] + (["--load", self.path("train")] if read_tracker(self.path("train")) is not None else [])

    def train(self) -> dict:
        """Resumes from the last checkpoint when an earlier run of this stage was interrupted."""
        from megatron_inserter.training.arguments import parse_args
        from megatron_inserter.training.checkpointing import resolve_load_dir
        from megatron_inserter.training.trainer import train

        os.makedirs(self.path("train"), exist_ok=True)
        result = train(parse_args(self.train_argv()))
        _log(f"train: the checkpoint carries its model_config.json; export it for transformers with "
             f"`inserter convert mcore-to-hf --load {self.path('train')} --output {self.path('hf')}`")
        return {"checkpoint": resolve_load_dir(self.path("train")), "loss_plot": result.loss_plot,
                "iteration": result.iteration}

    def generate(self) -> dict:
        from megatron_inserter.demo.continuation import spoken_prompt_continuation

        return spoken_prompt_continuation(self.path("train"), self.path("shards"), self.cfg.max_new_tokens)
