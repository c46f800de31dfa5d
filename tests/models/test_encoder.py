"""The Whisper encoder + adapter: frame counts follow frames.py, masked and packed modes do not depend on the
other clips, window mode with Hugging Face weights reproduces Qwen2-Audio's and Whisper's encoders, and packed
mode reproduces Qwen2-Audio's at every frame."""

import pytest

from tests.harness import run_distributed
from tests.models import encoder_checks


@pytest.fixture(scope="module")
def suite():
    return run_distributed(encoder_checks.encoder_suite, 1)[0]


def test_frame_count_matches_shared_function_for_random_lengths(suite):
    # The hypothesis search runs in the child; reaching here means every example matched.
    assert suite["frame_counts"] == {"masked/pool-linear": 2, "masked/stack-mlp-3": 3, "window/pool-linear": 2,
                                     "packed/pool-linear": 2, "packed/stack-mlp-3": 3}


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


@pytest.mark.parametrize("kind", ["pool-linear", "stack-mlp"])
def test_packed_mode_gives_each_clip_its_frames_alone_across_windows(suite, kind):
    r = suite["packed_invariance"][kind]
    assert r["windows"] >= 3  # the clips really share several attention windows
    assert r["scale"] > 1e-3
    assert max(r["diffs"]) < 1e-5 * max(1.0, r["scale"])
    # Another clip's audio changes nothing (no convolution or attention crosses a clip boundary) ...
    assert r["others"] < 1e-7
    # ... while that clip's own frames do change.
    assert r["target"] > 1e-3 * r["scale"]


def test_packed_mode_matches_qwen2_audio_on_its_padded_window_at_every_frame(suite):
    r = suite["qwen2_audio_modes"]["packed"]
    assert r["scale"] > 1e-3
    assert max(r["end"], r["rest"]) < 1e-5


def test_masked_mode_differs_from_qwen2_audio_mostly_at_clip_ends(suite):
    # Qwen2-Audio's convolutions see the log-mel floor after a clip's end, masked mode sees zeros there; the
    # last frames differ most and attention carries a smaller difference to the rest.
    r = suite["qwen2_audio_modes"]["masked"]
    assert r["end"] > 1e-2
    assert r["rest"] < r["end"] / 10
