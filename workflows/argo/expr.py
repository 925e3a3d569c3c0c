"""The small expression languages of an Argo WorkflowTemplate: parsed, checked and evaluated locally.

Three dialects share one tokenizer and parser:

- ``when:`` (govaluate, after ``{{…}}`` substitution): quoted strings, numbers, ``true``/``false``,
  ``== != < <= > >=``, ``&& || !`` and parentheses. A bare word is an error (Argo needs quotes).
- ``depends:`` (task-result logic): ``A``, ``A.Succeeded|Failed|Errored|Skipped|Omitted|Daemoned``,
  ``&& || !`` and parentheses. A bare ``A`` means ``A.Succeeded || A.Skipped || A.Daemoned`` as in Argo.
- ``{{= … }}`` expression tags (an expr-lang subset): the above plus dotted names such as
  ``workflow.parameters.x`` or ``tasks['a-b'].outputs.result``, ``cond ? a : b``, ``a ?? b``,
  ``+ - * / %``, map ``{"k": v}`` and array ``[a, b]`` literals, and the functions Argo adds or expr-lang
  ships that templates here use: ``asInt``, ``asFloat``, ``int``, ``float``, ``string``, ``toJson``,
  ``toJSON``, ``len``, ``lower``, ``upper``, ``trim``, ``split`` (Go's ``strings.Split``/``SplitN``), and indexing.

An expression is parsed into a small tree first (:func:`parse_expression`), so the linter can list the
variables it names (:func:`identifiers`, as Argo's ``getIdentifiers`` does) without evaluating it, and
evaluation short-circuits ``?:``, ``&&``, ``||`` and ``??`` as expr-lang does. Results are rendered as
Argo inserts them (:func:`render`: strings raw, everything else as Go's ``json.Marshal`` writes it).
Anything outside these subsets raises :class:`ExprError` naming the expression.
"""

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from steps.common.errors import StepError


class ExprError(StepError):
    """An expression that does not parse, or that the local runner cannot evaluate."""


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<op>&&|\|\||==|!=|<=|>=|=~|\?\?|\?\.|[<>!?:()+\-*/%,.\[\]{}])
    | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
    )""",
    re.VERBOSE,
)
# In ``depends`` task names may contain dashes (``train-model.Succeeded``).
_DEPENDS_TOKEN = re.compile(r"\s*(?:(?P<op>&&|\|\||[!()])|(?P<name>[A-Za-z0-9_][A-Za-z0-9_\-]*(?:\.[A-Za-z]+)?))")

_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_PHASES = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")
# expr-lang builtins and Argo's additions (util/expr/env): known names parse; FUNCS below evaluate.
KNOWN_FUNCTIONS = frozenset({
    "asInt", "asFloat", "jsonpath", "toJson", "sprig",
    "int", "float", "string", "toJSON", "fromJSON", "len", "lower", "upper", "trim", "trimPrefix", "trimSuffix",
    "split", "join", "replace", "repeat", "indexOf", "hasPrefix", "hasSuffix", "all", "any", "none", "one",
    "filter", "map", "count", "keys", "values", "abs", "max", "min", "ceil", "floor", "round", "first", "last",
    "get", "now", "duration", "date", "toBase64", "fromBase64", "type", "sum", "mean", "median", "reverse", "sort",
    "uniq", "concat", "flatten", "toPairs", "fromPairs", "bitand", "bitor", "bitxor", "bitnot",
})


@dataclass(frozen=True)
class _Tok:
    kind: str  # str | num | op | name | end
    text: str


@dataclass(frozen=True)
class Node:
    """One node of a parsed expression: ``kind`` and its operands."""

    kind: str  # lit | name | call | unary | binary | ternary | map | array | index
    args: tuple[Any, ...]


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
    """Recursive descent over the tokens, building :class:`Node` trees."""

    def __init__(self, expr: str, what: str) -> None:
        self.expr, self.what = expr, what
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

    def parse(self) -> Node:
        node = self.ternary()
        if self.peek().kind != "end":
            raise self.fail(f"unexpected {self.peek().text!r}")
        return node

    def ternary(self) -> Node:
        cond = self.coalesce()
        if self.at("?"):
            self.take("?")
            yes = self.ternary()
            self.take(":")
            no = self.ternary()
            return Node("ternary", (cond, yes, no))
        return cond

    def coalesce(self) -> Node:
        left = self.or_()
        while self.at("??"):
            self.take()
            left = Node("binary", ("??", left, self.or_()))
        return left

    def or_(self) -> Node:
        left = self.and_()
        while self.at("||"):
            self.take()
            left = Node("binary", ("||", left, self.and_()))
        return left

    def and_(self) -> Node:
        left = self.not_()
        while self.at("&&"):
            self.take()
            left = Node("binary", ("&&", left, self.not_()))
        return left

    def not_(self) -> Node:
        if self.at("!"):
            self.take()
            return Node("unary", ("!", self.not_()))
        return self.compare()

    def compare(self) -> Node:
        left = self.additive()
        if self.at("==", "!=", "<", "<=", ">", ">="):
            op = self.take().text
            return Node("binary", (op, left, self.additive()))
        if self.at("=~"):
            raise self.fail("regular-expression match (=~) is not supported locally")
        return left

    def additive(self) -> Node:
        left = self.term()
        while self.at("+", "-"):
            op = self.take().text
            left = Node("binary", (op, left, self.term()))
        return left

    def term(self) -> Node:
        left = self.unary()
        while self.at("*", "/", "%"):
            op = self.take().text
            left = Node("binary", (op, left, self.unary()))
        return left

    def unary(self) -> Node:
        if self.at("-"):
            self.take()
            return Node("unary", ("-", self.unary()))
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while self.at("[") or (self.at(".") and node.kind != "name"):
            if self.take().text == ".":
                node = Node("index", (node, Node("lit", (self.take().text,))))
            else:
                key = self.ternary()
                self.take("]")
                node = Node("index", (node, key))
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "str":
            return Node("lit", (_unquote(tok.text),))
        if tok.kind == "num":
            return Node("lit", (float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text),))
        if tok.kind == "op" and tok.text == "(":
            node = self.ternary()
            self.take(")")
            return node
        if tok.kind == "op" and tok.text == "[":
            items: list[Node] = []
            while not self.at("]"):
                items.append(self.ternary())
                if not self.at("]"):
                    self.take(",")
            self.take("]")
            return Node("array", tuple(items))
        if tok.kind == "op" and tok.text == "{":
            pairs: list[tuple[Node, Node]] = []
            while not self.at("}"):
                key_tok = self.peek()
                if key_tok.kind in ("str", "name", "num"):
                    self.take()
                    key = Node("lit", (_unquote(key_tok.text) if key_tok.kind == "str" else key_tok.text,))
                else:
                    raise self.fail(f"a map key must be a string or a name, not {key_tok.text or 'the end'!r}")
                self.take(":")
                pairs.append((key, self.ternary()))
                if not self.at("}"):
                    self.take(",")
            self.take("}")
            return Node("map", tuple(pairs))
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                return Node("lit", (tok.text == "true",))
            if tok.text in ("nil", "null"):
                return Node("lit", (None,))
            return self.name(tok.text)
        raise self.fail(f"unexpected {tok.text or 'end of expression'!r}")

    def name(self, first: str) -> Node:
        path = [first]
        while self.at(".", "?.") or (self.at("[") and self.toks[self.i + 1].kind == "str"
                                     and self.toks[self.i + 2].text == "]"):
            if self.take().text in (".", "?."):
                nxt = self.take()
                if nxt.kind != "name":
                    raise self.fail(f"expected a name after '.', found {nxt.text or 'the end'!r}")
                path.append(nxt.text)
            else:
                path.append(_unquote(self.take().text))
                self.take("]")
        if self.at("("):
            self.take("(")
            args: list[Node] = []
            while not self.at(")"):
                args.append(self.ternary())
                if not self.at(")"):
                    self.take(",")
            self.take(")")
            return Node("call", (".".join(path), tuple(args)))
        return Node("name", (tuple(path),))


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(u[0-9a-fA-F]{4}|.)", lambda m: _ESCAPES.get(m.group(1)) or
                  (chr(int(m.group(1)[1:], 16)) if m.group(1).startswith("u") and len(m.group(1)) == 5
                   else m.group(1)), body)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def parse_expression(expr: str, what: str = "expression") -> Node:
    """The parse tree of an expr-lang expression (raises :class:`ExprError` when it does not parse)."""
    return _Parser(expr, what).parse()


def identifiers(node: Node) -> list[str]:
    """Dotted variable names an expression reads (``workflow.parameters.x``), in order, without repeats."""
    out: list[str] = []

    def walk(n: Any) -> None:
        if isinstance(n, Node):
            if n.kind == "name":
                name = ".".join(n.args[0])
                if name not in out:
                    out.append(name)
                return
            for a in n.args:
                walk(a)
        elif isinstance(n, tuple):
            for a in n:
                walk(a)

    walk(node)
    return out


def functions(node: Node) -> list[str]:
    """Function names an expression calls."""
    out: list[str] = []

    def walk(n: Any) -> None:
        if isinstance(n, Node):
            if n.kind == "call" and n.args[0] not in out:
                out.append(n.args[0])
            for a in n.args:
                walk(a)
        elif isinstance(n, tuple):
            for a in n:
                walk(a)

    walk(node)
    return out


# ---------------------------------------------------------------------------------------------- evaluation


class _Eval:
    def __init__(self, expr: str, what: str, lookup: Callable[[list[str]], Any] | None) -> None:
        self.expr, self.what, self.lookup = expr, what, lookup

    def fail(self, msg: str) -> ExprError:
        return ExprError(f"{self.what} {self.expr!r}: {msg}")

    def truth(self, v: Any) -> bool:
        if isinstance(v, bool):
            return v
        raise self.fail(f"{v!r} is not a boolean")

    def ev(self, n: Node) -> Any:
        k, a = n.kind, n.args
        if k == "lit":
            return a[0]
        if k == "name":
            if self.lookup is None:
                raise self.fail(f"bare word {'.'.join(a[0])!r} is not a value; quote strings ('{{{{…}}}}' == 'x')")
            return self.lookup(list(a[0]))
        if k == "ternary":
            return self.ev(a[1]) if self.truth(self.ev(a[0])) else self.ev(a[2])
        if k == "unary":
            if a[0] == "!":
                return not self.truth(self.ev(a[1]))
            return _arith("-", 0, self.ev(a[1]), self)
        if k == "binary":
            op, left = a[0], a[1]
            if op == "&&":
                return self.truth(self.ev(left)) and self.truth(self.ev(a[2]))
            if op == "||":
                return self.truth(self.ev(left)) or self.truth(self.ev(a[2]))
            if op == "??":
                v = self.ev(left)
                return self.ev(a[2]) if v is None else v
            x, y = self.ev(left), self.ev(a[2])
            if op in ("==", "!=", "<", "<=", ">", ">="):
                return _compare(op, x, y, self)
            if op == "+" and isinstance(x, str) and isinstance(y, str):
                return x + y
            return _arith(op, x, y, self)
        if k == "map":
            return {_key(self.ev(kn), self): self.ev(vn) for kn, vn in a}
        if k == "array":
            return [self.ev(x) for x in a]
        if k == "index":
            obj, key = self.ev(a[0]), self.ev(a[1])
            try:
                return obj[key]
            except (KeyError, IndexError, TypeError):
                raise self.fail(f"cannot index {obj!r} with {key!r}") from None
        if k == "call":
            name, args = a
            if name in _MULTI:
                return _MULTI[name]([self.ev(x) for x in args], self)
            if name not in _FUNCS:
                known = sorted({*_FUNCS, *_MULTI})
                raise self.fail(f"function {name}() is not supported locally ({', '.join(known)} are)")
            if len(args) != 1:
                raise self.fail(f"{name}() takes one argument here")
            return _FUNCS[name](self.ev(args[0]), self)
        raise self.fail(f"cannot evaluate {k}")


def _key(v: Any, p: _Eval) -> str:
    if not isinstance(v, str):
        raise p.fail(f"map key {v!r} is not a string")
    return v


def _compare(op: str, a: Any, b: Any, p: _Eval) -> bool:
    if op in ("==", "!="):
        equal = a == b if type(a) is type(b) or _is_num(a) and _is_num(b) else False
        return equal if op == "==" else not equal
    if not (_is_num(a) and _is_num(b)) and not (isinstance(a, str) and isinstance(b, str)):
        raise p.fail(f"cannot compare {a!r} {op} {b!r}")
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _arith(op: str, a: Any, b: Any, p: _Eval) -> Any:
    if not (_is_num(a) and _is_num(b)):
        raise p.fail(f"cannot compute {a!r} {op} {b!r}")
    if op in "/%" and b == 0:
        raise p.fail("division by zero")
    if op == "/":
        return a / b  # expr-lang's / is float division
    return {"+": a + b, "-": a - b, "*": a * b, "%": a % b}[op]


_GO_INT = re.compile(r"[+-]?\d+")


def _as_int(v: Any, p: _Eval) -> int:
    """expr-lang's ``int`` (Argo's ``asInt``): strings through strconv.Atoi, floats truncated."""
    if isinstance(v, bool):
        raise p.fail(f"asInt({v!r}): not a number")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    if isinstance(v, str) and _GO_INT.fullmatch(v):
        return int(v)
    raise p.fail(f"asInt({v!r}): not an integer")


def _as_float(v: Any, p: _Eval) -> float:
    if isinstance(v, bool):
        raise p.fail(f"asFloat({v!r}): not a number")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise p.fail(f"asFloat({v!r}): not a number") from None


_FUNCS: dict[str, Callable[[Any, _Eval], Any]] = {
    "asInt": _as_int,
    "int": _as_int,
    "asFloat": _as_float,
    "float": _as_float,
    "string": lambda v, p: go_sprint(v),
    "toJson": lambda v, p: go_json(v),
    "toJSON": lambda v, p: go_json(v),
    "len": lambda v, p: len(v) if isinstance(v, str | list | dict) else _raise(p, f"len({v!r})"),
    "lower": lambda v, p: str(v).lower(),
    "upper": lambda v, p: str(v).upper(),
    "trim": lambda v, p: str(v).strip(),
}


def _raise(p: _Eval, what: str) -> Any:
    raise p.fail(f"{what} is not defined")


def _split(args: list[Any], p: _Eval) -> list[str]:
    """expr-lang's ``split(str, sep[, n])``: Go's ``strings.Split`` / ``strings.SplitN`` (``split("", ",")`` is
    ``[""]``; n < 0 means every part, n == 0 none)."""
    if len(args) not in (2, 3) or not all(isinstance(x, str) for x in args[:2]):
        raise p.fail("split() takes a string, a separator and an optional count")
    text, sep = args[0], args[1]
    n = args[2] if len(args) == 3 else -1
    if not _is_num(n) or int(n) != n:
        raise p.fail(f"split(): count {n!r} is not an integer")
    if n == 0:
        return []
    if sep == "":
        raise p.fail("split() with an empty separator is not supported locally")
    return text.split(sep) if n < 0 else text.split(sep, int(n) - 1)


_MULTI: dict[str, Callable[[list[Any], _Eval], Any]] = {"split": _split}


# ---------------------------------------------------------------------------------------------- Go formatting


def _go_float(f: float, exp_low: float, exp_high: float) -> str:
    if math.isnan(f) or math.isinf(f):
        return {True: "+Inf", False: "-Inf"}[f > 0] if math.isinf(f) else "NaN"
    if f == 0:
        return "0"
    if abs(f) < exp_low or abs(f) >= exp_high:
        mant, _, exp = repr(f).replace("E", "e").partition("e")
        if not exp:
            d = Decimal(repr(f)).normalize()
            mant, _, exp = f"{d:e}".partition("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        return f"{mant.rstrip('0').rstrip('.') if '.' in mant else mant}e{sign}{digits.zfill(2)}"
    text = format(Decimal(repr(f)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def go_json(value: Any) -> str:
    """``json.Marshal`` of a value as Go writes it: compact, map keys sorted, HTML characters escaped."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int):
        text = str(value)
    elif isinstance(value, float):
        text = _go_float(value, 1e-6, 1e21)
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, dict):
        text = "{" + ",".join(f"{go_json(str(k))}:{go_json(v)}" for k, v in sorted(value.items())) + "}"
    elif isinstance(value, list | tuple):
        text = "[" + ",".join(go_json(v) for v in value) + "]"
    else:
        text = json.dumps(str(value))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def go_sprint(value: Any) -> str:
    """``fmt.Sprint`` of a value (expr-lang's ``string()``): floats as Go's %v writes them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value, 1e-4, 1e21)
    if value is None:
        return "<nil>"
    if isinstance(value, dict | list):
        return go_json(value)
    return str(value)


def render(value: Any) -> str:
    """A value as Argo renders it into a parameter string (strings raw, other values as Go's JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, float):
        return _go_float(value, 1e-6, 1e21)
    if isinstance(value, dict | list):
        return go_json(value)
    return str(value)


# ---------------------------------------------------------------------------------------------- entry points


def eval_when(expr: str) -> bool:
    """Evaluate a ``when`` condition whose ``{{…}}`` references are already substituted."""
    tree = _Parser(expr, "when").parse()
    value = _Eval(expr, "when", None).ev(tree)
    if not isinstance(value, bool):
        raise ExprError(f"when {expr!r}: evaluates to {value!r}, not true/false")
    return value


def eval_expression(expr: str, lookup: Callable[[list[str]], Any]) -> Any:
    """Evaluate the body of a ``{{= … }}`` expression tag; ``lookup`` resolves dotted names."""
    tree = parse_expression(expr)
    return _Eval(expr, "expression", lookup).ev(tree)


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
