"""Pre-tokenised rows (``processed_data``): ``{"input_ids": [...], "labels": [...]}``, validated as mini-trainer
reads them.

mini-trainer's loader (``mini_trainer.sampler``) needs ``input_ids`` and ``labels`` and computes ``len`` and
``num_loss_counted_tokens`` when they are absent. Each row is checked here, before any GPU pod starts:
``input_ids`` a non-empty list of token ids (integers >= 0), ``labels`` a list of the same length holding token
ids or -100 (masked), with at least one token to learn from after the first; ``len`` and
``num_loss_counted_tokens``, when given, must agree with them (a stale value would mis-weight the loss). Rows are
written back canonical (those four fields, nothing else).
"""

from collections import Counter
from typing import Any

import msgspec

from steps.dataset.chat_format import RowError

MASKED = -100
ACCEPTED = '"input_ids" (token ids) and "labels" (token ids or -100, same length)'


class TokenRow(msgspec.Struct, omit_defaults=True):
    """One pre-tokenised row; other columns are ignored."""

    input_ids: list[int] | None = None
    labels: list[int] | None = None
    len: int | None = None
    num_loss_counted_tokens: int | None = None


_decoder = msgspec.json.Decoder(TokenRow)
_encoder = msgspec.json.Encoder()


def _check(row: TokenRow, columns: str) -> bytes:
    if row.input_ids is None or row.labels is None:
        raise RowError(f"no pre-tokenised columns (columns found: {columns}); with processed_data every row needs "
                       f"{ACCEPTED}")
    ids, labels = row.input_ids, row.labels
    if not ids:
        raise RowError("input_ids is empty")
    if len(labels) != len(ids):
        raise RowError(f"labels has {len(labels)} entries but input_ids has {len(ids)}: they must be the same length")
    if (bad := next((t for t in ids if t < 0), None)) is not None:
        raise RowError(f"input_ids holds {bad}, not a token id (token ids are >= 0)")
    if (bad := next((t for t in labels if t < 0 and t != MASKED), None)) is not None:
        raise RowError(f"labels holds {bad}: use a token id or {MASKED} for a masked position")
    counted = sum(1 for t in labels[1:] if t != MASKED)
    if counted == 0:
        raise RowError(f"every label after the first is {MASKED}: the row has nothing to learn from")
    if row.len is not None and row.len != len(ids):
        raise RowError(f"len is {row.len} but input_ids has {len(ids)} tokens")
    if row.num_loss_counted_tokens is not None and row.num_loss_counted_tokens != counted:
        raise RowError(f"num_loss_counted_tokens is {row.num_loss_counted_tokens} but labels count {counted} "
                       "(drop the field to let the trainer count)")
    return _encoder.encode(TokenRow(input_ids=ids, labels=labels, len=len(ids), num_loss_counted_tokens=counted))


def _columns(obj: Any) -> str:
    if isinstance(obj, dict):
        return ", ".join(sorted(map(str, obj))) or "none"
    return f"a JSON {type(obj).__name__}, not an object"


def parse_tokenized_batch(payloads: list[Any], want: int) -> tuple[list[bytes], Counter[str], int]:
    """Validate up to ``want`` pre-tokenised rows (-1 = all): JSON lines (blank ones skipped) or decoded rows.
    Same contract as :func:`steps.dataset.chat_format.parse_batch`: (canonical lines, schema counts, payloads used);
    a bad row raises RowError(message, index)."""
    lines: list[bytes] = []
    i = -1
    try:
        for i, payload in enumerate(payloads):  # noqa: B007 - i names the bad row
            if isinstance(payload, bytes):
                if not payload.strip():
                    continue
                try:
                    row = _decoder.decode(payload)
                except msgspec.ValidationError as exc:
                    raise RowError(f"{exc} ({ACCEPTED})") from None
                except msgspec.DecodeError as exc:
                    raise RowError(f"not valid JSON ({str(exc).removeprefix('JSON is malformed: ')})") from None
                columns = _columns(msgspec.json.decode(payload)) if row.input_ids is None or row.labels is None else ""
            else:
                if not isinstance(payload, dict):
                    raise RowError(f"row is {_columns(payload)}; with processed_data every row needs {ACCEPTED}")
                try:
                    row = msgspec.convert(payload, TokenRow, strict=False)
                except msgspec.ValidationError as exc:
                    raise RowError(f"{exc} ({ACCEPTED})") from None
                columns = _columns(payload)
            lines.append(_check(row, columns))
            if len(lines) == want:
                break
    except RowError as exc:
        raise RowError(str(exc), i) from None
    return lines, Counter({"input_ids": len(lines)}), i + 1
