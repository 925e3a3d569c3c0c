"""The run report: sections, tolerant readers, masking, and a headless-browser rendering check."""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from workflows.local.report import build_report

SECRET = "mr_token_ABCDEF123456"


def _png(path: Path, values: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot(values)
    fig.savefig(path, dpi=40)
    plt.close(fig)


def _run_json(ws: Path, phases: dict[str, str], **wf: object) -> None:
    tasks = {n: {"name": n, "template": n, "phase": p, "duration_s": 1.5, "exit_code": 0 if p == "Succeeded" else 1,
                 "peak_rss_mb": 100.0, "message": "" if p == "Succeeded" else f"{n} message", "reused": False,
                 "log": f"logs/{n}.log"}
             for n, p in phases.items()}
    run = {"workflow": {"name": "wf-1", "phase": "Succeeded", "duration_s": 7.0, **wf},
           "parameters": {"phase_01_dataset_opt_hf_token": "***", "phase_02_train_man_train_epochs": "2"},
           "overrides": ["phase_02_train_man_train_epochs"], "order": list(phases), "tasks": tasks,
           "exit_handler": None}
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "run.json").write_text(json.dumps(run))


@pytest.fixture()
def full_ws(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    _run_json(ws, {"dataset": "Succeeded", "train": "Succeeded", "evaluate": "Succeeded", "register": "Succeeded"})
    (ws / "dataset").mkdir()
    (ws / "dataset" / "summary.json").write_text(json.dumps(
        {"source": f"https://user:{SECRET}@host/data.jsonl", "rows": 40, "train": {"rows": 36}, "eval": {"rows": 4}}))
    _png(ws / "train" / "loss.png", [3, 2, 1.5, 1.2])
    (ws / "train" / "metrics.json").write_text(json.dumps({"final_loss": 1.2, "steps": 4, "losses": [3, 2]}))
    (ws / "eval").mkdir()
    (ws / "eval" / "comparison.json").write_text(json.dumps({"gate": "fail", "max_regression": 0.02, "local_variants": [
        "arc_easy runs offline as the local variant arc_easy@validation: scores the validation split"], "rows": [
        {"task": "arc_easy@validation", "metric": "acc", "base": 0.5, "tuned": 0.45, "delta": -0.05,
         "verdict": "regressed"},
        {"task": "held_out", "metric": "loss", "base": 2.0, "tuned": 1.5, "delta": -0.5, "stderr": 0.1,
         "verdict": "improved", "note": "extra"}, "not-a-row"]}))
    _png(ws / "eval" / "eval.png", [0.5, 0.45])
    (ws / "registry").mkdir()
    (ws / "registry" / "registration.json").write_text(json.dumps(
        {"status": "skipped", "model_id": "7", "version": "1.0.0", "token_echo": SECRET}))
    ckpt = ws / "train" / "run-abc" / "hf_format" / "samples_64.0"
    ckpt.mkdir(parents=True)
    (ws / "train" / "model").symlink_to("run-abc/hf_format/samples_64.0")
    (ws / "logs").mkdir()
    (ws / "logs" / "train.log").write_text("step 1 loss 3\n")
    return ws


def test_report_has_every_section_and_no_secret(full_ws: Path) -> None:
    html_path, md_path = build_report(full_ws, secrets=(SECRET,))
    page, md = html_path.read_text(), md_path.read_text()
    for text in ("Evaluation: base vs tuned", "Training", "Details"):
        assert f"<h2>{text}</h2>" in page and f"## {text}" in md
    for text in ("Steps", "Training metrics", "Dataset", "Registration", "All parameters"):
        assert f"<h3>{text}</h3>" in page and f"### {text}" in md
    assert SECRET not in page and SECRET not in md
    assert "https://***@host/data.jsonl" in md  # credentials in URIs redacted
    assert page.count("data:image/png;base64,") == 2 and "](train/loss.png)" in md
    assert '<td class="regressed">regressed</td>' in page and "Gate: FAIL" in md
    assert "| arc_easy@validation | acc | 0.5 | 0.45 | -0.05 |  | regressed |  |" in md  # missing stderr tolerated
    variant = "arc_easy runs offline as the local variant arc_easy@validation: scores the validation split"
    assert variant in md  # an offline variant is said so in the report, in both formats
    assert f'<p class="variant">Offline local variants (not lm-eval&#x27;s own tasks): {variant}' in page
    assert "| stderr | verdict | note |" in md  # extra key kept as a column
    assert "| phase_01_dataset_opt_hf_token | *** | template default |" in md
    assert "| phase_02_train_man_train_epochs | 2 | -p override |" in md
    assert "<script" not in page and "http" not in page.split("<body>")[0]  # self-contained
    assert '<td><a href="logs/train.log">log</a></td>' in page and "[log](logs/train.log)" in md


def test_missing_sections_say_why(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    _run_json(ws, {"dataset": "Succeeded", "train": "Failed", "evaluate": "Omitted"}, phase="Failed",
              error="step 'train' failed (exit 1): boom")
    md = build_report(ws)[1].read_text()
    assert "Error: step 'train' failed (exit 1): boom" in md
    assert "dataset/summary.json missing): step 'dataset' Succeeded." in md
    assert "train/metrics.json and train/loss.png missing): step 'train' Failed (train message)" in md
    assert "eval/comparison.json missing): step 'evaluate' Omitted (not run: the steps it depends on did not " \
           "succeed)" in md
    assert "registry/registration.json missing): no such step in this run" in md
    first = md.splitlines()[2]  # the line under the title answers first
    assert first == ("**FAILED at step train** · train message; fix it, then resume: osft-pipeline run "
                     "--from-step train · model: none: the run stopped before training ended")


CHECK_JS = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  document.body.setAttribute('data-check', JSON.stringify({
    tables: document.querySelectorAll('table').length,
    cells: [...document.querySelectorAll('td')].map(td => td.textContent),
    h2: [...document.querySelectorAll('h2')].map(h => h.textContent),
    viewport: [window.innerWidth, window.innerHeight],
    fold: ['verdict', 'model', 'load'].map(id => {
      const r = document.getElementById(id).getBoundingClientRect();
      return {id: id, top: r.top, bottom: r.bottom, width: r.width};
    }),
    images: imgs.map(i => ({alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
                            shown: i.getBoundingClientRect().width})),
    gateColor: getComputedStyle(document.getElementById('gate')).color}));
});
</script></body>"""


def test_report_renders_in_headless_chromium(full_ws: Path, tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium); `make test` installs it")
    html_path, _ = build_report(full_ws)
    probe = tmp_path / "probe.html"  # the report plus a probe script; the report itself has no script
    probe.write_text(html_path.read_text().replace("</body>", CHECK_JS))
    proc = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                           "--window-size=1280,720",
                           probe.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"data-check=\"([^\"]*)\"", proc.stdout)
    assert m, proc.stdout[:2000]
    check = json.loads(html.unescape(m.group(1)))
    assert check["tables"] >= 5
    assert {"Training", "Evaluation: base vs tuned", "Details"} <= set(check["h2"])
    assert "regressed" in check["cells"] and "arc_easy@validation" in check["cells"]
    assert [i["alt"] for i in check["images"]] == ["evaluation scores", "training loss curve"]
    for img in check["images"]:  # base64 PNGs decoded and laid out
        assert img["complete"] and img["w"] > 50 and img["h"] > 30 and img["shown"] > 50
    assert check["gateColor"] == "rgb(179, 38, 30)"  # inline CSS applied (fail = red)
    # the verdict, the model's location and how to load it are on the first screen, without scrolling
    width, height = check["viewport"]  # a 1280x720 window (headless Chromium's page area is a bit smaller)
    assert width == 1280 and 500 <= height <= 720
    for box in check["fold"]:
        assert box["width"] > 0 and box["top"] >= 0 and box["bottom"] <= height, (box, height)


def test_the_first_line_answers_verdict_deltas_model_and_how_to_load_it(full_ws: Path) -> None:
    md = build_report(full_ws)[1].read_text()
    first = md.splitlines()[2]
    model = (full_ws / "train" / "run-abc" / "hf_format" / "samples_64.0").resolve()
    assert first == (
        "**GATE FAILED: a benchmark regressed** · arc_easy@validation acc 0.5 → 0.45 (regressed); held_out loss 2 → "
        f"1.5 (improved); final loss 1.2 · model: `{model}` · load: "
        f"`AutoModelForCausalLM.from_pretrained(\"{model}\")`")


def test_the_model_is_the_durable_uri_when_there_is_one(full_ws: Path) -> None:
    (full_ws / "registry" / "registration.json").write_text(json.dumps(
        {"status": "registered", "uri": "pvc://wf-1-workspace/train/run-abc/hf_format/samples_64.0"}))
    assert "model: `pvc://wf-1-workspace/train/run-abc/hf_format/samples_64.0`" in build_report(full_ws)[1].read_text()
    (full_ws / "publish").mkdir()
    (full_ws / "publish" / "publish.json").write_text(json.dumps({"uri": "s3://models/osft/1.0.0/"}))
    first = build_report(full_ws)[1].read_text().splitlines()[2]
    assert "model: `s3://models/osft/1.0.0/` · load: `aws s3 sync s3://models/osft/1.0.0/ model/ && " \
           "AutoModelForCausalLM.from_pretrained(\"model\")`" in first


def test_no_template_expression_reaches_the_prose_and_only_overrides_come_first(full_ws: Path) -> None:
    run = json.loads((full_ws / "run.json").read_text())
    run["tasks"]["register"].update(phase="Skipped", message="when \"'' != ''\" is false")
    run["tasks"]["train-trainjob"] = {"name": "train-trainjob", "template": "train-trainjob", "phase": "Skipped",
                                      "message": "when \"'single' == 'trainjob'\" is false"}
    run["order"].append("train-trainjob")
    (full_ws / "run.json").write_text(json.dumps(run))
    html_path, md_path = build_report(full_ws)
    page, md = html_path.read_text(), md_path.read_text()
    assert "skipped: no registry address (phase_04_registry_man_address is empty)" in md
    assert "skipped: one worker (phase_02_train_man_train_workers=1), so the train step ran instead" in md
    for text in (page, md):
        assert "'' != ''" not in text and "{{" not in text and "== 'trainjob'" not in text
    assert md.splitlines()[4] == "You set: `phase_02_train_man_train_epochs=2`"  # overrides only, up front
    assert "| phase_01_dataset_opt_hf_token | *** | template default |" in md  # every value under Details
