"""Publishing to ``pvc://claim/path``: a persistent models volume (never the per-run workspace), mounted into the
publishing pod (in Argo at ``/models`` by the ``publish-pvc`` template; locally the folder given with
``run --local --pvc CLAIM=DIR``).

Each file is copied to a hidden partial file, flushed to the volume, read back and its sha256 compared with the
source's before it is renamed into place; the manifest is written (atomically) last.
"""

import contextlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from steps.common.errors import StepError
from steps.publish.files import MANIFEST_NAME, ModelFile, sha256_of
from steps.publish.store import Stored

_PARTIAL = ".partial-"


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class PvcStore:
    """One published folder ``pvc://<claim>/<rel>``, mounted here at ``<mount>/<rel>``."""

    def __init__(self, claim: str, rel: str, mount: Path) -> None:
        self.dir = mount / rel
        self.uri = f"pvc://{claim}/{rel}"
        self.manifest_uri = f"{self.uri}/{MANIFEST_NAME}"

    def read_manifest(self) -> bytes | None:
        path = self.dir / MANIFEST_NAME
        return path.read_bytes() if path.is_file() else None

    def delete_manifest(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.dir / MANIFEST_NAME).unlink()

    def write_manifest(self, data: bytes) -> None:
        tmp = self.dir / f"{_PARTIAL}{MANIFEST_NAME}"
        _fsync_write(tmp, data)
        os.replace(tmp, self.dir / MANIFEST_NAME)

    def existing(self, files: list[ModelFile]) -> dict[str, Stored]:
        if not self.dir.is_dir():
            return {}
        sizes = {f.rel: f.size for f in files}
        out: dict[str, Stored] = {}
        for p in sorted(self.dir.iterdir()):
            if p.name == MANIFEST_NAME or p.name.startswith(_PARTIAL) or not p.is_file():
                continue
            size = p.stat().st_size
            out[p.name] = Stored(size, sha256_of(p) if sizes.get(p.name) == size else None)
        return out

    def put(self, files: list[ModelFile], log: Callable[[str], None]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        for f in files:
            tmp = self.dir / f"{_PARTIAL}{f.rel}"
            try:
                with open(f.path, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, 8 << 20)
                    dst.flush()
                    os.fsync(dst.fileno())
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise StepError(f"copying {f.rel} to {self.uri}: {exc.strerror or exc}") from None
            got = sha256_of(tmp)
            if got != f.sha256 or tmp.stat().st_size != f.size:
                tmp.unlink()
                raise StepError(f"{self.uri}/{f.rel}: the copy on the volume reads back as sha256 {got[:12]}…, not "
                                f"{f.sha256[:12]}…; the volume is corrupting data, publish again or elsewhere")
            os.replace(tmp, self.dir / f.rel)
            log(f"copied {f.rel} ({f.size / 1e6:.1f} MB), sha256 verified on the volume")

    def delete(self, rels: list[str]) -> None:
        for rel in rels:
            path = self.dir / rel
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    def clean_partials(self) -> int:
        if not self.dir.is_dir():
            return 0
        stale = [p for p in self.dir.iterdir() if p.name.startswith(_PARTIAL)]
        for p in stale:
            p.unlink()
        return len(stale)
