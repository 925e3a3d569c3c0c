"""The embedded demo model cache: converted once, reused when complete, never left half-written.

The real GGUF conversion (~25-40 s, 1.5 GB RSS) runs in ``make run`` and bench/train_bench.py; here the
converter is replaced by a copy of the tiny model so the cache logic is tested quickly.
"""

import json
import shutil
from pathlib import Path

import pytest

from steps.common.errors import StepError
from steps.train import demo_model


@pytest.fixture()
def gguf() -> Path:
    try:
        return demo_model.gguf_path()
    except StepError as exc:
        pytest.skip(str(exc))


def _fake_convert(tiny_model: Path, calls: list[Path]):  # noqa: ANN202
    def convert(src: Path, out: Path) -> None:
        calls.append(out)
        shutil.copytree(tiny_model, out)

    return convert


def test_gguf_is_in_the_wheel(gguf: Path) -> None:
    assert gguf.name == demo_model.GGUF_NAME and gguf.stat().st_size > 50_000_000


def test_converts_once_then_reuses(gguf: Path, tiny_model: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(demo_model, "convert", _fake_convert(tiny_model, calls))
    out = tmp_path / "cache" / "smollm2"
    first = demo_model.ensure_demo_model(str(out))
    assert first["converted"] is True and (out / "config.json").is_file()
    assert json.loads((out / demo_model.MARKER).read_text())["source"]["gguf"] == gguf.name
    second = demo_model.ensure_demo_model(str(out))
    assert second == {"path": str(out), "converted": False, "seconds": 0.0} and len(calls) == 1


def test_incomplete_or_stale_cache_is_rebuilt(gguf: Path, tiny_model: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    monkeypatch.setattr(demo_model, "convert", _fake_convert(tiny_model, calls))
    out = tmp_path / "smollm2"
    shutil.copytree(tiny_model, out)
    (out / demo_model.MARKER).write_text(json.dumps({"source": {"gguf": gguf.name, "size": 1}}))
    assert demo_model.ensure_demo_model(str(out))["converted"] is True  # marker from another source
    (out / "model.safetensors").unlink()
    assert demo_model.ensure_demo_model(str(out))["converted"] is True  # weights missing
    assert len(calls) == 2 and (out / "model.safetensors").is_file()


def test_failed_conversion_leaves_nothing(gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(src: Path, out: Path) -> None:
        out.mkdir()
        (out / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo_model, "convert", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        demo_model.ensure_demo_model(str(tmp_path / "smollm2"))
    assert list(tmp_path.iterdir()) == []
