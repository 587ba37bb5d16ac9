"""The anomaly benchmark's verdict: medians over seeds at or above both plain IsolationForest
settings, counted over the files the data README lists; the paired column counts seeds."""

from __future__ import annotations

from benchmarks import anomaly_quality


def row(name: str, ours: list[float], plain: list[float], auto: list[float]) -> dict:
    return {
        "file": name,
        "rows": 100,
        "outliers": 10,
        "ours": ours,
        "plain_0.1": plain,
        "plain_auto": auto,
        "share": [0.1] * len(ours),
        "plain_true_rate": plain,
    }


def table_line(text: str, name: str) -> list[str]:
    return next(line for line in text.splitlines() if line.startswith(f"| {name} |")).split(" | ")


def test_verdict_uses_medians_of_both_plain_settings_and_counts_listed_files_only():
    rows = [
        row("wbc", [0.5, 0.6, 0.7], [0.5, 0.6, 0.8], [0.1, 0.2, 0.3]),  # equal medians: at or above
        row("cardio", [0.5, 0.6, 0.7], [0.4, 0.5, 0.6], [0.5, 0.61, 0.7]),  # below auto's median
        row("pima", [0.9, 0.9, 0.9], [0.1, 0.1, 0.1], [0.1, 0.1, 0.1]),  # shown, not counted
    ]
    text = anomaly_quality.render(rows, seeds=3, seconds=60, load="1.0")
    assert table_line(text, "wbc")[5] == "yes"
    assert table_line(text, "cardio")[5] == "**no**"
    assert "not counted" in table_line(text, "pima")[5]
    assert "on 1 of 2 counted files" in text


def test_paired_column_counts_seeds_better_equal_worse():
    text = anomaly_quality.render([row("wbc", [0.5, 0.6, 0.7], [0.5, 0.6, 0.8], [0.1] * 3)], 3, 60, "1.0")
    mean, counts = table_line(text, "wbc")[6].split("; ")
    assert counts == "0/2/1"
    assert mean.startswith("-0.033 ± ")
