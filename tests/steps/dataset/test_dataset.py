"""The dataset step against every source scheme, format and bad input, on real local servers."""

import gzip
import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from steps.common.errors import StepError
from steps.dataset import prepare_dataset
from tests.moto_s3 import moto_server
from tests.tiny_assets import chat_rows, write_jsonl
from workflows.cli import app

ROWS = chat_rows(50)


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _outputs(ws: Path) -> list[str]:
    d = ws / "dataset"
    return sorted(p.name for p in d.iterdir() if not p.name.startswith(".")) if d.exists() else []


def _assert_partition(ws: Path, source_rows: list[dict], split: float) -> tuple[list[dict], list[dict]]:
    train, evl = _lines(ws / "dataset" / "train.jsonl"), _lines(ws / "dataset" / "eval.jsonl")
    key = lambda r: json.dumps(r["messages"], sort_keys=True)  # noqa: E731
    assert sorted(map(key, train + evl)) == sorted(key(r) for r in source_rows)
    n = len(source_rows)
    assert len(evl) == (0 if split >= 1 else -(-round((1 - split) * n, 9) // 1))
    summary = json.loads((ws / "dataset" / "summary.json").read_text())
    assert summary["train"]["rows"] == len(train) and summary["eval"]["rows"] == len(evl)
    return train, evl


# --- formats ------------------------------------------------------------------------------------------------


def _write_format(path: Path, fmt: str, rows: list[dict]) -> Path:
    if fmt == "jsonl":
        return write_jsonl(path.with_suffix(".jsonl"), rows)
    if fmt == "jsonl.gz":
        target = path.with_suffix(".jsonl.gz")
        with gzip.open(target, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
        return target
    if fmt == "json-array":
        target = path.with_suffix(".json")
        target.write_text(json.dumps(rows, indent=1))
        return target
    if fmt == "json-records":
        target = path.with_suffix(".json")
        target.write_text(json.dumps({"version": 1, "data": rows}))
        return target
    if fmt == "parquet":
        target = path.with_suffix(".parquet")
        pq.write_table(pa.Table.from_pylist(rows), target)
        return target
    if fmt == "csv":
        import csv

        target = path.with_suffix(".csv")
        with open(target, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["id", "messages"])
            w.writeheader()
            for i, r in enumerate(rows):
                w.writerow({"id": i, "messages": json.dumps(r["messages"])})
        return target
    raise AssertionError(fmt)


@pytest.mark.parametrize("fmt", ["jsonl", "jsonl.gz", "json-array", "json-records", "parquet", "csv"])
def test_every_format_is_read_validated_and_split(tmp_path: Path, workspace: Path, fmt: str) -> None:
    src = _write_format(tmp_path / "data", fmt, ROWS)
    result = prepare_dataset(str(src), str(workspace), split=0.8, seed=1)
    train, evl = _assert_partition(workspace, ROWS, 0.8)
    assert (result["train_rows"], result["eval_rows"]) == (40, 10)
    assert all(set(r) == {"messages"} for r in train + evl)


def test_json_file_holding_json_lines_is_accepted(tmp_path: Path, workspace: Path) -> None:
    src = write_jsonl(tmp_path / "really-lines.json", ROWS)
    prepare_dataset(str(src), str(workspace))
    _assert_partition(workspace, ROWS, 0.9)


def test_sharegpt_conversations_become_messages(tmp_path: Path, workspace: Path) -> None:
    rows = [{"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": f"q{i}"},
                               {"from": "gpt", "value": f"a{i}"}], "id": i} for i in range(10)]
    prepare_dataset(str(write_jsonl(tmp_path / "sg.jsonl", rows)), str(workspace), split=1.0)
    out = _lines(workspace / "dataset" / "train.jsonl")
    assert out[3] == {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "q3"},
                                   {"role": "assistant", "content": "a3"}]}
    summary = json.loads((workspace / "dataset" / "summary.json").read_text())
    assert summary["schema"] == {"conversations": 10}


# --- subset and split ---------------------------------------------------------------------------------------


def test_subset_keeps_the_first_n_rows(chat_jsonl: Path, workspace: Path) -> None:
    prepare_dataset(str(chat_jsonl), str(workspace), split=1.0, subset=7)
    assert _lines(workspace / "dataset" / "train.jsonl") == [
        {"messages": r["messages"]} for r in chat_rows(120)[:7]]
    assert (workspace / "dataset" / "eval.jsonl").read_bytes() == b""


def test_split_is_deterministic_per_seed_and_an_exact_partition(chat_jsonl: Path, tmp_path: Path) -> None:
    def run(seed: int, name: str) -> tuple[list[dict], list[dict]]:
        ws = tmp_path / name
        prepare_dataset(str(chat_jsonl), str(ws), split=0.75, seed=seed)
        return _assert_partition(ws, chat_rows(120), 0.75)

    a, b, c = run(7, "a"), run(7, "b"), run(8, "c")
    assert a == b
    assert a[1] != c[1]
    assert len(a[1]) == 30


def test_split_one_leaves_eval_empty_and_says_so(chat_jsonl: Path, workspace: Path) -> None:
    result = prepare_dataset(str(chat_jsonl), str(workspace), split=1.0)
    assert result["eval_rows"] == 0
    summary = json.loads((workspace / "dataset" / "summary.json").read_text())
    assert "no eval split" in summary["eval_note"]
    assert "no eval split" in (workspace / "pipeline_log.txt").read_text()


def test_summary_records_the_size_of_the_outputs(chat_jsonl: Path, workspace: Path) -> None:
    prepare_dataset(str(chat_jsonl), str(workspace))
    summary = json.loads((workspace / "dataset" / "summary.json").read_text())
    for split in ("train", "eval"):
        data = (workspace / "dataset" / f"{split}.jsonl").read_bytes()
        assert summary[split]["bytes"] == len(data) and summary[split]["rows"] == data.count(b"\n")
    assert summary["formats"] == ["jsonl"] and summary["rows"] == 120


# --- sources ------------------------------------------------------------------------------------------------


def test_file_uri_and_folder_of_files(tmp_path: Path, workspace: Path) -> None:
    folder = tmp_path / "parts"
    write_jsonl(folder / "a.jsonl", ROWS[:20])
    _write_format(folder / "b", "parquet", ROWS[20:])
    (folder / "README.txt").write_text("not data")
    prepare_dataset(f"file://{folder}", str(workspace), split=0.5)
    _assert_partition(workspace, ROWS, 0.5)


def test_pvc_paths_resolve_inside_the_workspace_or_data_volume(workspace: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    write_jsonl(workspace / "incoming" / "chat.jsonl", ROWS)
    prepare_dataset("pvc://incoming/chat.jsonl", str(workspace))
    _assert_partition(workspace, ROWS, 0.9)
    data_volume = tmp_path / "data-volume"
    write_jsonl(data_volume / "sets" / "x.jsonl", ROWS[:10])
    monkeypatch.setenv("OSFT_DATA_DIR", str(data_volume))
    assert prepare_dataset("pvc://sets/x.jsonl", str(workspace), split=1.0)["train_rows"] == 10


@pytest.fixture()
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):  # noqa: ANN002, ANN003
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_http_source(http_root: tuple[str, Path], workspace: Path) -> None:
    base, root = http_root
    _write_format(root / "chat", "jsonl.gz", ROWS)
    prepare_dataset(f"{base}/chat.jsonl.gz", str(workspace), split=0.8)
    _assert_partition(workspace, ROWS, 0.8)
    summary = json.loads((workspace / "dataset" / "summary.json").read_text())
    assert summary["scheme"] == "http"


def test_http_credentials_never_reach_logs_or_summary(http_root: tuple[str, Path], workspace: Path) -> None:
    base, root = http_root
    write_jsonl(root / "c.jsonl", ROWS)
    host = base.removeprefix("http://")
    prepare_dataset(f"http://alice:hunter2pass@{host}/c.jsonl?X-Amz-Signature=abcdef123", str(workspace))
    for f in ("dataset/summary.json", "pipeline_log.txt"):
        text = (workspace / f).read_text()
        assert "hunter2pass" not in text and "abcdef123" not in text


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture()
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-value-123456")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    return s3_endpoint


def _s3_put(endpoint: str, bucket: str, files: dict[str, bytes]) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    for key, body in files.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)


def test_s3_object_and_prefix_through_a_custom_endpoint(s3_env: str, workspace: Path, tmp_path: Path) -> None:
    body = "".join(json.dumps(r) + "\n" for r in ROWS).encode()
    pq_path = _write_format(tmp_path / "p", "parquet", ROWS[:10])
    _s3_put(s3_env, "datasets", {"chat/one.jsonl": body, "many/a.jsonl": body[: body.index(b"\n") + 1],
                                 "many/b.parquet": pq_path.read_bytes(), "many/notes.txt": b"x"})
    prepare_dataset("s3://datasets/chat/one.jsonl", str(workspace))
    _assert_partition(workspace, ROWS, 0.9)
    result = prepare_dataset("s3://datasets/many", str(workspace), split=1.0)
    assert result["train_rows"] == 11
    log = (workspace / "pipeline_log.txt").read_text()
    assert "secret-value-123456" not in log and "AKIAEXAMPLEKEY" not in log


def test_s3_without_both_keys_names_the_secret(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x" * 8)
    with pytest.raises(StepError, match="AWS_ACCESS_KEY_ID not set; create the s3-secret secret"):
        prepare_dataset("s3://bucket/data.jsonl", str(workspace))
    assert _outputs(workspace) == []


def test_s3_missing_bucket_is_a_clear_error(s3_env: str, workspace: Path) -> None:
    with pytest.raises(StepError, match="s3://no-such-bucket/x.jsonl: the bucket does not exist"):
        prepare_dataset("s3://no-such-bucket/x.jsonl", str(workspace))


# --- bad input: one line, exit 2 from the CLI, nothing left behind ------------------------------------------


def _bad(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


GOOD = json.dumps(ROWS[0])


@pytest.mark.parametrize(("make_uri", "extra", "message"), [
    (lambda t: _bad(t, "m.jsonl", GOOD + "\n{not json\n"), [], r"m.jsonl line 2: not valid JSON"),
    (lambda t: _bad(t, "n.jsonl", GOOD + '\n{"text": "hi", "id": 3}\n'), [],
     r"n.jsonl line 2: no chat column \(columns found: id, text\); accepted shapes"),
    (lambda t: _bad(t, "e.jsonl", '{"messages": []}\n'), [], r"e.jsonl line 1: messages is empty"),
    (lambda t: _bad(t, "r.jsonl", GOOD + "\n" + GOOD + '\n{"messages": [{"role": "bot", "content": "x"}]}\n'), [],
     r"r.jsonl line 3: invalid role 'bot' - at `messages\[0\].role`; allowed roles: system, user, assistant, tool"),
    (lambda t: _bad(t, "c.jsonl", '{"messages": [{"role": "user", "content": 5}]}\n'), [],
     r"c.jsonl line 1: Expected `str`, got `int` - at `messages\[0\].content`"),
    (lambda t: _bad(t, "a.jsonl", '{"messages": [{"role": "user", "content": "hi"}]}\n'), [],
     r"a.jsonl line 1: messages has no assistant turn"),
    (lambda t: _bad(t, "empty.jsonl", ""), [], r"empty.jsonl: file is empty"),
    (lambda t: _bad(t, "blank.jsonl", "\n\n"), [], r"no rows found; the dataset is empty"),
    (lambda t: _bad(t, "ok.jsonl", GOOD + "\n"), ["--split", "0"], r"split=0.0: must be in \(0, 1\]"),
    (lambda t: _bad(t, "ok.jsonl", GOOD + "\n"), ["--split", "1.5"], r"split=1.5: must be in \(0, 1\]"),
    (lambda t: _bad(t, "ok.jsonl", GOOD + "\n"), ["--subset", "-3"], r"subset=-3: must be >= 0"),
    (lambda t: _bad(t, "two.jsonl", GOOD + "\n"), ["--split", "0.5"], r"leaves no training rows out of 1"),
    (lambda t: "gs://bucket/x.jsonl", [], r"unknown scheme gs://"),
    (lambda t: "pvc://../../etc/passwd", [], r"escapes the volume with '..'"),
    (lambda t: "pvc:///etc/passwd", [], r"pvc:// paths are relative to the workspace volume"),
    (lambda t: "http://127.0.0.1:9/x.jsonl", [], r"http://127.0.0.1:9/x.jsonl: cannot connect"),
    (lambda t: "hf://LipengCS/Table-GPT:All", [], r"hf://LipengCS/Table-GPT:All: the Hugging Face Hub is offline"),
    (lambda t: "LipengCS/Table-GPT", [], r"hf://LipengCS/Table-GPT: the Hugging Face Hub is offline"),
    (lambda t: str(t / "missing.jsonl"), [], r"missing.jsonl: no such file or folder"),
    (lambda t: _bad(t, "x.bin", "\x00\x01garbage"), [], r"x.bin: unknown data format"),
])
def test_bad_input_fails_with_one_line_and_leaves_nothing(tmp_path: Path, workspace: Path, make_uri, extra: list[str],
                                                          message: str) -> None:
    # a previous successful run must not survive as if this run had succeeded
    prepare_dataset(str(write_jsonl(tmp_path / "prev.jsonl", ROWS)), str(workspace))
    assert _outputs(workspace) == ["eval.jsonl", "summary.json", "train.jsonl"]
    result = CliRunner().invoke(app, ["step", "dataset", "--data-uri", make_uri(tmp_path), "--workspace",
                                      str(workspace), *extra])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "\n" not in errors[0]
    import re

    assert re.search(message, errors[0]), errors[0]
    assert result.stdout == ""
    assert _outputs(workspace) == []
    assert not [p for p in (workspace / "dataset").iterdir() if "partial" in p.name or p.name.startswith(".fetch")]


def test_pvc_symlink_escape_is_refused(workspace: Path, tmp_path: Path) -> None:
    outside = write_jsonl(tmp_path / "outside.jsonl", ROWS)
    os.symlink(outside, workspace / "link.jsonl")
    with pytest.raises(StepError, match="resolves outside the volume"):
        prepare_dataset("pvc://link.jsonl", str(workspace))


def test_hub_rows_stream_through_validation_and_the_split(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub path (datasets' streaming splits) without the Hub: load_dataset stands in, the rest is real."""
    import datasets

    rows = [{"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}], "id": i}
            for i in range(5000)]
    asked = {}

    def fake_load(repo: str, name: str | None = None, streaming: bool = False, token: str | None = None) -> dict:
        asked.update(repo=repo, name=name, streaming=streaming)
        return {"test": rows[:3], "train": iter(rows)}

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    result = prepare_dataset("hf://org/chat:cfg", str(workspace), split=0.8, seed=3)
    assert asked == {"repo": "org/chat", "name": "cfg", "streaming": True}
    assert (result["train_rows"], result["eval_rows"]) == (4000, 1000)
    _assert_partition(workspace, [{"messages": [{"role": "user", "content": f"q{i}"},
                                                {"role": "assistant", "content": f"a{i}"}]} for i in range(5000)], 0.8)
    summary = json.loads((workspace / "dataset" / "summary.json").read_text())
    assert summary["formats"] == ["hub"] and summary["schema"] == {"conversations": 5000}
    rows[4321] = {"text": "no chat here"}
    with pytest.raises(StepError, match=r"^hf://org/chat row 4322: no chat column \(columns found: text\)"):
        prepare_dataset("hf://org/chat:cfg", str(workspace))


def test_hf_token_parameter_is_never_printed(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_envtokenvalue")
    result = CliRunner().invoke(app, ["step", "dataset", "--data-uri", "hf://org/private", "--workspace",
                                      str(workspace), "--hf-token", "hf_paramtokenvalue"])
    assert result.exit_code == 2
    everything = result.output + (workspace / "pipeline_log.txt").read_text()
    assert "hf_paramtokenvalue" not in everything and "hf_envtokenvalue" not in everything


def test_cli_prints_the_result_as_json(chat_jsonl: Path, workspace: Path) -> None:
    result = CliRunner().invoke(app, ["step", "dataset", "--data-uri", str(chat_jsonl), "--workspace", str(workspace),
                                      "--split", "0.5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["train_rows"] == 60 and out["eval_rows"] == 60
    assert Path(out["train_path"]) == workspace / "dataset" / "train.jsonl"


def test_demo_dataset_is_real_chat_data(tmp_path: Path, workspace: Path) -> None:
    from steps.dataset.demo_data import write_demo_dataset

    info = write_demo_dataset(str(tmp_path / "demo.jsonl"))
    assert info["rows"] > 1500
    result = prepare_dataset(info["path"], str(workspace), split=0.9, seed=42)
    assert result["train_rows"] + result["eval_rows"] == info["rows"]
    first = _lines(workspace / "dataset" / "train.jsonl")[0]["messages"]
    assert first[0]["role"] == "system" and first[1]["role"] == "user" and first[2]["role"] == "assistant"
