"""The ``osft-pipeline`` command line: one subcommand per step, plus helpers.

Step subcommands are generated from the step functions' signatures and docstrings, so the CLI,
Hera's runner and the KFP wrapper all call the very same function with the same parameter names.
"""

import importlib
import inspect
import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from steps.errors import StepError
from steps.secrets import scrub

# step name -> "module:function"; each function takes simple typed parameters and returns a small dict.
STEPS: dict[str, str] = {
    "dataset": "steps.dataset:prepare_dataset",
    "register": "steps.register:register_model",
}

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _root() -> None:
    """Run the OSFT pipeline's steps, compile its templates, and run it locally."""


def load_step(name: str) -> Callable[..., Any]:
    """Import the function behind a step name."""
    module, _, func = STEPS[name].partition(":")
    return getattr(importlib.import_module(module), func)


def _arg_help(doc: str) -> dict[str, str]:
    out: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        stripped = line.strip()
        if stripped == "Args:":
            in_args = True
            continue
        if in_args:
            if not stripped or stripped.endswith(":") and " " not in stripped:
                if stripped:
                    in_args = False
                continue
            name, sep, text = stripped.partition(":")
            if sep and " " not in name:
                out[name] = text.strip()
    return out


def _split_list(values: list[str] | None) -> list[str]:
    return [t.strip() for v in values or [] for t in v.split(",") if t.strip()]


def step_command(name: str) -> Callable[..., None]:
    """A typer command whose options mirror the step function's parameters (``--data-uri`` for data_uri)."""
    func = load_step(name)
    doc = inspect.getdoc(func) or ""
    helps = _arg_help(doc)
    sig = inspect.signature(func)
    params = []
    list_params = set()
    for p in sig.parameters.values():
        ann = p.annotation
        is_list = ann is list or getattr(ann, "__origin__", None) is list
        if is_list:
            list_params.add(p.name)
            ann = list[str]
        default = ... if p.default is inspect.Parameter.empty else p.default
        option = typer.Option(default, "--" + p.name.replace("_", "-"),
                              help=helps.get(p.name, "") + (" (repeat, or comma-separate)" if is_list else ""))
        params.append(inspect.Parameter(p.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann))

    def command(**kwargs: Any) -> None:
        for key in list_params:
            kwargs[key] = _split_list(kwargs[key])
        run_and_print(func, kwargs)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = doc.split("\n\n")[0]
    command.__name__ = name
    return command


def run_and_print(func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Run a step; print its result as JSON on stdout, or one error line on stderr and exit 2."""
    try:
        result = func(**kwargs)
    except StepError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(json.dumps(result, indent=2, default=str))


@app.command("demo-data")
def demo_data(out: str = typer.Argument(..., help="Where to write the demo chat JSONL")) -> None:
    """Write the embedded demo chat dataset (chatterbot-corpus English dialogs)."""
    from steps.demo_data import write_demo_dataset

    run_and_print(write_demo_dataset, {"out": out})


step_app = typer.Typer(no_args_is_help=True, help="Run one pipeline step (the same function Argo's pods run).")
for _name in STEPS:
    step_app.command(_name)(step_command(_name))
app.add_typer(step_app, name="step")


def main() -> None:
    """Entry point of the ``osft-pipeline`` console script."""
    app()


if __name__ == "__main__":
    main()
