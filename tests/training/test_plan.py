"""``inserter plan``: bytes per GPU against megatron-core on CPU and against Megatron-LM's formula, clip
statistics from a real dataset, the command's output, and ``inserter train`` refusing a run that cannot fit.

Megatron-LM's ``megatron/training/theoretical_memory_usage.py`` is re-implemented below from its arithmetic
(weights and optimizer: 18 bytes per parameter, 6 + 12/DP with the distributed optimizer, on the most loaded
shard; activations: Korthikanti et al.'s per-layer ``sbh(18 + 4F/h)/t`` with sequence parallelism and
selective recompute, ``sbh(10 + 24/t)`` x 1.05 without, the pipeline's in-flight micro-batches and the
interleaving penalty). The plan agrees with it exactly on weights, gradients and optimizer state of the real
(SwiGLU, grouped-query) shapes, and on activations under the formula's own assumptions: a GELU MLP (of 4h
without sequence parallelism), a key/value head per query head and dropout masks. Beyond them the plan
counts what megatron-core keeps and the formula does not model: SwiGLU's 2F-wide fc1 output, narrower
grouped-query K/V, no masks with dropout off, bf16 logits plus their fp32 softmax.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from megatron_inserter.models.config import LLMConfig
from megatron_inserter.models.presets import resolve
from megatron_inserter.training.clip_stats import ClipStats, clip_stats_of_blend, speech_load
from megatron_inserter.training.memory_model import (
    GIB,
    Layout,
    ModelShapes,
    SpeechLoad,
    peak_in_flight,
    stage_memory,
)
from tests.harness import run_distributed
from tests.training.plan_measure import CLIPS, FRAMES, SEQ, measure, tiny_config

# --- measured on CPU ------------------------------------------------------------------------------------

RUNS = [("inserter", "masked"), ("inserter", "window"), ("inserter", "packed"), ("gpt", "masked")]


@pytest.fixture(scope="module")
def measured():
    return dict(zip(RUNS, run_distributed(measure, 1, RUNS, timeout=600)[0]))


@pytest.mark.parametrize("model_type,mode", RUNS)
def test_measured_bytes_of_the_tiny_model_match_the_plan(measured, model_type, mode):
    m = measured[(model_type, mode)]
    cfg = tiny_config(mode)
    spec = cfg.frame_spec()
    layout = Layout(seq_length=SEQ, micro_batch_size=1, num_microbatches=1, kernels="local")
    load = SpeechLoad.none() if model_type == "gpt" else speech_load(
        ClipStats.assumed(spec, CLIP_SECONDS, CLIPS * FRAMES / SEQ), spec, SEQ, 1, mode,
        cfg.encoder.positions_per_window, thd=False)
    (stage,) = stage_memory(ModelShapes.of(cfg, model_type), layout, load)
    assert stage.params == m["params"]
    assert stage.weights == m["param_bytes"]
    assert stage.grads == m["grad_bytes"]
    assert m["scalar_state"]  # besides the moments, Adam keeps only scalar step counters
    assert stage.optimizer == m["optimizer_bytes"]
    ratio = stage.activations_per_microbatch / m["activation_bytes"]
    assert abs(ratio - 1) < 0.15, (ratio, stage.activations_per_microbatch, m["activation_bytes"])


CLIP_SECONDS = 1.0


def test_window_mode_keeps_more_than_ten_times_the_activations_of_masked(measured):
    window = measured[("inserter", "window")]["activation_bytes"]
    masked = measured[("inserter", "masked")]["activation_bytes"]
    assert window > 10 * masked  # 1 s clips padded to 30 s: 30x the encoder positions


# --- Megatron-LM's formula ------------------------------------------------------------------------------


def megatron_weight_and_optimizer_bytes(m: LLMConfig, lay: Layout) -> float:
    h, f, a, g = m.hidden_size, m.ffn_hidden_size, m.num_attention_heads, m.num_query_groups
    q_ratio = (m.kv_channels or h // a) * a / h
    attention = 2 * h * h * (1 + g / a) * q_ratio
    layer = 2 * h * (f * 1.5 + 1) + attention  # SwiGLU, RMSNorm
    embedding = h * m.padded_vocab_size(lay.tp)
    block = layer * m.num_layers + h
    shard = (block / lay.pp + embedding) / lay.tp
    if not m.tie_embeddings and lay.pp == 1:
        shard += embedding / lay.tp
    per_param = 6 + 12 / lay.dp if lay.distributed_optimizer else 18
    return shard * per_param


def megatron_activation_bytes(m: LLMConfig, lay: Layout) -> float:
    """First pipeline stage, logits left out (counted apart below)."""
    s, b, h, f, t, pp = lay.seq_length, lay.micro_batch_size, m.hidden_size, m.ffn_hidden_size, lay.tp, lay.pp
    per_layer = s * b * h * (18 + 4 * f / h) if lay.sequence_parallel else s * b * h * (10 + 24 / t)
    total = per_layer * m.num_layers + 8 * s * b * pp + s * b * h * pp
    if lay.vp:
        total *= 1 + (pp - 1) / (pp * lay.vp)
    elif pp > 1:
        total *= min(1, lay.num_microbatches / pp)
    if lay.sequence_parallel:
        if pp == 1:
            total += 4 * s * b * h
        return total / t
    if pp == 1:
        total += 2 * s * b * h
    return total * 1.05


def _llama_70b() -> LLMConfig:
    return LLMConfig(num_layers=80, hidden_size=8192, ffn_hidden_size=28672, num_attention_heads=64,
                     num_query_groups=8, vocab_size=128256, add_qkv_bias=False, tie_embeddings=False)


SHAPES = {
    "7b-tp4-pp2-distopt": (lambda: resolve("qwen2-audio-7b").llm,
                           Layout(seq_length=8192, micro_batch_size=1, num_microbatches=128, tp=4, pp=2, dp=8,
                                  sequence_parallel=True, distributed_optimizer=True, bf16=True)),
    "1.5b-tp1-pp1": (lambda: resolve("qwen2.5-1.5b-whisper-small").llm,
                     Layout(seq_length=4096, micro_batch_size=1, num_microbatches=16, dp=8, bf16=True)),
    "70b-tp8-pp4-vpp4-distopt": (_llama_70b,
                                 Layout(seq_length=4096, micro_batch_size=1, num_microbatches=128, tp=8, pp=4,
                                        vp=4, dp=4, sequence_parallel=True, distributed_optimizer=True,
                                        bf16=True)),
}


def _gpt_shapes(llm: LLMConfig) -> ModelShapes:
    cfg = resolve("tiny")
    return ModelShapes.of(cfg.replace(llm=llm), "gpt")


@pytest.mark.parametrize("name", list(SHAPES))
def test_weights_grads_and_optimizer_match_megatron_formula(name):
    llm_of, lay = SHAPES[name]
    llm = llm_of()
    stages = stage_memory(_gpt_shapes(llm), lay, SpeechLoad.none())
    most = max(s.weights + s.grads + s.optimizer for s in stages)
    reference = megatron_weight_and_optimizer_bytes(llm, lay)
    assert abs(most / reference - 1) < 0.01, (most / GIB, reference / GIB)


@pytest.mark.parametrize("name", list(SHAPES))
def test_activations_match_megatron_formula_under_its_assumptions(name):
    llm_of, lay = SHAPES[name]
    llm = llm_of()
    ffn = llm.ffn_hidden_size if lay.sequence_parallel else 4 * llm.hidden_size  # the non-SP formula fixes 4h
    assumed = dataclasses.replace(llm, num_query_groups=llm.num_attention_heads, ffn_hidden_size=ffn,
                                  extra={"gated_linear_unit": False, "hidden_dropout": 0.1})
    first = stage_memory(_gpt_shapes(assumed), lay, SpeechLoad.none())[0]
    reference = megatron_activation_bytes(assumed, lay)
    assert abs(first.llm_activations / reference - 1) < 0.05, (first.llm_activations / GIB, reference / GIB)


def test_swiglu_and_logits_are_counted_beyond_the_formula():
    llm_of, lay = SHAPES["1.5b-tp1-pp1"]
    llm = llm_of()
    gelu = dataclasses.replace(llm, extra={"gated_linear_unit": False})
    swiglu_stage = stage_memory(_gpt_shapes(llm), lay, SpeechLoad.none())[0]
    gelu_stage = stage_memory(_gpt_shapes(gelu), lay, SpeechLoad.none())[0]
    tokens = lay.seq_length * lay.micro_batch_size
    # fc1's output is 2F wide under SwiGLU (kept for the activation's backward), bf16.
    assert swiglu_stage.llm_activations - gelu_stage.llm_activations == pytest.approx(
        llm.num_layers * tokens * llm.ffn_hidden_size * 2)
    # bf16 logits and the fp32 softmax over the padded vocabulary, plus the loss's int64/bool targets.
    assert swiglu_stage.logits == tokens * llm.padded_vocab_size(1) * 6 + tokens * 9


# --- the pipeline schedule ------------------------------------------------------------------------------


@pytest.mark.parametrize("pp,vp,m", [(4, 2, 8), (4, 4, 16), (2, 3, 6), (8, 5, 64)])
def test_interleaved_peak_matches_megatron_in_flight_count(pp, vp, m):
    lay = Layout(seq_length=8, micro_batch_size=1, num_microbatches=m, pp=pp, vp=vp)
    live = peak_in_flight(lay, 0, [1.0] * vp)
    penalty = 1 + (pp - 1) / (pp * vp)  # Megatron-LM: ceil(penalty * pp) micro-batches' worth of layers
    assert sum(live) == math.ceil(penalty * pp * vp)
    assert live[0] >= live[-1]


@pytest.mark.parametrize("pp,m", [(4, 8), (4, 2), (8, 64)])
def test_one_f_one_b_holds_pp_minus_rank_microbatches(pp, m):
    lay = Layout(seq_length=8, micro_batch_size=1, num_microbatches=m, pp=pp)
    assert [peak_in_flight(lay, r, [1.0])[0] for r in range(pp)] == [min(pp - r, m) for r in range(pp)]


# --- clip statistics from data --------------------------------------------------------------------------


def test_clip_statistics_come_from_the_dataset(corpus):
    import numpy as np

    from megatron_inserter.data.frames import num_audio_frames
    from megatron_inserter.data.indexed.low_level import InterleavedLowLevelDataset
    from tests.training.corpus import documents

    _, prefix = corpus
    spec = resolve("tiny").frame_spec()
    stats = clip_stats_of_blend([prefix], spec)
    spans = [len(s.audio) for d in documents(64) for s in d.segments if s.audio is not None]
    assert stats.mean_clip_seconds == pytest.approx(np.mean(spans) / 16000)
    low = InterleavedLowLevelDataset(prefix)
    positions = low.expanded_sequence_lengths(spec).sum()
    assert stats.audio_share == pytest.approx(sum(num_audio_frames(n, spec) for n in spans) / positions)
    assert stats.windows_per_position == pytest.approx(len(spans) / positions)
    # Blended half and half with text only (its own ASR view has no text around the speech).
    blend = clip_stats_of_blend(["1", prefix, "1", prefix + "_asr"], spec)
    asr = clip_stats_of_blend([prefix + "_asr"], spec)
    assert blend.audio_share == pytest.approx((stats.audio_share + asr.audio_share) / 2)


def test_masked_batches_pad_to_the_expected_longest_clip():
    spec = resolve("tiny").frame_spec()
    stats = ClipStats.assumed(spec, 2.0, 0.5)
    stats.mel_hist[:] = 0
    stats.mel_hist[[100, 300]] = 0.5  # half 1 s, half 3 s clips
    load = speech_load(stats, spec, 600, 1, "masked", 1500, thd=False)
    n = round(load.clips)
    expected_mel = 300 - 200 * 0.5 ** n  # the longest of n clips is 3 s unless all are 1 s
    assert load.mel_frames == pytest.approx(load.clips * expected_mel)
    packed = speech_load(stats, spec, 600, 1, "packed", 1500, thd=True)
    assert packed.positions == pytest.approx(load.clips * (50 + 150) / 2)  # the clips' own positions


# --- the command ----------------------------------------------------------------------------------------

RECIPE_7B = ["--tensor-model-parallel-size", "4", "--pipeline-model-parallel-size", "2", "--sequence-parallel", "--use-distributed-optimizer", "--bf16",
             "--seq-length", "8192", "--micro-batch-size", "1", "--global-batch-size", "1024",
             "--train-iters", "1000", "--nodes", "8", "--gpus-per-node", "8"]


def recipe_7b(tmp_path, mode: str) -> list[str]:
    """The README's 7B recipe with the encoder in ``mode`` (a model_config.json of the preset)."""
    from megatron_inserter.models import config_file

    cfg = resolve("qwen2-audio-7b")
    cfg.encoder = dataclasses.replace(cfg.encoder, input_mode=mode)
    path = config_file.write(str(tmp_path / mode), config_file.to_dict(cfg))
    return ["--model-preset", path, *RECIPE_7B]


def test_plan_json_has_the_documented_fields(tmp_path, capsys):
    from megatron_inserter.training.plan_cli import main

    code = main(recipe_7b(tmp_path, "packed") + ["--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["fits"] is True
    assert len(out["per_rank"]) == 2
    for rank in out["per_rank"]:
        assert rank["params"] > 0
        assert set(rank["memory_gib"]) >= {"weights", "grads", "optimizer", "activations", "total"}
        assert rank["memory_gib"]["total"] == pytest.approx(sum(v for k, v in rank["memory_gib"].items()
                                                                if k != "total"))
    assert out["flops_per_step"]["encoder"] / out["flops_per_step"]["llm"] < 0.15
    # 1024 samples x 8192 positions per step at the plan's step time
    assert out["tokens_per_second"] == pytest.approx(1024 * 8192 / out["seconds_per_step"])
    assert out["days"] == pytest.approx(1000 * out["seconds_per_step"] / 86400)


def test_plan_exits_nonzero_with_the_breakdown_when_a_stage_does_not_fit(tmp_path, capsys):
    from megatron_inserter.training.plan_cli import main

    code = main(recipe_7b(tmp_path, "window"))
    out = capsys.readouterr().out
    assert code == 1
    assert "encoder + adapter activations" in out and "NO" in out and "pipeline stage 0 needs" in out
    # The same run fits on an H200 with the encoder frozen (no encoder activations kept).
    assert main(recipe_7b(tmp_path, "window") + ["--freeze-encoder", "--gpu", "h200"]) == 0


def test_plan_encoder_flops_per_input_mode(tmp_path, capsys):
    from megatron_inserter.training.plan_cli import main

    ratios = {}
    for mode in ("window", "masked", "packed"):
        main(recipe_7b(tmp_path, mode) + ["--json"])
        flops = json.loads(capsys.readouterr().out)["flops_per_step"]
        ratios[mode] = flops["encoder"] / flops["llm"]
    # 3.5 s clips padded to 30 s cost about as much as the LLM; their own frames about a tenth.
    assert 1.0 < ratios["window"] < 1.25
    assert ratios["masked"] == pytest.approx(ratios["packed"]) and ratios["masked"] < 0.15
    assert ratios["window"] / ratios["masked"] > 8


# --- inserter train refuses ------------------------------------------------------------------------------


def _train_args(corpus, *extra):
    from megatron_inserter.training.arguments import parse_args

    tok, prefix = corpus
    return parse_args(["--micro-batch-size", "2", "--global-batch-size", "4", "--seq-length", "64", "--lr", "1e-3",
                       "--train-iters", "2", "--tokenizer-model", tok, "--data-path", prefix, *extra])


def test_train_check_refuses_a_plan_that_does_not_fit(corpus):
    from megatron_inserter.training.plan import PlanError, check_training_plan

    assert check_training_plan(_train_args(corpus)) is None  # no CUDA, no --gpu-memory-gib: nothing to check
    plan = check_training_plan(_train_args(corpus, "--gpu-memory-gib", "80"))
    assert plan.fits and plan.hardware.kernels == "local" and plan.clips.source == corpus[1]
    with pytest.raises(PlanError, match=r"pipeline stage 0 needs .* GiB more than the GPU's 1 GiB"):
        check_training_plan(_train_args(corpus, "--gpu-memory-gib", "1"))
    assert check_training_plan(_train_args(corpus, "--gpu-memory-gib", "1", "--no-plan-check")) is None


def test_inserter_train_stops_with_one_line_and_the_breakdown(corpus, capsys):
    from megatron_inserter.training.cli import main

    tok, prefix = corpus
    code = main(["--micro-batch-size", "2", "--global-batch-size", "4", "--seq-length", "64", "--lr", "1e-3",
                 "--train-iters", "2", "--tokenizer-model", tok, "--data-path", prefix, "--gpu-memory-gib", "1"])
    err = capsys.readouterr().err
    assert code != 0
    errors = [line for line in err.splitlines() if line.startswith("inserter train: error:")]
    assert len(errors) == 1 and "the plan does not fit: pipeline stage 0" in errors[0]
    assert "CUDA context, NCCL, allocator slack" in err  # the breakdown, printed by rank 0


def test_plan_takes_the_train_flags_without_what_only_training_needs(tmp_path, capsys):
    from megatron_inserter.training.cli import main as train_main
    from megatron_inserter.training.plan_cli import main

    config = tmp_path / "run.yaml"
    config.write_text("micro_batch_size: 2\nseq_length: 128\ntensor_model_parallel_size: 2\nlr: 3.0e-4\n")
    assert main(["--config", str(config), "--gpus-per-node", "4", "--json"]) == 0  # no tokenizer, data, lr
    out = json.loads(capsys.readouterr().out)
    assert out["layout"]["tp"] == 2 and out["layout"]["dp"] == 2 and out["layout"]["micro_batch_size"] == 2
    assert main(["--seq-length", "128"]) == 2
    assert "missing required arguments: --micro-batch-size" in capsys.readouterr().err
    assert train_main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "--train-iters" in err and "--tokenizer-model" in err  # inserter train still needs them


def test_masked_batches_take_longer_than_packed_for_the_same_model_flops(tmp_path):
    from megatron_inserter.flags import parse_flags
    from megatron_inserter.training.plan import build_plan
    from megatron_inserter.training.plan_cli import PlanFlags, hardware_of

    spec = resolve("qwen2-audio-7b").frame_spec()
    clips = ClipStats.assumed(spec, 2.0, 0.7)
    clips.mel_hist[:] = 0
    clips.mel_hist[[100, 1000]] = [0.8, 0.2]  # mostly 1 s clips, some 10 s ones
    plans = {}
    for mode in ("masked", "packed"):
        flags = parse_flags(PlanFlags, recipe_7b(tmp_path, mode), "inserter plan")
        plans[mode] = build_plan(flags, hardware_of(flags), clips=clips)
    assert plans["masked"].flops == plans["packed"].flops
    # masked pads every clip of a micro-batch to its longest (almost surely a 10 s one)
    assert plans["masked"].seconds_per_step > 1.2 * plans["packed"].seconds_per_step


def test_qformer_windows_count_their_queries_as_the_data_path_does():
    from megatron_inserter.data.frames import num_audio_frames
    from megatron_inserter.training.clip_stats import _window_frames

    spec = resolve("desta2-llama3-8b-whisper-small").frame_spec()
    samples = [160 * 3, 16000 * 3, 16000 * 30]
    mels = [n // spec.hop_length for n in samples]
    import numpy as np

    planned = _window_frames(np.asarray(mels, dtype=np.int64), spec).tolist()
    assert planned == [num_audio_frames(n, spec) for n in samples] == [spec.queries_per_window] * 3
