"""Regenerate the parameter table in docs/parameters.md from workflows/params.py (``make readme``)."""

from pathlib import Path

from workflows.params import readme_table

START, END = "<!-- params:start -->\n", "<!-- params:end -->"


def render(text: str) -> str:
    """``text`` with the table between the markers replaced."""
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + readme_table() + END + tail


if __name__ == "__main__":
    readme = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"
    readme.write_text(render(readme.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"updated {readme}")
