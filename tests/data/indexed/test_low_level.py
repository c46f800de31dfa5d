import os
import shutil

import numpy as np
import pytest

from megatron_inserter.data.frames import FrameSpec
from megatron_inserter.data.indexed.low_level import CorruptDatasetError, InterleavedLowLevelDataset
from megatron_inserter.data.indexed.metadata import TokenizerMismatchError
from megatron_inserter.data.tokenizers import build_tokenizer
from tests.data.indexed.megatron_text import text_of, write_megatron_text_dataset
from tests.data.indexed.tiny_corpus import make_documents, train_tokenizer


def _copy(prefix: str, dst_dir) -> str:
    base = os.path.basename(prefix)
    for name in os.listdir(os.path.dirname(prefix)):
        if name.startswith(base):
            shutil.copy(os.path.join(os.path.dirname(prefix), name), dst_dir)
    return os.path.join(str(dst_dir), base)


@pytest.mark.parametrize("which", ["text", "audio"])
def test_truncated_idx_is_a_clear_error_naming_the_file(tmp_path, tiny_dataset, tiny_tokenizer, which):
    prefix = _copy(tiny_dataset, tmp_path)
    idx = (prefix if which == "text" else prefix + "_audio") + ".idx"
    size = os.path.getsize(idx)
    with open(idx, "r+b") as f:
        f.truncate(size - 9)
    with pytest.raises(CorruptDatasetError, match="truncated") as e:
        InterleavedLowLevelDataset(prefix, tiny_tokenizer)
    assert idx in str(e.value) and "preprocess" in str(e.value)


def test_truncated_bin_is_a_clear_error(tmp_path, tiny_dataset, tiny_tokenizer):
    prefix = _copy(tiny_dataset, tmp_path)
    with open(prefix + "_audio.bin", "r+b") as f:
        f.truncate(100)
    with pytest.raises(CorruptDatasetError, match=r"_audio\.bin.*truncated"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer)


def test_a_different_tokenizer_is_refused(tmp_path, tiny_dataset):
    other = build_tokenizer("sentencepiece",
                            train_tokenizer(make_documents(30, seed=77), str(tmp_path / "o.model"), 360))
    with pytest.raises(TokenizerMismatchError, match="vocab_size") as e:
        InterleavedLowLevelDataset(tiny_dataset, other)
    assert tiny_dataset in str(e.value) and "preprocess" in str(e.value)


def test_megatron_text_dataset_reads_as_text_only(tmp_path, tiny_docs, tiny_tokenizer):
    prefix = str(tmp_path / "mg")
    texts = [text_of(d) for d in tiny_docs[:10]]
    write_megatron_text_dataset(prefix, texts, tiny_tokenizer, sentences_per_doc=2)
    ds = InterleavedLowLevelDataset(prefix, tiny_tokenizer)
    assert ds.metadata is None and ds.audio is None and ds.num_documents == 10
    tokens, mask, clips = ds.read_expanded(3, 0, 10**9, FrameSpec())
    joined = np.concatenate(tokens)
    sentences = [p + "." for p in texts[3].split(".") if p]
    expected = [i for s in sentences for i in tiny_tokenizer.tokenize(s)] + [tiny_tokenizer.eod_id]
    assert joined.tolist() == expected and np.concatenate(mask).all() and clips == []
    assert ds.document_layout(FrameSpec())[0][3] == len(expected)
