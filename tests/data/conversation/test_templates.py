import json
import os

import pytest

from megatron_inserter.data.conversation.encode import ConversationEncoder
from megatron_inserter.data.conversation.messages import BadConversation, load_audio, parse_conversation
from megatron_inserter.data.conversation.templates import (
    ChatML,
    JinjaChatTemplate,
    Llama3,
    build_template,
    template_identity,
)
from megatron_inserter.data.tokenizers import build_tokenizer
from megatron_inserter.errors import UsageError
from tests.data.conversation.helpers import LLAMA3_TEMPLATE, conversation, hf_tokenizer_dir, write_wav

ROWS = [
    conversation(1, turns=1),
    conversation(2, turns=3),
    {"messages": [{"role": "user", "content": "No system here."}, {"role": "assistant", "content": " Padded reply. "}]},
    {"messages": [{"role": "user", "content": "A"}, {"role": "assistant", "content": "B"},
                  {"role": "user", "content": "a trailing question"}]},
]


def _encode(tok, template, row, base_dir="."):
    conv = parse_conversation(row, base_dir=base_dir)
    return ConversationEncoder(tok, template).encode(conv, [load_audio(a) for a in conv.audio])


def _same(a, b):
    return [s.tolist() for s in a.sequences] == [s.tolist() for s in b.sequences] and a.modes == b.modes


@pytest.mark.parametrize("row", ROWS)
def test_the_tokenizers_qwen2_template_splits_exactly_as_the_builtin_chatml(tok, row):
    own = build_template("auto", tok)
    assert isinstance(own, JinjaChatTemplate)
    assert _same(_encode(tok, own, row), _encode(tok, ChatML(), row))


def test_the_tokenizers_template_carries_audio_parts(tok, tmp_path):
    write_wav(tmp_path / "q.wav", 16000)
    row = conversation(3, "q.wav", turns=2)
    a, b = _encode(tok, build_template("tokenizer", tok), row, str(tmp_path)), _encode(tok, ChatML(), row, str(tmp_path))
    assert _same(a, b) and len(a.audio) == 1


@pytest.mark.parametrize("row", ROWS)
def test_llama3_official_template_splits_exactly_as_the_builtin_llama3(tmp_path, row):
    tok = build_tokenizer("huggingface", hf_tokenizer_dir(tmp_path / "l3", chat_template=LLAMA3_TEMPLATE,
                                                          bos_token="<|begin_of_text|>"))
    own = _encode(tok, build_template("tokenizer", tok), row)
    assert _same(own, _encode(tok, Llama3(), row))
    assert own.tokens().tolist().count(tok.bos_id) == 1  # rendered by the template, not added again


def test_template_found_in_chat_template_jinja_and_auto_falls_back_to_chatml(tmp_path, tok_dir):
    plain = build_tokenizer("huggingface", hf_tokenizer_dir(tmp_path / "plain"))
    assert isinstance(build_template("auto", plain), ChatML)
    with pytest.raises(UsageError, match="has no chat_template"):
        build_template("tokenizer", plain)
    with open(os.path.join(tok_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        source = json.load(f)["chat_template"]
    (tmp_path / "plain" / "chat_template.jinja").write_text(source, encoding="utf-8")
    again = build_tokenizer("huggingface", str(tmp_path / "plain"))
    t = build_template("auto", again)
    assert isinstance(t, JinjaChatTemplate) and t.origin.endswith("chat_template.jinja")
    assert template_identity(t) != template_identity(JinjaChatTemplate(source + " "))


def test_a_template_that_rewrites_earlier_turns_is_refused_with_the_fix():
    # renders every assistant turn but the last without its content (as reasoning templates strip thoughts)
    t = JinjaChatTemplate("{% for m in messages %}<{{ m.role }}>{% if m.role == 'assistant' and not loop.last %}..."
                          "{% else %}{{ m.content }}{% endif %}</s>{% endfor %}")
    with pytest.raises(BadConversation, match="--chat-template chatml") as e:
        t.pieces([("user", "a"), ("assistant", "b"), ("user", "c"), ("assistant", "d")])
    assert e.value.reason == "template_not_incremental"
    assert [(p.text, p.target) for p in t.pieces([("user", "a"), ("assistant", "b")])] == [
        ("<user>a</s><assistant>", False), ("b</s>", True)]


def test_template_raise_exception_is_a_counted_refusal():
    t = JinjaChatTemplate("{% if messages[0].role != 'system' %}{{ raise_exception('system first') }}{% endif %}")
    with pytest.raises(BadConversation, match="system first") as e:
        t.pieces([("user", "a"), ("assistant", "b")])
    assert e.value.reason == "template_error"


def test_a_hostile_template_cannot_reach_python(tmp_path):
    marker = tmp_path / "pwned"
    hostile = [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}",
        "{{ messages.__class__.__base__.__subclasses__() }}",
    ]
    for source in hostile:
        with pytest.raises(BadConversation) as e:
            JinjaChatTemplate(source).pieces([("user", "a"), ("assistant", "b")])
        assert e.value.reason == "template_error"
    assert not marker.exists()
    with pytest.raises(UsageError, match="does not parse"):
        JinjaChatTemplate("{% for %}")
