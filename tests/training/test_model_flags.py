"""The model flags of ``inserter train``: --encoder-input-mode overrides the preset's; --reset-attention-mask,
--reset-position-ids and --eod-mask-loss reach the batches and the model of a real run, and are refused
where they cannot hold."""

from types import SimpleNamespace

import pytest

from megatron_inserter.errors import UsageError
from megatron_inserter.models.documents import DocumentOptions
from megatron_inserter.training.arguments import parse_args
from megatron_inserter.training.models import model_family
from tests.harness import run_distributed
from tests.training.runs import _teardown, common_flags

TOKENIZER = SimpleNamespace(vocab_size=4000, audio_placeholder_id=7, eod_id=2)
MODEL = {"model_type": "inserter", "seq_length": 64, "micro_batch_size": 1, "global_batch_size": 2,
         "train_iters": 1, "eval_iters": 0, "num_workers": 0, "lr_warmup_iters": 0}


def _args(*extra: str):
    return parse_args(["--micro-batch-size", "1", "--seq-length", "64", "--lr", "1e-3", "--train-iters", "1",
                       "--tokenizer-model", "tok.model", "--data-path", "data/x", "--model-type", "inserter",
                       *extra])


def test_encoder_input_mode_defaults_to_the_preset_and_the_flag_overrides_it():
    assert model_family(_args(), TOKENIZER).config.encoder.input_mode == "packed"
    family = model_family(_args("--model-preset", "qwen2-audio-7b", "--encoder-input-mode", "window"), TOKENIZER)
    assert family.config.encoder.input_mode == "window" and family.config.encoder.window_key_padding_mask


def test_document_flags_give_the_family_its_document_options():
    assert model_family(_args(), TOKENIZER).documents is None
    family = model_family(_args("--reset-attention-mask"), TOKENIZER)
    assert family.documents == DocumentOptions(eod_id=2, reset_attention_mask=True, reset_position_ids=False)
    gpt = model_family(_args("--model-type", "gpt", "--reset-position-ids"), TOKENIZER)
    assert gpt.documents == DocumentOptions(eod_id=2, reset_attention_mask=False, reset_position_ids=True)


@pytest.mark.parametrize("extra,named", [
    (["--context-parallel-size", "2"], "--context-parallel-size 2"),
    (["--pipeline-model-parallel-size", "4"], "--pipeline-model-parallel-size 4"),
])
def test_document_flags_are_refused_where_they_cannot_hold(extra, named):
    with pytest.raises(UsageError, match=named):
        model_family(_args("--reset-attention-mask", *extra), TOKENIZER)


def _runs(rank, world_size, argvs) -> list[dict]:
    """Train once per argv; what the collated batches held at end-of-document inputs, and the losses."""
    from megatron_inserter.training import data
    from megatron_inserter.training.trainer import train

    out = []
    real_call = data.GapMasks.__call__
    for argv in argvs:
        seen = {"eod_inputs": 0, "eod_trained": 0, "restarts": 0, "positions_restart": True}

        def call(self, samples, seen=seen):
            batch = real_call(self, samples)
            eod = batch["tokens"] == self.eod_id
            seen["eod_inputs"] += int(eod[:, :-1].sum())
            seen["eod_trained"] += int((batch["loss_mask"] * eod).sum())
            after = batch["position_ids"][:, 1:][eod[:, :-1]]  # the position following each EOD
            seen["restarts"] += int((after == 0).sum())
            return batch

        data.GapMasks.__call__ = call
        try:
            result = train(parse_args(argv))
        finally:
            data.GapMasks.__call__ = real_call
            _teardown()
        out.append({**seen, "loss": result.history[0]["lm loss"]})
    return out


def test_document_flags_reach_the_batches_and_change_the_model_output(corpus):
    tok, prefix = corpus
    plain = common_flags(tok, prefix, **MODEL)
    eod_only = plain + ["--eod-mask-loss"]
    separated = eod_only + ["--reset-attention-mask", "--reset-position-ids"]
    off, masked_loss, on = run_distributed(_runs, 1, [plain, eod_only, separated])[0]
    assert off["eod_inputs"] == on["eod_inputs"] > 0  # the same samples, with documents packed together
    assert off["eod_trained"] > 0 and off["restarts"] == 0
    assert masked_loss["eod_trained"] == 0 and masked_loss["restarts"] == 0
    assert on["eod_trained"] == 0 and on["restarts"] == on["eod_inputs"]
    # Same targets, different attention: the layout reached the model.
    assert on["loss"] != pytest.approx(masked_loss["loss"], abs=1e-6)
