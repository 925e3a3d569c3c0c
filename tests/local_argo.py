"""An Argo Server stand-in that really runs what is submitted: each workflow submitted from the installed template
is run by the local engine (the compiled template, the submitted parameters) in a background thread, and the
Workflow object it answers with is the one a cluster would return for that run (tests/argo_nodes.py).

Used to rehearse the cluster e2e test (tests/workflows/argo/test_cluster_e2e.py) where no cluster can run: the
same test code, the same Argo Server API (request bodies checked against Argo's swagger by ArgoStub), a real S3
API (moto), the real steps. ``substitute`` replaces parameter values the local machine cannot serve (the Hub
model of the laptop set -> a model on disk); everything else is run as submitted.
"""

import json
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from tests.argo_nodes import workflow_from_run
from tests.argo_stub import ArgoStub, HttpError

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "osft-minimal-pipeline.yaml"


class LocalArgo(ArgoStub):
    def __init__(self, workdir: Path, env: Mapping[str, str], substitute: Mapping[str, str] | None = None,
                 namespace: str = "osft-e2e") -> None:
        super().__init__()
        self.workdir = workdir
        self.env = dict(env)
        self.substitute = dict(substitute or {})
        self.runs: dict[str, dict[str, Any]] = {}  # workflow name -> {"params", "thread", "proc", "ws"}
        template = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
        template["metadata"] |= {"namespace": namespace, "resourceVersion": "1"}
        self.templates[(namespace, template["metadata"]["name"])] = template

    def submit(self, ns: str, body: Any) -> dict[str, Any]:
        wf = super().submit(ns, body)
        name = wf["metadata"]["name"]
        params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
        ws = self.workdir / name
        entry: dict[str, Any] = {"params": params, "ws": ws, "proc": None}
        entry["thread"] = threading.Thread(target=self._run, args=(entry,), daemon=True)
        self.runs[name] = entry
        entry["thread"].start()
        wf["status"] = {"phase": "Running"}
        return wf

    def _run(self, entry: dict[str, Any]) -> None:
        args = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", str(TEMPLATE),
                "--workspace", str(entry["ws"])]
        for k, v in entry["params"].items():
            args += ["-p", f"{k}={self.substitute.get(k, v)}"]
        # a short TMPDIR: multiprocessing's socket paths under it must fit AF_UNIX's 108 bytes
        with tempfile.TemporaryDirectory(prefix="osft-la-") as tmp:
            env = {**os.environ, **self.env, "PYTHONPATH": str(ROOT), "TMPDIR": tmp}
            entry["proc"] = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)

    def get_workflow(self, ns: str, name: str, body: Any) -> dict[str, Any]:
        if (ns, name) not in self.workflows:
            raise HttpError(404, f'workflows.argoproj.io "{name}" not found')
        wf = self.workflows[(ns, name)]
        entry = self.runs.get(name)
        if entry is None or entry["thread"].is_alive() or not (entry["ws"] / "run.json").is_file():
            if entry is not None and not entry["thread"].is_alive():
                wf["status"] = {"phase": "Error", "message": (entry["proc"].stderr or "")[-500:]}
            return wf
        run = json.loads((entry["ws"] / "run.json").read_text(encoding="utf-8"))
        run["workflow"]["name"] = name
        cluster = workflow_from_run(run)
        wf["status"] = cluster["status"]
        return wf
