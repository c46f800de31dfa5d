import numpy as np
import pytest
import torch
from megatron.core.datasets.blended_dataset import BlendedDataset

from megatron_inserter.data.frames import num_audio_frames
from megatron_inserter.data.indexed import build_datasets, dataset_config, parse_blend
from megatron_inserter.data.indexed.metadata import TokenizerMismatchError
from megatron_inserter.data.tokenizers import build_tokenizer
from tests.data.indexed.megatron_text import text_of, write_megatron_text_dataset
from tests.data.indexed.tiny_corpus import make_documents, train_tokenizer


@pytest.fixture(scope="module")
def megatron_text(tmp_path_factory, tiny_tokenizer):
    prefix = str(tmp_path_factory.mktemp("mg") / "text_document")
    write_megatron_text_dataset(prefix, [text_of(d) for d in make_documents(60, seed=11)], tiny_tokenizer)
    return prefix


def test_parse_blend_uses_megatron_syntax():
    assert parse_blend(["0.4", "A", "0.3", "B", "0.3", "C"]) == (["A", "B", "C"], [0.4, 0.3, 0.3])
    assert parse_blend(["A", "B"]) == (["A", "B"], None)
    with pytest.raises(ValueError, match="positive"):
        parse_blend(["0.5", "A", "0", "B"])


def test_blend_proportions_and_a_megatron_text_component(gloo_group, tiny_dataset, megatron_text, tiny_tokenizer,
                                                         cache_dir):
    tok = tiny_tokenizer
    cfg = dataset_config(["0.4", tiny_dataset, "0.3", tiny_dataset + "_asr", "0.3", megatron_text], "90,10,0",
                         seq_length=64, seed=5, tokenizer=tok, path_to_cache=cache_dir)
    train, valid, test = build_datasets(cfg, num_samples=(400, 20, 0))
    assert isinstance(train, BlendedDataset) and len(train) >= 400 and test is None and len(valid) >= 20
    ids = np.asarray(train.dataset_index[:400])
    share = np.bincount(ids, minlength=3) / 400
    assert np.allclose(share, [0.4, 0.3, 0.3], atol=0.01)
    asr_placeholders = 0
    for i in range(0, 400, 7):
        s = train[i]
        component = train.datasets[s["dataset_id"]][int(train.dataset_sample_index[i])]
        assert torch.equal(s["tokens"], component["tokens"])
        n_ph = int((s["tokens"] == tok.audio_placeholder_id).sum())
        if s["dataset_id"] == 2:  # Megatron text: all text, loss everywhere but padding, no audio
            assert s["audio"] == [] and n_ph == 0
            assert int(s["loss_mask"].sum()) == 64 - s["num_padding"]
        else:
            assert n_ph == sum(num_audio_frames(len(c)) for c in s["audio"])
            asr_placeholders += n_ph * (s["dataset_id"] == 1)
    assert asr_placeholders > 0
    # the Megatron dataset's (uint16) tokens come through unchanged
    mg = train.datasets[2]
    tokens = mg[0]["tokens"].tolist()
    text = tok.detokenize([t for t in tokens if t != tok.eod_id])
    assert len(tokens) == 64 and len(text) > 0 and all(0 <= t < tok.vocab_size for t in tokens)


def test_a_mismatched_tokenizer_is_refused_when_building(gloo_group, tiny_dataset, tmp_path):
    other = build_tokenizer("sentencepiece",
                            train_tokenizer(make_documents(30, seed=77), str(tmp_path / "o.model"), 360))
    cfg = dataset_config([tiny_dataset], "1,0,0", seq_length=64, seed=5, tokenizer=other,
                         path_to_cache=str(tmp_path / "c"))
    with pytest.raises(TokenizerMismatchError, match="re-run `inserter preprocess`"):
        build_datasets(cfg)
