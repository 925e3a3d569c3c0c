"""Continual learning end to end: the compiled template run locally on the tiny model, three times, against one
models folder (a pvc:// claim) and the in-process Model Registry.

1. the first run trains the base model, is accepted and registered with its lineage facts;
2. ``since=last`` on the unchanged folder: "nothing new to learn", the later tasks skipped, the run Succeeds;
3. a new file and a forced-forgetting run (a very high learning rate): the retention gate refuses it, nothing is
   published as accepted and the latest pointer does not move.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from steps.lineage.store import open_lineage
from tests.registry_server import RegistryServer
from tests.tiny_assets import chat_rows, write_jsonl

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "osft-minimal-pipeline.yaml"
STORAGE = "pvc://models/osft"


def _run(ws: Path, store: Path | None, params: dict[str, str], env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", str(TEMPLATE), "--workspace",
            str(ws), *(["--pvc", f"models={store}"] if store else [])]
    for k, v in params.items():
        args += ["-p", f"{k}={v}"]
    return subprocess.run(args, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _params(data: Path, model: Path, storage: str) -> dict[str, str]:
    return {
        "phase_01_dataset_man_data_uri": str(data), "phase_02_train_man_train_model": str(model),
        "phase_02_train_man_train_gpu": "0", "phase_03_eval_opt_gpu": "0", "phase_02_train_man_train_batch": "8",
        "phase_02_train_man_train_tokens": "1024", "phase_02_train_opt_max_seq_len": "128",
        "phase_02_train_opt_learning_rate": "1e-4", "phase_02_train_opt_use_liger": "false",
        "phase_01_dataset_man_data_split": "0.8", "phase_03_eval_opt_limit": "5", "phase_03_eval_opt_batch": "8",
        "phase_04_registry_opt_storage_uri": storage, "phase_02_train_opt_continue_from": "latest",
        "phase_01_dataset_opt_since": "last", "phase_04_registry_man_reg_version": "auto",
    }


def _phases(ws: Path) -> dict[str, str]:
    return {n: t["phase"] for n, t in json.loads((ws / "run.json").read_text())["tasks"].items()}


def test_continue_learn_only_what_is_new_and_refuse_forgetting(tmp_path: Path, tiny_model: Path) -> None:
    data, store = tmp_path / "data", tmp_path / "models"
    store.mkdir()
    rows = chat_rows(120)
    sums = [r for r in rows if "plus" in r["messages"][0]["content"]]  # two disjoint topics
    colours = [r for r in rows if "Describe" in r["messages"][0]["content"]]
    write_jsonl(data / "01-sums.jsonl", sums[:40])
    params = _params(data, tiny_model, STORAGE)
    lineage = open_lineage(STORAGE, "osft-model", str(store))

    # 1. the first version: trained from the base model, accepted, registered with its lineage facts
    with RegistryServer() as registry:
        proc = _run(tmp_path / "ws1", store, {**params, "phase_04_registry_man_address": registry.url})
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        sent = [json.loads(e.body) for e in registry.exchanges if e.body and b"lineage.chain" in e.body]
    first = lineage.pointer().version
    run1 = json.loads((tmp_path / "ws1" / "run.json").read_text())["workflow"]["name"]
    assert first == run1
    ledger = json.loads(lineage.read(f"{first}/ledger.json"))
    assert ledger["parent"] == "" and ledger["watermark"]["key"] == "01-sums.jsonl" and first in ledger["scores"]
    props = {k: next(x for f, x in v.items() if f.endswith("_value")) for k, v in sent[-1]["customProperties"].items()}
    assert props["lineage.parent_version"] == "" and props["lineage.version"] == first
    assert props["lineage.watermark.key"] == "01-sums.jsonl"
    assert float(props[f"lineage.retention.{first}.loss"]) == ledger["scores"][first]["loss"]

    # 2. nothing new in the folder: the run ends early and Succeeds, the later tasks skipped
    proc = _run(tmp_path / "ws2", store, params)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    phases = _phases(tmp_path / "ws2")
    assert phases["lineage-pvc"] == phases["dataset"] == "Succeeded"
    assert {phases[t] for t in ("train", "evaluate", "publish-pvc", "register")} == {"Skipped"}
    assert (tmp_path / "ws2" / "dataset" / "status.txt").read_text() == "nothing-new"
    assert "NOTHING NEW TO LEARN" in (tmp_path / "ws2" / "report.html").read_text()
    assert "data_status nothing new to learn" in (tmp_path / "ws2" / "pipeline_log.txt").read_text()
    assert lineage.pointer().version == first

    # 3. a new topic at a very high learning rate for several epochs: it forgets the first topic; refused
    write_jsonl(data / "02-colours.jsonl", colours[:40])
    proc = _run(tmp_path / "ws3", store, {**params, "phase_02_train_opt_learning_rate": "1e-2",
                                          "phase_02_train_man_train_epochs": "4"})
    assert proc.returncode != 0
    comp = json.loads((tmp_path / "ws3" / "eval" / "comparison.json").read_text())
    retention = comp["retention"]
    assert comp["gate"] == "fail" and retention["gate"] == "fail" and retention["worst_set"] == first
    assert retention["worst_forgetting"] > retention["max_forgetting"] == 0.1
    assert _phases(tmp_path / "ws3")["publish-pvc"] == "Failed"
    assert (tmp_path / "ws3" / "eval" / "retention.png").is_file()
    assert lineage.pointer().version == first  # the latest pointer did not move
    assert [p.name for p in (store / "osft" / "osft-model" / "lineage").iterdir() if p.is_dir()] == [first]
    assert "FORGOT" in (tmp_path / "ws3" / "report.html").read_text()


def test_the_s3_lineage_task_on_an_s3_prefix(tmp_path: Path, tiny_model: Path) -> None:
    """The Argo path: an s3:// storage URI (moto) and an s3:// data prefix; the lineage task (not lineage-pvc) reads
    the store with the s3-secret's keys; the next run finds nothing new on the unchanged prefix before it downloads
    the accepted version's weights (fetching them from S3: tests/steps/lineage/)."""
    import boto3

    from tests.moto_s3 import moto_server

    with moto_server(reset=True) as endpoint:
        env = {"AWS_ACCESS_KEY_ID": "AKIALINEAGE0001", "AWS_SECRET_ACCESS_KEY": "lineage-secret-0002",
               "AWS_ENDPOINT_URL": endpoint}
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="k",
                          aws_secret_access_key="s")
        s3.create_bucket(Bucket="chat-feed")
        s3.create_bucket(Bucket="models")
        s3.put_object(Bucket="chat-feed", Key="daily/2026-11-27.jsonl",
                      Body="".join(json.dumps(r) + "\n" for r in chat_rows(40)).encode())
        params = _params(tmp_path / "unused", tiny_model, "s3://models/osft")
        params["phase_01_dataset_man_data_uri"] = "s3://chat-feed/daily/"
        proc = _run(tmp_path / "ws1", None, params, env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        phases = _phases(tmp_path / "ws1")
        assert phases["lineage"] == phases["publish"] == "Succeeded"
        assert phases["lineage-pvc"] == phases["publish-pvc"] == "Skipped"
        pointer = json.loads(s3.get_object(Bucket="models", Key="osft/osft-model/lineage/latest.json")["Body"].read())
        first = json.loads((tmp_path / "ws1" / "run.json").read_text())["workflow"]["name"]
        assert pointer["version"] == first and pointer["parent"] == ""

        proc = _run(tmp_path / "ws2", None, params, env)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        phases = _phases(tmp_path / "ws2")
        assert phases["lineage"] == "Succeeded" and phases["train"] == "Skipped"
        assert (tmp_path / "ws2" / "dataset" / "status.txt").read_text() == "nothing-new"
        parent = json.loads((tmp_path / "ws2" / "lineage" / "parent.json").read_text())
        assert parent["parent"] == first and parent["nothing_new"] is True  # listed the prefix with the s3-secret
        assert not (tmp_path / "ws2" / "lineage" / "parent").exists()  # so no weights were downloaded
        log = (tmp_path / "ws2" / "pipeline_log.txt").read_text()
        assert "lineage-secret-0002" not in log and "nothing new to learn" in log

