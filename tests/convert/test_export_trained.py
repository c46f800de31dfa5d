"""A checkpoint ``inserter train`` wrote exports with ``inserter convert mcore-to-hf`` alone: it carries its
``model_config.json``, the result loads in transformers as Qwen2-Audio and gives our logits, with speech."""

from __future__ import annotations

import json
import os

import pytest
import torch

from megatron_inserter.convert.cli import main as convert_main
from tests.convert import hf_models
from tests.harness import run_distributed
from tests.training import runs
from tests.training.corpus import build_corpus

ATOL = 1e-4


def _batch(placeholder: int, seed: int = 5) -> dict:
    """Two clips of whole 10 ms hops with their placeholder runs, and text ids below the audio tokens."""
    from megatron_inserter.data.frames import num_audio_frames

    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([16000, 38400])
    audio = torch.zeros(2, int(lengths.max()))
    rows = []
    for i, n in enumerate(lengths.tolist()):
        audio[i, :n] = 0.1 * torch.randn(n, generator=g)
        text = torch.randint(3, placeholder - 3, (40,), generator=g)
        rows.append(torch.cat([text[:4], torch.full((num_audio_frames(n),), placeholder), text[4:]]))
    width = max(len(r) for r in rows)
    rows = [torch.cat([r, torch.randint(3, placeholder - 3, (width - len(r),), generator=g)]) for r in rows]
    return {"tokens": torch.stack(rows), "audio": audio, "audio_lengths": lengths,
            "text": torch.randint(3, placeholder - 3, (2, 24), generator=g)}


def _our_logits(rank, world_size, checkpoint: str, seed: int) -> dict:
    """Logits of the checkpoint as ``generate`` / ``eval`` build it (``load_for_inference``)."""
    from megatron_inserter.inference.loading import load_for_inference

    loaded = load_for_inference(checkpoint)
    vocab = loaded.config.llm.vocab_size
    batch = _batch(loaded.tokenizer.audio_placeholder_id, seed)

    def run(tokens, **audio):
        positions = torch.arange(tokens.shape[1]).unsqueeze(0).expand_as(tokens)
        with torch.no_grad():
            return loaded.model(tokens, positions, None, runtime_gather_output=True, **audio)[..., :vocab].float()

    no_audio = {"audio": torch.zeros(0, 0), "audio_lengths": torch.zeros(0, dtype=torch.long)}
    logits = {"speech": run(batch["tokens"], audio=batch["audio"], audio_lengths=batch["audio_lengths"]),
              "text": run(batch["text"], **no_audio)}
    # Arrays, not tensors: they cross the process boundary by value.
    return {**{k: v.numpy() for k, v in logits.items()}, "batch": {k: v.numpy() for k, v in batch.items()},
            "vocab": vocab, "placeholder": loaded.tokenizer.audio_placeholder_id,
            "input_mode": loaded.config.encoder.input_mode}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained")
    tok, prefix = build_corpus(str(root / "corpus"), n_docs=24)
    ckpt = str(root / "train")
    argv = runs.common_flags(tok, prefix, model_type="inserter", model_preset="tiny", seq_length=64,
                             train_iters=1, lr_warmup_iters=0, save=ckpt)
    run_distributed(runs.train_result, 1, argv)
    hf = str(root / "hf")
    assert convert_main(["mcore-to-hf", "--load", ckpt, "--output", hf]) == 0
    ours = run_distributed(_our_logits, 1, ckpt, 5)[0]
    ours["batch"] = {k: torch.from_numpy(v) for k, v in ours["batch"].items()}
    ours.update({k: torch.from_numpy(ours[k]) for k in ("speech", "text")})
    return {"ckpt": ckpt, "hf": hf, "tokenizer": tok, "ours": ours, "root": root}


def test_the_trained_checkpoint_carries_the_model_it_built(trained):
    from megatron_inserter.data.tokenizers import build_tokenizer

    tok = build_tokenizer("sentencepiece", trained["tokenizer"])
    for where in (trained["ckpt"], os.path.join(trained["ckpt"], "iter_0000001")):
        with open(os.path.join(where, "model_config.json"), encoding="utf-8") as f:
            meta = json.load(f)
        assert meta["model_type"] == "inserter" and meta["name"] == "tiny"
        # The vocabulary actually built (the run's tokenizer), not the preset's placeholder 4000.
        assert meta["llm"]["vocab_size"] == tok.vocab_size and meta["padded_vocab_size"] == 384
        assert meta["audio_placeholder_id"] == tok.audio_placeholder_id
    assert trained["ours"]["vocab"] == tok.vocab_size


def test_export_loads_in_transformers_and_gives_our_logits_with_speech(trained):
    from transformers import Qwen2AudioForConditionalGeneration

    model, info = Qwen2AudioForConditionalGeneration.from_pretrained(trained["hf"], output_loading_info=True)
    assert not any(info.values()), info
    model.eval()
    ours = trained["ours"]
    assert model.config.audio_token_index == ours["placeholder"] and ours["input_mode"] == "packed"
    assert model.config.text_config.vocab_size == ours["vocab"]
    theirs = hf_models.qwen2_audio_logits(model, ours["batch"])
    assert theirs.shape == ours["speech"].shape
    assert (theirs - ours["speech"]).abs().max().item() <= ATOL
    # The audio reaches the logits: silence gives clearly different ones.
    silent = hf_models.qwen2_audio_logits(model, ours["batch"], audio_scale=0.0)
    assert (silent - theirs).abs().max().item() > 100 * ATOL
    with torch.no_grad():
        text = model(input_ids=ours["batch"]["text"]).logits
    assert (text - ours["text"]).abs().max().item() <= ATOL


def test_llm_only_export_of_the_trained_checkpoint(trained, tmp_path):
    from transformers import Qwen2ForCausalLM

    out = str(tmp_path / "llm")
    assert convert_main(["mcore-to-hf", "--load", os.path.join(trained["ckpt"], "iter_0000001"), "--output", out,
                         "--llm-only"]) == 0
    llm, info = Qwen2ForCausalLM.from_pretrained(out, output_loading_info=True)
    assert not any(info.values()), info
    with torch.no_grad():
        got = llm(trained["ours"]["batch"]["text"]).logits
    assert (got - trained["ours"]["text"]).abs().max().item() <= ATOL


def test_an_architecture_qwen2_audio_cannot_hold_says_why_and_names_llm_only(trained, tmp_path, capsys):
    with open(os.path.join(trained["ckpt"], "model_config.json"), encoding="utf-8") as f:
        meta = json.load(f)
    meta["adapter"] = {"kind": "stack-mlp", "downsample": 4, "ffn_hidden_size": None}
    wrong = tmp_path / "model_config.json"
    wrong.write_text(json.dumps(meta))
    out = tmp_path / "hf"
    argv = ["mcore-to-hf", "--load", trained["ckpt"], "--output", str(out), "--model-config", str(wrong)]
    assert convert_main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "stack-mlp" in err and "--llm-only" in err and "Qwen2-Audio" in err
    assert not out.exists()
