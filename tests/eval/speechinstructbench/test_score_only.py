"""`--score-only` on hostile rows: each bad row is a counted skip with its id and reason; the run goes on."""

import json

from megatron_inserter.eval import cli


def closed(key, **fields):
    row = {"key": key, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}], "prompt": "p",
           "response": "No commas here."}
    row.update(fields)
    return json.dumps(row)


def test_malformed_rows_are_counted_skips_named_on_stderr(tmp_path, capsys):
    lines = [
        closed(1),
        closed(2, instruction_id_list=[["punctuation:no_comma"]]),  # unhashable ids used to abort the run
        closed(3, instruction_id_list="punctuation:no_comma"),
        closed(4, kwargs=["oops"]),
        closed(5, kwargs=None),
        closed(6, response=None),
        "{not json",
        "[" * 100_000,  # nested too deeply for the JSON parser
        '{"key": 9, "instruction_id_list": [], "response": "\\ud800"}',  # a lone surrogate cannot be written
        closed(10, eval_meta={"uid": ["x"], "task": 5}),  # a malformed eval_meta is inferred again
        '{"key": 11, "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}], "response": "a, b"}',
    ]
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc = cli.main(["speechinstructbench", "--score-only", str(rows), "--output", str(tmp_path / "out"),
                   "--no-progress", "--sentence-splitter", "punkt-offline"])
    assert rc == 0
    err = capsys.readouterr().err
    results = json.loads((tmp_path / "out/results.json").read_text())
    details = results["details"]["en/closed/unknown"]
    assert (details["prompts"], details["errors"], details["unanswered"]) == (3, 4, 1)
    assert results["metrics"]["en/closed/unknown/p_acc"] == 100 * 2 / 3  # keys 1 and 10 followed, 11 did not
    skipped = {s["row"]: (s["stage"], s["reason"]) for s in results["skipped"]["rows"]}
    assert results["skipped"]["total"] == len(skipped) == 8
    assert skipped["closed/unknown/en/2"][0] == "scoring"
    assert "instruction_id_list must be a non-empty list of strings" in skipped["closed/unknown/en/3"][1]
    assert "kwargs must be a list with one dict per instruction" in skipped["closed/unknown/en/4"][1]
    assert skipped["closed/unknown/en/5"][0] == "scoring"
    assert skipped["closed/unknown/en/6"] == ("generation", "no response")
    assert skipped[f"{rows}:7"][1].startswith("not valid JSON")
    assert skipped[f"{rows}:8"] == ("input", "JSON nested too deeply")
    assert "lone surrogate" in skipped[f"{rows}:9"][1]
    assert "8 of 11 rows skipped (input 3, generation 1, scoring 4)" in err
    for row_id in skipped:
        assert row_id in err
