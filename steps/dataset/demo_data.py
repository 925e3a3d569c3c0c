"""The embedded demo dataset: English chatterbot-corpus dialogs (BSD-3) as chat ``messages`` rows."""

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import yaml

from steps.common.errors import StepError

SYSTEM_PROMPT = "You are a friendly chatbot."


def corpus_dir() -> Path:
    """The English folder of the installed chatterbot-corpus wheel."""
    spec = importlib.util.find_spec("chatterbot_corpus")
    if spec is None or not spec.submodule_search_locations:
        raise StepError("chatterbot-corpus is not installed: run `make setup` (it installs the data wheels)")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "english"


def _turn_text(turn: Any) -> str:
    return " ".join(str(turn).split()) if turn is not None else ""


def conversations_to_rows(conversations: list[list[Any]], category: str) -> list[dict[str, Any]]:
    """Alternate user/assistant turns after a system prompt; drop empty turns and a trailing user turn."""
    rows = []
    for conv in conversations:
        turns = [t for t in (_turn_text(x) for x in conv or []) if t]
        if len(turns) % 2:
            turns = turns[:-1]
        if len(turns) < 2:
            continue
        messages = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
        rows.append({"messages": messages, "category": category})
    return rows


def build_demo_rows() -> list[dict[str, Any]]:
    """All usable English dialogs, in a stable order (file name, then position)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(corpus_dir().glob("*.yml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        rows += conversations_to_rows(doc.get("conversations") or [], path.stem)
    return rows


def write_demo_dataset(out: str) -> dict[str, Any]:
    """Write the demo dataset as JSONL (atomically) and return its path and row count."""
    target = Path(out).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    rows = build_demo_rows()
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return {"path": str(target), "rows": len(rows)}
