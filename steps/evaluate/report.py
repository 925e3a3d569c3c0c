"""Turn lm-eval result dicts into flat metric rows, a base-vs-tuned comparison, a gate, a table and a chart.

Pure functions over plain dicts (no model, no lm-eval run), so the verdict and gate logic can be
tested on crafted numbers. Metric names stay lm-eval's: ``metric`` + ``filter`` from ``"acc,none"``.
"""

import math
from pathlib import Path
from typing import Any

HELD_OUT = "held_out"
IMPROVED, UNCHANGED, REGRESSED = "improved", "unchanged within stderr", "regressed"


def _num(v: Any) -> float | None:
    """A finite float, or None for 'N/A', None, NaN and non-numbers."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def flatten(res: dict, role: str = "tuned", model: str = "") -> list[dict]:
    """One row per (task, metric, filter) in ``res["results"]``; stderr None when lm-eval has none."""
    rows = []
    n_samples = res.get("n-samples", {})
    subtasks = res.get("group_subtasks", {})
    hib_all = res.get("higher_is_better", {})
    for task, entry in res.get("results", {}).items():
        is_group = task in subtasks and bool(subtasks[task])
        if is_group:
            n = sum(n_samples.get(s, {}).get("effective", 0) for s in subtasks[task]) or None
        else:
            n = n_samples.get(task, {}).get("effective")
        for key, value in entry.items():
            if "," not in key:
                continue
            metric, filt = key.split(",", 1)
            if metric.endswith("_stderr"):
                continue
            hib = hib_all.get(task, {}).get(metric)
            rows.append({"task": task, "metric": metric, "filter": filt, "value": _num(value),
                         "stderr": _num(entry.get(f"{metric}_stderr,{filt}")), "n": n,
                         "higher_is_better": hib, "is_group": is_group, "role": role, "model": model})
    return rows


def verdict(delta: float, stderr: float | None, higher_is_better: bool | None) -> str:
    """improved / unchanged within stderr / regressed, from the tuned-minus-base delta."""
    if stderr is not None and abs(delta) <= stderr:
        return UNCHANGED
    if stderr is None and abs(delta) < 1e-12:
        return UNCHANGED
    better = delta > 0 if higher_is_better is not False else delta < 0
    return IMPROVED if better else REGRESSED


def compare(base_rows: list[dict], tuned_rows: list[dict]) -> list[dict]:
    """Per (task, metric, filter) in both: base, tuned, delta, combined stderr, verdict."""
    base = {(r["task"], r["metric"], r["filter"]): r for r in base_rows}
    out = []
    for t in tuned_rows:
        b = base.get((t["task"], t["metric"], t["filter"]))
        if b is None or b["value"] is None or t["value"] is None:
            continue
        delta = t["value"] - b["value"]
        errs = [e for e in (b["stderr"], t["stderr"]) if e is not None]
        stderr = math.sqrt(sum(e * e for e in errs)) if errs else None
        hib = t["higher_is_better"] if t["higher_is_better"] is not None else b["higher_is_better"]
        out.append({"task": t["task"], "metric": t["metric"], "filter": t["filter"], "base": b["value"],
                    "tuned": t["value"], "delta": delta, "stderr": stderr, "higher_is_better": hib,
                    "verdict": verdict(delta, stderr, hib), "n": t["n"], "benchmark": t["task"] != HELD_OUT})
    return out


def gate(rows: list[dict], top_tasks: list[str], max_regression: float) -> tuple[str, list[dict]]:
    """``fail`` when a benchmark metric of a requested task regressed (beyond stderr) by more than max_regression.

    The drop is in the metric's own units (0.02 = two accuracy points). Held-out rows and group
    members (e.g. single MMLU subjects) inform but never fail the gate.
    """
    failures = []
    for r in rows:
        if not r["benchmark"] or r["task"] not in top_tasks or r["verdict"] != REGRESSED:
            continue
        drop = -r["delta"] if r["higher_is_better"] is not False else r["delta"]
        if drop > max_regression:
            failures.append({**r, "drop": drop})
    return ("fail" if failures else "pass"), failures


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if abs(v) >= 1000 else f"{v:.4f}"


def markdown_table(rows: list[dict], gate_status: str, max_regression: float, tasks: list[str] | None = None,
                   notes: list[str] | None = None) -> str:
    """The comparison as a Markdown table plus the gate line; with ``tasks``, only those rows, in that order.

    ``notes`` (one line per offline local variant that differs from lm-eval's task) are listed under the table.
    """
    shown = rows
    if tasks is not None:
        shown = sorted((r for r in rows if r["task"] in tasks), key=lambda r: tasks.index(r["task"]))
    lines = ["| task | metric | filter | base | tuned | delta | ± stderr | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in shown:
        sign = "+" if r["delta"] > 0 else ""
        lines.append(f"| {r['task']} | {r['metric']} | {r['filter']} | {_fmt(r['base'])} | {_fmt(r['tuned'])} | "
                     f"{sign}{_fmt(r['delta'])} | {_fmt(r['stderr'])} | {r['verdict']} |")
    lines.append("")
    if len(shown) < len(rows):
        lines.append(f"({len(rows) - len(shown)} group-member rows, e.g. single MMLU subjects, are in comparison.json)")
    lines.append(f"gate: **{gate_status}** (max regression {max_regression} on benchmark tasks)")
    if notes:
        lines += ["", "Offline local variants (not lm-eval's own tasks):", *[f"- {n}" for n in notes]]
    return "\n".join(lines) + "\n"


def plot(path: Path, tuned_rows: list[dict], base_rows: list[dict], tasks: list[str]) -> None:
    """Bar chart per requested task: each metric, base vs tuned (tuned only without a base)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = [t for t in tasks if any(r["task"] == t and r["value"] is not None for r in tuned_rows)]
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(4.5 * max(len(tasks), 1), 3.6), squeeze=False)
    base = {(r["task"], r["metric"], r["filter"]): r["value"] for r in base_rows}
    for ax, task in zip(axes[0], tasks, strict=False):
        rows = [r for r in tuned_rows if r["task"] == task and r["value"] is not None]
        labels = [r["metric"] if r["filter"] == "none" else f"{r['metric']}\n{r['filter']}" for r in rows]
        xs = range(len(rows))
        if base_rows:
            ax.bar([x - 0.2 for x in xs], [base.get((task, r["metric"], r["filter"])) or 0 for r in rows],
                   width=0.4, label="base", color="#9aa5b1")
            ax.bar([x + 0.2 for x in xs], [r["value"] for r in rows], width=0.4, label="tuned", color="#2f6fb0")
            ax.legend(fontsize=7)
        else:
            ax.bar(list(xs), [r["value"] for r in rows], width=0.5, color="#2f6fb0")
        if any(r["metric"].endswith("perplexity") for r in rows):
            ax.set_yscale("log")
        ax.set_xticks(list(xs))
        ax.set_xticklabels(labels, fontsize=7)
        ax.set_title(task, fontsize=9)
    if not tasks:
        axes[0][0].set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)
