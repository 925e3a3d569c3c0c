"""The run report: ``DIR/report.html`` (self-contained: inline CSS, images as base64) and ``DIR/report.md``.

Built from ``run.json`` and the workspace files of the layout contract. Every section is present; a
section whose inputs are missing says why (the step was skipped, failed, or did not run). Secret
parameters are masked in run.json already, and the rendered text is scrubbed of every known secret
value once more before it is written.
"""

import base64
import html
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steps.common.secrets import redact_uri, scrub

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass,.Succeeded,.improved{color:#17702a;font-weight:600}.fail,.Failed,.Error,.regressed{color:#b3261e;font-weight:600}
.Skipped,.Omitted,.na{color:#8a6d00}.missing{color:#666;font-style:italic}img{max-width:100%;border:1px solid #eee}
code{background:#f6f6f6;padding:0 .2rem}
"""

# (section title, file under the workspace, words that identify the step producing it)
_STEP_WORDS = {"dataset": ("dataset", "data"), "train": ("train",), "evaluate": ("eval",), "register": ("regist",)}


@dataclass
class _Doc:
    """Builds the HTML and Markdown side by side."""

    html: list[str] = field(default_factory=list)
    md: list[str] = field(default_factory=list)

    def h(self, text: str, level: int = 2) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def p(self, text: str, cls: str = "") -> None:
        attr = f' class="{cls}"' if cls else ""
        self.html.append(f"<p{attr}>{html.escape(text)}</p>")
        self.md.append(f"{'_' + text + '_' if cls == 'missing' else text}\n")

    def table(self, header: list[str], rows: list[list[Any]], classes: Mapping[int, bool] | None = None) -> None:
        """``classes``: column index → use the cell value as its CSS class (state, verdict columns)."""
        cls_cols = classes or {}
        out = ["<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr></thead><tbody>"]
        for row in rows:
            cells = []
            for i, v in enumerate(row):
                text = _fmt(v)
                cls = []
                if i in cls_cols:
                    cls.append(html.escape(str(v).split(" ")[0]))
                if isinstance(v, int | float) and not isinstance(v, bool):
                    cls.append("num")
                attr = f' class="{" ".join(cls)}"' if cls else ""
                cells.append(f"<td{attr}>{html.escape(text)}</td>")
            out.append("<tr>" + "".join(cells) + "</tr>")
        out.append("</tbody></table>")
        self.html.append("".join(out))
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("|" + "|".join("---" for _ in header) + "|")
        for row in rows:
            self.md.append("| " + " | ".join(_fmt(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
        self.md.append("")

    def image(self, path: Path, alt: str, rel: str) -> None:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        mime = "image/svg+xml" if path.suffix == ".svg" else f"image/{path.suffix.lstrip('.').replace('jpg', 'jpeg')}"
        self.html.append(f'<p><img alt="{html.escape(alt)}" src="data:{mime};base64,{data}"></p>')
        self.md.append(f"![{alt}]({rel})\n")


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict | list):
        return json.dumps(v)
    return str(v)


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _record_section(doc: _Doc, run: Mapping[str, Any], ws: Path, title: str, rel: str, step: str) -> None:
    """A heading and a field/value table of one JSON record, or why it is missing."""
    doc.h(title)
    record = _load(ws / rel)
    if isinstance(record, Mapping):
        doc.table(["field", "value"], _flatten(record))
    else:
        _missing(doc, run, step, rel)


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[list[Any]]:
    rows: list[list[Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            rows += _flatten(v, key + ".")
        else:
            rows.append([key, redact_uri(v) if isinstance(v, str) else v])
    return rows


def _step_state(run: Mapping[str, Any], section: str) -> str:
    """Why a section has no data: the matching task's state, or that no such step ran."""
    words = _STEP_WORDS[section]
    for name, t in (run.get("tasks") or {}).items():
        if any(w in name.lower() or w in str(t.get("template", "")).lower() for w in words):
            msg = f": {t['message']}" if t.get("message") else ""
            return f"step {name!r} {t.get('phase', 'did not run')}{msg}"
    return "no such step in this run"


def _missing(doc: _Doc, run: Mapping[str, Any], section: str, what: str) -> None:
    doc.p(f"Not available ({what} missing): {_step_state(run, section)}.", "missing")


def build_report(workspace: str | os.PathLike[str], secrets: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Write report.html and report.md for the run in ``workspace``; return their paths."""
    ws = Path(workspace)
    run = _load(ws / "run.json") or {}
    wf = run.get("workflow") or {}
    doc = _Doc()
    title = f"OSFT pipeline run {wf.get('name', ws.name)}"
    doc.h(title, 1)
    status = wf.get("phase", "unknown")
    doc.table(["workflow", "status", "started", "duration", "template"],
              [[wf.get("name", ""), status, wf.get("started", ""), f"{wf.get('duration_s', 0):.1f}s",
                wf.get("template", "")]], classes={1: True})
    if wf.get("error"):
        doc.p(f"Error: {wf['error']}", "fail")
    if wf.get("from_step"):
        doc.p(f"Resumed from step {wf['from_step']!r}; earlier steps were reused from the previous run.")

    doc.h("Parameters")
    params = run.get("parameters") or {}
    over = set(run.get("overrides") or [])
    if params:
        doc.table(["name", "value", "set by"], [[k, v, "-p override" if k in over else "template default"]
                                                for k, v in params.items()])
    else:
        doc.p("Not available (run.json missing).", "missing")

    doc.h("Step timings")
    tasks = [(n, (run.get("tasks") or {}).get(n, {})) for n in run.get("order") or []]
    if run.get("exit_handler"):
        tasks.append((run["exit_handler"]["name"] + " (onExit)", run["exit_handler"]))
    if tasks:
        total = wf.get("duration_s") or 0.0
        steps_s = sum((t.get("duration_s") or 0.0) for _, t in tasks
                      if not t.get("reused") and t.get("kind", "pod") == "pod")  # a nested dag's steps are rows
        doc.table(["step", "state", "duration (s)", "exit code", "peak RSS (MB)", "detail"],
                  [[n, t.get("phase", "") + (" (reused)" if t.get("reused") else ""), t.get("duration_s"),
                    t.get("exit_code"), t.get("peak_rss_mb"), t.get("message", "")] for n, t in tasks],
                  classes={1: True})
        if total:
            doc.p(f"Total {total:.1f}s; steps {steps_s:.1f}s; orchestration {max(total - steps_s, 0):.1f}s.")

    _record_section(doc, run, ws, "Dataset", "dataset/summary.json", "dataset")

    doc.h("Training")
    metrics = _load(ws / "train" / "metrics.json")
    if isinstance(metrics, Mapping):
        doc.table(["metric", "value"], _flatten({k: v for k, v in metrics.items() if not isinstance(v, list)}))
    loss_png = ws / "train" / "loss.png"
    if loss_png.is_file():
        doc.image(loss_png, "training loss curve", "train/loss.png")
    if not isinstance(metrics, Mapping) and not loss_png.is_file():
        _missing(doc, run, "train", "train/metrics.json and train/loss.png")

    doc.h("Evaluation: base vs tuned")
    comp = _load(ws / "eval" / "comparison.json")
    if isinstance(comp, Mapping):
        gate = str(comp.get("gate", "n/a"))
        doc.html.append(f'<p>Gate: <span class="{html.escape(gate.replace("/", ""))}" id="gate">'
                        f'{html.escape(gate.upper())}</span>'
                        + (f" (max regression {_fmt(comp['max_regression'])})" if "max_regression" in comp else "")
                        + "</p>")
        doc.md.append(f"**Gate: {gate.upper()}**" + (f" (max regression {_fmt(comp['max_regression'])})"
                                                      if "max_regression" in comp else "") + "\n")
        rows = [r for r in comp.get("rows") or [] if isinstance(r, Mapping)]
        cols = ["task", "metric", "base", "tuned", "delta", "stderr", "verdict"]
        extra = sorted({k for r in rows for k in r} - set(cols))
        if rows:
            doc.table(cols + extra, [[r.get(c) for c in cols + extra] for r in rows], classes={6: True})
        else:
            doc.p("The comparison holds no rows.", "missing")
        variants = [str(n) for n in comp.get("local_variants") or []]
        if variants:  # offline local variants that differ from lm-eval's task: said, never hidden
            doc.p("Offline local variants (not lm-eval's own tasks): " + "; ".join(variants), "variant")
    else:
        _missing(doc, run, "evaluate", "eval/comparison.json")
    eval_png = ws / "eval" / "eval.png"
    if eval_png.is_file():
        doc.image(eval_png, "evaluation scores", "eval/eval.png")

    published = _load(ws / "publish" / "publish.json")  # issue 15: where the model lives after the run
    if isinstance(published, Mapping):
        doc.h("Published model")
        doc.p(f"{published.get('uri')} ({published.get('status')}, {len(published.get('files') or [])} files, "
              f"manifest {published.get('manifest')})")
    _record_section(doc, run, ws, "Registration", "registry/registration.json", "register")

    if run.get("notes"):
        doc.h("Notes")
        for note in run["notes"]:
            doc.p(note)

    body = "\n".join(doc.html)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
    html_path, md_path = ws / "report.html", ws / "report.md"
    html_path.write_text(scrub(page, secrets), encoding="utf-8")
    md_path.write_text(scrub("\n".join(doc.md).lstrip() + "\n", secrets), encoding="utf-8")
    return html_path, md_path
