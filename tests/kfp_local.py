"""kfp.local set up to run a KFP twin in this process's environment and keep its workspace for comparison."""

import types
from pathlib import Path

import pytest


def kfp_local_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Init kfp.local (subprocess runner, this venv) under ``tmp_path``; return the workspace it will write."""
    from kfp import local
    from kfp.local import pipeline_orchestrator

    monkeypatch.chdir(tmp_path)
    # kfp.local deletes its workspace when the pipeline ends; keep it to compare with the Argo run's
    monkeypatch.setattr(pipeline_orchestrator, "shutil", types.SimpleNamespace(rmtree=lambda *a, **k: None))
    ws = tmp_path / "kfp-ws"
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"),
               workspace_root=str(ws))
    return ws
