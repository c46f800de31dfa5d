"""The user path: Hugging Face weights -> `inserter convert` -> `inserter train --model-preset DIR --load DIR
--finetune` at any TP -> the converted weights are what trains."""

import random

import numpy as np
import pytest

from tests.harness import run_distributed
from tests.training import runs


def _documents(n: int):
    from megatron_inserter.data.indexed.sources import Document, Segment

    rng = random.Random(0)
    docs = []
    for d in range(n):
        segments = []
        for s in range(4):
            text = " ".join(f"w{rng.randint(1, 19)}" for _ in range(rng.randint(4, 10))) + " "
            t = np.arange(rng.randint(3200, 8000)) / 16000.0
            audio = np.round(0.3 * np.sin(2 * np.pi * (150 + d) * t) * 32767).astype(np.int16) if s % 2 else None
            segments.append(Segment(text, audio))
        docs.append(Document(f"doc-{d}", segments))
    return docs


@pytest.fixture(scope="module")
def run_flags(composed, tmp_path_factory):
    from megatron_inserter.data.indexed.preprocess import write_dataset
    from megatron_inserter.data.tokenizers import build_tokenizer

    tok_dir = composed["llm_hf"]
    prefix = str(tmp_path_factory.mktemp("data") / "tiny")
    write_dataset(prefix, _documents(48), build_tokenizer("huggingface", tok_dir), with_audio=True)

    def flags(load: bool, **overrides):
        argv = runs.common_flags(tok_dir, prefix, model_type="inserter", tokenizer_type="huggingface",
                                 model_preset=composed["mcore"], train_iters=2, lr_warmup_iters=1, seq_length=96, **overrides)
        return argv + (["--load", composed["mcore"], "--finetune"] if load else [])
    return flags


def test_training_starts_from_the_converted_weights_at_any_tensor_parallel_size(run_flags):
    loaded_tp1 = run_distributed(runs.train_history, 1, run_flags(load=True))[0]
    loaded_tp2 = run_distributed(runs.train_history, 2, run_flags(load=True, tensor_model_parallel_size=2))
    fresh = run_distributed(runs.train_history, 1, run_flags(load=False))[0]
    first = loaded_tp1[0]["lm loss"]
    assert np.isfinite(first) and loaded_tp1[0]["iteration"] == 1
    for history in loaded_tp2:
        assert history[0]["lm loss"] == pytest.approx(first, abs=1e-5)
    assert abs(fresh[0]["lm loss"] - first) > 1e-3  # the load really replaced the random weights
