"""The Whisper encoder + adapter: frame counts follow frames.py, masked mode is padding-invariant, and
window mode with Hugging Face weights reproduces Qwen2-Audio's and Whisper's encoders."""

import pytest

from tests.harness import run_distributed
from tests.models import encoder_checks


@pytest.fixture(scope="module")
def suite():
    return run_distributed(encoder_checks.encoder_suite, 1)[0]


def test_frame_count_matches_shared_function_for_random_lengths(suite):
    # The hypothesis search runs in the child; reaching here means every example matched.
    assert suite["frame_counts"] == {"masked/pool-linear": 2, "masked/stack-mlp-3": 3, "window/pool-linear": 2}


@pytest.mark.parametrize("kind", ["pool-linear", "stack-mlp"])
def test_masked_mode_is_invariant_to_batch_padding(suite, kind):
    diffs, scale = suite["padding_invariance"][kind]
    assert scale > 1e-3
    assert max(diffs) < 1e-5 * max(1.0, scale)


def test_qwen2_audio_encoder_and_projector_parity(suite):
    r = suite["hugging_face"]["qwen2-audio"]
    assert r["scale"] > 1e-3
    assert max(r["diffs"]) < 1e-4
    # Qwen2-Audio counts ceil(n / 160) mel frames; frames.py counts n // 160 (equal for whole hops).
    assert r["ours_counts"][0] == r["hf_counts"][0] and r["ours_counts"][2] == r["hf_counts"][2]


def test_whisper_encoder_parity(suite):
    r = suite["hugging_face"]["whisper"]
    assert r["scale"] > 1e-3
    assert max(r["diffs"]) < 1e-4
