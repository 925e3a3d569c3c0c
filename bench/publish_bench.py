"""Publish bench: upload a ~1 GB model folder to a local S3 endpoint (a moto server on 127.0.0.1) and print MB/s
and peak RSS of the publish step's uploader against a plain boto3 ``upload_file`` loop (what
``aws s3 cp --recursive`` does: one file after the other, boto3's default 8 MiB parts and 10 threads).

    python bench/publish_bench.py [--mb 1024] [--rounds 2] [--json out.json]

Each upload runs in its own process (peak RSS is that process's ``ru_maxrss``) against a fresh moto server
process, rounds interleaved so both see the same machine load. The publish step's figure includes what it does
beyond copying bytes: sha256 of every file, the checksum lookups, the HEAD verification and the manifest; its
hashing time alone is printed too. moto keeps objects in memory and is itself slow on multipart (it copies
parts on completion), so the absolute MB/s are moto's, not S3's; the ratio is the comparison.
"""

import argparse
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY_ID, SECRET = "AKIABENCH0000000001", "bench-secret-key-000000001"


def make_model(folder: Path, total_mb: int) -> Path:
    """A model folder like a sharded HF checkpoint: two weight shards (incompressible bytes) plus small files."""
    folder.mkdir(parents=True, exist_ok=True)
    shard = total_mb // 2 << 20
    for i in (1, 2):
        path = folder / f"model-0000{i}-of-00002.safetensors"
        if not path.is_file() or path.stat().st_size != shard:
            with open(path, "wb") as fh:
                for _ in range(shard >> 24):
                    fh.write(os.urandom(1 << 24))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {}}))
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    (folder / "tokenizer.json").write_bytes(os.urandom(7 << 20))
    (folder / "tokenizer_config.json").write_text("{}")
    (folder / "generation_config.json").write_text("{}")
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto server did not start")


def _client(endpoint: str):  # noqa: ANN202
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET)


def run_case(case: str, model: Path, endpoint: str) -> dict:
    """One upload, in this (child) process; prints its figures as JSON."""
    client = _client(endpoint)
    files = sorted(p for p in model.iterdir() if p.is_file())
    total = sum(p.stat().st_size for p in files)
    started = time.monotonic()
    hashing = 0.0
    if case == "upload_file loop":
        for p in files:
            client.upload_file(str(p), "bench", f"loop/{p.name}")
    else:
        from steps.publish.files import serving_files
        from steps.publish.s3 import S3Store
        from steps.publish.store import publish_files

        part_mb = int(case.split("part ")[1].split(" MiB")[0])
        t0 = time.monotonic()
        found = serving_files(model)
        hashing = time.monotonic() - t0
        store = S3Store("bench", f"publish-{part_mb}", part_size=part_mb << 20, concurrency=8, client=client)
        publish_files(store, found, {"run": "bench"}, lambda msg: None)
    seconds = time.monotonic() - started
    return {"case": case, "bytes": total, "seconds": seconds, "mb_per_s": total / 1e6 / seconds,
            "hash_s": hashing, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=1024, help="model size in MB (two shards + small files)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", default="", help="also write the figures here")
    ap.add_argument("--case", default="", help=argparse.SUPPRESS)  # child mode
    ap.add_argument("--model", default="", help=argparse.SUPPRESS)
    ap.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, Path(args.model), args.endpoint)))
        return
    cases = ["upload_file loop", "publish step, part 64 MiB", "publish step, part 16 MiB"]
    results: dict[str, list[dict]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="publish-bench-") as tmp:
        model = make_model(Path(tmp) / "model", args.mb)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "AWS_EC2_METADATA_DISABLED": "true"}
        for r in range(args.rounds):
            for case in cases:
                moto, endpoint = start_moto()
                try:
                    _client(endpoint).create_bucket(Bucket="bench")
                    out = subprocess.run([sys.executable, __file__, "--case", case, "--model", str(model),
                                          "--endpoint", endpoint], capture_output=True, text=True, env=env,
                                         timeout=1800)
                    if out.returncode != 0:
                        raise SystemExit(f"{case}: {out.stderr[-2000:]}")
                    res = json.loads(out.stdout.strip().splitlines()[-1])
                    results[case].append(res)
                    print(f"round {r + 1} {case:28s} {res['mb_per_s']:7.1f} MB/s  {res['seconds']:6.1f} s  "
                          f"peak RSS {res['peak_rss_mb']:6.0f} MB" + (f"  (sha256 {res['hash_s']:.1f} s)"
                                                                      if res["hash_s"] else ""), flush=True)
                finally:
                    moto.kill()
                    moto.wait()
    base = statistics.median(r["mb_per_s"] for r in results[cases[0]])
    base_rss = statistics.median(r["peak_rss_mb"] for r in results[cases[0]])
    print(f"\n{args.mb} MB model, median of {args.rounds} rounds (moto server on 127.0.0.1):")
    summary = []
    for case in cases:
        mbs = statistics.median(r["mb_per_s"] for r in results[case])
        rss = statistics.median(r["peak_rss_mb"] for r in results[case])
        summary.append({"case": case, "mb_per_s": round(mbs, 1), "peak_rss_mb": round(rss),
                        "speed_ratio": round(mbs / base, 2), "rss_ratio": round(rss / base_rss, 2)})
        print(f"  {case:28s} {mbs:7.1f} MB/s (x{mbs / base:.2f})  peak RSS {rss:5.0f} MB (x{rss / base_rss:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps({"rounds": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
