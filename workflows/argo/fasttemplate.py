"""Argo's template engine, as ``util/template`` runs it: ``valyala/fasttemplate`` with ``{{`` and ``}}``.

fasttemplate finds a ``{{``, then ends the tag at the **first** ``}}`` after it; what follows is copied as
text. So in ``{{= c ? '{"a": {"b": "c"}}' : '{}' }}`` the tag ends inside the JSON literal, the expression
never parses, and the rest (``' : '{}' }}``) is pasted into the field. A ``{{`` with no ``}}`` after it makes
the whole template unusable. A tag starting with ``=`` is an expr-lang expression; any other tag is a
variable name (surrounding spaces trimmed).

:func:`split` cuts a string exactly as fasttemplate does, :func:`tag_problems` says why a tag or a string
would not work on a cluster, and :func:`render` substitutes with the same semantics (used by the local
runner, so a truncated tag fails locally as it fails on the cluster).
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from steps.common.errors import StepError
from workflows.argo.expr import KNOWN_FUNCTIONS, ExprError, functions, identifiers, parse_expression
from workflows.argo.expr import render as render_value

START, END = "{{", "}}"


class TemplateError(StepError):
    """A string Argo's template engine cannot process, or a tag that cannot be resolved."""


@dataclass(frozen=True)
class Tag:
    """One ``{{…}}`` tag as fasttemplate cuts it: the text between the delimiters and its offsets."""

    text: str
    start: int  # offset of "{{"
    end: int  # offset just after "}}"

    @property
    def is_expression(self) -> bool:
        return self.text.startswith("=")  # Argo's parseTag: a prefix, no spaces allowed before it

    @property
    def name(self) -> str:
        """The variable a simple tag names (Argo trims spaces), or the expression without its ``=``."""
        return self.text[1:] if self.is_expression else self.text.strip()


def split(text: str) -> list[str | Tag]:
    """``text`` cut into literal strings and :class:`Tag` objects, as fasttemplate does.

    Raises :class:`TemplateError` for a ``{{`` without a ``}}`` after it (fasttemplate refuses the template).
    """
    parts: list[str | Tag] = []
    pos = 0
    while True:
        n = text.find(START, pos)
        if n < 0:
            parts.append(text[pos:])
            return parts
        parts.append(text[pos:n])
        close = text.find(END, n + len(START))
        if close < 0:
            raise TemplateError(f"{START!r} at offset {n} has no {END!r} after it (Argo's template engine refuses "
                                f"the whole template): {_excerpt(text, n)}")
        parts.append(Tag(text[n + len(START):close], n, close + len(END)))
        pos = close + len(END)


def tags(text: str) -> list[Tag]:
    """The tags of ``text`` (raises :class:`TemplateError` like :func:`split`)."""
    return [p for p in split(text) if isinstance(p, Tag)]


def _excerpt(text: str, at: int) -> str:
    lo, hi = max(0, at - 20), min(len(text), at + 60)
    return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")


Check = Callable[[str], "str | None"]


def tag_problems(text: str, check: Check) -> list[str]:
    """Why ``text`` would not render on a cluster: an unclosed ``{{``, a tag that ends early (a ``}}`` left
    in the text after it), an expression that does not parse or calls an unknown function, or a variable
    that ``check`` rejects (it returns the reason, or None when the name resolves). Empty when all is fine."""
    try:
        parts = split(text)
    except TemplateError as exc:
        return [str(exc)]
    out: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(part, str):
            if END in part and i > 0:
                prev = parts[i - 1]
                where = f" after {START}{prev.text}{END}" if isinstance(prev, Tag) else ""
                out.append(f"a stray {END!r}{where}: the tag ended at the first {END!r} (fasttemplate), so the rest "
                           f"is pasted as text; write '}} }}' inside JSON or build it with toJson(): "
                           f"{_excerpt(text, text.find(END, prev.end if isinstance(prev, Tag) else 0))}")
            continue
        out += _tag_problems(part, check)
    return out


def _tag_problems(tag: Tag, check: Check) -> list[str]:
    if tag.is_expression:
        try:
            tree = parse_expression(tag.name, "expression tag")
        except ExprError as exc:
            return [f"{exc} (if the tag was cut at a '}}}}' inside it, write '}} }}' or use toJson())"]
        out = [f"expression tag {START}{tag.text}{END}: unknown function {f}()" for f in functions(tree)
               if f.split(".")[0] not in KNOWN_FUNCTIONS]
        for v in identifiers(tree):
            if (why := check(v)) is not None:
                out.append(f"expression tag {START}{tag.text}{END}: variable {v!r}: {why}")
        return out
    if not tag.name:
        return [f"empty tag {START}{tag.text}{END}"]
    if START in tag.text:
        return [f"tag {START}{tag.text}{END} holds a nested {START!r}"]
    why = check(tag.name)
    return [] if why is None else [f"{START}{tag.text}{END}: {why}"]


def strings(obj: Any, path: str = "") -> Iterable[tuple[str, str]]:
    """Every string in a nested document, with its dotted path (``spec.templates[2].podSpecPatch``). Mapping keys
    are strings too: Argo substitutes the template's JSON text, keys included (``metadata.labels.<key>``)."""
    if isinstance(obj, str):
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            here = f"{path}.{k}" if path else str(k)
            if isinstance(k, str) and START in k:
                yield f"{here} (key)", k
            yield from strings(v, here)
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            name = v.get("name") if isinstance(v, dict) else None
            yield from strings(v, f"{path}[{i}]" + (f"({name})" if isinstance(name, str) else ""))


def render(text: str, lookup: Callable[[str], str], evaluate: Callable[[str], Any]) -> str:
    """Substitute every tag as Argo does: ``lookup(name)`` for a variable, ``evaluate(expression)`` for an
    expression tag (its value inserted as Argo renders it). Both raise to refuse a tag; a ``{{`` without
    ``}}`` raises :class:`TemplateError`."""
    out: list[str] = []
    for part in split(text):
        if isinstance(part, str):
            out.append(part)
        elif part.is_expression:
            value = evaluate(part.name)
            if value is None:
                raise TemplateError(f"expression {START}{part.text}{END} evaluated to nil")
            out.append(render_value(value))
        else:
            out.append(lookup(part.name))
    return "".join(out)
