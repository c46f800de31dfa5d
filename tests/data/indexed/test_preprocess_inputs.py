"""Preprocessing of bad and unusual inputs: each bad record is a counted skip (reported on stderr), never
a crash and never wrong data; token storage follows the tokenizer (BOS, uint16/int32)."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from megatron_inserter.data.indexed.index_format import read_header
from megatron_inserter.data.indexed.low_level import InterleavedLowLevelDataset
from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess, write_dataset
from megatron_inserter.data.indexed.sources import Document, Segment
from megatron_inserter.data.tokenizers import Tokenizer
from tests.data.indexed.tiny_corpus import make_documents, shard_sample, write_jsonl


def _float_wav(samples: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples.astype(np.float32), 16000, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def _speech_docs(n: int, seed: int) -> list[dict]:
    return [d for d in make_documents(4 * n, seed=seed) if any(s["type"] == "speech" for s in d["segments"])][:n]


def test_nan_and_inf_audio_are_counted_skips_never_stored(tmp_path, tiny_tokenizer_path, capsys):
    import webdataset as wds

    docs = _speech_docs(6, seed=13)
    wave = np.sin(np.arange(8000) / 10.0) * 0.3
    nan, inf = wave.copy(), wave.copy()
    nan[100] = np.nan
    inf[5000:5010] = np.inf
    os.makedirs(tmp_path / "shards")
    with wds.TarWriter(str(tmp_path / "shards" / "s-000000.tar"), mtime=0) as w:
        for i, doc in enumerate(docs):
            sample = shard_sample(doc)
            if i in (1, 4):
                sample["0.flac"] = _float_wav(nan if i == 1 else inf)  # float WAV under the member name
            w.write(sample)
    stats = preprocess(PreprocessConfig([str(tmp_path / "shards")], str(tmp_path / "out"), "sentencepiece",
                                        tiny_tokenizer_path, progress=False))
    assert stats["skipped"] == {"nonfinite_audio": 2} and stats["documents"] == 4
    ds = InterleavedLowLevelDataset(str(tmp_path / "out"), cache_dir=str(tmp_path / "c"))
    kept = [d for i, d in enumerate(docs) if i not in (1, 4)]
    expected = [s["pcm"] for d in kept for s in d["segments"] if s["type"] == "speech"]
    assert ds.num_spans == len(expected)
    assert all(np.array_equal(ds.audio[k], pcm) for k, pcm in enumerate(expected))
    assert "nonfinite_audio" in capsys.readouterr().err


def test_a_clip_too_short_for_one_encoder_frame_is_a_counted_skip_named_on_stderr(tmp_path, tiny_tokenizer, capsys):
    from megatron_inserter.data.frames import FrameSpec, num_audio_frames

    short = FrameSpec().min_samples - 1
    assert num_audio_frames(short) == 0 and num_audio_frames(short + 1) == 1
    pcm = (np.arange(short) % 200).astype(np.int16)
    docs = [Document("ok", [Segment("a fox "), Segment("listens", (np.arange(4000) % 300).astype(np.int16))]),
            Document("too-short", [Segment("the dog "), Segment("reads", pcm), Segment(" text")])]
    stats = write_dataset(str(tmp_path / "d"), docs, tiny_tokenizer)
    from megatron_inserter.data.indexed.preprocess import report_skips

    report_skips(stats)
    assert stats["skipped"] == {"audio_too_short": 1} and stats["documents"] == 1
    assert stats["asr_documents"] == 1  # no ASR pair of a transcript with no audio frame
    assert "skipped 1 document: audio_too_short (e.g. too-short)" in capsys.readouterr().err


def test_deeply_nested_json_and_lone_surrogates_are_skipped_with_file_and_line(tmp_path, tiny_docs,
                                                                              tiny_tokenizer_path, capfd):
    path = write_jsonl(tiny_docs[:10], str(tmp_path / "c.jsonl"))
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"text": ' + "[" * 100_000 + "]" * 100_000 + "}\n")  # line 11
        f.write('{"text": "broken \\ud800 surrogate"}\n')  # line 12
        f.write(json.dumps({"text": "the fox reads"}) + "\n")  # line 13
    stats = preprocess(PreprocessConfig([path], str(tmp_path / "out"), "sentencepiece", tiny_tokenizer_path,
                                        workers=2, partitions=2, progress=False))
    assert stats["documents"] == 11 and stats["skipped_total"] == 2
    err = capfd.readouterr().err
    assert f"{path}:11" in err and f"{path}:12" in err


class _WideTokenizer(Tokenizer):
    """A 70,000-id vocabulary (does not fit uint16): word i of the text -> id 60,000 + 97 i."""

    tokenizer_type = "wide"
    tokenizer_model = "wide"
    vocab_size = 70_000
    eod_id, pad_id, audio_bos_id, audio_eos_id, audio_placeholder_id = 1, 0, 2, 3, 4

    def tokenize(self, text):
        return [60_000 + 97 * i for i, _ in enumerate(text.split())]

    def id_to_piece(self, token_id):
        return f"w{token_id}"


def test_tokens_are_uint16_when_the_vocabulary_fits_else_int32(tmp_path, tiny_dataset, tiny_tokenizer):
    assert read_header(tiny_dataset + ".idx").dtype == np.uint16
    wide = _WideTokenizer()
    docs = [Document(str(i), [Segment(" ".join(["w"] * (i + 3)))]) for i in range(5)]
    write_dataset(str(tmp_path / "wide"), docs, wide, with_audio=False)
    assert read_header(str(tmp_path / "wide.idx")).dtype == np.int32
    ds = InterleavedLowLevelDataset(str(tmp_path / "wide"), wide, cache_dir=str(tmp_path / "c"))
    assert [list(ds.text[i][0]) for i in range(5)] == [wide.tokenize(d.segments[0].text) + [1] for d in docs]


def _hf_dir(path, bos: str | None) -> str:
    from tokenizers import Tokenizer as Fast
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = Fast(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|audio_bos|>", "<|audio_eos|>", "<|AUDIO|>"] + ([bos] if bos else [])
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(["the quick brown fox", "speech models listen"] * 20, trainer)
    os.makedirs(path)
    tok.save(os.path.join(path, "tokenizer.json"))
    with open(os.path.join(path, "tokenizer_config.json"), "w") as f:
        json.dump({"eos_token": "<|endoftext|>", "bos_token": bos}, f)
    return str(path)


@pytest.mark.parametrize("bos", ["<|begin_of_text|>", None])
def test_every_document_starts_with_the_bos_when_the_tokenizer_has_one(tmp_path, bos):
    from megatron_inserter.data.tokenizers import build_tokenizer

    tok = build_tokenizer("huggingface", _hf_dir(tmp_path / "hf", bos))
    assert (tok.bos_id is None) == (bos is None)
    pcm = (np.arange(3000) % 300).astype(np.int16)
    docs = [Document("t", [Segment("the fox")]), Document("s", [Segment("speech", pcm), Segment(" models")]),
            Document("m", [Segment("the "), Segment("quick", pcm)])]
    write_dataset(str(tmp_path / "d"), docs, tok)
    unframed = {"d": [tok.tokenize("the fox")[0], tok.audio_bos_id, tok.tokenize("the ")[0]],
                "d_asr": [tok.audio_bos_id] * 2}
    for prefix, without_bos in unframed.items():
        ds = InterleavedLowLevelDataset(str(tmp_path / prefix), tok, cache_dir=str(tmp_path / "c"))
        assert ds.metadata.tokenizer.bos_id == tok.bos_id
        firsts = [int(ds.text[int(ds.document_indices[d])][0][0]) for d in range(ds.num_documents)]
        assert firsts == ([tok.bos_id] * len(without_bos) if bos else without_bos)
    tokens = InterleavedLowLevelDataset(str(tmp_path / "d"), tok, cache_dir=str(tmp_path / "c")).text
    assert list(tokens[0][0]) == [tok.bos_id] * bool(bos) + tok.tokenize("the fox") + [tok.eod_id]


def test_preprocess_imports_neither_torch_nor_megatron_core(tmp_path, tiny_docs, tiny_tokenizer_path):
    path = write_jsonl(tiny_docs[:8], str(tmp_path / "c.jsonl"))
    code = ("import sys\nfrom megatron_inserter.cli import main\n"
            f"rc = main(['preprocess', '--input', {path!r}, '--output-prefix', {str(tmp_path / 'o')!r}, "
            f"'--tokenizer-type', 'sentencepiece', '--tokenizer-model', {tiny_tokenizer_path!r}, '--workers', '2'])\n"
            "print(rc, sorted(m for m in ('torch', 'megatron.core') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stderr
    assert os.path.exists(tmp_path / "o.idx")
