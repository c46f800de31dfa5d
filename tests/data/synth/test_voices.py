"""Voice pool files: languages and genders read, language-free voices shared, malformed lines named."""

import pytest

from megatron_inserter.data.synth.speakers import other_voice
from megatron_inserter.data.synth.voices import parse_voice_lines, read_voice_pool
from megatron_inserter.errors import UsageError


def test_voice_file_columns():
    lines = ["# name\tlanguage\tgender", "", "af_heart\ten\tF", "am_adam\ten-US\tmale", "zf_xiaobei\tzh\tfemale",
             "zm_yunxi\tcmn\tM", "jf_alpha\tja\tfemale", "multi\t\tneutral", "bare"]
    pool = parse_voice_lines([(line + "\r\n").encode() for line in lines], "voices.tsv")
    assert pool.voices("en") == ["af_heart", "am_adam", "multi", "bare"]
    assert pool.voices("zh") == ["zf_xiaobei", "zm_yunxi", "multi", "bare"]
    assert pool.gender_of == {"af_heart": "female", "am_adam": "male", "zf_xiaobei": "female", "zm_yunxi": "male",
                              "jf_alpha": "female", "multi": "neutral"}
    assert pool.unused == 1 and pool.languages == ("en", "zh")


@pytest.mark.parametrize("lines,match", [
    ([b"a\ten\n", b"a\tzh\n"], "voices.tsv:2: voice 'a' is already listed on line 1"),
    ([b"\ten\n"], "voices.tsv:1: the voice name"),
    ([b"a\ten\tf\textra\n"], "voices.tsv:1: 4 tab-separated columns"),
    ([b"caf\xe9\ten\n"], "voices.tsv:1: not valid UTF-8"),
    ([b"a\x1b[31m\ten\n"], "control character"),
    ([b"jf_alpha\tja\n"], "holds no voice of a language"),
])
def test_malformed_voice_files_name_the_line(lines, match):
    with pytest.raises(UsageError, match=match):
        parse_voice_lines(lines, "voices.tsv")


def test_a_large_pool_is_read_and_drawn_from_quickly(tmp_path):
    import numpy as np

    path = tmp_path / "voices.tsv"
    path.write_text("".join(f"spk{i:06d}\t{'en' if i % 2 else 'zh'}\n" for i in range(60_000)))
    pool = read_voice_pool(str(path))
    assert len(pool.voices("en")) == len(pool.voices("zh")) == 30_000
    en = pool.voices("en")
    rng = np.random.default_rng(0)
    tried = [en[0]]
    for _ in range(5):
        tried.append(other_voice(en, tried, rng))
    assert len(set(tried)) == 6  # each retry a voice not tried yet
    assert other_voice(["a", "b"], ["a"], rng) == "b" and other_voice(["a"], ["a"], rng) == "a"
    with pytest.raises(UsageError, match="does not exist"):
        read_voice_pool(str(tmp_path / "missing.tsv"))
