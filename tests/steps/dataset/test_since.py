"""since=last: only the files newer than the parent version's data watermark (a folder's mtimes, an S3 prefix's
LastModified); nothing new ends the step with "nothing new to learn", not a failure."""

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.common.workspace import Workspace
from steps.dataset import STATUS_TXT, prepare_dataset
from tests.steps.dataset.test_dataset import s3_endpoint, s3_env  # noqa: F401 - fixtures
from tests.tiny_assets import chat_rows


def _body(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _parent(ws: Path, watermark: dict | None) -> None:
    """lineage/parent.json as the lineage step writes it (the watermark of the version continued from)."""
    (ws / "lineage").mkdir(parents=True, exist_ok=True)
    (ws / "lineage" / "parent.json").write_text(json.dumps({"continue_from": "latest", "watermark": watermark}))


def _trained(ws: Path) -> list[str]:
    lines = (ws / "dataset" / "train.jsonl").read_text().splitlines() + (ws / "dataset" / "eval.jsonl").read_text(
        ).splitlines()
    return sorted(json.loads(line)["messages"][0]["content"] for line in lines)


def _check_incremental(uri: str, ws: Path, add: Callable[[str, list[dict]], None]) -> None:
    rows = chat_rows(30)
    add("a.jsonl", rows[:20])
    _parent(ws, None)  # the lineage's first version: everything is new
    first = prepare_dataset(uri, str(ws), since="last")
    assert first["status"] == "new" and first["train_rows"] + first["eval_rows"] == 20
    mark = json.loads((ws / "dataset" / "summary.json").read_text())["watermark"]
    assert mark["key"].endswith("a.jsonl") and not (ws / STATUS_TXT).exists()  # data_status: its default, "new"

    _parent(ws, mark)  # the next run continues from that version
    add("b.jsonl", rows[20:])
    second = prepare_dataset(uri, str(ws), since="last")
    assert second["train_rows"] + second["eval_rows"] == 10
    assert _trained(ws) == sorted(r["messages"][0]["content"] for r in rows[20:])  # exactly the new file
    summary = json.loads((ws / "dataset" / "summary.json").read_text())
    assert summary["files_already_learned"] == 1 and summary["watermark"]["key"].endswith("b.jsonl")

    _parent(ws, summary["watermark"])  # unchanged since: nothing new to learn
    third = prepare_dataset(uri, str(ws), since="last")
    assert third["status"] == "nothing-new" and (ws / STATUS_TXT).read_text() == "nothing-new"
    done = json.loads((ws / "dataset" / "summary.json").read_text())
    assert done["status"] == "nothing new to learn" and done["rows"] == 0 and done["files_already_learned"] == 2
    assert not (ws / "dataset" / "train.jsonl").exists()
    assert "nothing new to learn" in (ws / "pipeline_log.txt").read_text()

    all_rows = prepare_dataset(uri, str(ws))  # since '' = everything, and the watermark of everything
    assert all_rows["train_rows"] + all_rows["eval_rows"] == 30


def test_since_last_on_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "daily"
    folder.mkdir()
    stamp = [1_700_000_000_000_000_000]

    def add(name: str, rows: list[dict]) -> None:
        (folder / name).write_bytes(_body(rows))
        stamp[0] += 86_400 * 10**9  # one file a day
        os.utime(folder / name, ns=(stamp[0], stamp[0]))

    _check_incremental(str(folder), tmp_path / "ws", add)


def test_since_last_on_an_s3_prefix(s3_env: str, tmp_path: Path) -> None:  # noqa: F811
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_env, region_name="us-east-1")
    s3.create_bucket(Bucket="daily-chat")

    def add(name: str, rows: list[dict]) -> None:
        s3.put_object(Bucket="daily-chat", Key=f"feed/{name}", Body=_body(rows))

    _check_incremental("s3://daily-chat/feed/", tmp_path / "ws", add)


def test_since_last_needs_the_lineage_record(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(_body(chat_rows(10)))
    with pytest.raises(StepError, match="since=last but lineage/parent.json is missing"):
        prepare_dataset(str(tmp_path / "d.jsonl"), str(tmp_path / "ws"), since="last")
    assert not Workspace.at(tmp_path / "ws").dataset_summary.exists()
