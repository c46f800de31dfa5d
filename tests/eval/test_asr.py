"""ASR runner with a fake responder; NeMo's word_error_rate must agree on the same fixtures."""

import importlib.util
import json

import pytest

from megatron_inserter.eval.asr import AsrConfig, nemo_error_rate, run_asr, score_asr
from tests.eval.fakes import ScriptedResponder, touch_audio, write_jsonl

HYPOTHESES = {
    "line1": "The cat sit on mat.",
    "line2": "Hello, big world!",
    "line3": "今天天汽很好！",
    "utt4": "谢谢你",
}


def manifest(tmp_path):
    rows = [
        {"audio_filepath": "a1.wav", "text": "The cat sat on the mat."},
        {"audio_filepath": "a2.wav", "text": "hello world", "lang": "en"},
        {"audio_filepath": "a3.wav", "text": "今天天气很好。"},
        {"audio_filepath": "a4.wav", "text": "谢谢", "language": "zh", "id": "utt4"},
        {"audio_filepath": "missing.wav", "text": "never read"},
        {"text": "no audio field"},
    ]
    for name in ("a1.wav", "a2.wav", "a3.wav", "a4.wav"):
        touch_audio(tmp_path / name)
    return write_jsonl(tmp_path / "manifest.jsonl", rows)


def test_asr_run_computes_wer_and_cer_and_resumes(tmp_path):
    responder = ScriptedResponder(lambda req: HYPOTHESES[req.request_id])
    config = AsrConfig(output_dir=tmp_path / "out", nemo_cross_check=False, progress=False)
    results = run_asr(manifest(tmp_path), responder, config)
    assert results["metrics"] == pytest.approx({"en/wer": 37.5, "zh/cer": 25.0})
    assert results["stats"]["load"]["skipped"] == 2
    prompts = {r.request_id: r.text_prompt for r in responder.requests}
    assert (
        prompts["line1"] == "Transcribe the speech into text."
        and prompts["utt4"] == "请将这段语音转写为文字。"
    )
    again = ScriptedResponder(lambda req: HYPOTHESES[req.request_id])
    assert run_asr(manifest(tmp_path), again, config)["metrics"] == results["metrics"]
    assert again.requests == []
    assert json.loads((tmp_path / "out/asr_results.json").read_text())["details"]["en"]["edits"] == 3


@pytest.mark.skipif(importlib.util.find_spec("nemo") is None, reason="NeMo is not installed")
def test_nemo_word_error_rate_agrees_on_the_fixtures():
    rows = [
        {"lang": "en", "text": "The cat sat on the mat.", "response": "The cat sit on mat."},
        {"lang": "en", "text": "hello world", "response": "Hello, big world!"},
        {"lang": "zh", "text": "今天天气很好。", "response": "今天天汽很好！"},
        {"lang": "zh", "text": "谢谢", "response": "谢谢你"},
    ]
    _, details = score_asr(rows, nemo_cross_check=True)
    assert details["en"]["nemo_cross_check"] == {"value": pytest.approx(37.5), "agrees": True}
    assert details["zh"]["nemo_cross_check"] == {"value": pytest.approx(25.0), "agrees": True}
    assert nemo_error_rate(["a b c"], ["a x c"], use_cer=False) == pytest.approx(100 / 3)
