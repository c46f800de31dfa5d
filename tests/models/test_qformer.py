"""The Q-Former adapter: a fixed number of frames per encoder window that the data path counts exactly, DeSTA2's
construction on the same weights, tensor/pipeline/data-parallel losses equal to TP1, and adapter-only training
that leaves the encoder and the LLM bitwise unchanged."""

import dataclasses

import pytest

from megatron_inserter.data.frames import FrameSpec, num_audio_frames, window_frames
from megatron_inserter.models import presets
from megatron_inserter.models.config import AdapterConfig, default_encoder_layers
from tests.harness import run_distributed
from tests.models import inserter_parallel as ip
from tests.models import qformer_checks

WINDOW = qformer_checks.WINDOW


@pytest.fixture(scope="module")
def composed(tmp_path_factory):
    """A tiny Qwen2 (with a tokenizer) + a tiny Whisper composed with ``--adapter qformer``."""
    from megatron_inserter.convert.cli import main as convert
    from tests.convert import hf_models

    root = tmp_path_factory.mktemp("qformer-compose")
    llm, whisper, out = str(root / "llm"), str(root / "whisper"), str(root / "composed")
    hf_models.qwen2(llm)
    hf_models.add_tokenizer(llm)
    hf_models.whisper(whisper)
    assert convert(["hf-to-mcore", "--llm", llm, "--encoder", whisper, "--output", out, "--adapter", "qformer",
                    "--seed", "7"]) == 0
    return {"mcore": out, "whisper": whisper}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, composed):
    root = tmp_path_factory.mktemp("qformer")
    ckpt = str(root / "ckpt")
    return ckpt, run_distributed(qformer_checks.reference_suite, 1, ckpt, str(root), composed["mcore"],
                                 composed["whisper"])[0]


@pytest.fixture(scope="module")
def parallel(reference):
    return run_distributed(qformer_checks.parallel_suite, 2, reference[0])


@pytest.mark.parametrize("seconds,windows", [(0.01, 1), (1.0, 1), (30.0, 1), (30.01, 2), (45.0, 2), (90.0, 3),
                                             (95.5, 4)])
def test_frame_count_is_queries_per_started_window(seconds, windows):
    spec = FrameSpec(queries_per_window=64)
    n = round(seconds * 16_000)
    assert num_audio_frames(n, spec) == 64 * windows
    assert window_frames(n, spec) == [64] * windows


def test_a_tail_shorter_than_one_hop_gives_no_window_and_other_adapters_keep_their_count():
    assert num_audio_frames(WINDOW + 159, FrameSpec(queries_per_window=64)) == 64
    assert num_audio_frames(WINDOW + 160, FrameSpec(queries_per_window=64)) == 128
    assert num_audio_frames(0, FrameSpec(queries_per_window=64)) == 0
    assert FrameSpec(queries_per_window=64).min_samples == 160
    assert num_audio_frames(16_000, FrameSpec()) == 25  # pool-linear: 50 positions per second, pooled by 2


def test_desta2_preset_shape_and_frame_spec():
    cfg = presets.resolve("desta2-llama3-8b-whisper-small")
    enc, ad, llm = cfg.encoder, cfg.adapter, cfg.llm
    assert (enc.num_layers, enc.hidden_size, enc.num_attention_heads, enc.num_mel_bins) == (12, 768, 12, 80)
    assert (ad.kind, ad.queries, ad.encoder_layers, ad.qformer_layers) == ("qformer", 64, [2, 5, 8, 11], 2)
    assert (llm.num_layers, llm.hidden_size, llm.ffn_hidden_size, llm.num_attention_heads,
            llm.num_query_groups, llm.vocab_size, llm.add_qkv_bias) == (32, 4096, 14336, 32, 8, 128256, False)
    spec = cfg.frame_spec()
    assert spec.queries_per_window == 64
    assert num_audio_frames(10 * 16_000, spec) == 64
    assert presets.resolve("tiny").frame_spec().queries_per_window is None


def test_default_taps_are_desta2s_per_whisper_size():
    assert default_encoder_layers(12) == [2, 5, 8, 11]  # whisper-small
    assert default_encoder_layers(24) == [5, 11, 17, 23]  # whisper-medium
    assert default_encoder_layers(32) == [7, 15, 23, 31]  # whisper-large-v3
    assert default_encoder_layers(4) == [0, 1, 2, 3]  # whisper-tiny
    assert AdapterConfig(kind="qformer").tapped_layers(12) == [2, 5, 8, 11]


@pytest.mark.parametrize("fields,message", [({"queries": 0}, "queries"), ({"qformer_layers": 0}, "qformer_layers"),
                                            ({"encoder_layers": [2, 2]}, "distinct"),
                                            ({"encoder_layers": [-1]}, "distinct")])
def test_bad_qformer_fields_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        AdapterConfig(kind="qformer", **fields)


def test_taps_past_the_encoder_are_refused():
    with pytest.raises(ValueError, match="reach past the encoder's 12 layers"):
        AdapterConfig(kind="qformer", encoder_layers=[2, 13]).tapped_layers(12)


def test_qformer_config_round_trips_through_model_config_json(tmp_path):
    from megatron_inserter.models import config_file

    cfg = ip.qformer_config()
    read = config_file.read(config_file.write(str(tmp_path), config_file.to_dict(cfg))).config
    assert read.adapter == cfg.adapter
    assert read.frame_spec() == cfg.frame_spec()


def test_data_path_placeholders_equal_the_frames_the_model_emits(reference):
    q = ip.qformer_config().adapter.queries
    for row in reference[1]["counts"]:
        assert row["placeholders"] == row["counted"] == row["emitted"], row
        assert row["emitted"] == q * row["windows"], row
        if (row["samples"] % WINDOW) == 0 or (row["samples"] % WINDOW) >= 160:
            assert row["emitted"] == row["ceil"], row
    assert [r["windows"] for r in reference[1]["counts"]] == [1, 1, 1, 2, 1, 3]


def test_a_clips_frames_do_not_depend_on_what_it_is_batched_with(reference):
    assert reference[1]["batching"] < 1e-5


def test_qformer_equals_desta2s_bert_construction_on_the_same_weights(reference):
    r = reference[1]["desta2"]
    assert r["missing"] == [] and r["unexpected"] == []
    assert r["shape"] == (3, ip.qformer_config().adapter.queries, 48)
    assert r["scale"] > 0.1
    assert r["diff"] < 1e-5 * max(1.0, r["scale"])
    assert r["padding_diff"] < 1e-6


def test_reference_trains(reference):
    losses = reference[1]["reference"]
    assert len(losses) == 3
    assert losses[0] > losses[-1]


@pytest.mark.parametrize("layout", ["tp2", "pp2", "dp2-overlap"])
def test_parallel_layouts_match_single_process(reference, parallel, layout):
    baseline = reference[1]["reference"]
    for per_rank in parallel:
        assert per_rank[layout] == pytest.approx(baseline, abs=1e-6, rel=0)


def test_freeze_encoder_and_llm_train_only_the_adapter(reference):
    report = reference[1]["adapter_only"]
    for part in ("encoder", "language_model"):
        assert report[part]["count"] > 0
        assert report[part]["trainable"] == [], part
        assert len(report[part]["unchanged"]) == report[part]["count"], part
    adapter = report["adapter"]
    assert adapter["count"] >= 20  # queries, layer weights, two blocks, norm, projection
    assert len(adapter["trainable"]) == adapter["count"]
    assert adapter["unchanged"] == []


def test_a_qformer_that_tensor_parallelism_cannot_split_is_refused():
    from megatron_inserter.models.qformer import qformer_transformer_config

    encoder = dataclasses.make_dataclass("C", ["hidden_size", "num_attention_heads", "tensor_model_parallel_size"])
    with pytest.raises(ValueError, match="does not divide the Q-Former's 4 attention heads"):
        qformer_transformer_config(AdapterConfig(kind="qformer"), encoder(32, 4, 3))
    with pytest.raises(ValueError, match="not divisible by qformer_heads 5"):
        qformer_transformer_config(AdapterConfig(kind="qformer", qformer_heads=5), encoder(32, 4, 1))


def test_composition_accepts_a_fresh_qformer(composed, reference):
    from megatron_inserter.models import config_file

    adapter = config_file.read(composed["mcore"]).config.adapter
    assert (adapter.kind, adapter.queries, adapter.encoder_layers) == ("qformer", 64, default_encoder_layers(2))
    r = reference[1]["composed"]
    assert r["loaded"] and r["fresh_names"] and r["encoder_equal"]
    assert r["adapter_equal"]  # the seeded initialisation, reproducible
    assert 0.8 < r["queries_std"] < 1.2
    assert r["frames"] == (2 * 64, 32)  # 64 queries per clip at the LLM width
