"""Workspace layout shared by all steps, and the helpers that write into it safely.

The workspace is the per-run RWX PVC in Argo and a local folder otherwise. Its layout is the
contract between steps (documented in docs/steps.md):

    pipeline_log.txt           one line per event, appended by every step
    dataset/train.jsonl        training split (chat ``messages`` rows)
    dataset/eval.jsonl         held-out split (empty when split = 1.0)
    dataset/summary.json       source, row and byte counts, schema found, how long validation waited
    train/                     training_hub output dir (hf_format/, training_metrics_0.jsonl, ...)
    train/model                pointer to the final checkpoint (never a copy)
    train/metrics.json, train/loss.png
    eval/                      results.json, metrics.json, comparison.json, eval.png
    publish/publish.json       where the model was published (uri, manifest, files with size and sha256)
    registry/registration.json
    run.json, logs/, report.html, report.md   written by the local runner
"""

import contextlib
import datetime as _dt
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.secrets import scrub

LOG_NAME = "pipeline_log.txt"


@dataclass(frozen=True)
class Workspace:
    """Paths under one workspace root."""

    root: Path

    @classmethod
    def at(cls, path: str | os.PathLike[str], create: bool = True) -> "Workspace":
        """Open (and by default create) the workspace at ``path``."""
        if not str(path).strip():
            raise StepError("workspace path is empty: pass --workspace DIR (the per-run volume in Argo)")
        root = Path(path).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise StepError(f"workspace {root} is a file, not a directory: pass a directory to --workspace")
        if create:
            root.mkdir(parents=True, exist_ok=True)
        elif not root.is_dir():
            raise StepError(f"workspace {root} does not exist: run the earlier steps first or fix --workspace")
        return cls(root)

    @property
    def dataset_dir(self) -> Path:
        return self.root / "dataset"

    @property
    def train_jsonl(self) -> Path:
        return self.dataset_dir / "train.jsonl"

    @property
    def eval_jsonl(self) -> Path:
        return self.dataset_dir / "eval.jsonl"

    @property
    def dataset_summary(self) -> Path:
        return self.dataset_dir / "summary.json"

    @property
    def train_dir(self) -> Path:
        return self.root / "train"

    @property
    def model_pointer(self) -> Path:
        """``train/model``: a relative symlink to the final checkpoint (or a text file holding its path)."""
        return self.train_dir / "model"

    def point_model_at(self, checkpoint: Path) -> None:
        """Make ``train/model`` point at ``checkpoint`` (inside the workspace) without copying weights."""
        ptr = self.model_pointer
        ptr.parent.mkdir(parents=True, exist_ok=True)
        tmp = ptr.with_name(f".model.partial-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        try:
            os.symlink(os.path.relpath(checkpoint, ptr.parent), tmp)
        except OSError:  # filesystems without symlinks: a pointer file
            tmp.write_text(os.path.relpath(checkpoint, self.root) + "\n", encoding="utf-8")
        os.replace(tmp, ptr)

    def trained_model(self) -> Path:
        """The checkpoint ``train/model`` points at; a clear error when training has not run."""
        ptr = self.model_pointer
        if ptr.is_symlink() or ptr.is_dir():
            target = ptr.resolve()
        elif ptr.is_file():
            target = (self.root / ptr.read_text(encoding="utf-8").strip()).resolve()
        else:
            raise StepError(f"no trained model in {self.root}: {ptr} is missing; run the train step first")
        if not (target / "config.json").is_file():
            raise StepError(f"{ptr} points at {target}, which holds no config.json; re-run the train step")
        return target

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def registry_dir(self) -> Path:
        return self.root / "registry"

    @property
    def log_path(self) -> Path:
        return self.root / LOG_NAME

    def log(self, step: str, message: str) -> None:
        """Append one line to the pipeline log and echo it to stderr."""
        stamp = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp} [{step}] {scrub(' '.join(message.split()))}"
        print(line, file=sys.stderr, flush=True)
        with open(self.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


@contextlib.contextmanager
def atomic_outputs(*targets: Path) -> Iterator[list[Path]]:
    """Yield temp paths for ``targets``; rename them all into place only if the block succeeds.

    On any exception the temp files are removed, so a failed run leaves nothing that looks like
    success. Targets are renamed in the order given: put the success marker (a summary) last.
    """
    temps = [t.with_name(f".{t.name}.partial-{os.getpid()}") for t in targets]
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for tmp, target in zip(temps, targets, strict=True):
            os.replace(tmp, target)
    finally:
        for tmp in temps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


def write_json(path: Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically (temp file + rename); values JSON cannot hold become strings."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def remove_outputs(*targets: Path) -> None:
    """Delete earlier outputs (success marker first) before a step writes new ones."""
    for t in reversed(targets):
        with contextlib.suppress(FileNotFoundError):
            t.unlink()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
