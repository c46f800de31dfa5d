"""Runs many ``DocumentJob``s at once over the TTS backend (and the round-trip transcriber), and hands back
their results in input order.

A local backend (espeak, nemo) synthesizes in this thread: each step hands it up to ``batch_size`` spans
and waits for all of them, so the order of its calls (and thus every byte it produces; espeak-ng keeps
state between calls) depends only on the input. A concurrent backend (TTS servers) gets up to
``--tts-concurrency`` requests in flight, taken from the earliest unfinished documents first, and up to
that many documents are open at once, so one worker keeps every slot busy even when documents have few
spans. Results are delivered as they arrive; every decision a job takes depends only on its own results,
so the output does not depend on timing either. A local transcriber runs in this thread in batches; an
ASR server client in its own threads.

An error that is no span's fault (all servers down: ``servers.ServiceUnavailableError``; a refused setup)
propagates out of ``run``: the shard fails rather than keeping text where speech should be.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.corpus import Document
from megatron_inserter.data.synth.interleave import DocumentJob, Sample
from megatron_inserter.data.synth.stats import SynthStats
from megatron_inserter.data.synth.tts.base import TTSBackend, TTSError
from megatron_inserter.errors import InserterError


class _Inline:
    """Calls ``fn(list of items)`` in the scheduler's thread, ``batch_size`` items at a time, on ``flush``."""

    def __init__(self, fn, batch_size: int):
        self.fn, self.batch_size = fn, max(1, batch_size)
        self.queue: list[tuple[object, Future]] = []

    def submit(self, item) -> Future:
        fut: Future = Future()
        self.queue.append((item, fut))
        return fut

    def flush(self) -> None:
        while self.queue:
            batch, self.queue = self.queue[:self.batch_size], self.queue[self.batch_size:]
            try:
                results = self.fn([item for item, _ in batch])
            except BaseException as e:  # noqa: BLE001 - delivered through the futures
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results):
                fut.set_result(result)

    def close(self) -> None:
        self.queue.clear()


class _Threaded:
    """Calls ``fn(item)`` on a pool of ``threads`` threads."""

    def __init__(self, fn, threads: int, name: str):
        self.fn = fn
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix=name)

    def submit(self, item) -> Future:
        return self.pool.submit(self.fn, item)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class Scheduler:
    def __init__(self, backend: TTSBackend, transcriber=None):
        self.backend = backend
        self.tts_seconds = 0.0  # time inside a local backend
        self.ordered = not backend.concurrent
        if backend.concurrent:
            self.tts = _Threaded(self._speak_one, backend.concurrency, "tts")
            self.capacity = backend.concurrency
            self.lookahead = backend.concurrency + 1
        else:
            self.tts = _Inline(self._speak_batch, backend.batch_size)
            self.capacity = max(1, backend.batch_size)
            self.lookahead = 1
        self.asr = None
        if transcriber is not None:
            if transcriber.concurrent:
                self.asr = _Threaded(lambda clip: transcriber.transcribe_one(*clip), transcriber.concurrency, "asr")
            else:
                self.asr = _Inline(transcriber.transcribe, transcriber.batch_size)

    # --- TTS calls ----------------------------------------------------------------------------------------

    def _speak_one(self, request):
        try:
            return self.backend.synthesize_one(request)
        except TTSError:
            return None

    def _speak_batch(self, requests):
        """A batch through a local backend; when the batch fails, each request alone (a failure: ``None``)."""
        t0 = time.perf_counter()
        try:
            try:
                audio = self.backend.synthesize(requests)
                if len(audio) != len(requests):
                    raise RuntimeError(f"backend returned {len(audio)} results for {len(requests)} requests")
                return audio
            except InserterError:
                raise
            except Exception:  # noqa: BLE001 - a failed batch is retried request by request
                if len(requests) == 1:
                    return [None]
                return [self._speak_batch([r])[0] for r in requests]
        finally:
            self.tts_seconds += time.perf_counter() - t0

    # --- the loop -----------------------------------------------------------------------------------------

    def run(self, items: Iterable[tuple[object, DocumentJob | None]]) -> Iterator[tuple[object, tuple | None]]:
        """``(payload, job or None)`` in input order -> ``(payload, job.finish() or None)`` in the same order."""
        source = iter(items)
        window: deque = deque()
        exhausted = False
        in_flight: dict[Future, tuple[int, str, object]] = {}
        seq = 0
        while True:
            while not exhausted and sum(job is not None for _, job in window) < self.lookahead:
                item = next(source, None)
                if item is None:
                    exhausted = True
                else:
                    window.append(item)
            while window and (window[0][1] is None or window[0][1].done):
                payload, job = window.popleft()
                yield payload, (job.finish() if job is not None else None)
            if not window:
                if exhausted:
                    return
                continue
            room = self.capacity - sum(kind == "tts" for _, kind, _ in in_flight.values())
            for _, job in window:
                if room <= 0:
                    break
                if job is not None and not job.done:
                    for task in job.take_tasks(room):
                        in_flight[self.tts.submit(task.request)] = (seq := seq + 1, "tts", task)
                        room -= 1
            self.tts.flush()
            if self.asr is not None:
                self.asr.flush()
            if not in_flight:
                raise RuntimeError("synthesis stalled: unfinished documents but no work in flight")
            finished = wait(list(in_flight), return_when=ALL_COMPLETED if self.ordered else FIRST_COMPLETED).done
            for fut in sorted(finished, key=lambda f: in_flight[f][0]):
                _, kind, task = in_flight.pop(fut)
                result = fut.result()  # an error that is no span's fault ends the run here
                if kind == "tts":
                    if task.job.on_audio(task, result):
                        clip = (task.audio, task.request.language)
                        in_flight[self.asr.submit(clip)] = (seq := seq + 1, "asr", task)
                else:
                    task.job.on_transcript(task, result)

    def close(self) -> None:
        self.tts.close()
        if self.asr is not None:
            self.asr.close()


def build_sample(doc: Document, cfg: SynthConfig, backend: TTSBackend, transcriber=None
                 ) -> tuple[Sample | None, str | None, SynthStats]:
    """One document, start to end, with its spans synthesized in the calling thread's order."""
    scheduler = Scheduler(backend, transcriber)
    try:
        ((_, result),) = list(scheduler.run([(None, DocumentJob(doc, cfg, backend, check=transcriber is not None))]))
    finally:
        scheduler.close()
    result[2].tts_seconds += scheduler.tts_seconds
    return result
