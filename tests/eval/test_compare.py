"""Result files side by side."""

import json

import pytest

from megatron_inserter.eval.compare import compare_markdown


def test_compare_lists_every_metric_with_a_column_per_file(tmp_path):
    a = tmp_path / "a/results.json"
    b = tmp_path / "b/results.json"
    a.parent.mkdir()
    b.parent.mkdir()
    a.write_text(
        json.dumps(
            {
                "kind": "speechinstructbench",
                "name": "base",
                "metrics": {"en/closed/standard/p_acc": 19.824, "en/open/p_acc": 31.4},
            }
        )
    )
    b.write_text(
        json.dumps(
            {
                "kind": "speechinstructbench",
                "name": "inserter",
                "metrics": {"en/closed/standard/p_acc": 39.75, "en/adjustment/iar": 80.72},
            }
        )
    )
    table = compare_markdown([a, b])
    assert "| Metric | base | inserter |" in table
    assert "| en/closed/standard/p_acc | 19.82 | 39.75 |" in table
    assert "| en/open/p_acc | 31.40 | – |" in table
    assert "| en/adjustment/iar | – | 80.72 |" in table


def test_compare_rejects_a_file_without_metrics(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="no 'metrics'"):
        compare_markdown([bad])
