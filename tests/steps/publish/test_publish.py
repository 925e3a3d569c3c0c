"""The publish step against a real S3 protocol implementation (moto server on 127.0.0.1) and a local models
volume: files and manifest, checksums, the manifest-last rule, resume after an interrupted upload."""

import hashlib
import json
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.common.workspace import Workspace
from steps.publish import MANIFEST_NAME, parse_storage_uri, publish_model, published_uri
from steps.publish.files import SERVING_FILES
from tests.steps.publish.conftest import BUCKET, KEY_ID, SECRET, FailingProxy, make_checkpoint, objects

SERVED = ["config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(ws: Path) -> dict:
    return json.loads((ws / "publish" / "publish.json").read_text())


def test_s3_publish_stores_the_serving_files_and_the_manifest_last(s3, tmp_path: Path) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    ckpt = make_checkpoint(ws, weights_mb=1.5)
    out = publish_model(str(ws), "s3://models/team/llm", name="granite osft", version="1.2.3",
                        workflow_name="wf-abc12")
    prefix = "team/llm/granite-osft/1.2.3/"
    assert out["status"] == "published" and out["uri"] == f"s3://{BUCKET}/{prefix.rstrip('/')}"
    stored = objects(s3, prefix)
    assert sorted(k.removeprefix(prefix) for k in stored) == sorted(SERVED + [MANIFEST_NAME])  # no trainer files
    manifest = json.loads(s3.get_object(Bucket=BUCKET, Key=prefix + MANIFEST_NAME)["Body"].read())
    assert manifest["run"] == "wf-abc12" and manifest["uri"] == out["uri"]
    for entry in manifest["files"]:
        body = s3.get_object(Bucket=BUCKET, Key=prefix + entry["path"])["Body"].read()
        assert (len(body), hashlib.sha256(body).hexdigest()) == (entry["size"], entry["sha256"])
        assert (entry["size"], entry["sha256"]) == ((ckpt / entry["path"]).stat().st_size, _sha(ckpt / entry["path"]))
    record = _record(ws)
    assert record["uri"] == out["uri"] and record["manifest"] == f"{out['uri']}/{MANIFEST_NAME}"
    assert record["files"] == manifest["files"] and record["source"] == "train/run-abc/hf_format/samples_64.0"
    assert sorted(record["uploaded"]) == SERVED and record["skipped"] == []
    assert json.loads((ws / "publish" / "summary.json").read_text())["uri"] == out["uri"]
    log = (ws / "pipeline_log.txt").read_text()
    assert SECRET not in log and KEY_ID not in log and "manifest" in log


def test_a_second_publish_of_the_same_files_sends_nothing(s3, tmp_path: Path) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    make_checkpoint(ws)
    publish_model(str(ws), "s3://models/p", version="2.0.0", workflow_name="wf-1")
    before = s3.head_object(Bucket=BUCKET, Key=f"p/osft-model/2.0.0/{MANIFEST_NAME}")["LastModified"]
    again = publish_model(str(ws), "s3://models/p", version="2.0.0", workflow_name="wf-1")
    assert again["status"] == "already published" and again["uploaded"] == 0
    assert s3.head_object(Bucket=BUCKET, Key=f"p/osft-model/2.0.0/{MANIFEST_NAME}")["LastModified"] == before


def test_an_upload_cut_after_n_parts_leaves_no_manifest_and_the_retry_sends_only_the_missing_file(
        s3, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    ckpt = make_checkpoint(ws, weights_mb=12)  # 3 parts of 5 MiB
    prefix = "run/osft-model/1.0.0/"
    # the store breaks after the first part of the weights: parts 2 and 3 are refused (503, retries exhausted)
    broken = FailingProxy(moto_endpoint, lambda m, p: m == "PUT" and "partNumber=" in p and "partNumber=1&" not in p
                          and not p.endswith("partNumber=1"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", broken.url)
    with pytest.raises(StepError, match=r"^uploading to s3://models/run/osft-model/1.0.0/"):
        publish_model(str(ws), "s3://models/run", version="1.0.0", workflow_name="wf-1", part_size_mb=5,
                      concurrency=2)
    broken.close()
    assert broken.refused and "model.safetensors" in broken.refused[0][1]
    left = {k.removeprefix(prefix) for k in objects(s3, prefix)}
    # no manifest and no half object; the small files that went up before the failure cancelled the rest stay
    assert left <= set(SERVED) - {"model.safetensors"}
    assert not (ws / "publish" / "publish.json").exists()

    healed = FailingProxy(moto_endpoint, lambda m, p: False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", healed.url)
    out = publish_model(str(ws), "s3://models/run", version="1.0.0", workflow_name="wf-1", part_size_mb=5,
                        concurrency=2)
    healed.close()
    sent = {p.removeprefix(f"/models/{prefix}") for p in healed.puts()}
    assert sent == set(SERVED) - left | {MANIFEST_NAME}  # only what was missing, on the wire
    record = _record(ws)
    assert sorted(record["uploaded"]) == sorted(set(SERVED) - left) and sorted(record["skipped"]) == sorted(left)
    assert out["status"] == "published" and prefix + MANIFEST_NAME in objects(s3, prefix)
    body = s3.get_object(Bucket=BUCKET, Key=prefix + "model.safetensors")["Body"].read()
    assert hashlib.sha256(body).hexdigest() == _sha(ckpt / "model.safetensors")
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []


def test_an_upload_cut_after_n_files_resumes_with_exactly_the_missing_files(
        s3, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    ckpt = make_checkpoint(ws)
    prefix = "n/osft-model/1.0.0/"
    puts = []

    def after_two_files(method: str, path: str) -> bool:
        if method != "PUT":
            return False
        puts.append(path)
        return len(puts) > 2

    broken = FailingProxy(moto_endpoint, after_two_files)
    monkeypatch.setenv("AWS_ENDPOINT_URL", broken.url)
    with pytest.raises(StepError):
        publish_model(str(ws), "s3://models/n", version="1.0.0", workflow_name="wf-2", concurrency=4)
    broken.close()
    stored = {rel for k in objects(s3, prefix) if (rel := k.removeprefix(prefix))
              and s3.head_object(Bucket=BUCKET, Key=k)["Metadata"].get("sha256") == _sha(ckpt / rel)}
    assert len(stored) == 2 and MANIFEST_NAME not in stored
    healed = FailingProxy(moto_endpoint, lambda m, p: False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", healed.url)
    publish_model(str(ws), "s3://models/n", version="1.0.0", workflow_name="wf-2", concurrency=4)
    healed.close()
    sent = {p.removeprefix(f"/models/{prefix}") for p in healed.puts()}
    assert sent == set(SERVED) - stored | {MANIFEST_NAME}


def test_retry_aborts_an_incomplete_multipart_upload_and_removes_strays(s3, tmp_path: Path) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    make_checkpoint(ws)
    prefix = "x/osft-model/wf-7/"
    s3.create_multipart_upload(Bucket=BUCKET, Key=prefix + "model.safetensors")  # a pod killed mid-upload
    s3.put_object(Bucket=BUCKET, Key=prefix + "model-00001-of-00002.safetensors", Body=b"an older shard")
    publish_model(str(ws), "s3://models/x", version="auto", workflow_name="wf-7")
    assert s3.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix).get("Uploads", []) == []
    assert sorted(k.removeprefix(prefix) for k in objects(s3, prefix)) == sorted(SERVED + [MANIFEST_NAME])
    assert _record(ws)["removed"] == ["model-00001-of-00002.safetensors"]


def test_a_version_published_by_another_run_is_never_overwritten(s3, tmp_path: Path) -> None:  # noqa: ANN001
    make_checkpoint(tmp_path / "a", seed=1)
    make_checkpoint(tmp_path / "b", seed=2)
    publish_model(str(tmp_path / "a"), "s3://models", version="1.0.0", workflow_name="wf-a")
    with pytest.raises(StepError, match=r"already holds a model published by run 'wf-a'.*give a new version"):
        publish_model(str(tmp_path / "b"), "s3://models", version="1.0.0", workflow_name="wf-b")
    # 'auto': one folder per run, so both runs publish
    assert publish_model(str(tmp_path / "b"), "s3://models", version="auto", workflow_name="wf-b")["uri"] == \
        "s3://models/osft-model/wf-b"


def test_a_changed_checkpoint_removes_the_manifest_before_changing_files(s3, tmp_path: Path,  # noqa: ANN001
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ws = tmp_path / "ws"
    ckpt = make_checkpoint(ws)
    publish_model(str(ws), "s3://models/c", version="1.0.0", workflow_name="wf-c")
    (ckpt / "model.safetensors").write_bytes(b"retrained weights")
    from steps.publish import s3 as s3_mod

    def fail(self, files, log):  # noqa: ANN001, ANN202
        raise StepError("uploading to s3://models/c/osft-model/1.0.0/: S3 error 500")

    monkeypatch.setattr(s3_mod.S3Store, "put", fail)
    with pytest.raises(StepError):
        publish_model(str(ws), "s3://models/c", version="1.0.0", workflow_name="wf-c")
    assert f"c/osft-model/1.0.0/{MANIFEST_NAME}" not in objects(s3, "c/")  # the old manifest no longer vouches


def test_the_gate_and_bad_settings_are_refused(s3, tmp_path: Path) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    make_checkpoint(ws, gate="fail")
    with pytest.raises(StepError, match="eval gate failed.*--force"):
        publish_model(str(ws), "s3://models/g", workflow_name="wf")
    assert objects(s3, "g/") == {}
    assert publish_model(str(ws), "s3://models/g", workflow_name="wf", force=True)["status"] == "published"
    assert _record(ws)["forced"] is True
    for uri, msg in (("oci://quay.io/x/y:1", "oci:// modelcar"), ("s3://k:s@bucket/p", "credentials"),
                     ("s3://Bad_Bucket/p", "not an S3 bucket name"), ("gs://b/p", "not s3://"),
                     ("pvc://models/../etc", "'..'"), ("pvc://Models/p", "not a PersistentVolumeClaim")):
        with pytest.raises(StepError, match=msg):
            publish_model(str(ws), uri, workflow_name="wf", force=True)
    with pytest.raises(StepError, match="run's name"):
        publish_model(str(ws), "s3://models/g", version="auto", force=True)


def test_s3_without_credentials_names_the_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    make_checkpoint(tmp_path / "ws")
    with pytest.raises(StepError, match="AWS_ACCESS_KEY_ID.*s3-secret"):
        publish_model(str(tmp_path / "ws"), "s3://models/p", workflow_name="wf")


def test_pvc_publish_copies_verifies_and_writes_the_manifest_last(tmp_path: Path) -> None:
    ws, mount = tmp_path / "ws", tmp_path / "models-volume"
    mount.mkdir()
    ckpt = make_checkpoint(ws)
    out = publish_model(str(ws), "pvc://models-pvc/llm", version="1.0.0", workflow_name="wf-p",
                        models_mount=str(mount), models_claim="models-pvc")
    folder = mount / "llm" / "osft-model" / "1.0.0"
    assert out["uri"] == "pvc://models-pvc/llm/osft-model/1.0.0"
    assert sorted(p.name for p in folder.iterdir()) == sorted(SERVED + [MANIFEST_NAME])
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert all(_sha(folder / e["path"]) == e["sha256"] == _sha(ckpt / e["path"]) for e in manifest["files"])
    # a damaged copy and a partial file from a killed attempt: the retry replaces the one and removes the other
    (folder / MANIFEST_NAME).unlink()
    (folder / "tokenizer.json").write_text("damaged")
    (folder / ".partial-model.safetensors").write_bytes(b"half")
    publish_model(str(ws), "pvc://models-pvc/llm", version="1.0.0", workflow_name="wf-p", models_mount=str(mount))
    assert _record(ws)["uploaded"] == ["tokenizer.json"]
    assert _sha(folder / "tokenizer.json") == _sha(ckpt / "tokenizer.json")
    assert not (folder / ".partial-model.safetensors").exists() and (folder / MANIFEST_NAME).is_file()


def test_pvc_publish_needs_the_named_claim_mounted(tmp_path: Path) -> None:
    make_checkpoint(tmp_path / "ws")
    with pytest.raises(StepError, match="not mounted at"):
        publish_model(str(tmp_path / "ws"), "pvc://models/x", workflow_name="w", models_mount=str(tmp_path / "no"))
    with pytest.raises(StepError, match="names claim 'models' but 'other' is mounted"):
        publish_model(str(tmp_path / "ws"), "pvc://models/x", workflow_name="w", models_mount=str(tmp_path),
                      models_claim="other")


def test_register_source_record_must_match_the_storage_uri(s3, tmp_path: Path) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    make_checkpoint(ws)
    with pytest.raises(StepError, match="publish.json is missing"):
        published_uri(Workspace.at(ws), "s3://models/r")
    publish_model(str(ws), "s3://models/r", workflow_name="wf")
    assert published_uri(Workspace.at(ws), "s3://models/r")["uri"] == "s3://models/r/osft-model/1.0.0"
    with pytest.raises(StepError, match="not 's3://models/other'"):
        published_uri(Workspace.at(ws), "s3://models/other")


def test_serving_file_patterns_cover_sharded_checkpoints() -> None:
    import fnmatch

    for name in ("model-00001-of-00004.safetensors", "model.safetensors.index.json", "chat_template.jinja"):
        assert any(fnmatch.fnmatchcase(name, p) for p in SERVING_FILES), name
    for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json"):
        assert not any(fnmatch.fnmatchcase(name, p) for p in SERVING_FILES), name
    assert parse_storage_uri("s3://bucket-1/a//b/").prefix == "a/b"
