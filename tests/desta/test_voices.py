"""Gender, accent and language from what a shard records about a voice; nothing is guessed."""

import dataclasses

import pytest

from megatron_inserter.data.document import SpeechSegment
from megatron_inserter.desta.voices import voice_of


def segment(speaker, language="en", gender=None, accent=None):
    seg = SpeechSegment(text="hi", audio="0.flac", duration=1.0, num_samples=16000, speaker=speaker,
                        language=language, gender=gender)
    if accent is None:
        return seg
    with_accent = dataclasses.make_dataclass("WithAccent", [("accent", str, None)], bases=(SpeechSegment,),
                                             frozen=True)
    return with_accent(**{f.name: getattr(seg, f.name) for f in dataclasses.fields(seg)}, accent=accent)


@pytest.mark.parametrize("speaker,gender,accent,language", [
    ("espeak:en-gb-scotland+f3:p45:r175", "Female", "Scottish", "English"),
    ("espeak:en-us+m7:p30:r155", "Male", "American", "English"),
    ("espeak:en-gb-x-gbclan+m1:p50:r175", "Male", "Lancastrian", "English"),
    ("espeak:en-029+f1:p75:r195", "Female", "Caribbean", "English"),
    ("espeak:cmn-latn-pinyin+f2:p60:r175", "Female", "Mandarin", "English"),  # the segment says en
    ("espeak:en-us+klatt:p50:r175", None, "American", "English"),  # a variant that is not m/f + digits
    ("nemo:3", None, None, "English"),
    (None, None, None, "English"),
])
def test_espeak_ids_give_gender_and_accent_and_others_stay_unknown(speaker, gender, accent, language):
    voice = voice_of(segment(speaker))
    assert (voice.gender, voice.accent, voice.language) == (gender, accent, language)


def test_recorded_fields_win_and_the_documents_language_fills_in():
    voice = voice_of(segment("openai:alloy", gender="female", accent="Irish"))
    assert (voice.gender, voice.accent, voice.voice) == ("Female", "Irish", "openai:alloy")
    assert voice_of(segment("espeak:cmn-latn-pinyin+m1:p50:r175", language=None), "zh").language == "Chinese"
    assert voice_of(segment("nemo:0", language=None), None).language is None
