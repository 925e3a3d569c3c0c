"""``osft-pipeline run --local``: load the template, run it with a live view, write the report."""

import contextlib
import sys
from pathlib import Path

from rich.console import Console

from steps.common.errors import StepError
from steps.common.secrets import scrub
from workflows.local.engine import LocalRunner
from workflows.local.report import build_report
from workflows.local.state import RunState, read_run
from workflows.local.template import load_template
from workflows.local.view import RunView
from workflows.params import parse_overrides


def parse_pvcs(pairs: list[str]) -> dict[str, str]:
    """``--pvc CLAIM=DIR`` pairs: local folders standing for PersistentVolumeClaims a template mounts by name."""
    out: dict[str, str] = {}
    for pair in pairs:
        claim, sep, folder = pair.partition("=")
        if not sep or not claim.strip() or not folder.strip():
            raise StepError(f"--pvc {pair!r}: write it as CLAIM=DIR (a local folder standing for that claim)")
        if not Path(folder).expanduser().is_dir():
            raise StepError(f"--pvc {pair!r}: {folder} is not a folder; create it first")
        out[claim.strip()] = folder.strip()
    return out


def run_command(template: str, pairs: list[str], workspace: str, from_step: str = "", report: bool = True,
                pvcs: list[str] | None = None) -> int:
    """Run and report; return the exit code (0 success, 2 a failed step or bad input) after one-line errors."""
    console = Console(stderr=True)
    view = RunView(console)
    state: RunState | None = None
    try:
        doc = load_template(template)
        runner = LocalRunner(doc, workspace, template_path=template, overrides=parse_overrides(pairs),
                             from_step=from_step, listener=view, pvcs=parse_pvcs(pvcs or []))
        state = runner.run()
    except StepError as exc:
        view.close()
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        view.close()
        step = ""
        with contextlib.suppress(StepError, OSError, ValueError, KeyError):
            step = read_run(workspace)["workflow"]["failed_task"]
        print(f"error: interrupted; resume with --from-step {step or '<step>'} (run.json in {workspace})",
              file=sys.stderr)
        return 130
    finally:
        view.close()
    ws = Path(workspace)
    if report:
        html_path, md_path = build_report(ws, state.secrets())
        console.print(f"report: {html_path} (and {md_path.name})", highlight=False)
    console.print(f"run.json: {ws / 'run.json'}   logs: {ws / 'logs'}/", highlight=False)
    if state.phase != "Succeeded":
        failed = state.failed_task
        hint = f"; fix it, then resume with --from-step {failed}" if failed else ""
        print(f"error: {scrub(state.error, state.secrets())}{hint} (log: {ws / 'logs' / (failed or '')}.log)"
              if failed else f"error: {scrub(state.error, state.secrets())}", file=sys.stderr)
        return 2
    return 0
