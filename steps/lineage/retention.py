"""Retention: did a continuing run forget what earlier versions learned? Pure functions over numbers.

Every accepted version keeps its held-out split. A continuing run scores its parent (the model it started from)
and the tuned model on every ancestor's held-out set and on its own. The score is the held-out **loss**: the
mean negative log-likelihood, in nats per token, of each conversation's final assistant turn (lm-eval's
``held_out`` task; ``ln(token_perplexity)``); lower is better.

- **forgetting** on an earlier set = tuned loss − parent loss (> 0: the run made that set worse);
  the gate fails when the largest forgetting exceeds ``max_forgetting``.
- the **retention matrix** R[j][i] = loss of accepted version j on version i's held-out set (rows = versions in
  lineage order, columns = held-out sets; a version is scored on the sets that existed when it was accepted).
- **backward transfer** (Lopez-Paz & Ranzato, 2017) of the last version T: mean over earlier sets i of
  (R[i][i] − R[T][i]) in loss terms, i.e. how much better (> 0) or worse (< 0: forgetting) the newest version is
  on each earlier set than the version that learned it was when it was accepted.
"""

import math
from pathlib import Path
from typing import Any

THIS_RUN = "(this run)"
METRIC = "held-out loss (nats/token, lower is better)"


def held_out_loss(rows: list[dict[str, Any]]) -> float | None:
    """The held-out loss from flattened lm-eval rows of the ``held_out`` task (ln of token_perplexity)."""
    for r in rows:
        if r.get("task") == "held_out" and r.get("metric") == "token_perplexity" and r.get("value"):
            value = float(r["value"])
            if value > 0 and math.isfinite(value):
                return round(math.log(value), 6)
    return None


def retention_table(ancestors: list[dict[str, Any]], measured: dict[str, dict[str, float | None]],
                    own: dict[str, float | None], own_rows: int, max_forgetting: float) -> dict[str, Any]:
    """The run's retention record (comparison.json's ``retention``).

    ``ancestors``: lineage/parent.json's list (version, rows, own_loss at acceptance, that version's ledger
    scores), oldest first; ``measured``: version -> {"parent": loss, "tuned": loss} scored now; ``own``: the
    parent's and tuned model's loss on this run's own held-out split.
    """
    sets = []
    for a in ancestors:
        v = str(a["version"])
        m = measured.get(v, {})
        p, t = m.get("parent"), m.get("tuned")
        sets.append({"set": v, "rows": a.get("rows"), "at_acceptance": a.get("own_loss"), "parent": p, "tuned": t,
                     "forgetting": _delta(t, p)})
    sets.append({"set": THIS_RUN, "rows": own_rows, "at_acceptance": None, "parent": own.get("parent"),
                 "tuned": own.get("tuned"), "learned": _delta(own.get("parent"), own.get("tuned"))})
    earlier = [s for s in sets if s["set"] != THIS_RUN]
    forgetting = [(s["forgetting"], s["set"]) for s in earlier if s["forgetting"] is not None]
    worst = max(forgetting) if forgetting else None
    unscored = [s["set"] for s in earlier if s["forgetting"] is None]
    if not earlier:
        gate = "n/a"
    elif unscored:
        gate = "fail"  # an earlier set that cannot be scored is not proof that nothing was forgotten
    else:
        gate = "fail" if worst is not None and worst[0] > max_forgetting + 1e-12 else "pass"
    matrix = matrix_rows(ancestors, {**{v: m.get("tuned") for v, m in measured.items()}, THIS_RUN: own.get("tuned")})
    return {
        "metric": METRIC, "sets": sets, "max_forgetting": max_forgetting,
        "worst_forgetting": worst[0] if worst else None, "worst_set": worst[1] if worst else None,
        "unscored": unscored, "gate": gate, "backward_transfer": backward_transfer(matrix),
        "matrix": matrix,
    }


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 6)


def matrix_rows(ancestors: list[dict[str, Any]], tuned: dict[str, float | None]) -> dict[str, Any]:
    """R[j][i] for the ancestors (their ledgers' scores) plus this run's tuned row."""
    versions = [str(a["version"]) for a in ancestors]
    sets = [*versions, THIS_RUN]
    values: list[list[float | None]] = []
    for a in ancestors:
        scores = a.get("scores") or {}
        values.append([_loss(scores.get(s)) for s in versions] + [None])
    values.append([tuned.get(s) for s in sets])
    return {"versions": [*versions, THIS_RUN], "sets": sets, "values": values}


def _loss(entry: Any) -> float | None:
    if isinstance(entry, dict) and isinstance(entry.get("loss"), int | float):
        return float(entry["loss"])
    return None


def backward_transfer(matrix: dict[str, Any]) -> float | None:
    """Mean over earlier sets i of R[i][i] − R[T][i] (losses: > 0 the last version is better there, < 0 forgot)."""
    values = matrix.get("values") or []
    if len(values) < 2:
        return None
    last = values[-1]
    diffs = [values[i][i] - last[i] for i in range(len(values) - 1)
             if values[i][i] is not None and last[i] is not None]
    return round(sum(diffs) / len(diffs), 6) if diffs else None


def ledger_scores(retention: dict[str, Any], version: str) -> dict[str, dict[str, float]]:
    """What the ledger of ``version`` records: its tuned loss on every held-out set (its own under its name)."""
    out: dict[str, dict[str, float]] = {}
    for s in retention.get("sets") or []:
        if s.get("tuned") is not None:
            out[version if s["set"] == THIS_RUN else str(s["set"])] = {"loss": float(s["tuned"])}
    return out


def matrix_from_ledgers(ledgers: list[dict[str, Any]]) -> dict[str, Any]:
    """The lineage's retention matrix from its ledgers (oldest first): rows = versions, columns = their sets."""
    versions = [str(d["version"]) for d in ledgers]
    values = [[_loss((d.get("scores") or {}).get(v)) for v in versions] for d in ledgers]
    return {"versions": versions, "sets": versions, "values": values}


def plot_matrix(path: Path, matrix: dict[str, Any], title: str) -> None:
    """A heat map of the retention matrix (green = low loss, red = high; '—' where a version never saw a set)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows, cols = matrix["versions"], matrix["sets"]
    data = np.array([[np.nan if v is None else v for v in row] for row in matrix["values"]], dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols), 1.2 + 0.7 * len(rows)))
    masked = np.ma.masked_invalid(data)
    im = ax.imshow(masked, cmap="RdYlGn_r", aspect="auto")
    ax.set_xticks(range(len(cols)), [f"held-out of\n{c}" for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_xlabel("held-out set")
    ax.set_ylabel("accepted version")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, "—" if math.isnan(data[i, j]) else f"{data[i, j]:.3f}", ha="center", va="center",
                    fontsize=9)
    fig.colorbar(im, ax=ax, label="loss (nats/token)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _f(v: float | None, sign: bool = False) -> str:
    if v is None:
        return "—"
    return f"{v:+.4f}" if sign else f"{v:.4f}"


def markdown(retention: dict[str, Any]) -> str:
    """The retention table of one run (task = held-out set × version) and its verdict, as Markdown."""
    lines = [f"### Retention: {METRIC}", "",
             f"Gate **{retention.get('gate')}**: largest forgetting "
             f"{_f(retention.get('worst_forgetting'), True)} on {retention.get('worst_set') or '—'} "
             f"(allowed {retention.get('max_forgetting')}); backward transfer "
             f"{_f(retention.get('backward_transfer'), True)} (< 0 = forgot)", "",
             "| held-out set | rows | at acceptance | parent | tuned | change |", "|---|---|---|---|---|---|"]
    for s in retention.get("sets") or []:
        change = s.get("forgetting") if s["set"] != THIS_RUN else _delta(s.get("tuned"), s.get("parent"))
        lines.append(f"| {s['set']} | {s.get('rows') or 0} | {_f(s.get('at_acceptance'))} | {_f(s.get('parent'))} | "
                     f"{_f(s.get('tuned'))} | {_f(change, True)} |")
    return "\n".join(lines) + "\n"
