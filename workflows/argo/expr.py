"""The small expression languages of an Argo WorkflowTemplate, evaluated locally.

Three dialects share one tokenizer and parser:

- ``when:`` (govaluate, after ``{{…}}`` substitution): quoted strings, numbers, ``true``/``false``,
  ``== != < <= > >=``, ``&& || !`` and parentheses. A bare word is an error (Argo needs quotes).
- ``depends:`` (task-result logic): ``A``, ``A.Succeeded|Failed|Errored|Skipped|Omitted|Daemoned``,
  ``&& || !`` and parentheses. A bare ``A`` means ``A.Succeeded || A.Skipped || A.Daemoned`` as in Argo.
- ``{{= … }}`` expression tags (expr-lang subset): the above plus dotted names such as
  ``workflow.parameters.x`` or ``tasks['a-b'].outputs.result``, ``cond ? a : b``, ``+ - * /``, and the
  functions ``asInt``, ``asFloat``, ``string``.

Anything outside these subsets raises :class:`ExprError` naming the expression, so a template that
needs more fails clearly instead of being run with a wrong guess.
"""

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steps.common.errors import StepError


class ExprError(StepError):
    """An expression the local runner cannot evaluate."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<op>&&|\|\||==|!=|<=|>=|=~|[<>!?:()+\-*/%,.\[\]])
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
# In ``depends`` task names may contain dashes (``train-model.Succeeded``).
_DEPENDS_TOKEN = re.compile(r"\s*(?:(?P<op>&&|\|\||[!()])|(?P<name>[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z]+)?))")

_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_PHASES = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")


@dataclass(frozen=True)
class _Tok:
    kind: str  # str | num | op | name | end
    text: str


def _tokens(expr: str, pattern: re.Pattern[str], what: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        m = pattern.match(expr, pos)
        if not m or m.end() == pos:
            raise ExprError(f"{what} {expr!r}: cannot read {expr[pos:].strip()[:20]!r}")
        kind = m.lastgroup or "op"
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    out.append(_Tok("end", ""))
    return out


class _Parser:
    """Recursive descent over the tokens; ``lookup`` resolves dotted names (None: names are errors)."""

    def __init__(self, expr: str, what: str, lookup: Callable[[list[str]], Any] | None) -> None:
        self.expr, self.what, self.lookup = expr, what, lookup
        self.toks = _tokens(expr, _TOKEN, what)
        self.i = 0

    def fail(self, msg: str) -> ExprError:
        return ExprError(f"{self.what} {self.expr!r}: {msg}")

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> _Tok:
        tok = self.toks[self.i]
        if text is not None and tok.text != text and _WORD_OPS.get(tok.text) != text:
            raise self.fail(f"expected {text!r} but found {tok.text or 'the end'!r}")
        self.i += 1
        return tok

    def at(self, *texts: str) -> bool:
        tok = self.peek()
        return tok.kind in ("op", "name") and (tok.text in texts or _WORD_OPS.get(tok.text) in texts)

    def parse(self) -> Any:
        value = self.ternary()
        if self.peek().kind != "end":
            raise self.fail(f"unexpected {self.peek().text!r}")
        return value

    def ternary(self) -> Any:
        cond = self.or_()
        if self.at("?"):
            self.take("?")
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return yes if _truth(cond, self) else no
        return cond

    def or_(self) -> Any:
        left = self.and_()
        while self.at("||"):
            self.take()
            right = self.and_()
            left = _truth(left, self) or _truth(right, self)
        return left

    def and_(self) -> Any:
        left = self.not_()
        while self.at("&&"):
            self.take()
            right = self.not_()
            left = _truth(left, self) and _truth(right, self)
        return left

    def not_(self) -> Any:
        if self.at("!"):
            self.take()
            return not _truth(self.not_(), self)
        return self.compare()

    def compare(self) -> Any:
        left = self.additive()
        if self.at("==", "!=", "<", "<=", ">", ">="):
            op = self.take().text
            right = self.additive()
            return _compare(op, left, right, self)
        if self.at("=~"):
            raise self.fail("regular-expression match (=~) is not supported locally")
        return left

    def additive(self) -> Any:
        left = self.term()
        while self.at("+", "-"):
            op = self.take().text
            right = self.term()
            if op == "+" and isinstance(left, str) and isinstance(right, str):
                left = left + right
            else:
                left = _arith(op, left, right, self)
        return left

    def term(self) -> Any:
        left = self.unary()
        while self.at("*", "/", "%"):
            op = self.take().text
            left = _arith(op, left, self.unary(), self)
        return left

    def unary(self) -> Any:
        if self.at("-"):
            self.take()
            return _arith("-", 0, self.unary(), self)
        return self.primary()

    def primary(self) -> Any:
        tok = self.take()
        if tok.kind == "str":
            return _unquote(tok.text)
        if tok.kind == "num":
            return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
        if tok.kind == "op" and tok.text == "(":
            value = self.ternary()
            self.take(")")
            return value
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return tok.text == "true"
            if tok.text in _FUNCS and self.at("("):
                self.take("(")
                arg = self.ternary()
                self.take(")")
                return _FUNCS[tok.text](arg, self)
            return self.name(tok.text)
        raise self.fail(f"unexpected {tok.text or 'end of expression'!r}")

    def name(self, first: str) -> Any:
        path = [first]
        while self.at(".", "["):
            if self.take().text == ".":
                path.append(self.take().text)
            else:
                key = self.take()
                if key.kind != "str":
                    raise self.fail("only quoted keys are supported in [...]")
                path.append(_unquote(key.text))
                self.take("]")
        if self.at("("):
            raise self.fail(f"function {'.'.join(path)}() is not supported locally (asInt, asFloat, string are)")
        if self.lookup is None:
            raise self.fail(f"bare word {'.'.join(path)!r} is not a value; quote strings ('{{{{…}}}}' == 'x')")
        return self.lookup(path)


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _truth(value: Any, p: _Parser) -> bool:
    if isinstance(value, bool):
        return value
    raise p.fail(f"{value!r} is not a boolean")


def _compare(op: str, a: Any, b: Any, p: _Parser) -> bool:
    if op in ("==", "!="):
        equal = a == b if type(a) is type(b) or _is_num(a) and _is_num(b) else False
        return equal if op == "==" else not equal
    if not (_is_num(a) and _is_num(b)) and not (isinstance(a, str) and isinstance(b, str)):
        raise p.fail(f"cannot compare {a!r} {op} {b!r}")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _arith(op: str, a: Any, b: Any, p: _Parser) -> Any:
    if not (_is_num(a) and _is_num(b)):
        raise p.fail(f"cannot compute {a!r} {op} {b!r}")
    if op in "/%" and b == 0:
        raise p.fail("division by zero")
    return {"+": a + b, "-": a - b, "*": a * b, "/": a / b, "%": a % b}[op]


def _as_number(kind: type) -> Callable[[Any, _Parser], Any]:
    def convert(v: Any, p: _Parser) -> Any:
        try:
            return kind(float(v)) if kind is int and isinstance(v, str) and "." in v else kind(v)
        except (TypeError, ValueError):
            raise p.fail(f"{v!r} is not a number") from None

    return convert


_FUNCS: dict[str, Callable[[Any, _Parser], Any]] = {
    "asInt": _as_number(int),
    "asFloat": _as_number(float),
    "string": lambda v, p: render(v),
}


def render(value: Any) -> str:
    """A value as Argo renders it into a parameter string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def eval_when(expr: str) -> bool:
    """Evaluate a ``when`` condition whose ``{{…}}`` references are already substituted."""
    value = _Parser(expr, "when", None).parse()
    if not isinstance(value, bool):
        raise ExprError(f"when {expr!r}: evaluates to {value!r}, not true/false")
    return value


def eval_expression(expr: str, lookup: Callable[[list[str]], Any]) -> Any:
    """Evaluate the body of a ``{{= … }}`` expression tag; ``lookup`` resolves dotted names."""
    return _Parser(expr, "expression", lookup).parse()


def depends_targets(expr: str) -> list[str]:
    """Task names a ``depends`` expression refers to, in order of appearance."""
    names: list[str] = []
    for tok in _tokens(expr, _DEPENDS_TOKEN, "depends"):
        if tok.kind == "name":
            task = tok.text.split(".")[0]
            if task not in names:
                names.append(task)
    return names


def eval_depends(expr: str, phases: Mapping[str, str]) -> bool:
    """Whether a task whose dependencies are all finished should run, given each task's Argo phase."""
    toks = _tokens(expr, _DEPENDS_TOKEN, "depends")
    i = 0

    def fail(msg: str) -> ExprError:
        return ExprError(f"depends {expr!r}: {msg}")

    def atom() -> bool:
        nonlocal i
        tok = toks[i]
        i += 1
        if tok.text == "!":
            return not atom()
        if tok.text == "(":
            value = or_()
            if toks[i].text != ")":
                raise fail("missing ')'")
            i += 1
            return value
        if tok.kind != "name":
            raise fail(f"unexpected {tok.text or 'end'!r}")
        task, _, result = tok.text.partition(".")
        if task not in phases:
            raise fail(f"unknown task {task!r}")
        phase = phases[task]
        if not result:
            return phase in ("Succeeded", "Skipped", "Daemoned")
        if result not in _PHASES:
            raise fail(f"unknown result {result!r} (use one of {', '.join(_PHASES)})")
        wanted = {"AnySucceeded": "Succeeded", "AllFailed": "Failed", "Errored": "Error"}.get(result, result)
        return phase == wanted

    def and_() -> bool:
        nonlocal i
        value = atom()
        while toks[i].text == "&&":
            i += 1
            value = atom() and value
        return value

    def or_() -> bool:
        nonlocal i
        value = and_()
        while toks[i].text == "||":
            i += 1
            value = and_() or value
        return value

    result = or_()
    if toks[i].kind != "end":
        raise fail(f"unexpected {toks[i].text!r}")
    return result
