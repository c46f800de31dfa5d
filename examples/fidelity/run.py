"""Does interleaving close the gap? A small InSerter reproduction: one text LM, four arms at equal compute.

    python examples/fidelity/run.py --workdir runs/fidelity                 # the full experiment (--scale full)
    python examples/fidelity/run.py --workdir runs/fidelity --scale reduced # a scaled-down run
    python examples/fidelity/run.py --workdir /tmp/fid --scale smoke --corpus demo   # under 2 minutes

Stages (each runs the project's own command and is skipped when its marker says it is complete):
corpus -> synth (word 0.3, sentence 0.4, held-out) -> tokenizer -> preprocess -> pretrain (the text LM, encoder
and adapter frozen at their fresh initialization) -> arms a-d (``--finetune`` from the text LM, encoder,
adapter and LLM trained, same steps, tokens and seed) -> evaluate (held-out modality gap at every checkpoint,
ASR WER, spoken/written instruction probe) -> report (RESULTS.md, gap_by_step.png).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from megatron_inserter.errors import DataError, UsageError
from megatron_inserter.files import write_json_atomic
from megatron_inserter.flags import arg, run_command

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = {
    # name: (what it is, blend of (weight, dataset name))
    "a": ("ASR pairs only", ((0.3, "text"), (0.7, "word_asr"))),
    "b": ("interleaved, word spans, ratio 0.3", ((0.3, "text"), (0.3, "word_asr"), (0.4, "word"))),
    "c": ("interleaved, sentences, ratio 0.4", ((0.3, "text"), (0.3, "word_asr"), (0.4, "sentence"))),
    "d": ("arm b with half the interleaved data", ((0.3, "text"), (0.3, "word_asr"), (0.4, "word_half"))),
}


@dataclass(frozen=True)
class Scale:
    corpus: str
    max_docs: int | None
    doc_words: int
    heldout_every: int
    vocab_size: int
    seq_length: int
    micro_batch_size: int
    global_batch_size: int
    pretrain_iters: int
    arm_iters: int
    save_every: int
    lr: float
    probe_repeats: int
    asr_clips: int
    max_pairs: int | None
    synth_workers: int = 2


SCALES = {
    "smoke": Scale(corpus="demo", max_docs=None, doc_words=120, heldout_every=8, vocab_size=700, seq_length=128,
                   micro_batch_size=2, global_batch_size=2, pretrain_iters=4, arm_iters=4, save_every=2, lr=1e-3,
                   probe_repeats=2, asr_clips=4, max_pairs=8, synth_workers=1),
    "reduced": Scale(corpus="kjv", max_docs=800, doc_words=120, heldout_every=20, vocab_size=2000, seq_length=256,
                     micro_batch_size=8, global_batch_size=8, pretrain_iters=300, arm_iters=125, save_every=25,
                     lr=1e-3, probe_repeats=6, asr_clips=40, max_pairs=100),
    "full": Scale(corpus="kjv", max_docs=None, doc_words=120, heldout_every=25, vocab_size=4000, seq_length=512,
                  micro_batch_size=8, global_batch_size=8, pretrain_iters=1500, arm_iters=1000, save_every=100,
                  lr=1e-3, probe_repeats=8, asr_clips=150, max_pairs=300),
}


@dataclass
class Flags:
    workdir: str = arg(None, "where everything is written", required=True)
    scale: str = arg("full", "experiment size", choices=list(SCALES))
    corpus: str = arg(None, "kjv (Debian's bible-kjv), demo, or a jsonl file (default: the scale's)")
    arms: list = arg(list(ARMS), "arms to run", metavar="ARM")  # noqa: RUF009
    seed: int = arg(1234, "seed of synthesis, initialization and data order (the same for every arm)")
    publish: str = arg(None, "also copy RESULTS.md and gap_by_step.png into this directory")
    threads: int = arg(1, "math threads per process (1 is fastest for the tiny model, and on a busy machine)")
    force: bool = arg(False, "delete --workdir first")


def log(msg: str) -> None:
    print(f"[fidelity] {msg}", file=sys.stderr, flush=True)


THREADS = {"n": 1}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env() -> dict:
    """Each child its own rendezvous port (other runs may hold 29500) and ``--threads`` math threads."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": str(THREADS["n"]),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}


def inserter(*argv: str) -> None:
    """One project command in its own process (megatron-core state is per process)."""
    cmd = [sys.executable, "-m", "megatron_inserter.cli", *argv]
    done = subprocess.run(cmd, env=child_env(), check=False)
    if done.returncode != 0:
        raise DataError(f"`inserter {' '.join(argv[:1])}` failed (exit {done.returncode}); its error is above")


class Experiment:
    def __init__(self, flags: Flags):
        self.flags = flags
        THREADS["n"] = flags.threads
        scale = SCALES[flags.scale]
        self.scale = replace(scale, corpus=flags.corpus) if flags.corpus else scale
        self.workdir = os.path.abspath(flags.workdir)
        self.timings: dict[str, float] = {}

    def path(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    def check_config(self) -> None:
        if self.flags.force and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir)
        config = {"scale": asdict(self.scale), "seed": self.flags.seed}
        path = self.path("fidelity_config.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                if json.load(f) != json.loads(json.dumps(config)):
                    raise UsageError(f"{self.workdir} was made with other settings ({path}); use another "
                                     "--workdir or --force")
        write_json_atomic(path, config)

    def stage(self, name: str, fn) -> dict:
        marker = self.path("stages", f"{name}.done.json")
        if os.path.isfile(marker):
            with open(marker, encoding="utf-8") as f:
                info = json.load(f)
            log(f"{name}: already done ({info['seconds']:.1f} s when it ran)")
        else:
            log(f"{name}: running")
            t0 = time.perf_counter()
            info = fn() or {}
            info["seconds"] = round(time.perf_counter() - t0, 2)
            write_json_atomic(marker, info)
            log(f"{name}: done in {info['seconds']:.1f} s")
        self.timings[name] = info["seconds"]
        return info

    # --- stages ------------------------------------------------------------------------------------------
    def corpus(self) -> dict:
        import corpus
        import probe

        s = self.scale
        docs = corpus.load_documents(s.corpus, s.doc_words, s.max_docs)
        train, heldout = corpus.split_heldout(docs, s.heldout_every)
        corpus.write_jsonl(self.path("corpus", "prose_train.jsonl"), train)
        corpus.write_jsonl(self.path("corpus", "prose_heldout.jsonl"), heldout)
        probe_docs = probe.training_documents(s.probe_repeats)
        text = [d.record() for d in train] + probe_docs
        from megatron_inserter.files import write_text_atomic

        write_text_atomic(self.path("corpus", "text_train.jsonl"),
                          "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in text))
        words = sum(len(d.text.split()) for d in train)
        return {"corpus": s.corpus, "train_documents": len(train), "heldout_documents": len(heldout),
                "train_words": words, "probe_documents": len(probe_docs)}

    def synth(self) -> dict:
        s, seed = self.scale, str(self.flags.seed)
        with open(self.path("corpus", "prose_train.jsonl"), encoding="utf-8") as f:
            n_train = sum(1 for _ in f)
        per_shard = str(max(1, -(-n_train // 8)))  # 8 shards: half the data is the first 4
        common = ["--tts", "espeak", "--seed", seed, "--workers", str(s.synth_workers), "--no-progress"]
        out = {}
        for name, mode, ratio, src in (("word", "word", "0.3", "prose_train"),
                                       ("sentence", "sentence", "0.4", "prose_train"),
                                       ("heldout", "word", "0.3", "prose_heldout")):
            inserter("synth", "--input", self.path("corpus", f"{src}.jsonl"), "--output-dir", self.path("shards", name),
                     "--span-mode", mode, "--speech-ratio", ratio, "--shard-size", per_shard, *common)
            with open(self.path("shards", name, "stats.json"), encoding="utf-8") as f:
                stats = json.load(f)
            out[name] = {k: stats.get(k) for k in ("docs_written", "spans", "speech_seconds", "speech_ratio")}
        return out

    def eval_sets(self) -> dict:
        """Held-out ASR clips (the held-out documents' spans) and the probe's spoken instructions."""
        import probe
        import soundfile as sf
        from evaluate import heldout_documents

        from megatron_inserter.data.indexed.audio_store import int16_to_float
        from megatron_inserter.data.synth.tts.base import TTSRequest
        from megatron_inserter.data.synth.tts.espeak import EspeakBackend
        from megatron_inserter.files import write_text_atomic

        rows = []
        for doc in heldout_documents(self.path("shards", "heldout")):
            for i, seg in enumerate(doc.segments):
                if seg.is_speech and len(rows) < self.scale.asr_clips:
                    name = f"asr/{doc.id}-{i}.wav"
                    os.makedirs(self.path("eval", "asr"), exist_ok=True)
                    sf.write(self.path("eval", name), int16_to_float(seg.audio), 16000)
                    rows.append({"audio_filepath": name, "text": seg.text.strip(), "id": f"{doc.id}-{i}"})
        write_text_atomic(self.path("eval", "asr.jsonl"), "".join(json.dumps(r) + "\n" for r in rows))

        tts = EspeakBackend()
        speakers = tts.speakers("en")
        _, held = probe.items()
        os.makedirs(self.path("eval", "probe"), exist_ok=True)
        probe_rows = []
        for n, item in enumerate(held):
            speaker = speakers[(n * 7 + self.flags.seed) % len(speakers)]
            (audio,) = tts.synthesize([TTSRequest(item.instruction, "en", speaker)])
            name = f"probe/{item.id}.wav"
            sf.write(self.path("eval", name), audio, 16000)
            probe_rows.append({"id": item.id, "instruction": item.instruction, "answer": item.answer,
                               "audio_filepath": name, "speaker": speaker})
        write_text_atomic(self.path("eval", "probe.jsonl"), "".join(json.dumps(r) + "\n" for r in probe_rows))
        return {"asr_clips": len(rows), "probe_items": len(probe_rows)}

    def tokenizer(self) -> dict:
        inserter("train-tokenizer", "--input", self.path("corpus", "text_train.jsonl"), "--vocab-size",
                 str(self.scale.vocab_size), "--output", self.path("tokenizer", "spm.model"))
        return {"path": self.path("tokenizer", "spm.model")}

    def tok_flags(self) -> list[str]:
        return ["--tokenizer-type", "sentencepiece", "--tokenizer-model", self.path("tokenizer", "spm.model")]

    def preprocess(self) -> dict:
        import glob

        common = [*self.tok_flags(), "--no-progress"]
        inserter("preprocess", "--input", self.path("corpus", "text_train.jsonl"), "--output-prefix",
                 self.path("data", "text"), *common)
        for name in ("word", "sentence"):
            inserter("preprocess", "--input", self.path("shards", name), "--output-prefix", self.path("data", name),
                     *common)
        shards = sorted(glob.glob(self.path("shards", "word", "*.tar")))
        half = shards[: max(1, len(shards) // 2)]
        inserter("preprocess", "--input", *half, "--output-prefix", self.path("data", "word_half"), *common)
        out = {name: os.path.getsize(self.path("data", f"{name}.bin"))
               for name in ("text", "word", "word_asr", "sentence", "word_half")}
        out["word_half_shards"] = f"{len(half)} of {len(shards)}"
        return out

    def train_flags(self, iters: int) -> list[str]:
        s = self.scale
        return ["--model-type", "inserter", "--model-preset", "tiny", *self.tok_flags(),
                "--split", "100,0,0", "--seq-length", str(s.seq_length), "--micro-batch-size", str(s.micro_batch_size),
                "--global-batch-size", str(s.global_batch_size), "--train-iters", str(iters), "--lr", str(s.lr),
                "--min-lr", str(s.lr / 10), "--lr-warmup-iters", str(max(1, iters // 10)), "--lr-decay-style",
                "cosine", "--weight-decay", "0.01", "--clip-grad", "1.0", "--eval-iters", "0",
                "--log-interval", str(max(1, min(50, iters // 4))), "--num-workers", "0",
                "--seed", str(self.flags.seed)]

    def pretrain(self) -> dict:
        inserter("train", *self.train_flags(self.scale.pretrain_iters), "--data-path", self.path("data", "text"),
                 "--freeze-encoder", "--freeze-adapter", "--save", self.path("pretrain"),
                 "--save-interval", str(self.scale.pretrain_iters))
        return {"checkpoint": self.path("pretrain")}

    def arm(self, name: str) -> dict:
        blend = [x for weight, data in ARMS[name][1] for x in (str(weight), self.path("data", data))]
        save = self.path("arms", name)
        if os.path.isdir(save):  # an interrupted arm starts again: every arm runs the same steps from the LM
            shutil.rmtree(save)
        inserter("train", *self.train_flags(self.scale.arm_iters), "--data-path", *blend,
                 "--load", self.path("pretrain"), "--finetune", "--save", save,
                 "--save-interval", str(self.scale.save_every))
        return {"checkpoint": save}

    def evaluate(self, runs: dict[str, str]) -> dict:
        """Every checkpoint of every run, in one process."""
        outputs = [self.path("eval", f"{name}.json") for name in runs]
        cmd = [sys.executable, os.path.join(HERE, "evaluate.py"), "--save-dir", *runs.values(), "--output", *outputs,
               "--heldout-shards", self.path("shards", "heldout"), "--asr-manifest", self.path("eval", "asr.jsonl"),
               "--probe", self.path("eval", "probe.jsonl")]
        if self.scale.max_pairs:
            cmd += ["--max-pairs", str(self.scale.max_pairs)]
        if subprocess.run(cmd, env=child_env(), check=False).returncode != 0:
            raise DataError(f"evaluation of {', '.join(runs.values())} failed; its error is above")
        return {"results": outputs}

    def run(self) -> dict:
        self.check_config()
        t0 = time.perf_counter()
        info = {"corpus": self.stage("corpus", self.corpus), "synth": self.stage("synth", self.synth)}
        info["eval_sets"] = self.stage("eval_sets", self.eval_sets)
        info["tokenizer"] = self.stage("tokenizer", self.tokenizer)
        info["preprocess"] = self.stage("preprocess", self.preprocess)
        info["pretrain"] = self.stage("pretrain", self.pretrain)
        for name in self.flags.arms:
            if name not in ARMS:
                raise UsageError(f"--arms: unknown arm {name!r}; choose from {', '.join(ARMS)}")
        for name in self.flags.arms:
            self.stage(f"arm_{name}", lambda n=name: self.arm(n))
        runs = {"pretrain": self.path("pretrain"), **{n: self.path("arms", n) for n in self.flags.arms}}
        self.stage("evaluate", lambda: self.evaluate(runs))
        import report

        results = report.collect(self.workdir, self.flags.arms, ARMS)
        results.update({"scale_name": self.flags.scale, "scale": asdict(self.scale), "seed": self.flags.seed,
                        "timings_s": self.timings, "wall_s_this_invocation": round(time.perf_counter() - t0, 1),
                        "command": " ".join(["python", "examples/fidelity/run.py", *sys.argv[1:]]),
                        "hardware": hardware(), "stages": info})
        write_json_atomic(self.path("results.json"), results)
        report.write(self.workdir, results, self.flags.publish)
        log(f"results: {self.path('RESULTS.md')}")
        return results


def hardware() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(), "gpu": gpu,
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads()}


def _run(flags: Flags) -> int:
    Experiment(flags).run()
    return 0


def main(argv=None) -> int:
    return run_command("fidelity", Flags, _run, argv, description=__doc__)


if __name__ == "__main__":
    sys.exit(main())
