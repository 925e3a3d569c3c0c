"""Time a local run of a compiled WorkflowTemplate: per-step wall and peak RSS, and orchestration overhead.

    python bench/local_run_bench.py [--template templates/osft-minimal-pipeline.yaml] [-p name=value ...]
    python bench/local_run_bench.py --test-template -p data_uri=/abs/chat.jsonl   # the tests' small template

Orchestration overhead = total wall - the sum of the step processes' walls (template loading, argument
checks, substitution, run.json writes, reading outputs, the report). Each step's wall also holds the cost
of starting its pod-equivalent process (python + Hera runner import), measured separately as a baseline.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from steps.common.errors import StepError  # noqa: E402
from workflows.local.engine import LocalRunner  # noqa: E402
from workflows.local.report import build_report  # noqa: E402
from workflows.local.template import load_template  # noqa: E402
from workflows.params import parse_overrides  # noqa: E402


def runner_start_cost(python: str) -> float:
    """Best-of-3 wall of one no-op Hera runner process (what every step pays before its own work)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.write_text('[{"name": "extra", "value": "[]"}]')
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([python, "-m", "hera.workflows.runner", "-e", "steps.common.secrets:secret_values",
                            str(src)], env=env, capture_output=True, check=True)
            best = min(best, time.perf_counter() - t0)
        return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default="templates/osft-minimal-pipeline.yaml")
    ap.add_argument("--test-template", action="store_true", help="build and use the tests' small template")
    ap.add_argument("-p", "--parameter", action="append", default=[], help="name=value override (repeat)")
    ap.add_argument("--workspace", default="", help="run folder (default: a temporary one)")
    args = ap.parse_args()

    tmp = tempfile.TemporaryDirectory()
    template = args.template
    if args.test_template:
        from tests.local_steps import build_template

        template = str(Path(tmp.name) / "local-test.yaml")
        Path(template).write_text(build_template(), encoding="utf-8")
    ws = Path(args.workspace or Path(tmp.name) / "ws")

    t0 = time.perf_counter()
    try:
        doc = load_template(template)
        state = LocalRunner(doc, ws, template_path=template, overrides=parse_overrides(args.parameter)).run()
    except StepError as exc:
        sys.exit(f"error: {exc}")
    build_report(ws, state.secrets())
    total = time.perf_counter() - t0

    rows = [state.tasks[n] for n in state.order] + ([state.exit_handler] if state.exit_handler else [])
    ran = [t for t in rows if t.started is not None and not t.reused and t.kind == "pod"]  # dag groups: their steps
    steps_s = sum(t.duration_s or 0.0 for t in ran)
    start_cost = runner_start_cost(sys.executable)
    print(f"template: {template}\nworkspace: {ws}\nrun: {state.phase}" + (f" ({state.error})" if state.error else ""))
    width = max([len(t.name) for t in rows] + [16])
    print(f"\n{'step':<{width}} {'state':<10} {'wall s':>8} {'peak RSS MB':>12}")
    for t in rows:
        wall = f"{t.duration_s:.2f}" if t.duration_s is not None else "-"
        rss = f"{t.peak_rss_mb:.1f}" if t.peak_rss_mb else "-"
        print(f"{t.name:<{width}} {t.phase:<10} {wall:>8} {rss:>12}")
    overhead = total - steps_s
    runner_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\ntotal wall            {total:8.2f} s")
    print(f"sum of step walls     {steps_s:8.2f} s")
    print(f"orchestration         {overhead:8.2f} s  = {overhead / total:.1%} of the total")
    print(f"process start / step  {start_cost:8.2f} s  (python + Hera runner import, no-op function; "
          f"{start_cost * len(ran) / total:.1%} of the total over {len(ran)} steps)")
    print(f"runner peak RSS       {runner_rss:8.1f} MB (the orchestrating process itself)")
    if not args.workspace:
        tmp.cleanup()
    sys.exit(0 if state.phase == "Succeeded" else 1)


if __name__ == "__main__":
    main()
