"""The chat row schema: validation of every row, and ShareGPT conversion, with msgspec (C speed).

Accepted shapes:
- ``{"messages": [{"role": "system|user|assistant|tool", "content": "..."}, ...]}``
- ShareGPT ``{"conversations": [{"from": "human|gpt|system|...", "value": "..."}, ...]}``, converted.

Every output row is canonical ``{"messages": [...]}``; other columns are dropped so that the
training data loader sees one stable schema.
"""

from collections import Counter
from typing import Any, Literal

import msgspec

ROLES = ("system", "user", "assistant", "tool")
ACCEPTED = ('"messages" (list of {role, content}) or ShareGPT "conversations" (list of {from, value})')
SHAREGPT_ROLES = {
    "system": "system",
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "model": "assistant",
    "bot": "assistant",
    "tool": "tool",
    "function": "tool",
    "observation": "tool",
}


class StrictMessage(msgspec.Struct, forbid_unknown_fields=True):
    """A chat turn with only the canonical fields (fast path: the raw line is kept as is)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class StrictRow(msgspec.Struct, forbid_unknown_fields=True):
    """A row that is exactly ``{"messages": [{role, content}, ...]}``."""

    messages: list[StrictMessage]


class Message(msgspec.Struct, omit_defaults=True):
    """One chat turn."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class Turn(msgspec.Struct):
    """One ShareGPT turn."""

    value: str
    from_: str = msgspec.field(name="from")


class Row(msgspec.Struct):
    """A dataset row; unknown columns are ignored."""

    messages: list[Message] | None = None
    conversations: list[Turn] | None = None


class OutRow(msgspec.Struct):
    """A canonical output row."""

    messages: list[Message]


class RowError(ValueError):
    """A row that is not valid chat data; the message says why."""


_decoder = msgspec.json.Decoder(Row)
_strict_decoder = msgspec.json.Decoder(StrictRow)
_encoder = msgspec.json.Encoder()


def _explain(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    text = text.replace("Invalid enum value", "invalid role").replace("`$.", "`")
    if "invalid role" in text:
        text += f"; allowed roles: {', '.join(ROLES)}"
    return text


def _columns_of(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(sorted(map(str, obj))) or "none"
    return f"a JSON {type(obj).__name__}, not an object"


def _finish(row: Row, raw: Any) -> tuple[list[Message], str]:
    if row.messages is not None:
        msgs, schema = row.messages, "messages"
    elif row.conversations is not None:
        msgs, schema = _convert(row.conversations), "conversations"
    else:
        obj = raw if isinstance(raw, dict) else msgspec.json.decode(raw)
        raise RowError(f"no chat column (columns found: {_columns_of(obj)}); accepted shapes: {ACCEPTED}")
    if not msgs:
        raise RowError(f"{schema} is empty")
    if not any(m.role == "assistant" for m in msgs):
        raise RowError(f"{schema} has no assistant turn, so there is nothing to learn from it")
    return msgs, schema


def _convert(turns: list[Turn]) -> list[Message]:
    out = []
    for i, t in enumerate(turns):
        role = SHAREGPT_ROLES.get(t.from_.strip().lower())
        if role is None:
            raise RowError(
                f"conversations[{i}].from is {t.from_!r}; known speakers: {', '.join(sorted(SHAREGPT_ROLES))}"
            )
        out.append(Message(role=role, content=t.value))
    return out


def parse_json_row(line: bytes) -> tuple[bytes, str]:
    """Validate one JSON document; return the canonical JSON line (no newline) and the schema found."""
    try:  # fast path: already canonical, so the bytes are kept and nothing is re-encoded
        msgs = _strict_decoder.decode(line).messages
        for m in reversed(msgs):
            if m.role == "assistant":
                return line.rstrip(b"\r\n"), "messages"
    except (msgspec.ValidationError, msgspec.DecodeError):
        pass
    try:
        row = _decoder.decode(line)
    except msgspec.ValidationError as exc:
        raise RowError(_explain(exc)) from None
    except msgspec.DecodeError as exc:
        raise RowError(f"not valid JSON ({str(exc).removeprefix('JSON is malformed: ')})") from None
    msgs, schema = _finish(row, line)
    return _encoder.encode(OutRow(msgs)), schema


def parse_obj_row(obj: Any) -> tuple[bytes, str]:
    """Validate one already-decoded row (Parquet, CSV, JSON array, Hub); same result as parse_json_row."""
    if not isinstance(obj, dict):
        raise RowError(f"row is {_columns_of(obj)}; accepted shapes: {ACCEPTED}")
    for key in ("messages", "conversations"):
        if isinstance(obj.get(key), str | bytes):  # CSV cells hold JSON text
            try:
                obj = {**obj, key: msgspec.json.decode(obj[key])}
            except msgspec.DecodeError:
                raise RowError(f"column {key!r} holds text that is not a JSON list") from None
    if obj.get("messages") is None and obj.get("conversations") is None:
        raise RowError(f"no chat column (columns found: {_columns_of(obj)}); accepted shapes: {ACCEPTED}")
    try:
        row = msgspec.convert(obj, Row, strict=False)
    except msgspec.ValidationError as exc:
        raise RowError(_explain(exc)) from None
    msgs, schema = _finish(row, obj)
    return _encoder.encode(OutRow(msgs)), schema


def parse_batch(payloads: list[Any], want: int) -> tuple[list[bytes], Counter[str], int]:
    """Validate up to ``want`` rows (-1 = all) of a batch of JSON lines (blank ones skipped) or decoded rows.

    Returns the canonical lines, the schemas found with their counts, and how many payloads were used. A bad
    row raises
    RowError(message, index in ``payloads``). Rows that are already canonical JSON lines take an inlined
    fast path (one strict decode, the raw bytes kept): most of the cost of a large dataset is here.
    """
    lines: list[bytes] = []
    schemas: list[str] = []  # of rows off the fast path
    add, mark = lines.append, schemas.append
    strict = _strict_decoder.decode
    i, fast = -1, 0
    try:
        for i, payload in enumerate(payloads):  # noqa: B007 - i names the bad row
            if type(payload) is bytes:
                try:
                    msgs = strict(payload).messages
                except (msgspec.ValidationError, msgspec.DecodeError):
                    msgs = None
                    if not payload or payload.isspace():
                        continue
                if msgs and (msgs[-1].role == "assistant" or any(m.role == "assistant" for m in msgs)):
                    add(payload[:-1] if payload[-1:] == b"\r" else payload)
                    fast += 1
                else:  # not canonical, or not valid: the full path converts it or says what is wrong
                    line, schema = parse_json_row(payload)
                    add(line)
                    mark(schema)
            else:
                line, schema = parse_obj_row(payload)
                add(line)
                mark(schema)
            if len(lines) == want:
                break
    except RowError as exc:
        raise RowError(str(exc), i) from None
    counts = Counter(schemas)
    if fast:
        counts["messages"] += fast
    return lines, counts, i + 1
