"""Dataset step benchmark: ours (local file and local http server) vs a plain `datasets` baseline.

For 200k and 1M chat rows (~1.1 KB each) it prints wall time, rows/s and the peak RSS of each child
process (from os.wait4), and the baseline/ours ratios. Usage: python bench/dataset_bench.py [--sizes 200000,1000000]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "orthogonal",
    "subspace",
    "fine",
    "tuning",
    "keeps",
    "the",
    "knowledge",
    "of",
    "the",
    "base",
    "model",
    "while",
    "it",
    "learns",
    "a",
    "new",
    "task",
    "from",
    "a",
    "small",
    "chat",
    "dataset",
    "on",
    "kubernetes",
    "with",
    "argo",
    "workflows",
    "and",
    "a",
    "shared",
    "volume",
]

BASELINE = """
import sys, datasets
src, out = sys.argv[1], sys.argv[2]
ds = datasets.load_dataset("json", data_files=src, split="train")
parts = ds.train_test_split(test_size=0.1, seed=42)
parts["train"].to_json(out + "/train.jsonl", orient="records", lines=True)
parts["test"].to_json(out + "/eval.jsonl", orient="records", lines=True)
"""


def _text(i: int, n: int) -> str:
    k = len(WORDS)
    return " ".join(WORDS[(i * 7 + j * 3) % k] for j in range(n))


def generate(path: Path, rows: int) -> None:
    """Write ``rows`` chat rows of about 1.1 KB each."""
    enc = msgspec.json.Encoder()
    with open(path, "wb") as fh:
        buf = []
        for i in range(rows):
            row = {
                "messages": [
                    {"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": f"Question {i}: " + _text(i, 40)},
                    {"role": "assistant", "content": f"Answer {i}: " + _text(i + 1, 105)},
                ]
            }
            buf.append(enc.encode(row))
            if len(buf) == 10000:
                fh.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            fh.write(b"\n".join(buf) + b"\n")


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200000,1000000")
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    args = ap.parse_args()
    py = sys.executable
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    tmp = Path(tempfile.mkdtemp(prefix="dataset-bench-"))
    port = _free_port()
    server = subprocess.Popen(
        [py, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows_out = []
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            src = tmp / f"chat-{n}.jsonl"
            generate(src, n)
            size_mb = src.stat().st_size / 1e6
            step = [py, "-m", "workflows.cli", "step", "dataset", "--split", "0.9", "--seed", "42"]
            runs = {
                "ours, local file": step + ["--data-uri", str(src), "--workspace", str(tmp / "ws-local")],
                "ours, http server": step
                + ["--data-uri", f"http://127.0.0.1:{port}/{src.name}", "--workspace", str(tmp / "ws-http")],
            }
            base_out = tmp / "baseline"
            base_out.mkdir(exist_ok=True)
            results = {name: measure(cmd, env) for name, cmd in runs.items()}
            cache = tmp / "hf-cache"
            results["datasets baseline"] = measure(
                [py, "-c", BASELINE, str(src), str(base_out)], {**env, "HF_DATASETS_CACHE": str(cache)}
            )
            shutil.rmtree(cache, ignore_errors=True)
            for name, (wall, rss) in results.items():
                rows_out.append((n, size_mb, name, wall, n / wall, rss))
            base = results["datasets baseline"][0]
            print(f"\n{n:,} rows ({size_mb:,.0f} MB):")
            for name, (wall, rss) in results.items():
                ratio = f"  baseline/ours = {base / wall:4.2f}x" if name.startswith("ours") else ""
                print(f"  {name:<20} {wall:7.2f} s  {n / wall:>10,.0f} rows/s  peak RSS {rss:7.0f} MB{ratio}")
            for ws in ("ws-local", "ws-http"):
                shutil.rmtree(tmp / ws, ignore_errors=True)
            shutil.rmtree(base_out, ignore_errors=True)
            if not args.keep:
                src.unlink()
    finally:
        server.terminate()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
