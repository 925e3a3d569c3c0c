"""The lineage store on a folder (a pvc:// claim) and on S3 (moto): chains, the conditional latest pointer, racing
children, the gate, and the registry properties an accepted version carries."""

import json
import os
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.common.workspace import Workspace
from steps.lineage import fetch_lineage, read_parent
from steps.lineage.retention import retention_table
from steps.lineage.store import LineageConflict, open_lineage
from steps.publish import publish_model
from steps.register import lineage_properties
from tests.steps.publish.conftest import BUCKET, make_checkpoint, moto_endpoint, s3  # noqa: F401 - fixtures

NAME = "osft-model"


@pytest.fixture(params=["folder", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """(storage URI, models mount): a local folder standing for a pvc:// claim, or a moto bucket."""
    if request.param == "folder":
        mount = tmp_path / "models-volume"
        mount.mkdir()
        return "pvc://models/osft", str(mount)
    request.getfixturevalue("s3")
    return f"s3://{BUCKET}/lineage-test", str(tmp_path / "not-mounted")


def _prepare(root: Path, seed: int, storage: tuple[str, str], gate: str = "pass", forgetting: float = 0.0
             ) -> Workspace:
    """A workspace that fetched the lineage and then trained and evaluated: its checkpoint, held-out split, a
    dataset summary with a watermark and a comparison with a retention table."""
    uri, mount = storage
    ws = Workspace.at(root)
    fetch_lineage(str(root), uri, NAME, "latest", models_mount=mount)
    make_checkpoint(root, weights_mb=0.2, gate=gate, seed=seed)
    ws.dataset_dir.mkdir(parents=True, exist_ok=True)
    ws.eval_jsonl.write_text(json.dumps({"messages": [{"role": "user", "content": f"q{seed}"},
                                                      {"role": "assistant", "content": f"a{seed}"}]}) + "\n")
    ws.dataset_summary.write_text(json.dumps({"source": "/data", "watermark": {"time_ns": seed, "key": f"{seed}.jsonl"},
                                              "train": {"rows": 9}, "eval": {"rows": 1}}))
    parent = read_parent(ws) or {}
    ancestors = parent.get("ancestors") or []
    measured = {a["version"]: {"parent": 1.0, "tuned": 1.0 + forgetting} for a in ancestors}
    retention = retention_table(ancestors, measured, {"parent": 2.0, "tuned": 1.5}, 1, 0.1)
    (ws.eval_dir / "comparison.json").write_text(json.dumps({"gate": gate, "rows": [], "retention": retention}))
    return ws


def _publish(ws: Workspace, storage: tuple[str, str], version: str, force: bool = False) -> dict:
    uri, mount = storage
    return publish_model(str(ws.root), uri, NAME, version, workflow_name=f"run-{version}", force=force,
                         models_mount=mount, continue_from="latest")


def _pointer(storage: tuple[str, str]) -> str:
    return open_lineage(storage[0], NAME, storage[1]).pointer().version


def test_each_version_continues_from_the_last_accepted_one(tmp_path: Path, storage: tuple[str, str]) -> None:
    ws1 = _prepare(tmp_path / "ws1", 1, storage)
    assert read_parent(ws1)["parent"] == ""  # the first run: no version yet, train the base model
    out = _publish(ws1, storage, "1.0.0")
    assert out["lineage"] == {"accepted": True, "version": "1.0.0", "parent": ""}
    assert _pointer(storage) == "1.0.0"

    ws2 = _prepare(tmp_path / "ws2", 2, storage)
    parent = read_parent(ws2)
    assert parent["parent"] == "1.0.0" and parent["watermark"] == {"time_ns": 1, "key": "1.jsonl"}
    fetched = ws2.root / parent["model_dir"]
    published = ws1.trained_model()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):  # the parent's published weights
        assert (fetched / name).read_bytes() == (published / name).read_bytes()
    assert not (fetched / "optimizer.pt").exists()
    assert (ws2.root / parent["ancestors"][0]["heldout"]).read_text() == ws1.eval_jsonl.read_text()
    _publish(ws2, storage, "1.1.0")
    ws3 = _prepare(tmp_path / "ws3", 3, storage)
    _publish(ws3, storage, "1.2.0")

    store = open_lineage(storage[0], NAME, storage[1])
    ledger = json.loads(store.read("1.2.0/ledger.json"))
    assert ledger["parent"] == "1.1.0" and ledger["chain"] == ["1.0.0", "1.1.0", "1.2.0"]
    assert ledger["watermark"] == {"time_ns": 3, "key": "3.jsonl"}
    assert set(ledger["scores"]) == {"1.0.0", "1.1.0", "1.2.0"}  # every earlier held-out set plus its own
    assert _pointer(storage) == "1.2.0"
    # the registry version carries the same facts
    props = lineage_properties(ws3)
    assert props["lineage.parent_version"] == "1.1.0" and props["lineage.chain"] == "1.0.0 -> 1.1.0 -> 1.2.0"
    assert props["lineage.watermark.key"] == "3.jsonl"
    assert props["lineage.retention.1.0.0.loss"] == 1.0 and props["lineage.retention.1.2.0.loss"] == 1.5


def test_a_second_fetch_downloads_nothing_already_on_the_workspace(tmp_path: Path, storage: tuple[str, str]) -> None:
    _publish(_prepare(tmp_path / "ws1", 1, storage), storage, "1.0.0")
    first = fetch_lineage(str(tmp_path / "ws2"), storage[0], NAME, "latest", models_mount=storage[1])
    again = fetch_lineage(str(tmp_path / "ws2"), storage[0], NAME, "latest", models_mount=storage[1])
    assert first["fetched"] >= 3 and again["fetched"] == 0


@pytest.mark.parametrize("first_version", [False, True])
def test_two_runs_racing_for_one_parent_only_one_is_accepted(tmp_path: Path, storage: tuple[str, str],
                                                             first_version: bool) -> None:
    """Both read the same pointer (none yet, or 1.0.0); the first to finish moves it, the second is refused with a
    clear message, leaves no ledger, and the pointer stays where the winner put it."""
    if not first_version:
        _publish(_prepare(tmp_path / "ws0", 0, storage), storage, "1.0.0")
    a = _prepare(tmp_path / "a", 1, storage)
    b = _prepare(tmp_path / "b", 2, storage)  # fetched before a was accepted: the same parent
    assert read_parent(a)["pointer_tag"] == read_parent(b)["pointer_tag"]
    _publish(a, storage, "2.0.0")
    with pytest.raises(LineageConflict, match=r"moved to version 2\.0\.0 while this run trained: another run was "
                                              r"accepted first"):
        _publish(b, storage, "2.0.1")
    assert _pointer(storage) == "2.0.0"
    store = open_lineage(storage[0], NAME, storage[1])
    assert store.read("2.0.1/ledger.json") is None and store.read("2.0.1/heldout.jsonl") is None
    assert not (b.root / "publish" / "lineage.json").exists()
    # the loser, run again, continues from the winner
    again = _prepare(tmp_path / "b2", 2, storage)
    assert read_parent(again)["parent"] == "2.0.0"


def test_a_failed_gate_is_never_accepted(tmp_path: Path, storage: tuple[str, str]) -> None:
    _publish(_prepare(tmp_path / "ws1", 1, storage), storage, "1.0.0")
    bad = _prepare(tmp_path / "ws2", 2, storage, gate="fail", forgetting=3.0)
    with pytest.raises(StepError, match="the eval gate failed"):
        _publish(bad, storage, "1.1.0")
    assert _pointer(storage) == "1.0.0"
    forced = _publish(bad, storage, "1.1.0", force=True)  # published on request, still not accepted
    assert forced["lineage"] == {"accepted": False, "version": "1.1.0"}
    assert _pointer(storage) == "1.0.0"
    assert lineage_properties(bad) == {"lineage.accepted": False}


def test_an_explicit_version_and_a_missing_one(tmp_path: Path, storage: tuple[str, str]) -> None:
    _publish(_prepare(tmp_path / "ws1", 1, storage), storage, "1.0.0")
    _publish(_prepare(tmp_path / "ws2", 2, storage), storage, "1.1.0")
    out = fetch_lineage(str(tmp_path / "ws3"), storage[0], NAME, "1.0.0", models_mount=storage[1])
    assert out["parent"] == "1.0.0" and out["heldout_sets"] == 1
    with pytest.raises(StepError, match="version '9.9.9' has no ledger"):
        fetch_lineage(str(tmp_path / "ws4"), storage[0], NAME, "9.9.9", models_mount=storage[1])


def test_nothing_new_downloads_no_weights(tmp_path: Path, storage: tuple[str, str]) -> None:
    """With since=last the lineage step lists the data first: nothing newer than the parent's watermark means the
    parent's weights are not downloaded, and the dataset step keeps to that answer even when a file arrives in
    between (the next run learns it); a new file means the weights are fetched."""
    from steps.dataset import prepare_dataset
    from steps.dataset.since import Mark

    data = tmp_path / "data"
    data.mkdir()
    (data / "a.jsonl").write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                                           {"role": "assistant", "content": "a"}]}) + "\n")
    os.utime(data / "a.jsonl", ns=(10**18, 10**18))
    ws1 = _prepare(tmp_path / "ws1", 1, storage)
    summary = json.loads(ws1.dataset_summary.read_text())
    summary["watermark"] = Mark(10**18, "a.jsonl").doc()  # version 1.0.0 learned a.jsonl
    ws1.dataset_summary.write_text(json.dumps(summary))
    _publish(ws1, storage, "1.0.0")

    ws2 = tmp_path / "ws2"
    out = fetch_lineage(str(ws2), storage[0], NAME, "latest", models_mount=storage[1], data_uri=str(data),
                        since="last")
    parent = read_parent(Workspace.at(ws2))
    assert out == {"parent": "1.0.0", "model_dir": "", "heldout_sets": 1, "fetched": 0}
    assert parent["nothing_new"] is True and not (ws2 / "lineage" / "parent").exists()
    assert "its weights are not downloaded (nothing new to learn)" in (ws2 / "pipeline_log.txt").read_text()
    (data / "b.jsonl").write_text((data / "a.jsonl").read_text())  # arrives after the lineage step
    os.utime(data / "b.jsonl", ns=(10**18 + 1, 10**18 + 1))
    done = prepare_dataset(str(data), str(ws2), since="last")
    assert done["status"] == "nothing-new" and not (ws2 / "dataset" / "train.jsonl").exists()

    ws3 = tmp_path / "ws3"  # the next run sees b.jsonl: weights fetched, the dataset takes b only
    out = fetch_lineage(str(ws3), storage[0], NAME, "latest", models_mount=storage[1], data_uri=str(data),
                        since="last")
    assert out["fetched"] >= 3 and read_parent(Workspace.at(ws3)).get("nothing_new") is None
    assert prepare_dataset(str(data), str(ws3), since="last", split=1.0)["train_rows"] == 1
