"""Step 2, train: OSFT through the real ``training_hub.osft(...)`` (mini-trainer backend).

Reads ``dataset/train.jsonl`` and writes under ``train/``:

    train/run-<config hash>/      training_hub's ckpt_output_dir (hf_format/samples_N.0/, training_metrics_0.jsonl,
                                  training_log_node0.log, training_params.json, run.json)
    train/model                   relative symlink (or pointer file) to the final checkpoint; weights are never copied
    train/metrics.json            final/min/per-epoch loss, steps, tokens, samples/s, wall time, hyper-parameters,
                                  sha256 of the training data (data_sha256)
    train/summary.json            its headline numbers only, size-bounded (Argo's output parameter)
    train/loss.png

Device paths: with CUDA the library runs as is (only ``torchrun`` is taken from this interpreter, not the PATH);
without CUDA the same call runs on CPU through :mod:`steps.train.cpu_launcher`.

Resume: the run folder is named by a hash of everything that shapes the result (model, data sha256,
hyper-parameters, device, world size). mini-trainer 0.9.0 can resume only from a *full-state* checkpoint
(model + optimizer + scheduler + RNG), which it writes when the pod receives SIGTERM (preemption, Argo
stop) with ``enable_jit_checkpoint``; this step always enables it. A re-run on the same workspace and
configuration then resumes from that checkpoint; a finished run is reused as is; a run folder with no
full-state checkpoint (e.g. killed by SIGKILL) cannot be resumed (hf_format checkpoints hold weights
only), so it is removed and training starts clean.
"""

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from steps.common.errors import StepError
from steps.common.kv import parse_typed
from steps.common.secrets import redact_uri, scrub
from steps.common.summary import BOUNDED_OUTPUTS, bounded
from steps.common.workspace import Workspace, atomic_outputs, remove_outputs, sha256_file, write_json
from steps.train.model_source import check_model_ref, resolve_model
from steps.train.outputs import (
    ensure_tokenizer,
    find_final_checkpoint,
    plot_loss,
    read_metrics_lines,
    summarise_metrics,
    train_summary,
)
from steps.train.pod_settings import parse_env

STEP = "train"
SUMMARY = "train/summary.json"  # the small summary Argo exports as the step's output parameter
LR_SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial",
                 "inverse_sqrt")
DEVICES = ("auto", "cpu", "cuda")
_RUN_PREFIX = "run-"


def _check_int(name: str, value: Any, lo: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise StepError(f"{name}={value!r}: must be an integer >= {lo}")


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise StepError(f"{name}={value!r}: must be true or false")


def validate_params(model: str, effective_batch_size: int, epochs: int, max_tokens_per_gpu: int, max_seq_len: int,
                    learning_rate: float, unfreeze_rank_ratio: float, use_liger: bool, seed: int,
                    lr_scheduler: str = "cosine", warmup_steps: int = 0, checkpoint_at_epoch: bool = True,
                    save_final_checkpoint: bool = True, nproc_per_node: str = "auto", nnodes: int = 1,
                    device: str = "auto", lr_scheduler_kwargs: str | dict = "", target_patterns: str = "",
                    unmask_messages: bool = False, use_processed_dataset: bool = False, env_vars: str = "") -> None:
    """Check every training parameter before anything is launched; the error names the parameter.

    Pure (no file, network or GPU access), so the pipeline's preflight applies the very same checks.
    """
    check_model_ref(model)
    _check_int("effective_batch_size", effective_batch_size)
    _check_int("epochs", epochs)
    _check_int("max_tokens_per_gpu", max_tokens_per_gpu)
    _check_int("max_seq_len", max_seq_len, 16)
    if max_tokens_per_gpu < max_seq_len:
        raise StepError(f"max_tokens_per_gpu={max_tokens_per_gpu}: must be >= max_seq_len={max_seq_len} so that "
                        "one full-length sample fits on a device")
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) \
            or not math.isfinite(learning_rate) or not 1e-7 <= learning_rate <= 1e-2:
        raise StepError(f"learning_rate={learning_rate!r}: must be in [1e-07, 0.01] (5e-06 is the OSFT default)")
    if isinstance(unfreeze_rank_ratio, bool) or not isinstance(unfreeze_rank_ratio, int | float) \
            or not math.isfinite(unfreeze_rank_ratio) or not 0.0 < unfreeze_rank_ratio <= 1.0:
        raise StepError(f"unfreeze_rank_ratio={unfreeze_rank_ratio!r}: must be in (0, 1] "
                        "(0.1 minimal, 0.25 balanced, 0.5 strong)")
    if unfreeze_rank_ratio >= 1.0:
        raise StepError("unfreeze_rank_ratio=1.0: would unfreeze every singular direction (plain full fine-tuning), "
                        "but training-hub 0.11.2 silently replaces a frozen-rank ratio of 0 with 0.5; use a value "
                        "below 1 such as 0.99 (or 0.5)")
    _check_bool("use_liger", use_liger)
    _check_int("seed", seed, 0)
    if lr_scheduler not in LR_SCHEDULERS:
        raise StepError(f"lr_scheduler={lr_scheduler!r}: must be one of {', '.join(LR_SCHEDULERS)}")
    _check_int("warmup_steps", warmup_steps, 0)
    _check_bool("checkpoint_at_epoch", checkpoint_at_epoch)
    _check_bool("save_final_checkpoint", save_final_checkpoint)
    if not (checkpoint_at_epoch or save_final_checkpoint):
        raise StepError("checkpoint_at_epoch and save_final_checkpoint are both false: no model would be written; "
                        "enable at least one")
    nproc = str(nproc_per_node).strip().lower()
    if nproc != "auto" and not (nproc.isdigit() and int(nproc) >= 1):
        raise StepError(f"nproc_per_node={nproc_per_node!r}: must be 'auto' (one process per visible GPU) "
                        "or an integer >= 1")
    _check_int("nnodes", nnodes)
    if device not in DEVICES:
        raise StepError(f"device={device!r}: must be one of {', '.join(DEVICES)}")
    scheduler_kwargs(lr_scheduler_kwargs)
    patterns(target_patterns)
    _check_bool("unmask_messages", unmask_messages)
    _check_bool("use_processed_dataset", use_processed_dataset)
    if unmask_messages and use_processed_dataset:
        raise StepError("unmask_messages=true: it applies to chat data, which the library tokenises; pre-tokenised "
                        "rows (use_processed_dataset) carry their own labels: mask or unmask them when you build them")
    parse_env(env_vars)


def scheduler_kwargs(value: str | dict) -> dict[str, Any]:
    """The scheduler's extra arguments, typed: ``num_cycles=2,power=1.5`` -> ``{"num_cycles": 2, "power": 1.5}``
    (or a JSON object). Values reach ``transformers.get_scheduler`` as numbers and booleans, not as text."""
    out = parse_typed(value, "lr_scheduler_kwargs")
    for key, item in out.items():
        if not re.fullmatch(r"[A-Za-z_]\w*", str(key)):
            raise StepError(f"lr_scheduler_kwargs: {key!r} is not an argument name")
        if not isinstance(item, bool | int | float | str) or isinstance(item, float) and not math.isfinite(item):
            raise StepError(f"lr_scheduler_kwargs: {key}={item!r} must be a number, true/false or text")
    return out


def patterns(text: str) -> list[str]:
    """OSFT target module patterns from ``"q_proj, v_proj"`` (empty = the library's defaults for the model)."""
    if not isinstance(text, str):
        raise StepError(f"target_patterns={text!r}: must be comma-separated module name patterns")
    items = [t.strip() for t in text.split(",")]
    if text.strip() and any(not t or any(c.isspace() for c in t) for t in items):
        raise StepError(f"target_patterns={text!r}: write module name patterns separated by commas, e.g. "
                        "q_proj,v_proj (no empty items, no spaces inside a pattern)")
    return [t for t in items if t]


def check_nproc(nproc_per_node: str = "auto", gpus: int = 0) -> None:
    """Processes per node against the GPUs the pod gets: more processes than GPUs cannot start."""
    nproc = str(nproc_per_node).strip().lower()
    if gpus > 0 and nproc.isdigit() and int(nproc) > gpus:
        raise StepError(f"nproc_per_node={nproc}: more processes than the {gpus} GPU(s) each training pod gets; use "
                        "'auto' (one per GPU) or at most the GPU count")


def resolve_device(device: str, nproc_per_node: str) -> tuple[str, int]:
    """('cuda'|'cpu', processes per node) for the requested device and nproc setting."""
    import torch

    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise StepError("device=cuda: no CUDA GPU is visible here; use device=auto or cpu")
    kind = "cuda" if (device == "cuda" or device == "auto" and has_cuda) else "cpu"
    nproc = str(nproc_per_node).strip().lower()
    if nproc == "auto":
        return kind, (torch.cuda.device_count() if kind == "cuda" else 1)
    count = int(nproc)
    if kind == "cuda" and count > torch.cuda.device_count():
        raise StepError(f"nproc_per_node={count}: only {torch.cuda.device_count()} GPU(s) are visible")
    return kind, count


def config_key(config: dict[str, Any]) -> str:
    """Stable short hash of a run configuration."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def checkpoint_trigger_path() -> Path:
    """The file mini-trainer's on-demand checkpointing polls (per process, see :func:`_prepare_env`)."""
    return Path("/dev/shm") / os.environ.get("CHECKPOINT_TRIGGER_FILENAME", "checkpoint_requested")


def _prepare_env(kind: str) -> None:
    # One trigger file per launching process, so concurrent runs on one host never signal each other and
    # a stale file from a killed run is never picked up. Workers inherit it with the environment.
    loaded = sys.modules.get("mini_trainer.full_state_checkpoint")
    if loaded is not None and "CHECKPOINT_TRIGGER_FILENAME" not in os.environ:  # keep caller and workers in step
        os.environ["CHECKPOINT_TRIGGER_FILENAME"] = Path(loaded._DEFAULT_TRIGGER_PATH).name
    os.environ.setdefault("CHECKPOINT_TRIGGER_FILENAME", f"osft-pipeline-ckpt-{os.getpid()}")
    if kind == "cpu":
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 threads on a busy 2-core box is 4-10x slower


def full_state_checkpoints(run_dir: Path) -> dict[str, int]:
    """``full_state_checkpoints/step_N`` folders that hold a saved training state → its mtime (ns)."""
    root = run_dir / "full_state_checkpoints"
    out = {}
    if root.is_dir():
        for d in root.iterdir():
            state = d / "training_state.pt"
            if d.name.startswith("step_") and d.name[5:].isdigit() and state.is_file():
                out[d.name] = state.stat().st_mtime_ns
    return out


def _latest_state(states: dict[str, int]) -> str | None:
    return max(states, key=lambda n: int(n[5:])) if states else None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _log_tail(run_dir: Path, node_rank: int) -> str:
    log = run_dir / f"training_log_node{node_rank}.log"
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    errors = [ln for ln in lines if "Error" in ln or "error" in ln.split(":")[0]]
    return scrub((errors or lines or [""])[-1])[:300]


def _fingerprint(model_dir: Path) -> list[tuple[str, int]]:
    """Names and sizes of the base model's files (mtimes differ after a re-download, so they are left out)."""
    return sorted((p.name, p.stat().st_size) for p in model_dir.iterdir() if p.is_file())


def _dataset_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for line in fh if line.strip())


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("training-hub", "rhai-innovation-mini-trainer", "torch", "transformers"):
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Any:
    """The user's env vars set for the training call (its launcher and worker processes inherit them), then
    the previous values restored."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _launch(kind: str, kwargs: dict[str, Any]) -> None:
    """Call ``training_hub.osft`` with the device's launcher; library output goes to stderr."""
    from steps.train.cpu_launcher import cpu_launcher, venv_torchrun

    with contextlib.redirect_stdout(sys.stderr):
        from training_hub import osft

        with cpu_launcher() if kind == "cpu" else venv_torchrun():
            osft(**kwargs)


def train_model(workspace: str, model: str = "Qwen/Qwen2.5-1.5B-Instruct", effective_batch_size: int = 128,
                epochs: int = 1, max_tokens_per_gpu: int = 64000, max_seq_len: int = 8192,
                learning_rate: float = 5e-06, unfreeze_rank_ratio: float = 0.25, use_liger: bool = True,
                seed: int = 42, lr_scheduler: str = "cosine", warmup_steps: int = 0, checkpoint_at_epoch: bool = True,
                save_final_checkpoint: bool = True, nproc_per_node: str = "auto", nnodes: int = 1,
                device: str = "auto", lr_scheduler_kwargs: str = "", target_patterns: str = "",
                unmask_messages: bool = False, use_processed_dataset: bool = False, env_vars: str = "",
                continue_from: str = "") -> dict:
    """Fine-tune the base model with OSFT on the workspace's training split.

    Args:
        workspace: Workspace directory holding dataset/train.jsonl (the per-run volume in Argo).
        model: Base model: Hugging Face id, hf://org/name, local folder, or oci://registry/repo:tag.
        effective_batch_size: Samples per optimizer step.
        epochs: Number of training epochs.
        max_tokens_per_gpu: Token budget per device and micro-batch (memory cap).
        max_seq_len: Longest sample in tokens; longer samples are dropped by data processing.
        learning_rate: Peak learning rate, in [1e-7, 1e-2].
        unfreeze_rank_ratio: OSFT fraction of each matrix's singular directions left trainable, in (0, 1).
        use_liger: Use Liger kernels (GPU only; forced off on CPU).
        seed: Random seed.
        lr_scheduler: Learning-rate schedule (cosine, linear, constant, constant_with_warmup, ...).
        warmup_steps: Linear warm-up steps.
        checkpoint_at_epoch: Save an HF checkpoint at the end of every epoch.
        save_final_checkpoint: Save an HF checkpoint when training ends.
        nproc_per_node: Processes per node: 'auto' (= visible GPUs, 1 on CPU) or an integer.
        nnodes: Number of nodes (> 1 only inside a Kubeflow Trainer TrainJob, which sets PET_* variables).
        device: 'auto' (CUDA when available, else CPU), 'cuda' or 'cpu'.
        lr_scheduler_kwargs: Extra scheduler arguments, key=value,... or a JSON object; values typed (numbers,
            true/false), e.g. num_cycles=2.
        target_patterns: OSFT target module patterns, comma-separated (empty = the library's defaults).
        unmask_messages: Train on every token of each conversation, not only the assistant's.
        use_processed_dataset: The training split holds pre-tokenised rows (input_ids, labels), used as they are.
        env_vars: Env vars for the training processes, KEY=VAL,... (names that look like secrets are refused).
        continue_from: '' = train ``model``; 'latest' or a version = train the parent version the lineage step
            fetched onto the workspace (lineage/parent.json), or ``model`` when the lineage has no version yet.

    Returns:
        model_path, metrics_path, final_loss, steps, resumed, plus reused, run_dir, device, world_size and
        base_model_dir (the local copy of the base model that was trained from).
    """
    validate_params(model, effective_batch_size, epochs, max_tokens_per_gpu, max_seq_len, learning_rate,
                    unfreeze_rank_ratio, use_liger, seed, lr_scheduler, warmup_steps, checkpoint_at_epoch,
                    save_final_checkpoint, nproc_per_node, nnodes, device, lr_scheduler_kwargs, target_patterns,
                    unmask_messages, use_processed_dataset, env_vars)
    env = parse_env(env_vars)
    ws = Workspace.at(workspace, create=False)
    if not ws.train_jsonl.is_file():
        raise StepError(f"{ws.train_jsonl} is missing: run the dataset step first (osft-pipeline step dataset)")
    rows = _dataset_rows(ws.train_jsonl)
    if rows == 0:
        raise StepError(f"{ws.train_jsonl} is empty: the dataset step produced no training rows")
    node_rank = int(os.environ.get("PET_NODE_RANK", "0") or 0)
    if nnodes > 1 and not (os.environ.get("PET_MASTER_ADDR") or os.environ.get("MASTER_ADDR")):
        raise StepError(f"nnodes={nnodes}: multi-node training needs PET_NODE_RANK/PET_MASTER_ADDR, which Kubeflow "
                        "Trainer sets; run it through the TrainJob (workers > 1), or use nnodes=1")

    kind, nproc = resolve_device(device, nproc_per_node)
    liger = use_liger
    if kind == "cpu":
        if use_liger:
            ws.log(STEP, "info: use_liger forced off on CPU (Liger kernels need a GPU)")
        liger = False
        ws.log(STEP, f"info: no CUDA GPU {'requested' if device == 'cpu' else 'visible'}: training on CPU "
                     f"({nproc} process(es), gloo, fp32) through steps.train.cpu_launcher")
    from steps.lineage import parent_model_dir, read_parent

    parent_dir = parent_model_dir(ws, continue_from) if continue_from.strip() else None
    parent_version = ""
    if parent_dir is not None:
        parent_version = str((read_parent(ws) or {}).get("parent") or "")
        ws.log(STEP, f"continuing from accepted version {parent_version} (its published weights, {parent_dir}) "
                     f"instead of {redact_uri(model.strip())}")
        model = str(parent_dir)
    shown_model = redact_uri(model.strip())
    base = resolve_model(model, ws.root)
    ws.log(STEP, f"base model {shown_model} -> {base}")

    hyper = {
        "model": shown_model, "effective_batch_size": effective_batch_size, "epochs": epochs,
        "max_tokens_per_gpu": max_tokens_per_gpu, "max_seq_len": max_seq_len, "learning_rate": float(learning_rate),
        "unfreeze_rank_ratio": float(unfreeze_rank_ratio), "use_liger": liger, "seed": seed,
        "lr_scheduler": lr_scheduler, "warmup_steps": warmup_steps, "checkpoint_at_epoch": checkpoint_at_epoch,
        "save_final_checkpoint": save_final_checkpoint, "nproc_per_node": nproc, "nnodes": nnodes, "device": kind,
        "lr_scheduler_kwargs": scheduler_kwargs(lr_scheduler_kwargs), "target_patterns": patterns(target_patterns),
        "unmask_messages": unmask_messages, "use_processed_dataset": use_processed_dataset,
        "env_vars": sorted(env),  # names only (values stay out of records)
    }
    data_sha256 = sha256_file(ws.train_jsonl)  # the one hash of the training data (recorded in metrics.json)
    key = config_key({**hyper, "env_values": env, "base_model_dir": str(base), "base_model_files": _fingerprint(base),
                      "data_sha256": data_sha256})
    run_dir = ws.train_dir / f"{_RUN_PREFIX}{key}"
    run_json = run_dir / "run.json"
    outputs = (ws.train_dir / "loss.png", ws.model_pointer, ws.train_dir / "metrics.json", ws.root / SUMMARY)

    if node_rank != 0:  # other nodes of a TrainJob train only; node 0 owns the run folder and the outputs
        _prepare_env(kind)
        with _environment(env):
            _launch(kind, _osft_kwargs(base, ws, run_dir, hyper, liger, nproc, nnodes, node_rank))
        return {"model_path": "", "metrics_path": "", "final_loss": None, "steps": 0, "resumed": False,
                "reused": False, "run_dir": str(run_dir), "device": kind, "world_size": nproc * nnodes}

    state = _read_json(run_json)
    resumed = False
    if state.get("status") == "complete" and (ckpt := find_final_checkpoint(run_dir)) is not None:
        ws.log(STEP, f"reusing the finished run {run_dir.name} (same model, data and parameters): {ckpt.name}")
        summary = _publish(ws, run_dir, ckpt, state.get("wall_time_s"), state.get("hyper_parameters") or hyper,
                           rows, nproc * nnodes, key, bool(state.get("resumed")), int(state.get("attempts", 1)), base,
                           data_sha256)
        return _result(ws, ckpt, summary, resumed=False, reused=True, run_dir=run_dir, kind=kind,
                       world=nproc * nnodes)
    remove_outputs(*outputs)
    before = full_state_checkpoints(run_dir)
    if run_dir.exists():
        latest = _latest_state(before)
        if latest:
            resumed = True
            ws.log(STEP, f"resuming {run_dir.name} from its full-state checkpoint {latest} (same configuration)")
        else:
            ws.log(STEP, f"{run_dir.name} holds no full-state checkpoint to resume from (mini-trainer 0.9.0 resumes "
                         "only from full_state_checkpoints/, written on SIGTERM); starting clean in a fresh folder")
            shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    attempts = int(state.get("attempts", 0)) + 1 if resumed else 1
    write_json(run_json, {"status": "running", "attempts": attempts, "config_key": key, "hyper_parameters": hyper,
                           "base_model_dir": str(base), "train_rows": rows, "versions": _library_versions()})

    _prepare_env(kind)
    ws.log(STEP, f"training {shown_model} on {rows} rows: epochs={epochs} batch={effective_batch_size} "
                 f"lr={learning_rate:g} unfreeze={unfreeze_rank_ratio:g} scheduler={lr_scheduler} device={kind} "
                 f"nproc={nproc} nnodes={nnodes} -> {run_dir.relative_to(ws.root)}")
    if env:
        ws.log(STEP, f"env vars for training: {', '.join(sorted(env))}")
    started = time.monotonic()
    try:
        with _environment(env):
            _launch(kind, _osft_kwargs(base, ws, run_dir, hyper, liger, nproc, nnodes, node_rank))
    except (RuntimeError, ValueError, TypeError, OSError, ImportError) as exc:
        detail = _log_tail(run_dir, node_rank) or scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        write_json(run_json, {**_read_json(run_json), "status": "failed"})
        raise StepError(f"training failed: {detail[:300]} (full log: {run_dir / f'training_log_node{node_rank}.log'})"
                        ) from None
    wall = time.monotonic() - started

    after = full_state_checkpoints(run_dir)
    latest = _latest_state(after)
    if latest and after.get(latest) != before.get(latest):
        write_json(run_json, {**_read_json(run_json), "status": "interrupted"})
        raise StepError(f"training was interrupted by a stop signal; its full state is saved in "
                        f"{run_dir / 'full_state_checkpoints' / latest}: re-run the step to resume")

    ckpt = find_final_checkpoint(run_dir, need_tokenizer=False)
    if ckpt is None:
        raise StepError(f"training finished but wrote no complete checkpoint under {run_dir / 'hf_format'}; "
                        f"see {run_dir / 'training_log_node0.log'}")
    if ensure_tokenizer(ckpt, base):
        ws.log(STEP, f"{ckpt.name} had no tokenizer: saved the base model's tokenizer files into it (no weights)")

    summary = _publish(ws, run_dir, ckpt, wall, hyper, rows, nproc * nnodes, key, resumed, attempts, base, data_sha256)
    if after:  # the final model is saved: the (large) resume state is no longer needed
        shutil.rmtree(run_dir / "full_state_checkpoints", ignore_errors=True)
    write_json(run_json, {**_read_json(run_json), "status": "complete", "checkpoint": ckpt.name,
                           "wall_time_s": round(wall, 2), "resumed": resumed})
    ws.log(STEP, f"done: loss {summary['first_loss']:.4f} -> {summary['final_loss']:.4f} (min "
                 f"{summary['min_loss']:.4f}) in {summary['steps']} steps, {wall:.1f} s; model -> "
                 f"{ckpt.relative_to(ws.root)}" + (" (resumed)" if resumed else ""))
    return _result(ws, ckpt, summary, resumed=resumed, reused=False, run_dir=run_dir, kind=kind, world=nproc * nnodes)


def _publish(ws: Workspace, run_dir: Path, ckpt: Path, wall: float | None, hyper: dict[str, Any], rows: int,
             world: int, key: str, resumed: bool, attempts: int, base: Path, data_sha256: str) -> dict[str, Any]:
    """Write train/metrics.json and train/loss.png from the run's metrics file, and point train/model at ckpt.

    metrics.json records the base model as given (``base_model``, credentials stripped) and the local copy
    training read (``base_model_dir``): the evaluate step scores that same copy as the base.
    """
    summary = summarise_metrics(read_metrics_lines(run_dir), wall, {
        **hyper, "train_rows": rows, "world_size": world, "config_key": key, "versions": _library_versions(),
    })
    summary.update({"checkpoint": str(ckpt.relative_to(ws.root)), "run_dir": str(run_dir.relative_to(ws.root)),
                    "resumed": resumed, "attempts": attempts, "base_model": hyper.get("model", ""),
                    "base_model_dir": str(base), "data_sha256": data_sha256})
    small = bounded(train_summary(summary), BOUNDED_OUTPUTS[SUMMARY])
    with atomic_outputs(ws.train_dir / "loss.png", ws.train_dir / "metrics.json", ws.root / SUMMARY) as (
            png, mjson, sjson):
        plot_loss(summary, png, f"OSFT {Path(str(hyper.get('model', ''))).name}: loss {summary['first_loss']:.3f} "
                                f"-> {summary['final_loss']:.3f} ({summary['steps']} steps)")
        mjson.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        sjson.write_text(json.dumps(small, indent=2, default=str) + "\n", encoding="utf-8")
        ws.point_model_at(ckpt)
    return summary


def _osft_kwargs(base: Path, ws: Workspace, run_dir: Path, hyper: dict[str, Any], liger: bool, nproc: int,
                 nnodes: int, node_rank: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "model_path": str(base), "data_path": str(ws.train_jsonl), "ckpt_output_dir": str(run_dir),
        "backend": "mini-trainer",
        "unfreeze_rank_ratio": float(hyper["unfreeze_rank_ratio"]),
        "effective_batch_size": int(hyper["effective_batch_size"]),
        "max_tokens_per_gpu": int(hyper["max_tokens_per_gpu"]), "max_seq_len": int(hyper["max_seq_len"]),
        "learning_rate": float(hyper["learning_rate"]), "num_epochs": int(hyper["epochs"]),
        "use_liger": liger, "seed": int(hyper["seed"]), "lr_scheduler": hyper["lr_scheduler"],
        "warmup_steps": int(hyper["warmup_steps"]), "checkpoint_at_epoch": hyper["checkpoint_at_epoch"],
        "save_final_checkpoint": hyper["save_final_checkpoint"], "nproc_per_node": nproc, "nnodes": nnodes,
        "enable_jit_checkpoint": True,
        "unmask_messages": bool(hyper.get("unmask_messages")),
        "use_processed_dataset": bool(hyper.get("use_processed_dataset")),
    }
    if hyper.get("lr_scheduler_kwargs"):
        kwargs["lr_scheduler_kwargs"] = dict(hyper["lr_scheduler_kwargs"])
    if hyper.get("target_patterns"):
        kwargs["target_patterns"] = list(hyper["target_patterns"])
    if nnodes > 1:  # per-node tokenized data: the nodes share the run folder on an RWX volume
        kwargs["data_output_dir"] = str(run_dir / f"_internal_data_processing_node{node_rank}")
    return kwargs


def _result(ws: Workspace, ckpt: Path, metrics: dict[str, Any], resumed: bool, reused: bool, run_dir: Path,
            kind: str, world: int) -> dict[str, Any]:
    return {
        "base_model_dir": metrics.get("base_model_dir", ""),
        "model_path": str(ckpt.resolve()),
        "metrics_path": str(ws.train_dir / "metrics.json"),
        "final_loss": metrics.get("final_loss"),
        "steps": metrics.get("steps", 0),
        "resumed": resumed,
        "reused": reused,
        "run_dir": str(run_dir),
        "device": kind,
        "world_size": world,
    }
