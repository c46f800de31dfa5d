"""Runs a synthesis: plans this rank's units, skips finished ones, runs the rest in worker processes.

Every unit runs in a fresh process forked from a clean fork server (which never synthesizes), so a
shard's bytes depend only on its unit, not on which worker made it or what that worker made before
(espeak-ng keeps state between calls). The fork server is started by exec, so forking stays safe even
when the calling process runs threads (torch, a test runner). Up to ``--workers`` such processes run
at once. A worker that dies is retried once; a
unit that fails twice is reported and the run exits non-zero, and running the same command again
retries it (finished shards are skipped).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field

from megatron_inserter.data.synth.asr import asr_kind, transcriber_for
from megatron_inserter.data.synth.config import SynthConfig
from megatron_inserter.data.synth.interleave import MIN_SPEECH_SAMPLES
from megatron_inserter.data.synth.plan import PlanErrors, WorkUnit, check_inputs, iter_units
from megatron_inserter.data.synth.servers import api_key_from_env
from megatron_inserter.data.synth.shards import (
    MANIFEST_DIR,
    check_run_arguments,
    is_complete,
    manifest_path,
    read_manifest,
    read_manifests,
    remove_stale_temporaries,
    shard_stem,
    write_json,
)
from megatron_inserter.data.synth.stats import SKIP_REASONS, SynthStats, merge
from megatron_inserter.data.synth.tts import (
    TTSRequest,
    TTSUnavailableError,
    build_backend,
    check_backend_inputs,
)
from megatron_inserter.data.text_inputs import CorruptInputError, SkipReport, compression_of, expand_inputs
from megatron_inserter.errors import InserterError

MAX_ATTEMPTS_PER_UNIT = 2
LISTED_SKIPS = 20  # skipped lines shown on stderr per run; all are listed in the manifests
PROBE_TEXT = {"en": "Hello there, this is a test.", "zh": "你好，这是一个测试。"}


@dataclass
class RunResult:
    rank_stats: SynthStats
    units_done: int = 0
    units_resumed: int = 0
    failed_units: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed_units


def _die_with_parent(main_pid: int) -> None:
    """Linux: get SIGKILLed when the fork server dies (it exits with the main process), so a killed run
    leaves no orphan writing shards."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    try:
        os.kill(main_pid, 0)
    except ProcessLookupError:
        os._exit(1)


def _context():
    """The fork-server context; the server preloads the synthesis modules. NeMo (torch, CUDA) is never
    imported by the server: each worker imports it itself, so CUDA is first touched after the fork."""
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["megatron_inserter.data.synth.preload"])  # no effect once the server runs
    return ctx


def api_keys(cfg: SynthConfig) -> dict[str, str | None]:
    """The servers' API keys, read here from the variables the flags name and handed to the workers (which
    fork from a server started earlier, maybe before the variable was set); never written anywhere."""
    return {"tts": api_key_from_env(cfg.tts_api_key_env, "--tts-api-key-env") if cfg.tts == "openai" else None,
            "asr": api_key_from_env(cfg.asr_api_key_env, "--asr-api-key-env") if cfg.asr_url else None}


def _probe_child(cfg: SynthConfig, keys: dict, conn, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    backend = transcriber = None
    try:
        backend = build_backend(cfg, keys["tts"])
        transcriber = transcriber_for(cfg, keys["asr"])
        warnings = []
        for lang in backend.languages:
            req = TTSRequest(PROBE_TEXT[lang], lang, backend.speakers(lang)[0])
            audio = backend.synthesize([req])[0]
            if len(audio) < MIN_SPEECH_SAMPLES:
                warnings.append(f"the {cfg.tts} backend produced no usable audio for {lang!r} text; such "
                                "documents will be skipped as tts_failed")
            elif transcriber is not None:
                transcriber.transcribe([(audio, lang)])
        if cfg.tts == "openai" and backend.pool.unused:
            warnings.append(f"{backend.pool.unused} voices of {cfg.tts_voices} are of languages this pipeline does "
                            "not speak; they are not used")
        conn.send(("ok", warnings))
    except InserterError as e:
        conn.send(("error", (str(e), getattr(e, "exit_code", 1))))
    except Exception:  # noqa: BLE001 - reported to the parent as a start-up error
        conn.send(("error", (traceback.format_exc(), 2)))
    finally:
        for part in (backend, transcriber):
            if part is not None:
                part.close()


def probe_backend(cfg: SynthConfig, timeout: float = 900.0, keys: dict | None = None) -> list[str]:
    """Build the backend (and the transcriber), speak one phrase per language and transcribe it, in a
    throw-away process; raise with the fix."""
    ctx = _context()
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    keys = keys if keys is not None else api_keys(cfg)
    proc = ctx.Process(target=_probe_child, args=(cfg, keys, child_conn, os.getpid()), daemon=True)
    proc.start()
    child_conn.close()
    if not parent_conn.poll(timeout):
        proc.kill()
        raise TTSUnavailableError(f"the {cfg.tts} backend did not start within {timeout:.0f} s")
    try:
        status, payload = parent_conn.recv()
    except EOFError:
        proc.join(10)
        status, payload = "error", (f"the {cfg.tts} backend crashed while starting (exit code {proc.exitcode})", 2)
    proc.join()
    if status != "ok":
        error = TTSUnavailableError(payload[0])
        error.exit_code = payload[1]
        raise error
    return payload


def _unit_child(unit: WorkUnit, cfg: SynthConfig, keys: dict, progress, parent_pid: int) -> None:
    _die_with_parent(parent_pid)
    from megatron_inserter.data.synth.worker import process_unit

    backend = transcriber = None
    try:
        backend = build_backend(cfg, keys["tts"])
        transcriber = transcriber_for(cfg, keys["asr"])
        process_unit(unit, cfg, backend, report=lambda d, s: progress.put((d, s)), transcriber=transcriber)
    except InserterError as e:  # one line: the parent says which shard and what happens next
        _log(f"{shard_stem(cfg.name, unit.rank, unit.shard_index)}: {e}")
        sys.stderr.flush()
        os._exit(3)
    finally:
        for part in (backend, transcriber):
            if part is not None:
                part.close()


class _Progress:
    """A tqdm bar on a terminal; one log line a minute otherwise (slurm logs)."""

    LOG_EVERY_S = 60.0

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.docs = 0
        self.speech_seconds = 0.0
        self.t0 = self.last_log = time.monotonic()
        self.bar = None
        if enabled and sys.stderr.isatty():
            import tqdm

            tqdm.tqdm.monitor_interval = 0  # no monitor thread
            self.bar = tqdm.tqdm(desc="synth", unit="doc", file=sys.stderr, dynamic_ncols=True)

    def _rates(self) -> str:
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        return (f"speech {self.speech_seconds / 3600:.2f} h, {self.speech_seconds / 3600 / elapsed:.4f} h/s, "
                f"{self.speech_seconds / elapsed:.0f}x real time")

    def update(self, docs: int, seconds: float) -> None:
        self.docs += docs
        self.speech_seconds += seconds
        if self.bar is not None:
            self.bar.update(docs)
            self.bar.set_postfix_str(self._rates(), refresh=False)
        elif self.enabled and time.monotonic() - self.last_log >= self.LOG_EVERY_S:
            self.last_log = time.monotonic()
            rate = self.docs / max(self.last_log - self.t0, 1e-9)
            _log(f"{self.docs} documents ({rate:.1f}/s), {self._rates()}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _log(msg: str) -> None:
    print(f"[synth] {msg}", file=sys.stderr, flush=True)


def _check_inputs(files) -> dict:
    """Check every compressed input end to end before any work: nothing verified is an error naming the
    file; a damaged tail is announced (its lines are not used)."""
    if any(compression_of(f.path) for f in files):
        _log("checking the compressed inputs end to end")
    checks = check_inputs(files)
    for path, check in checks.items():
        if not check.ok and check.verified_bytes == 0:
            raise CorruptInputError(path, check.fault)
        if not check.ok:
            _log(f"warning: {path}: {check.fault}; only the lines before the damage are used (re-create the "
                 "file to use all of it)")
    return checks


def _show_skips(output_dir: str, stem: str, source: str, skips: SkipReport) -> None:
    """The skipped lines of a finished unit on stderr, up to the run's ``LISTED_SKIPS``."""
    if skips.shown > skips.show:
        return
    try:
        listed = read_manifest(manifest_path(output_dir, stem)).get("skipped_lines") or []
    except (OSError, ValueError):
        return
    for item in listed:
        if not isinstance(item, dict):
            continue
        reason = str(item.get("reason"))
        detail = SKIP_REASONS.get(reason, reason)
        if reason == "duplicate_id":
            detail = f"document id {item.get('id')!r} was already used at {item.get('first')}"
        skips.add(reason, f"{source}:{item.get('line')}", detail)
        if skips.shown > skips.show:
            return


def run_synthesis(cfg: SynthConfig) -> RunResult:
    t0 = time.monotonic()
    check_backend_inputs(cfg)
    if cfg.asr_enabled:
        asr_kind(cfg.asr_url, cfg.asr_model)
    files = expand_inputs(cfg.input)
    checks = _check_inputs(files)
    os.makedirs(os.path.join(cfg.output_dir, MANIFEST_DIR), exist_ok=True)
    fingerprint = cfg.fingerprint()
    fingerprint["inputs"] = [f.path for f in files]
    resuming = check_run_arguments(cfg.output_dir, fingerprint)
    removed = remove_stale_temporaries(cfg.output_dir, cfg.name, cfg.rank)
    if resuming:
        _log(f"resuming in {cfg.output_dir} (removed {removed} unfinished temporary files)")
    keys = api_keys(cfg)
    for w in probe_backend(cfg, keys=keys):
        _log(f"warning: {w}")

    ctx = _context()
    progress_queue = ctx.Queue()
    errors = PlanErrors(files=[])
    units = iter_units(files, cfg.shard_limit, cfg.speech_ratio, cfg.rank, cfg.world_size, errors,
                       json_key=cfg.json_keys, checks=checks)
    skips = SkipReport(prog="inserter synth", show=LISTED_SKIPS,
                       overflow=f"further skipped lines are listed in {MANIFEST_DIR}/*.json")
    running: dict[int, tuple] = {}  # unit index -> (process, unit, attempt)
    result = RunResult(SynthStats())
    bar = _Progress(cfg.progress)
    exhausted = False

    def drain(block_s: float) -> None:
        try:
            item = progress_queue.get(timeout=block_s) if block_s else progress_queue.get_nowait()
            while True:
                bar.update(*item)
                item = progress_queue.get_nowait()
        except queue_mod.Empty:
            pass

    def start(unit: WorkUnit, attempt: int) -> None:
        proc = ctx.Process(target=_unit_child, args=(unit, cfg, keys, progress_queue, os.getpid()), daemon=False)
        proc.start()
        running[unit.unit_index] = (proc, unit, attempt)

    try:
        while True:
            while not exhausted and len(running) < cfg.workers:
                unit = next(units, None)
                if unit is None:
                    exhausted = True
                elif is_complete(cfg.output_dir, shard_stem(cfg.name, unit.rank, unit.shard_index), unit.planned):
                    result.units_resumed += 1
                else:
                    start(unit, 1)
            if not running:
                break
            drain(0.1)
            for index, (proc, unit, attempt) in list(running.items()):
                if proc.is_alive():
                    continue
                proc.join()
                del running[index]
                stem = shard_stem(cfg.name, unit.rank, unit.shard_index)
                if proc.exitcode == 0 and is_complete(cfg.output_dir, stem, unit.planned):
                    result.units_done += 1
                    _show_skips(cfg.output_dir, stem, unit.file.source, skips)
                elif attempt < MAX_ATTEMPTS_PER_UNIT:
                    _log(f"worker for {stem} ({unit.file.source} from line {unit.first_line}) exited with "
                         f"{proc.exitcode}; retrying")
                    start(unit, attempt + 1)
                else:
                    result.failed_units.append(stem)
                    _log(f"giving up on {stem} ({unit.file.source} from line {unit.first_line}) after "
                         f"{attempt} attempts; run the same command again to retry it")
        drain(0)
    except BaseException:
        for proc, _, _ in running.values():
            proc.kill()
            proc.join()
        raise
    finally:
        bar.close()
    result.wall_seconds = time.monotonic() - t0
    _write_stats(cfg, result, errors)
    return result


def _write_stats(cfg: SynthConfig, result: RunResult, errors: PlanErrors) -> None:
    rank_manifests = read_manifests(cfg.output_dir, cfg.name, cfg.rank)
    result.rank_stats = merge(SynthStats.from_dict(m["stats"]) for m in rank_manifests)
    rank_summary = result.rank_stats.summary()
    rank_summary.update({
        "rank": cfg.rank, "world_size": cfg.world_size, "units_done_this_run": result.units_done,
        "units_resumed": result.units_resumed, "failed_units": result.failed_units,
        "unreadable_input": errors.files, "wall_seconds_this_run": result.wall_seconds,
    })
    write_json(os.path.join(cfg.output_dir, f"stats-{cfg.rank:05d}.json"), rank_summary)
    run_manifests = read_manifests(cfg.output_dir, cfg.name)
    run_summary = merge(SynthStats.from_dict(m["stats"]) for m in run_manifests).summary()
    run_summary.update({
        "world_size": cfg.world_size, "units_complete": len(run_manifests), "unreadable_input": errors.files,
        "tts": cfg.tts, "tts_model": cfg.tts_model, "span_mode": cfg.span_mode,
        "target_speech_ratio": cfg.speech_ratio, "max_span_wer": cfg.max_span_wer, "asr_model": cfg.asr_model,
    })
    write_json(os.path.join(cfg.output_dir, "stats.json"), run_summary)
