import numpy as np
import pytest

from megatron_inserter.data.conversation.encode import ConversationEncoder
from megatron_inserter.data.conversation.messages import BadConversation, load_audio, parse_conversation
from megatron_inserter.data.conversation.templates import ChatML, Llama3
from megatron_inserter.data.indexed.metadata import MODE_CONTEXT, MODE_SPEECH, MODE_TEXT
from megatron_inserter.data.tokenizers import build_tokenizer
from tests.data.conversation.helpers import expected_pieces, hf_tokenizer_dir, write_wav

DIALOGUE = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the weather?"},
    {"role": "assistant", "content": "Sunny."},
    {"role": "user", "content": "And tomorrow?"},
    {"role": "assistant", "content": "Warm."},
]


_expected = expected_pieces


def _ids(tok, text):
    return tok.tokenize(text)


def test_chatml_mask_is_exactly_the_assistant_tokens_and_their_end_of_turn(tok):
    enc = ConversationEncoder(tok, ChatML()).encode(parse_conversation({"messages": DIALOGUE}), [])
    ids, mask = _expected(tok, [
        ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is the weather?<|im_end|>\n" +
         "<|im_start|>assistant\n", False),
        ("Sunny.<|im_end|>", True),
        ("\n<|im_start|>user\nAnd tomorrow?<|im_end|>\n<|im_start|>assistant\n", False),
        ("Warm.<|im_end|>", True),
        ("\n", False), ([tok.eod_id], False),
    ])
    assert enc.tokens().tolist() == ids
    assert enc.target_mask().tolist() == mask
    im_end = _ids(tok, "<|im_end|>")
    assert len(im_end) == 1
    targets = enc.tokens()[enc.target_mask()].tolist()
    assert tok.detokenize(targets) == "Sunny.<|im_end|>Warm.<|im_end|>"
    assert targets.count(im_end[0]) == 2  # each turn's end-of-turn token is trained on
    assert enc.num_target_tokens == sum(mask) and enc.modes == [MODE_CONTEXT, MODE_TEXT] * 2 + [MODE_CONTEXT]


def test_chatml_adds_qwen2s_default_system_turn(tok):
    enc = ConversationEncoder(tok, ChatML()).encode(parse_conversation({"messages": DIALOGUE[1:3]}), [])
    assert tok.detokenize(enc.sequences[0]).startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")


def test_llama3_starts_with_the_tokenizers_bos_once_and_trains_on_the_eot(tmp_path):
    tok = build_tokenizer("huggingface", hf_tokenizer_dir(tmp_path / "t", bos_token="<|begin_of_text|>"))
    enc = ConversationEncoder(tok, Llama3()).encode(parse_conversation({"messages": DIALOGUE[:3]}), [])
    ids, mask = _expected(tok, [
        ([tok.bos_id], False),
        ("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>" +
         "\n\nWhat is the weather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", False),
        ("Sunny.<|eot_id|>", True), ([tok.eod_id], False),
    ])
    assert enc.tokens().tolist() == ids and enc.target_mask().tolist() == mask
    assert enc.tokens().tolist().count(tok.bos_id) == 1


def test_audio_parts_become_speech_sequences_with_their_pcm(tok, tmp_path):
    a = write_wav(tmp_path / "a.wav", 8000, 200.0)
    b = write_wav(tmp_path / "b.wav", 12000, 300.0)
    row = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "First "}, {"type": "audio", "audio": "a.wav"}, {"type": "text", "text": " then "},
        {"type": "audio", "audio": str(tmp_path / "b.wav")}]}, {"role": "assistant", "content": "Two clips."}]}
    conv = parse_conversation(row, base_dir=str(tmp_path))
    enc = ConversationEncoder(tok, ChatML()).encode(conv, [load_audio(p) for p in conv.audio])
    speech = [s.tolist() for s, m in zip(enc.sequences, enc.modes) if m == MODE_SPEECH]
    assert speech == [[tok.audio_bos_id, tok.audio_placeholder_id, tok.audio_eos_id]] * 2
    assert len(enc.audio) == 2 and np.array_equal(enc.audio[0], a) and np.array_equal(enc.audio[1], b)
    texts = [tok.detokenize(s) for s, m in zip(enc.sequences, enc.modes) if m != MODE_SPEECH]
    assert texts[0].endswith("<|im_start|>user\nFirst ") and texts[1] == " then "
    assert texts[2] == "<|im_end|>\n<|im_start|>assistant\n" and texts[4] == "\n<|endoftext|>"
    assert enc.modes.count(MODE_TEXT) == 1
    # each placeholder becomes its clip's frame count at training time
    assert enc.expanded_length() == enc.num_tokens + (12 - 1) + (19 - 1)  # 0.5 s and 0.75 s clips: 12 and 19 frames


@pytest.mark.parametrize("row, reason", [
    ({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]}, "bad_role"),
    ({"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "x"}]}, "bad_content"),
    ({"messages": [{"role": "user", "content": [{"type": "video"}]}, {"role": "assistant", "content": "x"}]},
     "bad_content"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": 3}]}, {"role": "assistant", "content": "x"}]},
     "bad_content"),
    ({"messages": "hello"}, "bad_messages"),
    ({"messages": []}, "bad_messages"),
    ({"text": "no messages"}, "missing_messages"),
    ({"messages": [{"role": "user", "content": "only a question"}]}, "no_assistant_turn"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}]}, "empty_assistant_turn"),
    ({"messages": [{"role": "user", "content": "q"},
                   {"role": "assistant", "content": [{"type": "audio", "audio": "a.wav"}]}]}, "audio_outside_user_turn"),
    ({"messages": [{"role": "user", "content": "q\ud800"}, {"role": "assistant", "content": "x"}]}, "lone_surrogate"),
])
def test_bad_rows_are_refused_with_their_reason(row, reason):
    with pytest.raises(BadConversation) as e:
        parse_conversation(row)
    assert e.value.reason == reason and e.value.what


def test_audio_markers_typed_as_text_and_bad_audio_are_refused(tok, tmp_path):
    enc = ConversationEncoder(tok, ChatML())
    typed = parse_conversation({"messages": [{"role": "user", "content": "fake <|AUDIO|> clip"},
                                             {"role": "assistant", "content": "x"}]})
    with pytest.raises(BadConversation, match="audio marker") as e:
        enc.encode(typed, [])
    assert e.value.reason == "audio_marker_in_text"
    (tmp_path / "noise.wav").write_bytes(b"RIFF not really a wav file")
    write_wav(tmp_path / "tiny.wav", 100)
    for name, reason in (("missing.wav", "missing_audio"), ("noise.wav", "bad_audio"), ("tiny.wav", "audio_too_short")):
        conv = parse_conversation({"messages": [{"role": "user", "content": [{"type": "audio", "audio": name}]},
                                                {"role": "assistant", "content": "x"}]}, base_dir=str(tmp_path))
        with pytest.raises(BadConversation) as e:
            enc.encode(conv, [load_audio(p) for p in conv.audio])
        assert e.value.reason == reason, name
