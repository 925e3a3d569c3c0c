"""The evaluate step: offline lm-eval tasks, held-out scoring, base-vs-tuned comparison, gate and cache."""

import json
from pathlib import Path

import pytest

from steps import evaluate
from steps.common.errors import StepError
from steps.evaluate import report as eval_report
from steps.evaluate import task_plan
from tests.tiny_assets import build_tiny_model, chat_rows, write_jsonl

DATA = Path(__file__).parent / "data" / "eval_tasks"


def _row(task: str, metric: str, value: float | None, stderr: float | None, hib: bool = True) -> dict:
    return {"task": task, "metric": metric, "filter": "none", "value": value, "stderr": stderr, "n": 100,
            "higher_is_better": hib, "is_group": False, "role": "x", "model": "m"}


# ---------------------------------------------------------------- pure logic on crafted numbers


def test_verdicts_on_crafted_pairs() -> None:
    base = [_row("arc_easy", "acc", 0.50, 0.02), _row("arc_easy", "acc_norm", 0.50, 0.02),
            _row("arc_easy", "other", 0.50, 0.02), _row("held_out", "token_perplexity", 10.0, None, hib=False),
            _row("held_out", "bits_per_byte", 2.0, None, hib=False), _row("only_base", "acc", 0.3, 0.01)]
    tuned = [_row("arc_easy", "acc", 0.60, 0.02), _row("arc_easy", "acc_norm", 0.47, 0.02),
             _row("arc_easy", "other", 0.40, 0.02), _row("held_out", "token_perplexity", 5.0, None, hib=False),
             _row("held_out", "bits_per_byte", 2.5, None, hib=False), _row("only_tuned", "acc", 0.3, 0.01)]
    rows = {(r["task"], r["metric"]): r for r in eval_report.compare(base, tuned)}
    assert set(rows) == {("arc_easy", "acc"), ("arc_easy", "acc_norm"), ("arc_easy", "other"),
                         ("held_out", "token_perplexity"), ("held_out", "bits_per_byte")}
    acc = rows["arc_easy", "acc"]
    assert acc["delta"] == pytest.approx(0.10) and acc["stderr"] == pytest.approx(0.02 * 2**0.5)
    assert acc["verdict"] == eval_report.IMPROVED
    assert rows["arc_easy", "acc_norm"]["verdict"] == eval_report.REGRESSED      # -0.03 beyond 0.028
    assert rows["arc_easy", "other"]["verdict"] == eval_report.REGRESSED
    assert rows["held_out", "token_perplexity"]["verdict"] == eval_report.IMPROVED  # lower is better
    assert rows["held_out", "bits_per_byte"]["verdict"] == eval_report.REGRESSED
    assert eval_report.verdict(-0.02, 0.03, True) == eval_report.UNCHANGED
    assert eval_report.verdict(0.0, None, False) == eval_report.UNCHANGED

    status, failures = eval_report.gate(list(rows.values()), ["arc_easy"], max_regression=0.05)
    assert status == "fail" and [(f["metric"], round(f["drop"], 6)) for f in failures] == [("other", 0.1)]
    assert eval_report.gate(list(rows.values()), ["arc_easy"], max_regression=0.2)[0] == "pass"
    # held-out rows and tasks not requested never fail the gate
    assert eval_report.gate(list(rows.values()), ["held_out"], max_regression=0.0)[0] == "pass"
    table = eval_report.markdown_table(list(rows.values()), status, 0.05, ["arc_easy"])
    assert "| arc_easy | other | none | 0.5000 | 0.4000 | -0.1000 |" in table and "held_out" not in table.split("(")[0]
    assert "gate: **fail**" in table


def test_flatten_keeps_lm_eval_metric_names() -> None:
    res = {"results": {"arc_easy": {"alias": "arc_easy", "acc,none": 0.25, "acc_stderr,none": 0.1,
                                    "acc_norm,none": 0.5, "acc_norm_stderr,none": "N/A"},
                       "grp": {"acc,none": 0.4, "acc_stderr,none": 0.05, "alias": "grp"},
                       "grp::a": {"acc,none": 0.4, "acc_stderr,none": 0.05}},
           "group_subtasks": {"grp": ["grp::a"]},
           "n-samples": {"arc_easy": {"original": 570, "effective": 4}, "grp::a": {"original": 9, "effective": 3}},
           "higher_is_better": {"arc_easy": {"acc": True, "acc_norm": True}}}
    rows = eval_report.flatten(res, "tuned", "/m")
    by = {(r["task"], r["metric"]): r for r in rows}
    assert set(by) == {("arc_easy", "acc"), ("arc_easy", "acc_norm"), ("grp", "acc"), ("grp::a", "acc")}
    assert by["arc_easy", "acc"] | {} == {"task": "arc_easy", "metric": "acc", "filter": "none", "value": 0.25,
                                          "stderr": 0.1, "n": 4, "higher_is_better": True, "is_group": False,
                                          "role": "tuned", "model": "/m"}
    assert by["arc_easy", "acc_norm"]["stderr"] is None
    assert by["grp", "acc"]["is_group"] and by["grp", "acc"]["n"] == 3


BUILTIN_YAML = {"arc_easy": "arc/arc_easy.yaml", "arc_challenge": "arc/arc_challenge.yaml", "piqa": "piqa/piqa.yaml",
                "sciq": "sciq/sciq.yaml", "gsm8k": "gsm8k/gsm8k.yaml", "hellaswag": "hellaswag/hellaswag.yaml",
                "mmlu": "mmlu/default/_default_template_yaml"}


def _builtin(task: str) -> dict:
    import lm_eval

    return task_plan.read_task_yaml(Path(lm_eval.__file__).parent / "tasks" / BUILTIN_YAML[task])


def _ours(task: str) -> dict:
    path = evaluate.local_tasks()[task].yaml_path
    return task_plan.read_task_yaml(evaluate.TASK_DIR / "_mmlu_template_yaml" if task == "mmlu" else path)


def test_every_local_variant_is_compared() -> None:
    assert set(evaluate.local_tasks()) == set(BUILTIN_YAML)


@pytest.mark.parametrize("task", sorted(BUILTIN_YAML))
def test_local_yaml_keeps_lm_eval_prompts_and_metrics(task: str) -> None:
    keys = ("output_type", "doc_to_text", "doc_to_target", "doc_to_choice", "metric_list", "filter_list",
            "generation_kwargs", "num_fewshot", "target_delimiter", "fewshot_config", "description")
    mine, theirs = _ours(task), _builtin(task)
    assert {k: mine.get(k) for k in keys} == {k: theirs.get(k) for k in keys}


def _scored_split(cfg: dict) -> str | None:
    return cfg.get("test_split") or cfg.get("validation_split")  # lm-eval scores test when it has one


def _fewshot_split(cfg: dict) -> str | None:
    # lm-eval's few-shot source: fewshot_split, else training, else validation, else test docs
    return cfg.get("fewshot_split") or cfg.get("training_split") or cfg.get("validation_split") or cfg.get("test_split")


@pytest.mark.parametrize("task", sorted(BUILTIN_YAML))
def test_local_variant_keeps_lm_evals_name_only_on_the_same_splits(task: str) -> None:
    """A variant that scores lm-eval's split (and takes few-shot examples from lm-eval's split, when it uses any)
    keeps lm-eval's name; any other is reported as <task>@<what differs>, never under lm-eval's name."""
    mine, theirs = _ours(task), _builtin(task)
    sources = evaluate.task_sources(evaluate.local_tasks()[task].yaml_path)
    scored, fewshot = _scored_split(mine), _fewshot_split(mine)
    assert all(scored in kw["splits"] for kw in sources)  # the loader provides the split that is scored
    uses_fewshot = bool(theirs.get("num_fewshot")) or theirs.get("fewshot_config") is not None
    if uses_fewshot:
        assert all(fewshot in kw["splits"] for kw in sources)
    name = evaluate.local_tasks()[task].name
    if scored != _scored_split(theirs):
        assert name == f"{task}@{scored}"
    elif uses_fewshot and fewshot != _fewshot_split(theirs):
        assert name == f"{task}@fewshot-from-{fewshot}"
    else:
        assert name == task
    assert bool(evaluate.local_tasks()[task].note) is (name != task)


def test_mmlu_local_lists_every_lm_eval_subject() -> None:
    import lm_eval

    builtin = sorted(p.stem.removeprefix("mmlu_") for p in
                     (Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default").glob("mmlu_*.yaml"))
    sources = evaluate.task_sources(evaluate.TASK_DIR / "mmlu.yaml")
    assert sorted(s["local_path"].rsplit("/", 1)[1] for s in sources) == builtin


# ---------------------------------------------------------------- errors raised before any model is loaded


@pytest.fixture()
def no_lm_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*_a: object, **_k: object) -> dict:
        raise AssertionError("lm-eval must not run")

    monkeypatch.setattr(evaluate, "_run_lm_eval", boom)


def test_missing_task_data_is_a_clear_error_before_model_load(workspace: Path, tiny_model: Path, tmp_path: Path,
                                                              no_lm_eval: None) -> None:
    with pytest.raises(StepError, match=r"no local data for task 'arc_easy'.*looked in .*empty/ai2_arc/ARC-Easy"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), tasks=["arc_easy"],
                                data_dir=str(tmp_path / "empty"))
    with pytest.raises(StepError, match=r"no local data for task 'gsm8k'.*oe_eval_tasks/gsm8k"):
        evaluate.evaluate_model(str(workspace), model="/no/such/model", tasks=["gsm8k"], data_dir=str(tmp_path))
    assert not (workspace / "eval").exists()


def test_bad_input_errors(workspace: Path, tiny_model: Path, no_lm_eval: None) -> None:
    with pytest.raises(StepError, match=r"\['arc_eazy'\] have no offline variant.*arc_easy"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), tasks=["arc_eazy"], data_dir=str(DATA))
    with pytest.raises(StepError, match="no trained model"):
        evaluate.evaluate_model(str(workspace), tasks=["arc_easy"], data_dir=str(DATA))
    with pytest.raises(StepError, match="batch_size"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), batch_size="lots")
    with pytest.raises(StepError, match="not key=value"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), model_args="max_length", data_dir=str(DATA))
    with pytest.raises(StepError, match="must not set pretrained"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), model_args="pretrained=x", data_dir=str(DATA))
    with pytest.raises(StepError, match="nothing to evaluate"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), tasks=[], data_dir=str(DATA))


# ---------------------------------------------------------------- real lm-eval runs on the tiny model


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same tokenizer as tiny_model, different random weights: every metric differs from the 'tuned' one."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-base"), seed=1)


@pytest.mark.slow
def test_base_vs_tuned_report_gate_cache_and_model_args(workspace: Path, tiny_model: Path, base_model: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    long_answer = {"messages": [{"role": "user", "content": "Tell me everything."},
                                {"role": "assistant", "content": " ".join(["the red cat"] * 60)}]}
    write_jsonl(workspace / "dataset" / "eval.jsonl", chat_rows(6) + [long_answer])
    runs: list[tuple[str, list[str]]] = []
    real = evaluate._run_lm_eval

    def counting(model: str, tasks: list[str], **kw: object) -> dict:
        runs.append((kw["role"], list(tasks)))
        return real(model, tasks, **kw)

    monkeypatch.setattr(evaluate, "_run_lm_eval", counting)
    kwargs = dict(model=str(tiny_model), base_model=str(base_model), tasks=["arc_easy"], limit=4, batch_size="4",
                  data_dir=str(DATA), model_args="max_length=96", max_regression=0.02)
    out = evaluate.evaluate_model(str(workspace), log_samples=True, **kwargs)

    ev = workspace / "eval"
    arc = "arc_easy@validation"  # offline, ARC scores its validation split: reported under its own name
    assert runs == [("tuned", [arc, "held_out"]), ("base", [arc, "held_out"])]
    assert out["held_out"]["tuned"] == {"scored": 6, "dropped_too_long": 1}
    assert out["tasks"] == [arc, "held_out"] and out["backend"] == "hf"
    assert out["task_names"] == {"arc_easy": arc} and "validation split" in out["local_variants"][0]
    res = json.loads((ev / "results.json").read_text())
    assert set(res["results"]) == {arc, "held_out"} and "samples" not in res
    assert res["n-samples"][arc]["effective"] == 4 and res["n-samples"]["held_out"]["effective"] == 4
    assert res["config"]["model_args"]["max_length"] == 96 and res["config"]["batch_size"] == 4
    assert res["configs"][arc]["metadata"]["local_variant_of"] == "arc_easy"
    metrics = json.loads((ev / "metrics.json").read_text())
    keys = {(r["role"], r["task"], r["metric"]) for r in metrics}
    assert {("tuned", arc, "acc"), ("base", arc, "acc_norm"), ("tuned", "held_out", "token_perplexity"),
            ("base", "held_out", "bits_per_byte")} <= keys
    assert all(r["n"] == 4 for r in metrics)
    comp = json.loads((ev / "comparison.json").read_text())
    assert comp["gate"] == out["gate"] == eval_report.gate(comp["rows"], [arc], 0.02)[0]
    assert comp["task_names"] == {"arc_easy": arc} and comp["local_variants"] == out["local_variants"]
    table = (ev / "comparison.md").read_text()
    assert f"| {arc} | acc |" in table and "Offline local variants" in table and out["local_variants"][0] in table
    assert f"arc_easy runs offline as the local variant {arc}" in (workspace / "pipeline_log.txt").read_text()
    ppl = next(r for r in comp["rows"] if r["metric"] == "token_perplexity")
    assert ppl["delta"] != 0 and ppl["verdict"] == (eval_report.IMPROVED if ppl["delta"] < 0 else eval_report.REGRESSED)
    assert "| held_out | token_perplexity |" in (ev / "comparison.md").read_text()
    samples = [json.loads(line) for line in (ev / "samples.jsonl").read_text().splitlines()]
    assert {(s["role"], s["task"]) for s in samples} == {(r, t) for r in ("tuned", "base") for t in (arc, "held_out")}
    assert (ev / "eval.png").read_bytes()[:4] == b"\x89PNG"

    runs.clear()  # second run: base comes from the workspace cache, samples are not asked for
    again = evaluate.evaluate_model(str(workspace), **kwargs)
    assert runs == [("tuned", [arc, "held_out"])]
    assert again["base_cached"] == [arc, "held_out"]
    assert json.loads((ev / "comparison.json").read_text())["rows"] == comp["rows"]
    assert not (ev / "samples.jsonl").exists()

    runs.clear()  # a different limit is a different cache key
    evaluate.evaluate_model(str(workspace), **{**kwargs, "limit": 3})
    assert [r for r, _ in runs] == ["tuned", "base"]


@pytest.mark.slow
def test_empty_eval_split_is_information_not_an_error(workspace: Path, tiny_model: Path) -> None:
    write_jsonl(workspace / "dataset" / "eval.jsonl", [])
    out = evaluate.evaluate_model(str(workspace), model=str(tiny_model), tasks=["arc_easy"], limit=2,
                                  batch_size="auto", data_dir=str(DATA))
    assert out["gate"] == "n/a" and out["held_out"]["status"] == "empty" and out["tasks"] == ["arc_easy@validation"]
    assert out["comparison_path"] == "" and not (workspace / "eval" / "comparison.json").exists()
    res = json.loads((workspace / "eval" / "results.json").read_text())
    assert res["config"]["batch_size"] == evaluate.CPU_BATCH  # auto on CPU -> fixed
    assert "empty" in (workspace / "pipeline_log.txt").read_text()


def test_cli_splits_task_lists_and_reports_errors(workspace: Path, tiny_model: Path, no_lm_eval: None) -> None:
    from typer.testing import CliRunner

    from workflows.cli import app

    result = CliRunner().invoke(app, ["step", "evaluate", "--workspace", str(workspace), "--model", str(tiny_model),
                                      "--tasks", "arc_easy,nope", "--data-dir", str(DATA)])
    assert result.exit_code == 2
    assert "['nope'] have no offline variant" in result.output


@pytest.mark.parametrize("limit", [-1, 0])
def test_limit_minus_one_and_zero_mean_every_document(limit: int, workspace: Path, tiny_model: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """-1 is upstream's "all"; 0 keeps meaning all too. lm-eval is then called without a limit."""
    import lm_eval

    seen: dict[str, object] = {}

    def fake_evaluate(**kw: object) -> dict:
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(lm_eval, "simple_evaluate", fake_evaluate)
    with pytest.raises(StepError, match="stop here"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), tasks=["arc_easy"], limit=limit,
                                data_dir=str(DATA))
    assert seen["limit"] is None
    with pytest.raises(StepError, match=r"limit=-2: must be -1 \(every document\)"):
        evaluate.evaluate_model(str(workspace), model=str(tiny_model), limit=-2)
