"""Evaluate step benchmark: SmolLM2-135M on ARC-Easy (limit 200) + the held-out demo split, base vs tuned.

Runs the real CLI step twice in child processes on one workspace: a cold run (tuned and base are both
scored) and a warm run (base results come from the workspace cache). Prints lm-eval wall time per
model, each run's wall time and peak RSS (os.wait4), and the time the base-result cache saves.

Usage: python bench/eval_bench.py [--base /tmp/smollm2-hf] [--tuned DIR] [--limit 200]
(``--tuned`` defaults to the base model itself, e.g. before any training; pass the trained
checkpoint, e.g. .work/run/train/model, for a real comparison.)
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
       "TOKENIZERS_PARALLELISM": "false"}


def _run(args: list[str]) -> tuple[float, float]:
    """Run the osft-pipeline CLI in a child; return (wall s, peak RSS MB of that child)."""
    cmd = [sys.executable, "-m", "workflows.cli", *args]
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default=os.environ.get("SMOLLM2_DIR", "/tmp/smollm2-hf"))
    ap.add_argument("--tuned", default="")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--batch-size", default="8")
    args = ap.parse_args()
    base = Path(args.base)
    if not (base / "config.json").is_file():
        raise SystemExit(f"{base} is not a HF model dir: convert SmolLM2 first (osft-pipeline demo-model DIR)")
    tuned = Path(args.tuned or base)
    work = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    ws = work / "ws"
    _run(["demo-data", str(work / "chat.jsonl")])
    _run(["step", "dataset", "--data-uri", str(work / "chat.jsonl"), "--workspace", str(ws), "--split", "0.9"])
    step = ["step", "evaluate", "--workspace", str(ws), "--model", str(tuned), "--base-model", str(base),
            "--tasks", "arc_easy", "--limit", str(args.limit), "--batch-size", args.batch_size]
    cold_wall, cold_rss = _run(step)
    ev = ws / "eval"
    tuned_lm = json.loads((ev / "results.json").read_text())["wall_s"]
    base_lm = json.loads((ev / "base_results.json").read_text())["wall_s"]
    warm_wall, warm_rss = _run(step)
    comp = json.loads((ev / "comparison.json").read_text())
    assert comp["base_cached"], "second run did not reuse the base cache"
    print(f"model: base {base}, tuned {tuned}; ARC-Easy limit {args.limit} + held_out "
          f"(limit {args.limit}); batch {args.batch_size}; OMP_NUM_THREADS={ENV['OMP_NUM_THREADS']}")
    print(f"lm-eval wall  tuned {tuned_lm:7.1f} s   base {base_lm:7.1f} s")
    print(f"cold run (tuned + base)  wall {cold_wall:7.1f} s  peak RSS {cold_rss:7.0f} MB")
    print(f"warm run (base cached)   wall {warm_wall:7.1f} s  peak RSS {warm_rss:7.0f} MB")
    print(f"base cache saves {cold_wall - warm_wall:7.1f} s per re-run (cold/warm = {cold_wall / warm_wall:.2f}x)")
    print((ev / "comparison.md").read_text())
    print(f"workspace: {ws}")


if __name__ == "__main__":
    main()
