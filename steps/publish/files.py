"""What is published: the final checkpoint's serving files, each with its size and sha256 (the manifest)."""

import fnmatch
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steps.common.errors import StepError

MANIFEST_NAME = "osft-manifest.json"
MANIFEST_FORMAT = "osft-pipeline/publish-manifest/v1"
# A Hugging Face checkpoint's serving files: config, weights (single or sharded, with their index), tokenizer,
# chat template, generation config. Optimizer/scheduler/RNG state and trainer files are never published.
SERVING_FILES = (
    "config.json", "generation_config.json",
    "model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json",
    "pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json",
    "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "vocab.txt", "merges.txt", "spiece.model", "chat_template.jinja", "chat_template.json",
)
_WEIGHTS = ("*.safetensors", "*.bin")
_CHUNK = 8 << 20


@dataclass(frozen=True)
class ModelFile:
    """One published file: its path relative to the model folder, size and sha256."""

    rel: str
    path: Path
    size: int
    sha256: str

    def entry(self) -> dict[str, Any]:
        return {"path": self.rel, "size": self.size, "sha256": self.sha256}


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def serving_files(checkpoint: Path) -> list[ModelFile]:
    """The checkpoint's serving files (name order) with sizes and sha256; a clear error when the checkpoint has
    no config or no weights."""
    names = sorted(p.name for p in checkpoint.iterdir() if p.is_file() and any(
        fnmatch.fnmatchcase(p.name, pat) for pat in SERVING_FILES))
    if "config.json" not in names:
        raise StepError(f"{checkpoint} holds no config.json: not a checkpoint to publish; re-run the train step")
    if not any(fnmatch.fnmatchcase(n, w) for n in names for w in _WEIGHTS):
        raise StepError(f"{checkpoint} holds no weights (*.safetensors or *.bin): re-run the train step")
    out = []
    for name in names:
        path = checkpoint / name
        out.append(ModelFile(name, path, path.stat().st_size, sha256_of(path)))
    return out


def manifest(files: list[ModelFile], meta: dict[str, Any]) -> bytes:
    """The manifest document (written last, so its presence means every file is in place)."""
    doc = {"format": MANIFEST_FORMAT, **meta, "files": [f.entry() for f in files],
           "total_bytes": sum(f.size for f in files)}
    return (json.dumps(doc, indent=2) + "\n").encode("utf-8")


def json_object(data: bytes | None) -> dict[str, Any] | None:
    """A stored JSON object, or None when there is none or it is not a JSON object."""
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def read_manifest(data: bytes | None) -> dict[str, Any] | None:
    """A stored manifest, or None when there is none or it is not ours."""
    doc = json_object(data)
    return doc if doc and doc.get("format") == MANIFEST_FORMAT else None


def same_files(doc: dict[str, Any] | None, files: list[ModelFile]) -> bool:
    """Whether a stored manifest lists exactly these files (path, size and sha256)."""
    if not doc:
        return False
    return sorted((f.get("path"), f.get("size"), f.get("sha256")) for f in doc.get("files") or []) == sorted(
        (f.rel, f.size, f.sha256) for f in files)
