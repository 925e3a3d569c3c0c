"""Keep the docs real: every ``osft-pipeline`` command, option, parameter name, make target and repository path
that README.md and docs/*.md show must exist. Used by tests/test_docs.py (and its mutation tests)."""

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from typer.main import get_command

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_PARAM = re.compile(r"\bphase_\d\d_[a-z0-9_]+\b")
_REPO_PATH = re.compile(r"^(?:\.\./)?(?:docs|examples|templates|workflows|steps|tests|bench|\.ci|\.github)/[\w./-]*$|"
                        r"^(?:Makefile|Containerfile|constraints\.txt|pyproject\.toml|README\.md)$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_INLINE = re.compile(r"`([^`\n]+)`")


def code_blocks(text: str) -> Iterator[tuple[str, str]]:
    """(language, body) of every fenced block."""
    for m in _FENCE.finditer(text):
        yield m.group(1), m.group(2)


def command_lines(body: str) -> Iterator[str]:
    """Shell commands of a block: continuations joined, comments dropped, split at ``&&``, ``;``, ``|``."""
    joined = re.sub(r"\\\n\s*", " ", body)
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            tokens = line.split()
        current: list[str] = []
        for tok in tokens:
            if tok in ("&&", ";", "|", "||", "&"):
                if current:
                    yield shlex.join(current)
                current = []
            else:
                current.append(tok)
        if current:
            yield shlex.join(current)


def _strip_env(tokens: list[str]) -> list[str]:
    while tokens and re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]):
        tokens = tokens[1:]
    return tokens


def _placeholder(text: str) -> bool:
    return any(c in text for c in "<>…*{}") or text in ("name", "NAME", "k")


def check_osft_command(tokens: list[str], app_command: Any) -> list[str]:
    """Problems of one ``osft-pipeline …`` command line: unknown subcommands, options, parameter names."""
    problems: list[str] = []
    cmd, path, i = app_command, ["osft-pipeline"], 1
    while hasattr(cmd, "commands") and i < len(tokens) and not tokens[i].startswith("-"):
        word = tokens[i].strip("[]")
        if word not in cmd.commands:
            if _placeholder(word) or word.isupper():
                return problems
            return [f"`{' '.join(path)} {word}`: no such command"]
        cmd, path, i = cmd.commands[word], [*path, word], i + 1
    names = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    takes_value = {o for p in cmd.params if p.param_type_name == "option" and not getattr(p, "is_flag", False)
                   for o in p.opts}
    rest = tokens[i:]
    template = template_of_command(path, rest)
    for j, tok in enumerate(rest):
        word = tok.strip("[]()|")
        if not word.startswith("-") or word in ("-", "--") or re.match(r"^-\d", word):
            continue
        opt = word.split("=", 1)[0]
        if "/" in opt and all(part.startswith("-") for part in opt.split("/")):  # an on/off pair: --x/--no-x
            problems += [f"`{' '.join(path)}`: no option {o}" for o in opt.split("/") if o not in names]
            continue
        if opt not in names:
            problems.append(f"`{' '.join(path)}`: no option {opt}")
            continue
        if opt in ("-p", "--parameter"):
            value = word.split("=", 1)[1] if "=" in word and opt.startswith("--") else \
                (rest[j + 1].strip("[]") if j + 1 < len(rest) else "")
            problems += check_parameter(value, " ".join(path), template)
        if opt in ("-f", "--parameter-file") and j + 1 < len(rest):
            problems += check_path(rest[j + 1], ROOT, " ".join(path), strict=False)
        if opt in takes_value and j + 1 >= len(rest):
            problems.append(f"`{' '.join(path)}`: {opt} needs a value")
    return problems


def _option(tokens: list[str], *names: str) -> str:
    for j, tok in enumerate(tokens):
        for name in names:
            if tok == name and j + 1 < len(tokens):
                return tokens[j + 1]
            if tok.startswith(f"{name}="):
                return tok.split("=", 1)[1]
    return ""


def template_of_command(path: list[str], rest: list[str]) -> str | None:
    """The pipeline template a command runs (its parameters are the ones it takes): ``run --template FILE``,
    ``submit``/``doctor``/``argo submit --from workflowtemplate/NAME``, ``cron … --template NAME``; the minimal one
    by default; None for another template (its parameters are not ours to check)."""
    from workflows.params import MINIMAL, TEMPLATES

    if path[-1] == "run":
        name = Path(_option(rest, "--template")).name.removesuffix(".yaml") or MINIMAL
    elif path[-1] in ("submit", "doctor"):
        name = (_option(rest, "--from").split("/", 1) + [MINIMAL])[1] if _option(rest, "--from") else MINIMAL
    elif path[:2] == ["osft-pipeline", "cron"]:
        name = _option(rest, "--template") or MINIMAL
    else:
        return MINIMAL
    return name if name in TEMPLATES else None


def check_parameter(pair: str, where: str, template: str | None = "osft-minimal-pipeline") -> list[str]:
    """A ``-p name=value``'s name is a parameter of ``template`` (any pipeline parameter when None)."""
    from workflows.params import BY_NAME, names_for

    name = pair.split("=", 1)[0].strip("'\"")
    if _placeholder(name) or not name:
        return []
    if name not in BY_NAME:
        return [f"`{where}`: -p {name}: no such parameter"]
    if template is not None and name not in names_for(template):
        return [f"`{where}`: -p {name}: not a parameter of {template} (the command runs that template)"]
    return []


def check_path(token: str, base: Path, where: str, strict: bool = True) -> list[str]:
    """A repository path (relative to ``base``) exists, and its ``#anchor`` is one of its headings."""
    target, _, anchor = token.partition("#")
    if not target or _placeholder(target) or "://" in target:
        return []
    if not strict and not _REPO_PATH.match(target):
        return []
    path = (base / target).resolve()
    if not path.exists():
        return [f"{where}: {token}: no such file"]
    if anchor and path.suffix == ".md" and anchor not in heading_slugs(path):
        return [f"{where}: {token}: no heading #{anchor} in {target}"]
    return []


def heading_slugs(path: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    slugs = set()
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    for line in text.splitlines():
        m = re.match(r"^#+\s+(.*)$", line)
        if m:
            title = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return slugs


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return {m.group(1) for m in re.finditer(r"^([\w.-]+):(?!=)", text, re.M)}


def check_text(text: str, where: str, base: Path) -> list[str]:
    """Every problem of one Markdown document (``base``: the folder its relative links start from)."""
    from workflows.params import BY_NAME

    app_command = get_command(__import__("workflows.cli", fromlist=["app"]).app)
    problems: list[str] = []
    for lang, body in code_blocks(text):
        if lang not in ("bash", "sh", ""):
            continue
        for line in command_lines(body):
            tokens = _strip_env(shlex.split(line))
            if not tokens:
                continue
            if tokens[0] == "osft-pipeline":
                problems += [f"{where}: {p}" for p in check_osft_command(tokens, app_command)]
            elif tokens[0] == "make":
                targets = [t for t in tokens[1:] if not t.startswith("-") and "=" not in t]
                problems += [f"{where}: make {t}: no such target" for t in targets if t not in make_targets()]
            elif tokens[:2] == ["argo", "submit"]:
                template = template_of_command(["argo", "submit"], tokens[2:])
                for j, tok in enumerate(tokens):
                    if tok == "-p" and j + 1 < len(tokens):
                        problems += [f"{where}: {p}" for p in check_parameter(tokens[j + 1], "argo submit",
                                                                                 template)]
            for tok in tokens[1:]:
                problems += check_path(tok, ROOT, where, strict=False)
    for name in set(_PARAM.findall(text)):
        if name not in BY_NAME:
            problems.append(f"{where}: {name}: no such parameter")
    prose = _FENCE.sub("", text)
    for link in _LINK.findall(prose):
        if not link.startswith(("http://", "https://", "mailto:")):
            problems += check_path(link if not link.startswith("#") else Path(where).name + link, base, where)
    for code in _INLINE.findall(prose):
        for tok in code.split():
            problems += check_path(tok.strip("(),;:"), ROOT, where, strict=False)
    return problems


def check_all() -> list[str]:
    return [p for doc in DOCS for p in check_text(doc.read_text(encoding="utf-8"), doc.relative_to(ROOT).as_posix(),
                                                  doc.parent)]
