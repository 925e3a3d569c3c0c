"""``key=value,key=value`` settings (upstream's format for env vars, labels, annotations and scheduler kwargs),
parsed once, the same way for every step and for the preflight.

:func:`parse_pairs` keeps values as text (env vars, labels, annotations); :func:`parse_typed` also accepts a
JSON object and types ``key=value`` values the way lm-eval's ``simple_parse_args_string`` does (``true``/``false``
-> bool, ``3`` -> int, ``0.1`` -> float, anything else text), so a scheduler kwarg such as ``min_lr=1e-6`` reaches
the library as the number it is, not as the string upstream's pipeline passes.
"""

import json
import re
from typing import Any

from steps.common.errors import StepError

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """``"a=1, b=x=y"`` -> ``{"a": "1", "b": "x=y"}`` (keys and values trimmed, in order). Refuses an item without
    ``=``, an empty key, an empty item (a stray comma) and a key given twice, naming ``what``."""
    out: dict[str, str] = {}
    if not str(text).strip():
        return out
    for i, item in enumerate(str(text).split(",")):
        if not item.strip():
            raise StepError(f"{what}: item {i + 1} is empty (a stray comma?); write key=value,key=value")
        key, sep, value = item.partition("=")
        if not sep:
            raise StepError(f"{what}: {item.strip()!r} is not key=value; write key=value,key=value")
        key = key.strip()
        if not key:
            raise StepError(f"{what}: {item.strip()!r} has an empty key; write key=value,key=value")
        if key in out:
            raise StepError(f"{what}: key {key!r} is given twice")
        out[key] = value.strip()
    return out


def typed_value(text: str) -> bool | int | float | str:
    """``true``/``false`` (any case) -> bool, an integer -> int, a decimal or exponent number -> float, else text."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if _NUMBER.match(text.strip()):
        number = text.strip()
        if re.fullmatch(r"[+-]?\d+", number):
            return int(number)
        return float(number)
    return text


def parse_typed(value: Any, what: str) -> dict[str, Any]:
    """A mapping from a dict, a JSON object (``{"min_lr": 1e-6}``) or ``key=value,...`` text with typed values."""
    if isinstance(value, dict):
        return dict(value)
    text = "" if value is None else str(value).strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            out = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StepError(f"{what} is not a valid JSON object ({exc.msg} at character {exc.pos})") from None
        if not isinstance(out, dict):
            raise StepError(f"{what} must be a JSON object or key=value,key=value")
        return out
    return {k: typed_value(v) for k, v in parse_pairs(text, what).items()}
