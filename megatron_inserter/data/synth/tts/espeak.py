"""espeak-ng backend: libespeak-ng called in-process through ctypes, the ``espeak-ng`` program as fallback.

In-process use follows the speak_lib.h API: ``espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, ...)`` once per
process, a synth callback that collects the 16-bit samples (22.05 kHz), then per request
``espeak_SetVoiceByName`` -> ``espeak_SetParameter(espeakRATE / espeakPITCH)`` -> ``espeak_Synth`` with
``espeakCHARS_UTF8``. The library keeps some state between calls (pitch flutter, wave phase), so its
output depends on what the process synthesized before; the pipeline therefore gives every shard a fresh
process, which makes shards byte-for-byte reproducible.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import struct
import subprocess

import numpy as np

from megatron_inserter.data.document import TTSControls
from megatron_inserter.data.synth.speakers import (
    ESPEAK_VOICES,
    EspeakSpeaker,
    espeak_gender,
    espeak_speaker_pool,
)
from megatron_inserter.data.synth.tts.base import (
    TTSBackend,
    TTSError,
    TTSRequest,
    TTSUnavailableError,
    to_16k,
)

# Values from espeak-ng/speak_lib.h (API revision 12).
AUDIO_OUTPUT_SYNCHRONOUS = 2
espeakINITIALIZE_DONT_EXIT = 0x8000
espeakCHARS_UTF8 = 1
POS_CHARACTER = 1
espeakRATE = 1
espeakPITCH = 3
EE_OK = 0
BUFFER_MS = 200
DEFAULT_RATE = 175  # espeak-ng's default speed (words per minute) and pitch (0-99): controls are relative to them
DEFAULT_PITCH = 50

INSTALL_HINT = (
    "install espeak-ng (Debian/Ubuntu: `sudo apt-get install espeak-ng`; it provides libespeak-ng.so.1 and the "
    "espeak-ng program) or use --tts nemo with local .nemo models"
)

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _load_library() -> ctypes.CDLL:
    errors = []
    for name in ("libespeak-ng.so.1", ctypes.util.find_library("espeak-ng"), "libespeak-ng.so"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(f"{name}: {e}")
    raise TTSUnavailableError("libespeak-ng could not be loaded (" + "; ".join(errors) + "); " + INSTALL_HINT)


class EspeakLibrary:
    """The in-process engine. One per process (espeak-ng cannot be re-initialized after espeak_Terminate)."""

    _instance: EspeakLibrary | None = None

    @classmethod
    def get(cls) -> EspeakLibrary:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        lib = _load_library()
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        self.sample_rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, None, espeakINITIALIZE_DONT_EXIT)
        if self.sample_rate <= 0:
            raise TTSUnavailableError(f"espeak_Initialize failed (returned {self.sample_rate}): the espeak-ng "
                                      f"data directory is missing or unreadable; {INSTALL_HINT}")
        self._lib = lib
        self.version = f"espeak-ng {(lib.espeak_Info(None) or b'?').decode(errors='replace').strip()}"
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: the library holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, num_samples, events) -> int:
        if wav and num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0  # continue

    def synth(self, text: str, voice_name: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice_name.encode()) != EE_OK:
            raise TTSError(f"espeak-ng has no voice {voice_name!r}")
        # The voice keeps the previous rate and pitch, so both are set after it, every time.
        if (lib.espeak_SetParameter(espeakRATE, rate, 0) != EE_OK
                or lib.espeak_SetParameter(espeakPITCH, pitch, 0) != EE_OK):
            raise TTSError(f"espeak-ng rejected rate {rate} / pitch {pitch}")
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        err = lib.espeak_Synth(data, len(data), 0, POS_CHARACTER, 0, espeakCHARS_UTF8, None, None)
        if err != EE_OK:
            raise TTSError(f"espeak_Synth failed with error {err}")
        pcm = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        self._chunks = []
        return pcm, self.sample_rate


def _parse_wav(data: bytes) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV bytes (as ``espeak-ng --stdout`` writes them, possibly with an unset size) -> samples."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise TTSError("espeak-ng --stdout did not return WAV data")
    pos, rate = 12, None
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = pos + 8
        if chunk == b"fmt ":
            channels, rate, bits = struct.unpack("<xxHI6xH", data[body:body + 16])
            if channels != 1 or bits != 16:
                raise TTSError(f"unexpected espeak-ng output format: {channels} channels, {bits} bits")
        elif chunk == b"data":
            end = len(data) if size in (0, 0xFFFFFFFF) or body + size > len(data) else body + size
            usable = (end - body) // 2 * 2
            return np.frombuffer(data[body:body + usable], dtype="<i2").copy(), rate or 22050
        pos = body + size + (size & 1)
    raise TTSError("espeak-ng output has no data chunk")


class EspeakCommand:
    """The fallback engine: one ``espeak-ng --stdout`` process per request."""

    def __init__(self, program: str | None = None):
        self.program = program or shutil.which("espeak-ng")
        if not self.program:
            raise TTSUnavailableError(f"the espeak-ng program is not on PATH; {INSTALL_HINT}")
        self._version: str | None = None

    @property
    def version(self) -> str:
        if self._version is None:
            try:
                out = subprocess.run([self.program, "--version"], capture_output=True, timeout=30, check=False)
                words = out.stdout.decode(errors="replace").split(":", 1)[-1].split()
                self._version = f"espeak-ng {words[0] if words else '?'}"
            except (OSError, subprocess.TimeoutExpired):
                self._version = "espeak-ng ?"
        return self._version

    def synth(self, text: str, voice_name: str, rate: int, pitch: int) -> tuple[np.ndarray, int]:
        cmd = [self.program, "--stdout", "--stdin", "-b", "1", "-v", voice_name, "-s", str(rate), "-p", str(pitch)]
        try:
            proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True, timeout=120,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise TTSError("espeak-ng timed out") from None
        if proc.returncode != 0:
            raise TTSError(f"espeak-ng exited with {proc.returncode}: {proc.stderr.decode(errors='replace')[:200]}")
        return _parse_wav(proc.stdout)


def open_engine(engine: str = "auto"):
    """``"library"`` (in-process), ``"command"`` (subprocess) or ``"auto"`` (library, else command)."""
    if engine == "library":
        return EspeakLibrary.get()
    if engine == "command":
        return EspeakCommand()
    if engine != "auto":
        raise ValueError(f"unknown espeak engine {engine!r} (auto, library, command)")
    try:
        return EspeakLibrary.get()
    except TTSUnavailableError as lib_error:
        try:
            return EspeakCommand()
        except TTSUnavailableError:
            raise lib_error from None


class EspeakBackend(TTSBackend):
    name = "espeak"
    batch_size = 1
    languages = tuple(ESPEAK_VOICES)

    def __init__(self, engine: str = "auto"):
        self.engine = open_engine(engine)
        self._pools = {lang: [s.id for s in espeak_speaker_pool(lang)] for lang in ESPEAK_VOICES}

    def speakers(self, language: str) -> list[str]:
        if language not in self._pools:
            raise ValueError(f"espeak backend has no voices for {language!r}")
        return self._pools[language]

    def gender(self, speaker: str) -> str | None:
        return espeak_gender(speaker)

    def describe(self, request: TTSRequest) -> tuple[str | None, TTSControls]:
        spk = EspeakSpeaker.from_id(request.speaker)
        return self.engine.version, TTSControls(speed=spk.rate / DEFAULT_RATE, pitch=spk.pitch / DEFAULT_PITCH)

    def synthesize(self, requests: list[TTSRequest]) -> list[np.ndarray]:
        out = []
        for req in requests:
            spk = EspeakSpeaker.from_id(req.speaker)
            text = req.text.replace("\x00", " ")
            pcm, rate = self.engine.synth(text, spk.voice_name, spk.rate, spk.pitch)
            out.append(to_16k(pcm.astype(np.float32) / 32768.0, rate))
        return out
