"""Register records the published (durable) URI, the Model Registry's storageKey/storagePath, and the manifest's
checksums; it never falls back to the workspace copy when a storage URI is set."""

import json
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.publish import publish_model
from steps.register import client as registry_client
from steps.register import register_model
from tests.registry_server import RegistryServer
from tests.steps.publish.conftest import make_checkpoint

TOKEN = "tok-publish-register-55"  # noqa: S105 - a test token


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODEL_REGISTRY_TOKEN", TOKEN)
    monkeypatch.setattr(registry_client, "SA_TOKEN_PATH", str(tmp_path / "no-sa-token"))
    monkeypatch.setattr(registry_client, "BACKOFF_BASE_S", 0.01)


def test_registered_version_points_at_the_s3_copy_with_its_checksums(s3, tmp_path: Path) -> None:  # noqa: ANN001
    ws = tmp_path / "ws"
    make_checkpoint(ws)
    published = publish_model(str(ws), "s3://models/prod", version="1.4.0", workflow_name="wf-9")
    with RegistryServer(token=TOKEN) as srv:
        out = register_model(str(ws), address=srv.url, version="1.4.0", storage_uri="s3://models/prod",
                             pvc_claim="wf-9-workspace", workflow_name="wf-9")
        artifacts = list(srv.registry.s.artifacts.values())
        versions = list(srv.registry.s.versions.values())
    assert out["uri"] == published["uri"] == "s3://models/prod/osft-model/1.4.0"
    assert [(a["uri"], a["storageKey"], a["storagePath"]) for a in artifacts] == [
        ("s3://models/prod/osft-model/1.4.0", "s3-secret", "prod/osft-model/1.4.0")]
    props = versions[0]["customProperties"]
    manifest = json.loads((ws / "publish" / "publish.json").read_text())
    for f in manifest["files"]:
        assert props[f"publish.sha256.{f['path']}"]["string_value"] == f["sha256"]
        assert props[f"publish.size.{f['path']}"]["int_value"] == str(f["size"])
    assert props["publish.manifest"]["string_value"] == "s3://models/prod/osft-model/1.4.0/osft-manifest.json"
    record = json.loads((ws / "registry" / "registration.json").read_text())
    assert record["uri"] == out["uri"] and record["storage_path"] == "prod/osft-model/1.4.0"
    attempt = json.loads((ws / "registry" / "attempt.json").read_text())  # written before the first registry write
    assert (attempt["status"], attempt["uri"]) == ("registering", out["uri"])


def test_a_storage_uri_without_a_completed_publish_is_not_registered(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    make_checkpoint(ws)
    with RegistryServer(token=TOKEN) as srv:
        with pytest.raises(StepError, match="publish.json is missing: run the publish step first"):
            register_model(str(ws), address=srv.url, storage_uri="s3://models/prod", pvc_claim="wf-workspace")
        assert srv.calls("POST") == []  # never the workspace copy instead


def test_pvc_publish_is_registered_as_that_claim(tmp_path: Path) -> None:
    ws, mount = tmp_path / "ws", tmp_path / "vol"
    mount.mkdir()
    make_checkpoint(ws)
    publish_model(str(ws), "pvc://models-pvc/llm", workflow_name="wf-3", models_mount=str(mount))
    out = register_model(str(ws), address="", storage_uri="pvc://models-pvc/llm")  # dry run
    plan = json.loads((ws / "registry" / "registration.json").read_text())["would_register"]
    assert out["uri"] == plan["uri"] == "pvc://models-pvc/llm/osft-model/1.0.0"
    assert "storage_key" not in plan and plan["custom_properties"]["publish.files"] == 5
