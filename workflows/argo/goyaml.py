"""YAML as Kubernetes reads it: plain scalars resolved by Go's yaml.v2 rules (``sigs.k8s.io/yaml``).

PyYAML (YAML 1.1) and Go's reader disagree on some plain scalars: ``5e-06`` is a *string* to PyYAML
(its float needs a dot) but a *float* to Go, so a template PyYAML writes unquoted reaches the API server
as a number where the CRD wants a string. :func:`load` reads YAML the way the server does; :func:`dump`
quotes every string Go would not read back as a string.
"""

import math
import re
from typing import Any

import yaml

# sigs.k8s.io/yaml -> goyaml.v2 resolve.go
_TRUE = {"y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON"}
_FALSE = {"n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF"}
_NULL = {"", "~", "null", "Null", "NULL"}
_INF = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"}
_NINF = {"-.inf", "-.Inf", "-.INF"}
_NAN = {".nan", ".NaN", ".NAN"}
_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
# strconv.ParseInt(s, 0, 64): sign, 0x/0o/0b prefixes, a leading 0 means octal, '_' between digits
_INT = re.compile(r"^[-+]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO]?(_?[0-7])+|[1-9](_?[0-9])*|0)$")
_TIMESTAMP = re.compile(r"^\d{4}-\d\d?-\d\d?([Tt ]|$)")


def resolve(plain: str) -> Any:
    """The value Go's YAML reader gives an unquoted scalar."""
    if plain in _TRUE:
        return True
    if plain in _FALSE:
        return False
    if plain in _NULL:
        return None
    if plain in _INF:
        return math.inf
    if plain in _NINF:
        return -math.inf
    if plain in _NAN:
        return math.nan
    if _INT.match(plain):
        text = plain.replace("_", "")
        sign = -1 if text.startswith("-") else 1
        body = text.lstrip("+-")
        if body[:2] in ("0x", "0X"):
            return sign * int(body[2:], 16)
        if body[:2] in ("0b", "0B"):
            return sign * int(body[2:], 2)
        if body[:2] in ("0o", "0O"):
            return sign * int(body[2:], 8)
        if len(body) > 1 and body.startswith("0"):
            return sign * int(body[1:], 8)
        return sign * int(body)
    if _FLOAT.match(plain):
        return float(plain)
    if _TIMESTAMP.match(plain):
        return plain  # a timestamp in Go (time.Time); strings that look like one are quoted by dump()
    return plain


def is_go_string(text: str) -> bool:
    """Whether Go's YAML reader reads ``text``, written unquoted, back as the same string."""
    return resolve(text) == text and not _TIMESTAMP.match(text)


def _value(node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        if node.style is None and node.tag in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:int",
                                                "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool",
                                                "tag:yaml.org,2002:null", "tag:yaml.org,2002:timestamp"):
            return resolve(node.value)
        return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_value(n) for n in node.value]
    if isinstance(node, yaml.MappingNode):
        return {_value(k): _value(v) for k, v in node.value}
    raise ValueError(f"unsupported YAML node {node!r}")


def load_all(text: str) -> list[Any]:
    """Every document of ``text``, scalars typed as Go's reader types them (empty documents dropped)."""
    out = []
    for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
        if node is not None:
            value = _value(node)
            if value is not None:
                out.append(value)
    return out


def load(text: str) -> Any:
    """The first document of ``text``, read as Go reads it."""
    docs = load_all(text)
    return docs[0] if docs else None


class Dumper(yaml.SafeDumper):
    """Quotes strings that Go would read as another type; block style for multi-line strings."""


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    style = None if is_go_string(data) else "'"
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


Dumper.add_representer(str, _represent_str)


def dump(doc: Any, **kwargs: Any) -> str:
    """YAML text whose strings Go reads back as strings (keys in the given order)."""
    kwargs.setdefault("sort_keys", False)
    kwargs.setdefault("default_flow_style", False)
    kwargs.setdefault("width", 1 << 20)  # never fold a line: a long {{=…}} tag stays on one line
    return yaml.dump(doc, Dumper=Dumper, **kwargs)


def dump_all(docs: list[Any], **kwargs: Any) -> str:
    kwargs.setdefault("sort_keys", False)
    kwargs.setdefault("default_flow_style", False)
    kwargs.setdefault("width", 1 << 20)  # never fold a line: a long {{=…}} tag stays on one line
    return yaml.dump_all(docs, Dumper=Dumper, **kwargs)
