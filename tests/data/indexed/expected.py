"""Independent reference: what a source document should become, computed from the tokenizer and the
frame function only."""

from __future__ import annotations

import numpy as np

from megatron_inserter.data.frames import FrameSpec, num_audio_frames, split_windows, window_frames

DEFAULT_SPEC = FrameSpec()


def stored_layout(doc: dict, tok) -> tuple[list[list[int]], list[int], list[np.ndarray]]:
    """(sequences, modes, span pcm) of a document as ``inserter preprocess`` stores it."""
    seqs, modes, spans, pending = [], [], [], ""
    for seg in doc["segments"]:
        if seg["type"] == "speech":
            if pending:
                seqs.append(tok.tokenize(pending))
                modes.append(0)
                pending = ""
            seqs.append([tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id])
            modes.append(1)
            spans.append(seg["pcm"])
        else:
            pending += seg["text"]
    if pending:
        seqs.append(tok.tokenize(pending))
        modes.append(0)
    if modes[-1] == 0:
        seqs[-1] = seqs[-1] + [tok.eod_id]
    else:
        seqs.append([tok.eod_id])
        modes.append(0)
    if tok.bos_id is not None:  # every document starts with the tokenizer's BOS
        if modes[0] == 0:
            seqs[0] = [tok.bos_id] + seqs[0]
        else:
            seqs.insert(0, [tok.bos_id])
            modes.insert(0, 0)
    return seqs, modes, spans


def expanded_stream(doc: dict, tok, spec: FrameSpec = DEFAULT_SPEC) -> tuple[list[int], list[np.ndarray]]:
    """Training tokens of a document (placeholders expanded) and its audio clips (encoder windows)."""
    seqs, modes, spans = stored_layout(doc, tok)
    tokens, clips, k = [], [], 0
    for seq, mode in zip(seqs, modes):
        if mode == 0:
            tokens += seq
            continue
        pcm = spans[k]
        k += 1
        tokens += [tok.audio_bos_id] + [tok.audio_placeholder_id] * num_audio_frames(len(pcm), spec)
        tokens += [tok.audio_eos_id]
        a = 0
        for n, f in zip(split_windows(len(pcm), spec), window_frames(len(pcm), spec)):
            if f:
                clips.append(pcm[a:a + n])
            a += n
    return tokens, clips
