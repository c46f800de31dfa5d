"""Round-trip ASR with a NeMo ASR model restored from a local ``.nemo`` file (CTC, RNNT or AED models), batched,
on CUDA when available. NeMo is imported only when this transcriber is built."""

from __future__ import annotations

import numpy as np

from megatron_inserter.data.synth.asr.base import Transcriber
from megatron_inserter.errors import UsageError


class NemoTranscriber(Transcriber):
    name = "nemo"

    def __init__(self, path: str, *, device: str | None = None, batch_size: int = 8):
        try:
            import torch
            from nemo.collections.asr.models import ASRModel
        except ImportError as e:
            raise UsageError(f"--asr-model {path}: NeMo ASR could not be imported ({e}); install it with "
                             "`pip install 'megatron-inserter[tts]'`") from None
        self.model = path
        self.batch_size = batch_size
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = ASRModel.restore_from(path, map_location=dev).eval()

    def transcribe(self, clips):
        audio = [np.asarray(a, dtype=np.float32) for a, _ in clips]
        if not audio:
            return []
        hyps = self.net.transcribe(audio, batch_size=self.batch_size, verbose=False)
        if isinstance(hyps, tuple):  # (best, all) of RNNT models in some versions
            hyps = hyps[0]
        return [h if isinstance(h, str) else getattr(h, "text", None) for h in hyps]
