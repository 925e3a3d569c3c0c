"""Live terminal view of a local run: the DAG's tasks with state, elapsed time and training progress."""

import threading
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from workflows.local.state import RunState

_STYLE = {"Pending": "dim", "Running": "bold cyan", "Succeeded": "green", "Skipped": "yellow", "Omitted": "dim",
          "Failed": "bold red", "Error": "bold red"}
_ICON = {"Pending": "·", "Running": "▶", "Succeeded": "✔", "Skipped": "↷", "Omitted": "–", "Failed": "✘",
         "Error": "✘"}



def _words(task: Any) -> str:
    """A task's message in words: why it was skipped or not started, without the template's expressions."""
    from workflows.local.report import explain

    return explain(task.name, {"phase": task.phase, "message": task.message, "reused": task.reused})

def table(state: RunState) -> Table:
    """One row per task (and the exit handler) in dependency order."""
    t = Table(title=f"{state.name}  [{state.phase}]", title_justify="left", expand=False)
    for col in ("step", "template", "state", "elapsed", "detail"):
        t.add_column(col, no_wrap=col != "detail")
    rows = [state.tasks[n] for n in state.order] + ([state.exit_handler] if state.exit_handler else [])
    for task in rows:
        phase = task.phase + (" (reused)" if task.reused else "")
        d = task.duration_s
        elapsed = "" if d is None else f"{d:,.1f}s"
        detail = task.progress if task.phase == "Running" else (_words(task) or task.progress)
        t.add_row(task.name, task.template, f"[{_STYLE.get(task.phase, '')}]{_ICON.get(task.phase, '')} {phase}",
                  elapsed, detail[:100])
    return t


class RunView:
    """A listener for LocalRunner: a live table on a terminal, one line per state change otherwise."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live: Live | None = None
        self.state: RunState | None = None
        self._seen: dict[str, str] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __call__(self, state: RunState, event: str) -> None:
        self.state = state
        if self.console.is_terminal:
            if event == "start":
                self.live = Live(table(state), console=self.console, refresh_per_second=4, transient=False)
                self.live.start()
                self._ticker = threading.Thread(target=self._tick, daemon=True)
                self._ticker.start()
            elif self.live is not None:
                self.live.update(table(state))
            if event == "end":
                self.close()
            return
        self._print_changes(state, event)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            if self.live is not None and self.state is not None:
                self.live.update(table(self.state))

    def _print_changes(self, state: RunState, event: str) -> None:
        if event == "start":
            self.console.print(f"run {state.name}: {' → '.join(state.order)}", highlight=False)
            return
        tasks: list[Any] = list(state.tasks.values()) + ([state.exit_handler] if state.exit_handler else [])
        for task in tasks:
            key = task.phase + ("r" if task.reused else "") + (task.progress if task.phase == "Running" else "")
            if self._seen.get(task.name) == key:
                continue
            self._seen[task.name] = key
            if task.phase == "Pending":
                continue
            d = task.duration_s
            extra = task.progress if task.phase == "Running" and task.progress else _words(task)
            self.console.print(f"  {task.name:<16} {task.phase + (' (reused)' if task.reused else ''):<20}"
                               f"{'' if d is None or task.phase == 'Running' else f'{d:.1f}s':>9}  {extra}",
                               highlight=False)
        if event == "end":
            self.console.print(f"run {state.name}: {state.phase} in {time.time() - state.started:.1f}s",
                               highlight=False)

    def close(self) -> None:
        """Stop the live display (also on errors)."""
        self._stop.set()
        if self.live is not None:
            if self.state is not None:
                self.live.update(table(self.state))
            self.live.stop()
            self.live = None
