"""The loop's report from a lineage store (make loop): the retention matrix, backward transfer, the verdict first."""

import json
from pathlib import Path

from steps.lineage.store import LEDGER, LEDGER_FORMAT, POINTER, open_lineage
from workflows.local.loop import MODEL_NAME, STORAGE_URI, lineage_report

# held-out loss of each version (rows) on each version's held-out set (columns), as each ledger records it
SCORES = {"a-run": {"a-run": 3.0}, "b-run": {"a-run": 3.2, "b-run": 2.5}, "c-run": {"a-run": 2.8, "b-run": 2.9,
                                                                                  "c-run": 2.0}}


def _store(mount: Path, scores_of: dict[str, dict[str, float]]) -> None:
    """Three accepted versions a-run -> b-run -> c-run, the pointer on c-run (what three loop runs leave)."""
    lineage = open_lineage(STORAGE_URI, MODEL_NAME, str(mount))
    chain: list[str] = []
    for version, scores in scores_of.items():
        chain.append(version)
        ledger = {"format": LEDGER_FORMAT, "version": version, "parent": chain[-2] if len(chain) > 1 else "",
                  "chain": list(chain), "run": f"wf-{version}", "scores": {k: {"loss": v} for k, v in scores.items()},
                  "worst_forgetting": 0.2 if version == "b-run" else 0.0, "rows": {"train": 32, "heldout": 8}}
        lineage.write(f"{version}/{LEDGER}", json.dumps(ledger).encode())
    lineage.write(POINTER, json.dumps({"version": "c-run"}).encode())


def _slice_runs(tmp_path: Path) -> list[dict]:
    runs = []
    for version, topic in zip(SCORES, ("ai", "a-long-topic-name", "emotion"), strict=True):
        ws = tmp_path / "runs" / version
        ws.mkdir(parents=True)
        (ws / "run.json").write_text(json.dumps({"workflow": {"name": f"wf-{version}"}}))
        runs.append({"slice": topic, "workspace": str(ws), "status": "succeeded", "seconds": 1.0, "report": ""})
    return runs


def test_the_report_shows_the_matrix_and_backward_transfer(tmp_path: Path) -> None:
    mount = tmp_path / "models"
    mount.mkdir()
    _store(mount, SCORES)
    out = lineage_report(mount, tmp_path / "loop-report.html", runs=_slice_runs(tmp_path))
    assert out["versions"] == ["a-run", "b-run", "c-run"]
    assert out["matrix"]["values"] == [[3.0, None, None], [3.2, 2.5, None], [2.8, 2.9, 2.0]]
    # mean over the earlier sets of (loss when learned - loss of the newest): ((3.0-2.8) + (2.5-2.9)) / 2
    assert abs(out["backward_transfer"] - (-0.1)) < 1e-9
    assert out["worst_forgetting"] == 0.2
    assert out["verdict"].startswith("3 accepted versions, backward transfer -0.1000")
    lines = out["text"].splitlines()
    header = lines[3]
    for label in ("v1 (ai)", "v2 (a-long-topic-name)", "v3 (emotion)"):  # whole, not cut to a column width
        assert label in header
    assert lines[6].split() == ["v3", "(emotion)", "2.8000", "2.9000", "2.0000"]
    assert len({len(line) for line in lines[3:7]}) == 1  # the columns line up
    page = (tmp_path / "loop-report.html").read_text()
    assert page.index('id="verdict"') < page.index('id="heatmap"') < page.index('id="matrix"')
    assert (tmp_path / "loop-retention.png").stat().st_size > 1000


def test_nothing_forgotten_is_the_verdict_when_backward_transfer_is_not_negative(tmp_path: Path) -> None:
    mount = tmp_path / "models"
    mount.mkdir()
    _store(mount, {**SCORES, "c-run": {"a-run": 2.9, "b-run": 2.4, "c-run": 2.0}})
    out = lineage_report(mount, tmp_path / "loop-report.html")
    assert out["verdict"] == "NOTHING FORGOTTEN: 3 accepted versions, backward transfer +0.1000 (≥ 0)"
