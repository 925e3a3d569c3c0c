"""A CronWorkflow's schedule and timezone, checked offline as Argo's validation checks them.

Argo (``workflow/validate.ValidateCronWorkflow``) parses every schedule with ``cron.ParseStandard`` of
github.com/robfig/cron/v3 (five fields: minute hour day-of-month month day-of-week; ``@daily``-style
descriptors; ``@every <duration>``; an optional ``CRON_TZ=``/``TZ=`` prefix) and the timezone with Go's
``time.LoadLocation`` (an IANA name; empty means UTC). This module follows the same rules, so a schedule Argo
would refuse is refused before anything is sent.
"""

import re
import zoneinfo

from steps.common.errors import StepError

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))
_NAMES = {
    "month": {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                              "nov", "dec"])},
    "day of week": {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_GO_DURATION = re.compile(r"^[+-]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
EXAMPLE = "e.g. \"0 3 * * 0\" (Sundays 03:00) or @daily"


class CronError(StepError):
    """A schedule or timezone Argo would refuse."""


def _number(text: str, field: str) -> int:
    names = _NAMES.get(field, {})
    if text.lower() in names:
        return names[text.lower()]
    if not re.fullmatch(r"[+-]?\d+", text):
        raise CronError(f"failed to parse int from {text}")
    value = int(text)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {text}")
    return value


def _range(expr: str, field: str, lo: int, hi: int) -> None:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    if range_and_step[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start = _number(low_and_high[0], field)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _number(low_and_high[1], field)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 2:
        step = _number(range_and_step[1], field)
        if len(low_and_high) == 1 and range_and_step[0] not in ("*", "?"):
            end = hi  # "N/step" means N through the end
        if step == 0:
            raise CronError(f"step of range should be a positive number: {expr}")
    elif len(range_and_step) > 2:
        raise CronError(f"too many slashes: {expr}")
    if start < lo:
        raise CronError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise CronError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")


def check_timezone(tz: str) -> None:
    """Raise CronError unless Go's ``time.LoadLocation`` accepts ``tz`` ("" and "UTC" are UTC)."""
    if tz in ("", "UTC", "Local"):
        return
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise CronError(f"timezone {tz!r} is not an IANA time zone name (e.g. Europe/Berlin, "
                        "America/New_York, UTC)") from None


def check_schedule(schedule: str) -> None:
    """Raise CronError unless robfig/cron's ``ParseStandard`` accepts ``schedule``."""
    spec = schedule.strip()
    try:
        if not spec:
            raise CronError("empty spec string")
        if spec.startswith(("TZ=", "CRON_TZ=")):
            prefix, _, spec = spec.partition(" ")
            check_timezone(prefix.split("=", 1)[1])
            spec = spec.strip()
        if spec.startswith("@"):
            if spec in _DESCRIPTORS:
                return
            if spec.startswith("@every "):
                if not _GO_DURATION.fullmatch(spec[len("@every "):].strip()):
                    raise CronError(f"failed to parse duration {spec}")
                return
            raise CronError(f"unrecognized descriptor: {spec}")
        fields = spec.split()
        if len(fields) != 5:
            raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
        for text, (field, lo, hi) in zip(fields, _FIELDS, strict=True):
            for part in text.split(","):
                try:
                    _range(part, field, lo, hi)
                except CronError as exc:
                    raise CronError(f"{field}: {exc}") from None
    except CronError as exc:
        raise CronError(f"schedule {schedule!r}: {exc} ({EXAMPLE})") from None
