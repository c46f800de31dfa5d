"""What opening a dataset refuses: a missing sidecar, files swapped between runs, ids outside the vocabulary,
documents without their end-of-document token, a tokenizer whose BOS differs."""

import json
import os
import shutil

import numpy as np
import pytest

from megatron_inserter.data.indexed import build_datasets, dataset_config, token_check
from megatron_inserter.data.indexed.binding import DatasetBindingError
from megatron_inserter.data.indexed.index_format import CorruptDatasetError, read_index
from megatron_inserter.data.indexed.low_level import InterleavedLowLevelDataset, MissingSidecarError
from megatron_inserter.data.indexed.metadata import TokenizerMismatchError, read_metadata
from megatron_inserter.data.indexed.preprocess import PreprocessConfig, preprocess
from megatron_inserter.data.indexed.token_check import TokenRangeError
from megatron_inserter.data.tokenizers import build_tokenizer
from megatron_inserter.errors import DataError
from tests.data.indexed.megatron_text import text_of, write_megatron_text_dataset
from tests.data.indexed.tiny_corpus import make_documents, train_tokenizer, write_jsonl


def _copy(prefix: str, dst_dir) -> str:
    base = os.path.basename(prefix)
    for name in os.listdir(os.path.dirname(prefix)):
        if name.startswith(base) and os.path.isfile(os.path.join(os.path.dirname(prefix), name)):
            shutil.copy(os.path.join(os.path.dirname(prefix), name), dst_dir)
    return os.path.join(str(dst_dir), base)


def _element_of_document(prefix: str, doc: int, offset: int, multimodal: bool = False) -> int:
    index = read_index(prefix + ".idx", multimodal)
    first_seq = int(index.document_indices[doc])
    return int(index.sequence_pointers[first_seq]) // index.header.dtype.itemsize + offset


@pytest.fixture(scope="module")
def megatron_text(tmp_path_factory, tiny_tokenizer):
    prefix = str(tmp_path_factory.mktemp("mg") / "text_document")
    write_megatron_text_dataset(prefix, [text_of(d) for d in make_documents(20, seed=21)], tiny_tokenizer)
    return prefix


def test_the_sidecar_records_bos_token_dtype_and_file_fingerprints(tiny_dataset, tiny_tokenizer):
    meta = read_metadata(tiny_dataset)
    assert meta.version == 2 and meta.token_dtype == "uint16"
    assert meta.tokenizer.bos_id == tiny_tokenizer.bos_id is not None
    base = os.path.basename(tiny_dataset)
    assert sorted(meta.files) == sorted(f"{base}{s}{e}" for s in ("", "_audio") for e in (".bin", ".idx"))
    for name, fp in meta.files.items():
        assert fp["size"] == os.path.getsize(os.path.join(os.path.dirname(tiny_dataset), name))
    asr = read_metadata(tiny_dataset + "_asr")
    assert sorted(asr.files) == sorted(f"{base}{s}{e}" for s in ("_asr", "_audio") for e in (".bin", ".idx"))


def test_an_interleaved_dataset_without_its_sidecar_is_refused_not_read_as_text(tmp_path, tiny_dataset,
                                                                                   tiny_tokenizer):
    prefix = _copy(tiny_dataset, tmp_path)
    os.remove(prefix + ".meta.json")
    with pytest.raises(MissingSidecarError, match="speech") as e:
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))
    assert prefix + ".meta.json" in str(e.value)


def test_a_text_dataset_swapped_in_for_the_interleaved_one_is_refused(tmp_path, tiny_dataset, tiny_docs,
                                                                      tiny_tokenizer, tiny_tokenizer_path):
    text = str(tmp_path / "text")
    preprocess(PreprocessConfig([write_jsonl(tiny_docs, str(tmp_path / "c.jsonl"))], text, "sentencepiece",
                                tiny_tokenizer_path, progress=False))
    InterleavedLowLevelDataset(text, tiny_tokenizer, cache_dir=str(tmp_path / "c"))  # fine on its own
    os.makedirs(tmp_path / "inter")
    prefix = _copy(tiny_dataset, tmp_path / "inter")
    shutil.copy(text + ".bin", prefix + ".bin")  # the .bin alone: it does not fit the .idx
    with pytest.raises(CorruptDatasetError, match="different runs"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))
    shutil.copy(text + ".idx", prefix + ".idx")  # .bin and .idx of the text run: consistent with each other
    with pytest.raises(DatasetBindingError, match=r"tiny\.(bin|idx).*meta\.json"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))


def test_a_bin_changed_in_place_is_refused_by_its_fingerprint(tmp_path, tiny_dataset, tiny_tokenizer):
    prefix = _copy(tiny_dataset, tmp_path)
    data = np.memmap(prefix + ".bin", dtype=np.uint16, mode="r+")
    data[-40:] = data[-40:][::-1].copy() + 1  # same size, other tokens (all still in the vocabulary)
    data.flush()
    del data
    with pytest.raises(DatasetBindingError, match="fingerprint"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))


def test_an_out_of_range_token_id_fails_before_training_naming_dataset_and_document(tmp_path, megatron_text,
                                                                                    tiny_tokenizer):
    prefix = _copy(megatron_text, tmp_path)
    cache = str(tmp_path / "cache")
    InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=cache)  # clean: opens (and caches the check)
    data = np.memmap(prefix + ".bin", dtype=np.uint16, mode="r+")
    data[_element_of_document(prefix, 7, 3)] = tiny_tokenizer.vocab_size + 5
    data.flush()
    del data
    with pytest.raises(TokenRangeError, match=r"document 7 holds token id 405 \(at token 3\)") as e:
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=cache)
    assert prefix in str(e.value) and "another tokenizer" in str(e.value)
    cfg = dataset_config([prefix], "1,0,0", seq_length=64, seed=1, tokenizer=tiny_tokenizer, path_to_cache=cache)
    with pytest.raises(TokenRangeError, match="document 7"):  # the training path: at dataset build time
        build_datasets(cfg)


def test_the_id_check_is_cached_by_file_size_and_time(tmp_path, megatron_text, tiny_tokenizer, monkeypatch):
    prefix = _copy(megatron_text, tmp_path)
    cache = str(tmp_path / "cache")
    InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=cache)
    assert len(os.listdir(os.path.join(cache, "token_checks"))) == 1

    def no_scan(*args):
        raise AssertionError("the .bin was scanned again")

    monkeypatch.setattr(token_check, "_tokens", no_scan)
    InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=cache)  # cache hit: no scan
    st = os.stat(prefix + ".bin")
    os.utime(prefix + ".bin", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError, match="scanned again"):  # a touched file is checked afresh
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=cache)


def test_a_megatron_dataset_made_with_another_tokenizer_is_refused(tmp_path, megatron_text):
    other = build_tokenizer("sentencepiece",
                            train_tokenizer(make_documents(30, seed=77), str(tmp_path / "o.model"), 360))
    with pytest.raises(TokenRangeError, match=f"vocabulary of the tokenizer sentencepiece .*o.model.*{other.vocab_size} ids"):
        InterleavedLowLevelDataset(megatron_text, other, cache_dir=str(tmp_path / "c"))


def test_a_megatron_dataset_without_append_eod_is_refused(tmp_path, tiny_tokenizer):
    prefix = str(tmp_path / "no_eod")
    write_megatron_text_dataset(prefix, [text_of(d) for d in make_documents(6, seed=5)], tiny_tokenizer,
                                append_eod=False)
    with pytest.raises(DataError, match=r"6 of 6 documents .*--append-eod"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))


def test_a_tokenizer_with_another_bos_is_refused(tmp_path, tiny_dataset, tiny_tokenizer):
    prefix = _copy(tiny_dataset, tmp_path)
    with open(prefix + ".meta.json") as f:
        meta = json.load(f)
    meta["tokenizer"]["bos_id"] = None  # as if made with a tokenizer without BOS
    with open(prefix + ".meta.json", "w") as f:
        json.dump(meta, f)
    with pytest.raises(TokenizerMismatchError, match="bos_id: dataset None vs tokenizer 2"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))


def test_an_idx_longer_than_its_header_promises_is_refused(tmp_path, tiny_dataset, tiny_tokenizer):
    prefix = _copy(tiny_dataset, tmp_path)
    with open(prefix + "_audio.idx", "ab") as f:
        f.write(b"\0" * 7)
    with pytest.raises(CorruptDatasetError, match=r"_audio\.idx.*7 bytes more"):
        InterleavedLowLevelDataset(prefix, tiny_tokenizer, cache_dir=str(tmp_path / "c"))
