"""Flags: Megatron names, YAML defaults under the command line, and refusals that name the flags."""

import pytest

from megatron_inserter.training.arguments import ArgumentError, parse_args
from megatron_inserter.training.flag_checks import check_flags, virtual_pipeline_size

REQUIRED = ["--micro-batch-size", "2", "--seq-length", "64", "--lr", "1e-3", "--train-iters", "10",
            "--tokenizer-model", __file__, "--data-path", "0.4", "A", "0.6", "B"]


def _args(*extra):
    return parse_args(REQUIRED + list(extra))


def test_megatron_flags_parse_into_the_dataclass():
    a = _args("--tensor-model-parallel-size", "2", "--pipeline-model-parallel-size", "2",
              "--num-layers-per-virtual-pipeline-stage", "1", "--sequence-parallel", "--bf16",
              "--lr-decay-style", "linear", "--no-load-optim", "--split", "98,2,0")
    assert (a.tensor_model_parallel_size, a.pipeline_model_parallel_size) == (2, 2)
    assert a.num_layers_per_virtual_pipeline_stage == 1 and a.sequence_parallel and a.bf16
    assert a.lr == 1e-3 and a.lr_decay_style == "linear" and a.load_optim is False
    assert a.data_path == ["0.4", "A", "0.6", "B"] and a.split == "98,2,0"


@pytest.mark.parametrize("argv, named", [
    (["--no-such-flag", "1"], "--no-such-flag"),
    (["--micro-batch", "4"], "--micro-batch"),  # abbreviations are not accepted
    (["--lr-decay-style", "exp"], "--lr-decay-style"),
])
def test_unknown_or_malformed_flags_are_refused_by_name(argv, named):
    with pytest.raises(ArgumentError, match=named):
        parse_args(REQUIRED + argv)


def test_missing_required_flags_are_listed():
    with pytest.raises(ArgumentError) as e:
        parse_args(["--lr", "1e-3"])
    for flag in ("--micro-batch-size", "--seq-length", "--train-iters", "--tokenizer-model", "--data-path"):
        assert flag in str(e.value)


@pytest.mark.parametrize("extra, world, cuda, named", [
    (["--sequence-parallel"], 1, True, "--sequence-parallel"),
    (["--fp8-format", "hybrid", "--bf16"], 1, False, "--fp8-format"),
    (["--bf16"], 1, False, "--bf16"),
    (["--use-distributed-optimizer"], 2, False, "--use-distributed-optimizer"),
    (["--global-batch-size", "6"], 2, False, "--global-batch-size"),
    (["--tensor-model-parallel-size", "3"], 4, False, "--tensor-model-parallel-size"),
    (["--min-lr", "0.1"], 1, False, "--min-lr"),
    (["--lr-warmup-iters", "10"], 1, False, "--lr-warmup-iters"),
    (["--save-interval", "5"], 1, False, "--save-interval"),
    (["--model-type", "gpt", "--freeze-encoder"], 1, False, "--freeze-encoder"),
    (["--freeze-encoder", "--freeze-adapter", "--freeze-llm"], 1, False, "nothing to train"),
    (["--context-parallel-size", "2"], 2, False, "--context-parallel-size"),
])
def test_conflicting_flags_are_refused_by_name(extra, world, cuda, named):
    with pytest.raises(ArgumentError, match=named):
        check_flags(_args(*extra), world_size=world, cuda=cuda, transformer_engine=False)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ArgumentError) as e:
        check_flags(_args("--sequence-parallel", "--use-distributed-optimizer"), 1, cuda=False, transformer_engine=False)
    assert "--sequence-parallel" in str(e.value) and "--use-distributed-optimizer" in str(e.value)


def test_batch_layout_from_world_size():
    layout = check_flags(_args("--global-batch-size", "16", "--tensor-model-parallel-size", "2"), world_size=8,
                      cuda=False, transformer_engine=False)
    assert (layout.data_parallel_size, layout.num_microbatches) == (4, 2)
    assert check_flags(_args(), 4, cuda=False, transformer_engine=False).global_batch_size == 8  # mbs x dp


def test_virtual_pipeline_size_must_divide_the_model():
    a = _args("--pipeline-model-parallel-size", "2", "--num-layers-per-virtual-pipeline-stage", "1")
    assert virtual_pipeline_size(a, num_layers=4) == 2
    with pytest.raises(ArgumentError, match="--num-layers-per-virtual-pipeline-stage"):
        virtual_pipeline_size(_args("--pipeline-model-parallel-size", "2",
                                    "--num-layers-per-virtual-pipeline-stage", "3"), num_layers=8)


def test_yaml_config_supplies_defaults_and_the_command_line_wins(tmp_path):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("micro_batch_size: 4\nlr: 3.0e-4\nbf16: true\nseed: 7\n"
                   "data_path: 0.3 X 0.7 Y\nsplit: '99,1,0'\n")
    a = parse_args(["--config", str(cfg), "--seq-length", "64", "--train-iters", "5", "--tokenizer-model", __file__,
                    "--lr", "1e-3", "--no-bf16"])
    assert a.micro_batch_size == 4 and a.seed == 7 and a.split == "99,1,0"
    assert a.data_path == ["0.3", "X", "0.7", "Y"]
    assert a.lr == 1e-3 and a.bf16 is False  # the command line wins, both ways for booleans


@pytest.mark.parametrize("text, named", [
    ("micro_batch_size: 2\nmicro-batch-size: 2\n", "micro-batch-size"),
    ("not_a_flag: 1\n", "not_a_flag"),
    ("micro_batch_size: two\n", "micro_batch_size"),
    ("bf16: 1\n", "bf16"),
])
def test_bad_yaml_keys_and_values_are_refused_by_name(tmp_path, text, named):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text)
    with pytest.raises(ArgumentError, match=named):
        parse_args(REQUIRED + ["--config", str(cfg)])


@pytest.mark.parametrize("data_path, named", [
    (["0.5", "A", "B"], "WEIGHT PREFIX pairs"),          # odd-length list: not read as a prefix '0.5'
    (["A", "0.5", "B", "0.5"], "WEIGHT PREFIX pairs"),   # prefixes and weights swapped
    (["-0.5", "A", "1.5", "B"], "must be positive"),
    (["0", "A", "1", "B"], "must be positive"),
])
def test_data_path_must_be_prefixes_or_weight_prefix_pairs(data_path, named):
    a = parse_args(REQUIRED[:-5] + ["--data-path", *data_path])
    with pytest.raises(ArgumentError, match=named) as e:
        check_flags(a, 1, cuda=False, transformer_engine=False)
    assert "--data-path" in str(e.value) and "\n" not in str(e.value)
    assert check_flags(parse_args(REQUIRED[:-5] + ["--data-path", "A", "B"]), 1, False, False).data_parallel_size == 1


@pytest.mark.parametrize("split, named", [
    ("0,100,0", "leaves no training data"),
    ("0,0,0", "no data"),
    ("90,abc", "--split"),
    ("1,1,1,1", "--split"),
])
def test_split_that_leaves_no_training_data_is_refused(split, named):
    with pytest.raises(ArgumentError, match=named):
        check_flags(_args("--split", split), 1, cuda=False, transformer_engine=False)
    assert check_flags(_args("--split", "0,100,0", "--skip-train", "--eval-iters", "1"), 1, False, False)


def test_help_shows_each_default_once_and_marks_required_flags(capsys):
    from megatron_inserter.training.arguments import build_parser

    text = " ".join(build_parser().format_help().split())
    assert "samples per micro-batch and data-parallel rank (required)" in text
    assert "Adam beta2 (default: 0.999)" in text
    assert text.count("(default: 0.999)") == 1 and "(default: None)" not in text
