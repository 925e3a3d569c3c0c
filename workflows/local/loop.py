"""``make loop``: continual learning on this machine, three runs on three topic slices, and the lineage's report.

Each run is the compiled WorkflowTemplate run locally (``osft-pipeline run``) with ``continue_from=latest``,
``since=last`` and a local folder standing for the models volume (``pvc://models/loop`` mapped with ``--pvc``).
Before run *i* the *i*-th slice of the demo chat data (one chatterbot-corpus category) lands in the data folder as
a new file, so ``since=last`` gives each run exactly that slice. Afterwards :func:`lineage_report` reads the
lineage store (pointer → ledgers) and prints and writes the retention matrix (rows = accepted versions, columns =
each version's held-out set), its heat map and the backward transfer: ``loop-report.html``.
"""

import html
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.lineage.retention import THIS_RUN, backward_transfer, matrix_from_ledgers, plot_matrix
from steps.lineage.store import LEDGER, open_lineage

DEFAULT_SLICES = ("ai", "literature", "emotion")
STORAGE_URI = "pvc://models/loop"
CLAIM = "models"
MODEL_NAME = "osft-model"


def slice_rows(categories: list[str], rows: int) -> list[list[dict[str, Any]]]:
    """The first ``rows`` demo conversations of each category (disjoint topics)."""
    from steps.dataset.demo_data import build_demo_rows

    everything = build_demo_rows()
    out = []
    for cat in categories:
        picked = [r for r in everything if r.get("category") == cat][:rows]
        if len(picked) < 8:
            known = sorted({str(r.get("category")) for r in everything})
            raise StepError(f"slice {cat!r}: only {len(picked)} demo conversations; pick a category with more "
                            f"(known: {', '.join(known)})")
        out.append(picked)
    return out


def _write_slice(folder: Path, index: int, name: str, rows: list[dict[str, Any]]) -> Path:
    """The slice as a new file, its mtime strictly after every file already there (so since=last sees it)."""
    folder.mkdir(parents=True, exist_ok=True)
    newest = max((p.stat().st_mtime_ns for p in folder.iterdir()), default=0)
    path = folder / f"{index:02d}-{name}.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    stamp = max(time.time_ns(), newest + 1_000_000)
    os.utime(path, ns=(stamp, stamp))
    return path


def run_loop(work: Path, model: str, param_files: list[str], slices: list[str], rows: int,
             template: str = "templates/osft-minimal-pipeline.yaml", extra: list[str] | None = None,
             echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Reset ``work``, then one run per slice, each continuing from the last accepted version; then the report."""
    echo = echo or (lambda line: print(line, flush=True))
    for sub in ("data", "store", "runs"):
        shutil.rmtree(work / sub, ignore_errors=True)
    work = work.resolve()
    data, store = work / "data", work / "store"
    store.mkdir(parents=True)
    runs = []
    started = time.monotonic()
    for i, (name, chunk) in enumerate(zip(slices, slice_rows(slices, rows), strict=True), start=1):
        path = _write_slice(data, i, name, chunk)
        ws = work / "runs" / f"{i}-{name}"
        echo(f"== run {i}/{len(slices)}: slice {name!r} ({len(chunk)} conversations, {path.name}) -> {ws}")
        args = [sys.executable, "-m", "workflows.cli", "run", "--local", "--template", template,
                "--workspace", str(ws), "--pvc", f"{CLAIM}={store}"]
        for f in param_files:
            args += ["-f", f]
        args += ["-p", f"phase_01_dataset_man_data_uri={data}", "-p", f"phase_02_train_man_train_model={model}",
                 "-p", f"phase_04_registry_opt_storage_uri={STORAGE_URI}",
                 "-p", f"phase_04_registry_man_reg_name={MODEL_NAME}", *(extra or [])]
        t0 = time.monotonic()
        proc = subprocess.run(args, text=True, capture_output=True)
        took = time.monotonic() - t0
        status = "succeeded" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
        runs.append({"slice": name, "workspace": str(ws), "status": status, "seconds": round(took, 1)})
        echo(f"   {status} in {took:.0f} s; report {ws / 'report.html'}")
        if proc.returncode != 0:
            echo(proc.stdout[-2000:] + proc.stderr[-2000:])
            break
    total = time.monotonic() - started
    report = lineage_report(store, work / "loop-report.html", runs, total)
    echo(report["text"])
    echo(f"loop report: {work / 'loop-report.html'} ({total / 60:.1f} min in all)")
    return report


def read_lineage(store: Path, storage_uri: str = STORAGE_URI, name: str = MODEL_NAME) -> list[dict[str, Any]]:
    """The accepted versions' ledgers, oldest first (the latest pointer's chain)."""
    lineage = open_lineage(storage_uri, name, str(store))
    pointer = lineage.pointer()
    if not pointer.version:
        return []
    latest = json.loads(lineage.read(f"{pointer.version}/{LEDGER}") or b"{}")
    out = []
    for v in latest.get("chain") or [pointer.version]:
        out.append(latest if v == pointer.version else json.loads(lineage.read(f"{v}/{LEDGER}") or b"{}"))
    return out


def _f(v: Any, sign: bool = False) -> str:
    if not isinstance(v, int | float):
        return "—"
    return f"{v:+.4f}" if sign else f"{v:.4f}"


def lineage_report(store: Path, out: Path, runs: list[dict[str, Any]] | None = None, seconds: float = 0.0,
                   storage_uri: str = STORAGE_URI, name: str = MODEL_NAME) -> dict[str, Any]:
    """Print and write the lineage's retention matrix, heat map and backward transfer (``out``: HTML)."""
    ledgers = read_lineage(store, storage_uri, name)
    matrix = matrix_from_ledgers(ledgers)
    bwt = backward_transfer(matrix)
    labels = {d["version"]: f"v{i} {_slice_of(d, runs)}".strip() for i, d in enumerate(ledgers, start=1)}
    shown = {**matrix, "versions": [labels[v] for v in matrix["versions"]], "sets": [labels[v] for v in matrix["sets"]]}
    worst = max((d.get("worst_forgetting") for d in ledgers if isinstance(d.get("worst_forgetting"), int | float)),
                default=None)
    failed = [r for r in runs or [] if r["status"] != "succeeded"]
    if failed:
        verdict = f"STOPPED: run {failed[0]['slice']!r} {failed[0]['status']}; {len(ledgers)} version(s) accepted"
    elif bwt is not None and bwt >= 0:
        verdict = f"NOTHING FORGOTTEN: {len(ledgers)} accepted versions, backward transfer {bwt:+.4f} (≥ 0)"
    else:
        verdict = (f"{len(ledgers)} accepted versions, backward transfer {_f(bwt, True)} (held-out loss; < 0 = "
                   "some forgetting, within each run's max_forgetting gate)")
    width = max([len(s) for s in shown["versions"]] + [8])
    col = max([len(s) for s in shown["sets"]] + [8])  # a column as wide as its longest set name
    lines = [verdict, "", "retention matrix: held-out loss (nats/token, lower is better); rows = accepted versions, "
             "columns = held-out sets", " " * width + "".join(f"  {s:>{col}}" for s in shown["sets"])]
    for label, row in zip(shown["versions"], matrix["values"], strict=True):
        lines.append(f"{label:<{width}}" + "".join(f"  {_f(v):>{col}}" for v in row))
    lines.append(f"backward transfer: {_f(bwt, True)}; largest forgetting in any run: {_f(worst, True)}")
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    png = out.with_name("loop-retention.png")
    if ledgers:
        plot_matrix(png, shown, f"retention over {len(ledgers)} versions: backward transfer {_f(bwt, True)}")
    _write_html(out, verdict, ledgers, shown, matrix, bwt, worst, png if ledgers else None, runs or [], seconds)
    return {"verdict": verdict, "versions": [d["version"] for d in ledgers], "matrix": matrix,
            "backward_transfer": bwt, "worst_forgetting": worst, "text": text, "html": str(out)}


def _slice_of(ledger: dict[str, Any], runs: list[dict[str, Any]] | None) -> str:
    for r in runs or []:
        if str(ledger.get("run", "")) and Path(r["workspace"]).joinpath("run.json").is_file():
            try:
                name = json.loads(Path(r["workspace"], "run.json").read_text())["workflow"]["name"]
            except (OSError, ValueError, KeyError):
                continue
            if name == ledger.get("run"):
                return f"({r['slice']})"
    return ""


def _write_html(out: Path, verdict: str, ledgers: list[dict[str, Any]], shown: dict[str, Any],
                matrix: dict[str, Any], bwt: float | None, worst: float | None, png: Path | None,
                runs: list[dict[str, Any]], seconds: float) -> None:
    import base64

    from workflows.local.report import CSS

    e = html.escape
    cls = "pass" if verdict.startswith("NOTHING") else "fail" if verdict.startswith("STOPPED") else "na"
    parts = [f"<h1>Continual learning: {len(ledgers)} accepted version(s)</h1>",
             f'<p id="summary" class="summary"><strong id="verdict" class="{cls}">{e(verdict)}</strong> · backward '
             f"transfer {e(_f(bwt, True))} · largest forgetting in any run {e(_f(worst, True))}"
             + (f" · {seconds / 60:.1f} min" if seconds else "") + "</p>"]
    if png is not None and png.is_file():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<p><img id="heatmap" alt="retention matrix" src="data:image/png;base64,{data}"></p>')
    parts.append("<h2>Retention matrix</h2><p>Held-out loss (nats/token, lower is better) of each accepted version "
                 "(rows) on each version's held-out set (columns); — = that set did not exist yet. Backward transfer "
                 "= mean over earlier sets of (loss when it was learned − loss of the newest version): &lt; 0 means "
                 "forgetting.</p>")
    head = "".join(f"<th>{e(s)}</th>" for s in shown["sets"])
    body = "".join(f"<tr><th>{e(v)}</th>" + "".join(f'<td class="num">{e(_f(x))}</td>' for x in row) + "</tr>"
                   for v, row in zip(shown["versions"], matrix["values"], strict=True))
    parts.append(f'<table id="matrix"><thead><tr><th>version</th>{head}</tr></thead><tbody>{body}</tbody></table>')
    parts.append("<h2>Versions</h2>")
    rows = "".join(
        f"<tr><td>{e(d['version'])}</td><td>{e(d.get('parent') or '(base model)')}</td>"
        f"<td>{e(str((d.get('watermark') or {}).get('key', '')))}</td>"
        f"<td class=\"num\">{(d.get('rows') or {}).get('train')}</td>"
        f"<td class=\"num\">{(d.get('rows') or {}).get('heldout')}</td><td class=\"num\">"
        f"{e(_f(d.get('worst_forgetting'), True))}</td><td class=\"num\">{e(_f(d.get('backward_transfer'), True))}</td>"
        f"<td><code>{e(str(d.get('model_uri', '')))}</code></td></tr>" for d in ledgers)
    parts.append("<table><thead><tr><th>version</th><th>parent</th><th>watermark (newest file)</th><th>train rows</th>"
                 "<th>held-out rows</th><th>worst forgetting</th><th>backward transfer</th><th>model</th></tr>"
                 f"</thead><tbody>{rows}</tbody></table>")
    if runs:
        parts.append("<h2>Runs</h2><table><thead><tr><th>slice</th><th>status</th><th>seconds</th><th>report</th>"
                     "</tr></thead><tbody>" + "".join(
                         f"<tr><td>{e(r['slice'])}</td><td>{e(r['status'])}</td><td class=\"num\">{r['seconds']}</td>"
                         f"<td><a href=\"{e(os.path.relpath(Path(r['workspace']) / 'report.html', out.parent))}\">"
                         "report</a></td></tr>" for r in runs) + "</tbody></table>")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Continual learning loop</title>"
            f"<style>{CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    out.write_text(page, encoding="utf-8")


__all__ = ["DEFAULT_SLICES", "THIS_RUN", "lineage_report", "read_lineage", "run_loop", "slice_rows"]
