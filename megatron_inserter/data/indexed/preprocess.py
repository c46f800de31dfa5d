"""Shards or jsonl -> megatron-core indexed datasets, in parallel partitions merged with ``add_index``.

    stats = preprocess(PreprocessConfig(inputs=["shards/"], output_prefix="data/train",
                                        tokenizer_type="sentencepiece", tokenizer_model="tok.model", workers=4))

Each partition (a contiguous run of input) is written by one process into ``PREFIX.tmp/part-NNNNN*``
and marked done; a re-run with the same inputs and tokenizer reuses finished partitions. The merge
writes temporary files, then renames them into place: every ``.bin`` and sidecar first, the ``.idx``
files last (the main one very last), so a reader never takes a partial output as complete. Each sidecar
records the sizes and content fingerprints of the files it describes (``binding``).

Start-up is a fraction of a second: nothing here imports torch or megatron-core (``index_format`` writes
megatron-core's files with numpy). Text documents are tokenized and written in batches. Pool workers die
with the main process (Linux ``PR_SET_PDEATHSIG``, else a watchdog on the parent pid), so a killed run
leaves no orphans. Skipped documents are counted by reason and reported on stderr with examples.

With ``PreprocessConfig.conversation`` set, jsonl rows of chat messages go through the same partitions, merge
and publication, written by ``data.conversation.writer`` (text + audio, no ASR view; sidecar kind
``conversation``, its loss mask stored as the sequences' modes).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass

from megatron_inserter.data.conversation.templates import build_template, template_identity
from megatron_inserter.data.conversation.writer import (
    ConversationOptions,
    ConversationWriter,
    conversation_prefixes,
)
from megatron_inserter.data.frames import SAMPLE_RATE
from megatron_inserter.data.indexed.binding import dataset_fingerprints
from megatron_inserter.data.indexed.index_format import optimal_token_dtype
from megatron_inserter.data.indexed.metadata import DatasetMetadata, TokenizerInfo, meta_path, write_metadata
from megatron_inserter.data.indexed.sources import (
    InputRange,
    expand_inputs,
    plan_partitions,
    read_jsonl,
    read_shard,
)
from megatron_inserter.data.indexed.writer import (
    SKIP_EXAMPLES,
    InterleavedWriter,
    dataset_files,
    output_prefixes,
)
from megatron_inserter.data.tokenizers import build_tokenizer
from megatron_inserter.errors import UsageError
from megatron_inserter.files import publish, write_json_atomic
from megatron_inserter.lifetime import die_with_parent

_BATCH_DOCUMENTS = 256  # documents tokenized and written per call (and between progress reports)
LAYOUT = 2  # stored-data layout (2: BOS, smallest token dtype); partitions of another layout are not reused


@dataclass
class PreprocessConfig:
    inputs: list[str]
    output_prefix: str
    tokenizer_type: str
    tokenizer_model: str
    workers: int = 1
    partitions: int | None = None  # default: one per worker
    json_key: str = "text"
    keep_temp: bool = False
    progress: bool = True
    add_bos: bool = True  # prepend the tokenizer's BOS to every document (when it has one)
    conversation: ConversationOptions | None = None  # jsonl rows of chat messages (``--format conversation``)


@dataclass
class PartitionTask:
    index: int
    ranges: list[InputRange]
    kind: str
    prefix: str
    tokenizer_type: str
    tokenizer_model: str
    json_key: str
    with_audio: bool
    add_bos: bool = True
    conversation: ConversationOptions | None = None


_progress_queue = None


def _init_worker(queue, parent_pid: int | None = None) -> None:
    global _progress_queue
    _progress_queue = queue
    if parent_pid is not None:
        die_with_parent(parent_pid)


def _documents(task: PartitionTask, r: InputRange, skipped: Counter):
    """The documents of one input range, in order."""
    if task.kind == "shards":
        return read_shard(r.path, skipped)
    return read_jsonl(r, task.json_key, skipped)


def run_partition(task: PartitionTask) -> dict:
    """Write one partition; returns its stats (also saved as ``part-NNNNN.done.json``)."""
    tokenizer = build_tokenizer(task.tokenizer_type, task.tokenizer_model)
    if task.conversation is not None:
        return _run_conversation_partition(task, tokenizer)
    writer = InterleavedWriter(task.prefix, tokenizer, task.with_audio, add_bos=task.add_bos)
    input_skips = Counter()
    for r in task.ranges:
        docs = iter(_documents(task, r, input_skips))
        while batch := list(itertools.islice(docs, _BATCH_DOCUMENTS)):
            writer.add_many(batch)
            _report(len(batch), 0)
        _report(0, 1)
    writer.finalize()
    writer.skipped.update(input_skips)
    stats = writer.summary()
    write_json_atomic(task.prefix + ".done.json", stats)
    return stats


def _run_conversation_partition(task: PartitionTask, tokenizer) -> dict:
    writer = ConversationWriter(task.prefix, tokenizer, task.conversation, add_bos=task.add_bos)
    for r in task.ranges:
        writer.add_range(r, progress=lambda n: _report(n, 0), every=_BATCH_DOCUMENTS)
        _report(0, 1)
    writer.finalize()
    stats = writer.summary()
    write_json_atomic(task.prefix + ".done.json", stats)
    return stats


def _roles(prefix: str, with_audio: bool, conversation: ConversationOptions | None) -> dict[str, str]:
    """The dataset prefixes of one output (or partition) by role."""
    return conversation_prefixes(prefix) if conversation is not None else output_prefixes(prefix, with_audio)


def _merge_writer(merged: str, tokenizer, with_audio: bool, cfg: PreprocessConfig):
    if cfg.conversation is not None:
        return ConversationWriter(merged, tokenizer, cfg.conversation, add_bos=cfg.add_bos)
    return InterleavedWriter(merged, tokenizer, with_audio, add_bos=cfg.add_bos)


def _report(docs: int, ranges: int) -> None:
    if _progress_queue is not None and (docs or ranges):
        _progress_queue.put((docs, ranges))


def preprocess(cfg: PreprocessConfig) -> dict:
    t0 = time.time()
    kind, files = expand_inputs(cfg.inputs)
    tokenizer = build_tokenizer(cfg.tokenizer_type, cfg.tokenizer_model)  # fail fast on a bad tokenizer
    with_audio = kind == "shards"
    template = None
    if cfg.conversation is not None:
        if kind != "jsonl":
            raise UsageError("--format conversation reads jsonl files of chat messages, not shards")
        with_audio = True
        template = build_template(cfg.conversation.chat_template, tokenizer)  # fail fast on a bad template
    plan = plan_partitions(files, cfg.partitions or max(cfg.workers, 1))
    out_dir = os.path.dirname(os.path.abspath(cfg.output_prefix))
    os.makedirs(out_dir, exist_ok=True)
    tmp_dir = cfg.output_prefix + ".tmp"
    fingerprint = {
        "files": [(f, os.path.getsize(f), int(os.path.getmtime(f))) for f in files],
        "plan": [[asdict(r) for r in p] for p in plan], "tokenizer": asdict(TokenizerInfo.of(tokenizer)),
        "json_key": cfg.json_key, "kind": kind, "add_bos": cfg.add_bos, "layout": LAYOUT,
    }
    if cfg.conversation is not None:
        fingerprint["conversation"] = {**asdict(cfg.conversation), "template": template_identity(template)}
    _prepare_tmp_dir(tmp_dir, fingerprint)
    tasks = [PartitionTask(i, p, kind, os.path.join(tmp_dir, f"part-{i:05d}"), cfg.tokenizer_type,
                           cfg.tokenizer_model, cfg.json_key, with_audio, cfg.add_bos, cfg.conversation)
             for i, p in enumerate(plan)]
    part_stats = _run_partitions(tasks, cfg)

    if len(tasks) == 1:  # nothing to merge: publish the partition itself (no copy of the data)
        merged = tasks[0].prefix
    else:
        merged = os.path.join(tmp_dir, "merged")
        writer = _merge_writer(merged, tokenizer, with_audio, cfg)
        for task in tasks:
            writer.add_partition(task.prefix)
        writer.finalize()

    totals = _sum_stats(part_stats)
    stats = {
        "output_prefix": cfg.output_prefix, "kind": kind, "inputs": len(files), "partitions": len(tasks),
        "workers": cfg.workers, **totals, "seconds": round(time.time() - t0, 3),
    }
    stats["tokens_per_second"] = stats.get("tokens", 0) / max(stats["seconds"], 1e-9)
    stats["audio_x_real_time"] = stats.get("speech_samples", 0) / SAMPLE_RATE / max(stats["seconds"], 1e-9)
    if template is not None:
        stats["chat_template"] = template.name
    _publish(merged, cfg.output_prefix, tokenizer, with_audio, stats, writer_dtype(tokenizer),
             conversation=cfg.conversation)
    if not cfg.keep_temp:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    report_skips(stats)
    return stats


def report_skips(stats: dict, prog: str = "inserter preprocess", stream=None) -> None:
    """One stderr line per skip reason with its count and example documents (nothing when none)."""
    stream = stream or sys.stderr
    examples = stats.get("skip_examples", {})
    for reason, count in sorted(stats.get("skipped", {}).items()):
        where = ", ".join(examples.get(reason, []))
        print(f"{prog}: skipped {count} document{'s' * (count != 1)}: {reason}" + (f" (e.g. {where})" if where else ""),
              file=stream)


def writer_dtype(tokenizer) -> str:
    return optimal_token_dtype(tokenizer.vocab_size).name


def write_dataset(prefix: str, documents, tokenizer, with_audio: bool = True, add_bos: bool = True) -> dict:
    """Write in-memory ``sources.Document``s as one output (same files as ``preprocess``), in one process."""
    tmp_dir = prefix + ".tmp"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    merged = os.path.join(tmp_dir, "merged")
    writer = InterleavedWriter(merged, tokenizer, with_audio, add_bos=add_bos)
    writer.add_many(list(documents))
    writer.finalize()
    stats = _sum_stats([writer.summary()])
    _publish(merged, prefix, tokenizer, with_audio, stats, writer_dtype(tokenizer))
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return stats


def _prepare_tmp_dir(tmp_dir: str, fingerprint: dict) -> None:
    """Keep finished partitions of an interrupted run with the same inputs; start afresh otherwise."""
    path = os.path.join(tmp_dir, "fingerprint.json")
    try:
        with open(path, encoding="utf-8") as f:
            same = json.load(f) == json.loads(json.dumps(fingerprint))
    except (OSError, json.JSONDecodeError):
        same = False
    if not same:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        os.makedirs(tmp_dir)
        write_json_atomic(path, fingerprint)


def _run_partitions(tasks: list[PartitionTask], cfg: PreprocessConfig) -> list[dict]:
    results: dict[int, dict] = {}
    todo = []
    for t in tasks:
        done = t.prefix + ".done.json"
        files = [f for p in _roles(t.prefix, t.with_audio, t.conversation).values() for f in dataset_files(p)]
        if os.path.exists(done) and all(map(os.path.exists, files)):
            with open(done, encoding="utf-8") as f:
                results[t.index] = json.load(f)
        else:
            todo.append(t)
    bar = _progress_bar(cfg, sum(len(t.ranges) for t in tasks), sum(len(tasks[i].ranges) for i in results))
    if cfg.workers <= 1 or len(todo) <= 1:
        queue = _InlineQueue(bar)
        _init_worker(queue)
        try:
            for t in todo:
                results[t.index] = run_partition(t)
        finally:
            _init_worker(None)
    else:
        # fork: workers start at once with the modules already imported (spawn re-imports torch and
        # megatron-core, seconds per worker); nothing here holds threads or locks across the fork.
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        queue = ctx.Queue()
        with ProcessPoolExecutor(min(cfg.workers, len(todo)), mp_context=ctx, initializer=_init_worker,
                                 initargs=(queue, os.getpid())) as pool:
            futures = {pool.submit(run_partition, t): t.index for t in todo}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                _drain(queue, bar)
                for f in finished:
                    results[futures[f]] = f.result()
            _drain(queue, bar)
    if bar is not None:
        bar.close()
    return [results[t.index] for t in tasks]


class _InlineQueue:
    def __init__(self, bar):
        self.bar = bar

    def put(self, item) -> None:
        _advance(self.bar, item)


def _drain(queue, bar) -> None:
    import queue as queue_mod

    while True:
        try:
            _advance(bar, queue.get_nowait())
        except queue_mod.Empty:
            return


def _advance(bar, item) -> None:
    docs, ranges = item
    if bar is not None:
        bar.docs += docs
        bar.set_postfix(docs=bar.docs, refresh=False)
        bar.update(ranges)


def _progress_bar(cfg: PreprocessConfig, total: int, initial: int):
    if not cfg.progress:
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, unit="input", desc="preprocess", file=sys.stderr, dynamic_ncols=True)
    bar.docs = 0
    return bar


def _sum_stats(parts: list[dict]) -> dict:
    total: Counter = Counter()
    skipped: Counter = Counter()
    examples: dict[str, list[str]] = {}
    for p in parts:
        skipped.update(p.get("skipped", {}))
        for reason, ids in p.get("skip_examples", {}).items():
            kept = examples.setdefault(reason, [])
            kept.extend(ids[: max(0, SKIP_EXAMPLES - len(kept))])
        total.update({k: v for k, v in p.items() if isinstance(v, (int, float)) and k != "speech_hours"})
    out = dict(total)
    out["speech_hours"] = out.get("speech_samples", 0) / SAMPLE_RATE / 3600.0
    out["skipped"] = dict(skipped)
    out["skipped_total"] = sum(skipped.values())
    out["skip_examples"] = examples
    return out


def _publish(merged: str, prefix: str, tokenizer, with_audio: bool, stats: dict, token_dtype: str,
             conversation: ConversationOptions | None = None) -> None:
    """Rename the merged temporary datasets into place: old .idx removed first, new .idx renamed last.
    Each sidecar binds the files it describes (sizes and content fingerprints, under their final names)."""
    src = _roles(merged, with_audio, conversation)
    dst = _roles(prefix, with_audio, conversation)
    info = TokenizerInfo.of(tokenizer)
    audio_name = os.path.basename(dst["audio"]) if with_audio else None

    def bound(roles: list[str]) -> dict:
        prints = dataset_fingerprints([src[r] for r in roles])
        rename = {os.path.basename(f): os.path.basename(g) for r in roles
                  for f, g in zip(dataset_files(src[r]), dataset_files(dst[r]))}
        return {rename[name]: fp for name, fp in prints.items()}

    speech = {"num_speech_spans": stats.get("speech_spans", 0),
              "speech_seconds": stats.get("speech_samples", 0) / SAMPLE_RATE}
    kind = "conversation" if conversation is not None else ("interleaved" if with_audio else "text")
    extra = {} if conversation is None else {"chat_template": stats.get("chat_template"),
                                             "assistant_tokens": stats.get("assistant_tokens", 0)}
    metas = {
        "text": DatasetMetadata(kind, info, audio_name,
                                num_documents=stats.get("documents", 0), num_tokens=stats.get("tokens", 0),
                                token_dtype=token_dtype, files=bound(["text", "audio"] if with_audio else ["text"]),
                                extra=extra, **speech),
    }
    if with_audio and conversation is None:
        metas["asr"] = DatasetMetadata("asr", info, audio_name, num_documents=stats.get("asr_documents", 0),
                                       num_tokens=stats.get("asr_tokens", 0), token_dtype=token_dtype,
                                       files=bound(["asr", "audio"]), **speech)
    order = [r for r in ("audio", "asr", "text") if r in dst]  # the main .idx last
    for role in order:
        idx = dataset_files(dst[role])[1]
        if os.path.exists(idx):
            os.remove(idx)
    for role in order:
        publish(dataset_files(src[role])[0], dataset_files(dst[role])[0])
        if role in metas:
            write_metadata(meta_path(dst[role]), metas[role])
    write_json_atomic(prefix + ".stats.json", stats)
    for role in order:
        publish(dataset_files(src[role])[1], dataset_files(dst[role])[1])
