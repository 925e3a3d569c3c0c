"""key=value,... settings: one parser for env vars, labels, annotations, scheduler kwargs and lm-eval arguments."""

import pytest

from steps.common.errors import StepError
from steps.common.kv import parse_pairs, parse_typed, typed_value


def test_pairs_are_trimmed_and_keep_everything_after_the_first_equals_sign() -> None:
    assert parse_pairs(" a = 1 , b=x=y,c=", "x") == {"a": "1", "b": "x=y", "c": ""}
    assert parse_pairs("", "x") == {} and parse_pairs("   ", "x") == {}


@pytest.mark.parametrize(("text", "message"), [
    ("a=1,,b=2", "item 2 is empty"), ("a=1,", "item 2 is empty"), ("a", "'a' is not key=value"),
    ("=1", "has an empty key"), ("a=1,a=2", "key 'a' is given twice"),
])
def test_bad_pairs_name_the_setting(text: str, message: str) -> None:
    with pytest.raises(StepError, match=f"^env_vars: .*{message}"):
        parse_pairs(text, "env_vars")


@pytest.mark.parametrize(("text", "value"), [
    ("2", 2), ("-3", -3), ("1.5", 1.5), ("1e-6", 1e-6), (".5", 0.5), ("TRUE", True), ("false", False),
    ("cosine", "cosine"), ("1.2.3", "1.2.3"), ("0x10", "0x10"), ("", ""),
])
def test_values_are_typed_as_lm_eval_types_them(text: str, value: object) -> None:
    got = typed_value(text)
    assert got == value and type(got) is type(value)


def test_typed_mappings_from_json_or_pairs() -> None:
    assert parse_typed('{"num_cycles": 2, "name": "x"}', "k") == {"num_cycles": 2, "name": "x"}
    assert parse_typed("num_cycles=2, power=1.5", "k") == {"num_cycles": 2, "power": 1.5}
    assert parse_typed({"a": 1}, "k") == {"a": 1} and parse_typed(None, "k") == {}
    for bad in ('{"a": 1', "[1]"):
        with pytest.raises(StepError, match="^k"):
            parse_typed(bad, "k")
