"""The retention table, backward transfer and the max_forgetting gate, on numbers worked out by hand."""

import math

import pytest

from steps.lineage.retention import (
    THIS_RUN,
    backward_transfer,
    held_out_loss,
    ledger_scores,
    matrix_from_ledgers,
    retention_table,
)

# two ancestors: v1 learned set v1 (loss 1.0 when accepted); v2 learned v2 (0.8) and scored v1 at 1.1
ANCESTORS = [
    {"version": "v1", "rows": 8, "own_loss": 1.0, "scores": {"v1": {"loss": 1.0}}},
    {"version": "v2", "rows": 8, "own_loss": 0.8, "scores": {"v1": {"loss": 1.1}, "v2": {"loss": 0.8}}},
]


def test_forgetting_backward_transfer_and_the_gate() -> None:
    measured = {"v1": {"parent": 1.1, "tuned": 1.25}, "v2": {"parent": 0.8, "tuned": 0.7}}
    t = retention_table(ANCESTORS, measured, {"parent": 2.0, "tuned": 1.2}, 8, max_forgetting=0.2)
    by_set = {s["set"]: s for s in t["sets"]}
    assert by_set["v1"]["forgetting"] == pytest.approx(0.15) and by_set["v2"]["forgetting"] == pytest.approx(-0.1)
    assert by_set[THIS_RUN]["learned"] == pytest.approx(0.8)  # the new set: 2.0 -> 1.2
    assert t["worst_set"] == "v1" and t["worst_forgetting"] == pytest.approx(0.15) and t["gate"] == "pass"
    # BWT = mean(R[v1][v1] - R[T][v1], R[v2][v2] - R[T][v2]) = mean(1.0 - 1.25, 0.8 - 0.7) = -0.075
    assert t["backward_transfer"] == pytest.approx(-0.075)
    assert t["matrix"]["values"] == [[1.0, None, None], [1.1, 0.8, None], [1.25, 0.7, 1.2]]
    assert retention_table(ANCESTORS, measured, {"parent": 2.0, "tuned": 1.2}, 8, max_forgetting=0.1)["gate"] == "fail"


def test_an_unscored_earlier_set_fails_the_gate_and_a_first_version_has_none() -> None:
    t = retention_table(ANCESTORS[:1], {"v1": {"parent": 1.0, "tuned": None}}, {"parent": 2.0, "tuned": 1.0}, 8, 1.0)
    assert t["gate"] == "fail" and t["unscored"] == ["v1"]
    first = retention_table([], {}, {"parent": 2.0, "tuned": 1.0}, 8, 0.1)
    assert first["gate"] == "n/a" and first["backward_transfer"] is None
    assert ledger_scores(first, "v1") == {"v1": {"loss": 1.0}}


def test_the_lineage_matrix_from_ledgers() -> None:
    ledgers = [{"version": "a", "scores": {"a": {"loss": 2.0}}},
               {"version": "b", "scores": {"a": {"loss": 2.5}, "b": {"loss": 1.0}}},
               {"version": "c", "scores": {"a": {"loss": 1.5}, "b": {"loss": 1.2}, "c": {"loss": 0.9}}}]
    m = matrix_from_ledgers(ledgers)
    assert m["values"] == [[2.0, None, None], [2.5, 1.0, None], [1.5, 1.2, 0.9]]
    assert backward_transfer(m) == pytest.approx(((2.0 - 1.5) + (1.0 - 1.2)) / 2)


def test_held_out_loss_is_the_log_of_token_perplexity() -> None:
    rows = [{"task": "arc_easy", "metric": "acc", "value": 0.5},
            {"task": "held_out", "metric": "token_perplexity", "value": math.e ** 1.5}]
    assert held_out_loss(rows) == pytest.approx(1.5)
    assert held_out_loss(rows[:1]) is None
