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
import re
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
.summary{font-size:1.05rem;line-height:1.5;background:#f7f9fc;border:1px solid #dde3ee;padding:.6rem .8rem}
.summary .na{color:#444}h3{font-size:1.05rem;margin-top:1.4rem}
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


def _record_section(doc: _Doc, run: Mapping[str, Any], ws: Path, title: str, rel: str, step: str,
                    level: int = 2) -> None:
    """A heading and a field/value table of one JSON record, or why it is missing."""
    doc.h(title, level)
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


# Why a task of this pipeline did not run, in words (run.json keeps the engine's own record of the condition).
_SKIPPED = {
    "register": "skipped: no registry address (phase_04_registry_man_address is empty)",
    "train-trainjob": "skipped: one worker (phase_02_train_man_train_workers=1), so the train step ran instead",
    "train": "skipped: several workers, so the train-trainjob step ran instead",
    "delete-workspace": "skipped: the run did not succeed, so its workspace is kept for a retry",
    "publish": "skipped: nowhere to publish to",
    "lineage": "skipped: no continue_from, or the storage URI is not s3://",
    "lineage-pvc": "skipped: no continue_from, or the storage URI is not pvc://",
}
NOTHING_NEW = "skipped: nothing new to learn (since=last found no file newer than the parent's watermark)"
_TAG = re.compile(r"\{\{.*?\}\}|'[^']*'\s*(==|!=)\s*'[^']*'")


def explain(name: str, task: Mapping[str, Any]) -> str:
    """A task's state in words: why it was skipped or not started, its error, or nothing when it simply ran."""
    phase, message = str(task.get("phase", "")), str(task.get("message") or "")
    base = name.rsplit(".", 1)[-1]
    if phase == "Skipped":
        if "'nothing-new' != 'nothing-new'" in message:
            return NOTHING_NEW
        return _SKIPPED.get(base, "skipped: its condition was not met")
    if phase == "Omitted":
        return "not run: an earlier step failed" if "earlier step failed" in message or "interrupted" in message \
            else "not run: the steps it depends on did not succeed"
    if task.get("reused"):
        return "reused from the previous run"
    return " ".join(_TAG.sub("…", message).split())


def _step_state(run: Mapping[str, Any], section: str) -> str:
    """Why a section has no data: the matching task's state, or that no such step ran."""
    words = _STEP_WORDS[section]
    for name, t in (run.get("tasks") or {}).items():
        if any(w in name.lower() or w in str(t.get("template", "")).lower() for w in words):
            why = explain(name, t)
            return f"step {name!r} {t.get('phase', 'did not run')}" + (f" ({why})" if why else "")
    return "no such step in this run"


def _missing(doc: _Doc, run: Mapping[str, Any], section: str, what: str) -> None:
    doc.p(f"Not available ({what} missing): {_step_state(run, section)}.", "missing")


# ------------------------------------------------------------------------------------------------ the verdict


@dataclass(frozen=True)
class ModelLocation:
    """Where the tuned model is, and how to load it."""

    where: str  # an absolute path or a durable URI; "" when there is none
    load: str  # one line: how to load it
    source: str  # publish, registry, workspace


def _load_hint(where: str) -> str:
    scheme = where.split("://", 1)[0] if "://" in where else ""
    if scheme == "s3":
        return f'aws s3 sync {where} model/ && AutoModelForCausalLM.from_pretrained("model")'
    if scheme == "oci":
        return (f"a modelcar image: skopeo copy docker://{where[6:]} oci:model && extract models/, or serve it "
                "with KServe's storageUri")
    if scheme == "pvc":
        return (f"on the cluster: mount PVC {where[6:].split('/', 1)[0]} and "
                f"AutoModelForCausalLM.from_pretrained(\"/mnt/{where[6:].split('/', 1)[-1]}\")")
    if scheme in ("hf", "https", "http"):
        return f'AutoModelForCausalLM.from_pretrained("{where.removeprefix("hf://")}")'
    return f'AutoModelForCausalLM.from_pretrained("{where}")'


def model_location(ws: Path, run: Mapping[str, Any]) -> ModelLocation:
    """The durable URI when the run published (``publish/publish.json``) or registered the model, else the
    absolute path of ``train/model``'s checkpoint; for a cluster run without either, where it went."""
    pub = _load(ws / "publish" / "publish.json")
    if isinstance(pub, Mapping) and pub.get("uri"):
        uri = redact_uri(str(pub["uri"]))
        return ModelLocation(uri, _load_hint(uri), "publish")
    reg = _load(ws / "registry" / "registration.json")
    if isinstance(reg, Mapping) and reg.get("uri") and str(reg.get("status", "")).startswith(
            ("registered", "already")):
        uri = redact_uri(str(reg["uri"]))
        return ModelLocation(uri, _load_hint(uri), "registry")
    link = ws / "train" / "model"
    if link.exists():
        path = str(link.resolve())
        return ModelLocation(path, _load_hint(path), "workspace")
    cluster = run.get("cluster") or {}
    if cluster.get("model"):
        return ModelLocation(str(cluster["model"]), _load_hint(str(cluster["model"])), "workspace")
    return ModelLocation("", "", "")


def _fmt_num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def key_deltas(comp: Mapping[str, Any] | None, metrics: Mapping[str, Any] | None, limit: int = 3) -> list[str]:
    """The few numbers that say how the run went: the first metric of each benchmark, the held-out perplexity,
    the training loss."""
    out: list[str] = []
    rows = [r for r in (comp or {}).get("rows") or [] if isinstance(r, Mapping)
            and r.get("base") is not None and r.get("tuned") is not None]
    perplexity = any(r.get("task") == "held_out" and r.get("metric") == "token_perplexity" for r in rows)
    seen: set[str] = set()
    for r in rows:
        task, metric = str(r.get("task", "")), str(r.get("metric", ""))
        if task in seen or (task == "held_out" and perplexity and metric != "token_perplexity"):
            continue
        seen.add(task)
        verdict = str(r.get("verdict", ""))
        out.append(f"{task} {metric} {_fmt_num(r['base'])} → {_fmt_num(r['tuned'])}"
                   + (f" ({verdict})" if verdict else ""))
        if len(out) >= limit:
            break
    retention = (comp or {}).get("retention")
    if isinstance(retention, Mapping) and retention.get("backward_transfer") is not None:
        out.append(f"backward transfer {_fmt_num(retention['backward_transfer'])} (held-out loss; < 0 = forgot)")
    if isinstance(metrics, Mapping) and metrics.get("final_loss") is not None:
        first = metrics.get("first_loss")
        out.append(f"loss {_fmt_num(first)} → {_fmt_num(metrics['final_loss'])}" if first is not None
                   else f"final loss {_fmt_num(metrics['final_loss'])}")
    return out


def _failed_task(run: Mapping[str, Any]) -> str:
    return str((run.get("workflow") or {}).get("failed_task") or next(
        (n for n, t in (run.get("tasks") or {}).items() if t.get("phase") in ("Failed", "Error")), ""))


def verdict(run: Mapping[str, Any], comp: Mapping[str, Any] | None, data: Mapping[str, Any] | None = None
            ) -> tuple[str, str]:
    """(CSS class, words) of the run's outcome: a failed step, nothing new to learn, the eval gate (benchmarks and
    retention), or done without a comparison."""
    wf = run.get("workflow") or {}
    found = (comp or {}).get("retention") if isinstance(comp, Mapping) else None
    retention: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    if retention.get("gate") == "fail" and wf.get("phase") in (None, "Succeeded", "Failed") and \
            _failed_task(run) in ("", "publish", "publish-pvc"):  # the gate refused to publish it
        return "fail", (f"FORGOT: held-out loss on {retention.get('worst_set')} rose by "
                        f"{_fmt_num(retention.get('worst_forgetting'))} (allowed {retention.get('max_forgetting')}): "
                        "not accepted, the latest version is unchanged")
    if wf.get("phase") not in (None, "Succeeded"):
        failed = _failed_task(run)
        return "fail", f"FAILED at step {failed}" if failed else f"FAILED ({wf.get('phase')})"
    if isinstance(data, Mapping) and data.get("status") == "nothing new to learn":
        return "na", "NOTHING NEW TO LEARN (since=last: no file newer than the parent's watermark; nothing trained)"
    if isinstance(comp, Mapping) and comp.get("gate") == "fail":
        bad = [str(f) for f in comp.get("gate_failures") or []][:2]
        return "fail", "GATE FAILED" + (f": {'; '.join(bad)}" if bad else ": a benchmark regressed")
    if isinstance(comp, Mapping) and comp.get("gate") == "pass":
        if retention.get("gate") == "pass":
            return "pass", ("PASSED the eval gate: no benchmark regressed beyond its stderr, nothing earlier was "
                            f"forgotten (largest forgetting {_fmt_num(retention.get('worst_forgetting'))} ≤ "
                            f"{retention.get('max_forgetting')})")
        return "pass", "PASSED the eval gate (no benchmark regressed beyond its stderr)"
    if wf.get("phase") == "Running":
        return "na", "RUNNING"
    return "na", "DONE (no base-vs-tuned comparison, so no gate)"


def _failure(run: Mapping[str, Any]) -> str:
    """A failed run's step message and what to do next, in words (no template expressions)."""
    wf = run.get("workflow") or {}
    failed = _failed_task(run)
    t = (run.get("tasks") or {}).get(failed, {})
    why = explain(failed, t) if t else " ".join(_TAG.sub("…", str(wf.get("error", ""))).split())
    if failed and t.get("log_url"):
        fix = f"fix it, then: argo retry -n {wf.get('namespace')} {wf.get('name')}"
    elif failed:
        fix = f"fix it, then resume: osft-pipeline run --from-step {failed}"
    else:
        fix = ""
    return "; ".join(x for x in (why, fix) if x)


def _summary(doc: _Doc, run: Mapping[str, Any], ws: Path, comp: Any, metrics: Any) -> None:
    """The report's first line: verdict, key deltas, where the model is and how to load it."""
    data = _load(ws / "dataset" / "summary.json")
    cls, words = verdict(run, comp if isinstance(comp, Mapping) else None, data if isinstance(data, Mapping) else None)
    deltas = key_deltas(comp if isinstance(comp, Mapping) else None,
                        metrics if isinstance(metrics, Mapping) else None)
    loc = model_location(ws, run)
    failed = (run.get("workflow") or {}).get("phase") not in (None, "Succeeded", "Running")
    parts_html = [f'<strong id="verdict" class="{cls}">{html.escape(words)}</strong>']
    parts_md = [f"**{words}**"]
    if failed and (why := _failure(run)):
        parts_html.append(html.escape(why))
        parts_md.append(why)
    if deltas:
        parts_html.append(html.escape("; ".join(deltas)))
        parts_md.append("; ".join(deltas))
    if loc.where:
        parts_html.append(f'model: <code id="model">{html.escape(loc.where)}</code>')
        parts_md.append(f"model: `{loc.where}`")
        if loc.load:
            parts_html.append(f'load: <code id="load">{html.escape(loc.load)}</code>')
            parts_md.append(f"load: `{loc.load}`")
    else:
        note = str((run.get("cluster") or {}).get("model_note") or ("none: the run stopped before training "
                                                                    "ended" if failed else "none"))
        parts_html.append(f'<span id="model">model: {html.escape(note)}</span>')
        parts_md.append(f"model: {note}")
    doc.html.append('<p id="summary" class="summary">' + " · ".join(parts_html) + "</p>")
    doc.md.append(" · ".join(parts_md) + "\n")


def _log_link(doc: _Doc, name: str, t: Mapping[str, Any], ws: Path) -> str:
    """A link target for a task's log: the Argo UI's, or the local file when it exists."""
    if t.get("log_url"):
        return str(t["log_url"])
    if t.get("log") and (ws / str(t["log"])).is_file():
        return str(t["log"])
    return ""


def _steps_table(doc: _Doc, run: Mapping[str, Any], ws: Path) -> None:
    tasks = [(n, (run.get("tasks") or {}).get(n, {})) for n in run.get("order") or []]
    if run.get("exit_handler"):
        tasks.append((run["exit_handler"]["name"] + " (onExit)", run["exit_handler"]))
    if not tasks:
        doc.p("Not available (run.json missing).", "missing")
        return
    header = ["step", "state", "duration (s)", "exit code", "peak RSS (MB)", "detail", "log"]
    out = ["<table><thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead><tbody>"]
    doc.md.append("| " + " | ".join(header) + " |")
    doc.md.append("|" + "|".join("---" for _ in header) + "|")
    for n, t in tasks:
        state = str(t.get("phase", "")) + (" (reused)" if t.get("reused") else "")
        why = explain(n, t)
        link = _log_link(doc, n, t, ws)
        cells = [n, state, t.get("duration_s"), t.get("exit_code"), t.get("peak_rss_mb"), why]
        tds = []
        for i, v in enumerate(cells):
            cls = ["num"] if isinstance(v, int | float) and not isinstance(v, bool) else []
            if i == 1:
                cls.append(html.escape(state.split(" ")[0]))
            attr = f' class="{" ".join(cls)}"' if cls else ""
            tds.append(f"<td{attr}>{html.escape(_fmt(v))}</td>")
        row = "".join(tds)
        row += f'<td><a href="{html.escape(link)}">log</a></td>' if link else "<td></td>"
        out.append(f"<tr>{row}</tr>")
        doc.md.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in cells)
                      + (f" | [log]({link}) |" if link else " |  |"))
    out.append("</tbody></table>")
    doc.html.append("".join(out))
    doc.md.append("")
    total = (run.get("workflow") or {}).get("duration_s") or 0.0
    steps_s = sum((t.get("duration_s") or 0.0) for _, t in tasks
                  if not t.get("reused") and t.get("kind", "pod") == "pod")  # a nested dag's steps are rows
    if total:
        doc.p(f"Total {total:.1f}s; steps {steps_s:.1f}s; orchestration {max(total - steps_s, 0):.1f}s.")


def build_report(workspace: str | os.PathLike[str], secrets: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Write report.html and report.md for the run in ``workspace``; return their paths.

    Order: one line that answers first (verdict, key deltas, the model's location and how to load it), the
    parameters that were overridden, the evaluation and training plots, then the details."""
    ws = Path(workspace)
    run = _load(ws / "run.json") or {}
    wf = run.get("workflow") or {}
    comp = _load(ws / "eval" / "comparison.json")
    metrics = _load(ws / "train" / "metrics.json")
    doc = _Doc()
    title = f"OSFT pipeline run {wf.get('name', ws.name)}"
    doc.h(title, 1)
    _summary(doc, run, ws, comp, metrics)
    if wf.get("error"):
        doc.p(f"Error: {' '.join(_TAG.sub('…', str(wf['error'])).split())}", "fail")
    if wf.get("from_step"):
        doc.p(f"Resumed from step {wf['from_step']!r}; earlier steps were reused from the previous run.")

    params = run.get("parameters") or {}
    over = [k for k in run.get("overrides") or [] if k in params]
    if over:  # only what was set up front; every value is under Details
        doc.html.append('<p id="overrides">You set: ' + ", ".join(
            f"<code>{html.escape(k)}={html.escape(str(params[k]))}</code>" for k in over) + "</p>")
        doc.md.append("You set: " + ", ".join(f"`{k}={params[k]}`" for k in over) + "\n")
    elif params:
        doc.p("Every parameter had its default (all of them are under Details).")

    glance = [(ws / "eval" / "eval.png", "evaluation scores", "eval/eval.png"),
              (ws / "eval" / "retention.png", "retention matrix", "eval/retention.png"),
              (ws / "train" / "loss.png", "training loss curve", "train/loss.png")]
    if any(p.is_file() for p, _, _ in glance):
        doc.html.append('<div id="glance">')
        for path, alt, rel in glance:
            if path.is_file():
                doc.image(path, alt, rel)
        doc.html.append("</div>")

    doc.h("Evaluation: base vs tuned")
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
        extra = sorted({k for r in rows for k in r} - set(cols) - {"filter", "higher_is_better", "n", "benchmark"})
        if rows:
            doc.table(cols + extra, [[r.get(c) for c in cols + extra] for r in rows], classes={6: True})
        else:
            doc.p("The comparison holds no rows.", "missing")
        variants = [str(n) for n in comp.get("local_variants") or []]
        if variants:  # offline local variants that differ from lm-eval's task: said, never hidden
            doc.p("Offline local variants (not lm-eval's own tasks): " + "; ".join(variants), "variant")
        retention = comp.get("retention")
        if isinstance(retention, Mapping):
            doc.h("Retention: earlier versions' held-out sets", 3)
            doc.p(f"{retention.get('metric')}. Gate {str(retention.get('gate')).upper()}: largest forgetting "
                  f"{_fmt(retention.get('worst_forgetting'))} on {retention.get('worst_set') or '-'} (allowed "
                  f"{_fmt(retention.get('max_forgetting'))}); backward transfer "
                  f"{_fmt(retention.get('backward_transfer'))} (< 0 = forgot).")
            doc.table(["held-out set", "rows", "at acceptance", "parent", "tuned", "forgetting"],
                      [[s_.get("set"), s_.get("rows"), s_.get("at_acceptance"), s_.get("parent"), s_.get("tuned"),
                        s_.get("forgetting")] for s_ in retention.get("sets") or [] if isinstance(s_, Mapping)])
    else:
        _missing(doc, run, "evaluate", "eval/comparison.json")

    doc.h("Training")
    loss_png = ws / "train" / "loss.png"
    if isinstance(metrics, Mapping):
        doc.p(", ".join(f"{k.replace('_', ' ')} {_fmt(metrics[k])}" for k in
                        ("first_loss", "final_loss", "min_loss", "steps", "samples", "wall_time_s") if k in metrics))
    if not isinstance(metrics, Mapping) and not loss_png.is_file():
        _missing(doc, run, "train", "train/metrics.json and train/loss.png")

    doc.h("Details")
    doc.h("Steps", 3)
    _steps_table(doc, run, ws)
    if isinstance(metrics, Mapping):
        doc.h("Training metrics", 3)
        doc.table(["metric", "value"], _flatten({k: v for k, v in metrics.items() if not isinstance(v, list)}))
    _record_section(doc, run, ws, "Dataset", "dataset/summary.json", "dataset", 3)
    _record_section(doc, run, ws, "Registration", "registry/registration.json", "register", 3)
    if (ws / "publish" / "publish.json").is_file():
        _record_section(doc, run, ws, "Publication", "publish/publish.json", "publish", 3)
    doc.h("All parameters", 3)
    if params:
        doc.table(["name", "value", "set by"], [[k, v, "-p override" if k in over else "template default"]
                                                for k, v in params.items()])
    else:
        doc.p("Not available (run.json missing).", "missing")
    if run.get("notes"):
        doc.h("Notes", 3)
        for note in run["notes"]:
            doc.p(note)

    body = "\n".join(doc.html)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
    html_path, md_path = ws / "report.html", ws / "report.md"
    html_path.write_text(scrub(page, secrets), encoding="utf-8")
    md_path.write_text(scrub("\n".join(doc.md).lstrip() + "\n", secrets), encoding="utf-8")
    return html_path, md_path
