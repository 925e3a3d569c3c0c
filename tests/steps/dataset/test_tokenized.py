"""Pre-tokenised rows (processed_data): validated as mini-trainer reads them, split as they are, refused with the
line and the reason otherwise; and mini-trainer's own loader takes what the step writes."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from steps.common.errors import StepError
from steps.dataset import prepare_dataset
from tests.tiny_assets import write_jsonl


def token_rows(n: int = 20) -> list[dict]:
    rows = []
    for i in range(n):
        ids = [1 + (i + j) % 50 for j in range(6 + i % 5)]
        rows.append({"input_ids": ids, "labels": [-100] * 3 + ids[3:], "extra": "dropped"})
    return rows


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def test_rows_are_validated_and_split_as_they_are(tmp_path: Path) -> None:
    rows = token_rows(20)
    data = write_jsonl(tmp_path / "tokens.jsonl", rows)
    out = prepare_dataset(str(data), str(tmp_path / "ws"), split=0.75, processed_data=True)
    assert (out["train_rows"], out["eval_rows"]) == (15, 5)
    written = _lines(tmp_path / "ws" / "dataset" / "train.jsonl") + _lines(tmp_path / "ws" / "dataset" / "eval.jsonl")
    assert sorted(r["input_ids"] for r in written) == sorted(r["input_ids"] for r in rows)
    for r in written:  # canonical: the two columns plus the counts the trainer would compute
        assert set(r) == {"input_ids", "labels", "len", "num_loss_counted_tokens"}
        assert r["len"] == len(r["input_ids"]) and r["num_loss_counted_tokens"] == len(r["input_ids"]) - 3


def test_parquet_rows_are_read_too(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "extra"} for r in token_rows(8)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "tokens.parquet")
    out = prepare_dataset(str(tmp_path / "tokens.parquet"), str(tmp_path / "ws"), split=1.0, processed_data=True)
    assert out["train_rows"] == 8


@pytest.mark.parametrize(("row", "message"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, r"no pre-tokenised columns \(columns found: messages\)"),
    ({"input_ids": [], "labels": []}, "input_ids is empty"),
    ({"input_ids": [1, 2, 3], "labels": [1, 2]}, "labels has 2 entries but input_ids has 3"),
    ({"input_ids": [1, -2, 3], "labels": [1, 2, 3]}, "input_ids holds -2"),
    ({"input_ids": [1, 2, 3], "labels": [1, -5, 3]}, "labels holds -5"),
    ({"input_ids": [1, 2, 3], "labels": [1, -100, -100]}, "nothing to learn from"),
    ({"input_ids": [1, 2, 3], "labels": [1, 2, 3], "len": 4}, "len is 4 but input_ids has 3"),
    ({"input_ids": [1, 2, 3], "labels": [1, 2, 3], "num_loss_counted_tokens": 3}, "labels count 2"),
    ({"input_ids": ["a"], "labels": [1]}, "Expected `int`"),
])
def test_bad_rows_are_refused_with_the_line_and_the_reason(tmp_path: Path, row: dict, message: str) -> None:
    data = write_jsonl(tmp_path / "tokens.jsonl", [*token_rows(3), row])
    with pytest.raises(StepError, match=message) as info:
        prepare_dataset(str(data), str(tmp_path / "ws"), processed_data=True)
    assert "line 4" in str(info.value)
    assert not (tmp_path / "ws" / "dataset" / "train.jsonl").exists()  # nothing that looks like success


def test_mini_trainers_loader_takes_what_the_step_writes(tmp_path: Path) -> None:
    """The canonical rows load with mini-trainer's own dataset code, which computes nothing differently."""
    from mini_trainer.sampler import JsonlDataset

    data = write_jsonl(tmp_path / "tokens.jsonl", [{k: v for k, v in r.items() if k != "extra"}
                                                   for r in token_rows(6)])
    prepare_dataset(str(data), str(tmp_path / "ws"), split=1.0, processed_data=True)
    ds = JsonlDataset(str(tmp_path / "ws" / "dataset" / "train.jsonl"))
    assert len(ds) == 6
    sample = ds[0]
    assert int(sample["num_loss_counted_tokens"]) == int((sample["labels"][1:] != -100).sum())
