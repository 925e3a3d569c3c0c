"""The publishing protocol every storage backend follows: files first, verified, the manifest last.

A reader (a serving stack, the registry's consumer) trusts a published folder only when its manifest is there;
the manifest is written after every file is stored and verified, and removed *before* anything in a folder that
already has one is changed. So an interrupted publish leaves no manifest, and nothing half-written is ever
registered. A retry skips every file already stored with the same sha256, and removes what is not the model's.
"""

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from steps.common.errors import StepError
from steps.publish.files import MANIFEST_NAME, ModelFile, manifest, read_manifest, same_files


@dataclass(frozen=True)
class Stored:
    """A file already in the store: its size and sha256 (None when the store cannot tell)."""

    size: int
    sha256: str | None


class Store(Protocol):
    """One published folder (``uri``) in some storage."""

    uri: str
    manifest_uri: str

    def read_manifest(self) -> bytes | None: ...

    def delete_manifest(self) -> None: ...

    def write_manifest(self, data: bytes) -> None: ...

    def existing(self, files: list[ModelFile]) -> dict[str, Stored]:
        """What the folder holds (manifest excluded): every entry, with sha256 for those named in ``files``."""
        ...

    def put(self, files: list[ModelFile], log: Callable[[str], None]) -> None:
        """Store ``files`` and verify each (size and sha256 as stored); raise StepError on any failure."""
        ...

    def delete(self, rels: list[str]) -> None: ...

    def clean_partials(self) -> int:
        """Remove leftovers of interrupted attempts (incomplete multipart uploads, partial files); how many."""
        ...


def publish_files(store: Store, files: list[ModelFile], meta: dict[str, Any],
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Bring ``store`` to exactly ``files`` plus their manifest; see the module docstring.

    ``meta["run"]`` names the run publishing: a folder whose manifest names another run is refused (a published
    version is immutable), so two runs can never mix files in one folder.
    """
    started = time.monotonic()
    raw = store.read_manifest()
    stored = read_manifest(raw)
    if stored is not None and stored.get("run") != meta.get("run"):
        raise StepError(f"{store.uri} already holds a model published by run {stored.get('run')!r}: a published "
                        "version is never overwritten; give a new version (or 'auto': one folder per run)")
    have = store.existing(files)
    want = {f.rel: f for f in files}
    missing = [f for f in files if (s := have.get(f.rel)) is None or s.size != f.size or s.sha256 != f.sha256]
    extra = sorted(set(have) - set(want))
    if stored is not None and same_files(stored, files) and not missing and not extra:
        log(f"already published: {store.uri} holds all {len(files)} files with the same sha256")
        return {"status": "already published", "uploaded": [], "skipped": sorted(want), "removed": [],
                "bytes_uploaded": 0, "seconds": round(time.monotonic() - started, 3),
                "manifest_sha256": hashlib.sha256(raw or b"").hexdigest()}
    if stored is not None:  # it is about to change: no manifest may describe a folder in flux
        store.delete_manifest()
    stale = store.clean_partials()
    if stale:
        log(f"removed {stale} leftover(s) of an interrupted earlier attempt")
    skipped = sorted(set(want) - {f.rel for f in missing})
    if skipped:
        log(f"{len(skipped)} file(s) already stored with the same sha256, not sent again: {', '.join(skipped)}")
    if missing:
        log(f"storing {len(missing)} file(s), {sum(f.size for f in missing) / 1e6:.1f} MB, to {store.uri}")
        store.put(missing, log)
    if extra:
        store.delete(extra)
        log(f"removed {len(extra)} object(s) that are not part of this model: {', '.join(extra[:10])}")
    data = manifest(files, meta)
    store.write_manifest(data)
    seconds = time.monotonic() - started
    sent = sum(f.size for f in missing)
    log(f"published {len(files)} files to {store.uri} ({sent / 1e6:.1f} MB sent in {seconds:.1f} s); manifest "
        f"{store.manifest_uri} written last")
    return {"status": "published", "uploaded": [f.rel for f in missing], "skipped": skipped, "removed": extra,
            "bytes_uploaded": sent, "seconds": round(seconds, 3), "manifest_sha256": hashlib.sha256(data).hexdigest()}


__all__ = ["MANIFEST_NAME", "Store", "Stored", "publish_files"]
