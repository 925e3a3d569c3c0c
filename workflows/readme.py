"""Regenerate the parameter tables in docs/parameters.md from workflows/params.py (``make readme``): one per
WorkflowTemplate (osft-minimal-pipeline, osft-pipeline), each between its own markers."""

from pathlib import Path

from workflows.params import FULL, MINIMAL, readme_table

MARKERS = {MINIMAL: ("<!-- params:start -->\n", "<!-- params:end -->"),
           FULL: ("<!-- params-full:start -->\n", "<!-- params-full:end -->")}
START, END = MARKERS[MINIMAL]


def table_in(text: str, template: str) -> str:
    """The table between ``template``'s markers in ``text``."""
    start, end = MARKERS[template]
    return text[text.index(start) + len(start): text.index(end)]


def render(text: str) -> str:
    """``text`` with every template's table between its markers replaced."""
    for template, (start, end) in MARKERS.items():
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + readme_table(template) + end + tail
    return text


if __name__ == "__main__":
    readme = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    readme.write_text(render(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {readme}")
