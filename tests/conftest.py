"""Shared fixtures. Everything runs offline on 127.0.0.1; tiny assets are built, never downloaded."""

import os

os.environ.update({
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
})
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.tiny_assets import build_tiny_model, chat_rows, write_jsonl  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2 chat model + tokenizer directory (session-wide, ~1 s to build)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture()
def chat_jsonl(tmp_path: Path) -> Path:
    """120 valid chat rows as JSONL."""
    return write_jsonl(tmp_path / "chat.jsonl", chat_rows(120))


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """An empty workspace folder."""
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws
