"""The parameter spec: names and defaults of the original pipeline, validation, the table in docs/parameters.md."""

import json
import re
from pathlib import Path

import pytest

from workflows import params
from workflows.params import ParamError

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "spec"
SEED_README = DATA / "osft-minimal-pipeline-README.md"  # the seed's README: the original 19 inputs
UPSTREAM = DATA / "upstream-osft-minimal-inputs.json"  # upstream osft_minimal's current 20 inputs


def seed_rows() -> dict[str, tuple[str, str]]:
    """name -> (type, default as written) from the seed README's Inputs table, in its order."""
    rows = {}
    for line in SEED_README.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| `(phase_\w+)` \| `(\w+)` \| (.*?) \|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).strip().strip("`"))
    return rows


def upstream_inputs() -> list[dict]:
    return json.loads(UPSTREAM.read_text(encoding="utf-8"))["inputs"]


def test_seed_inputs_are_kept_with_their_types_and_defaults() -> None:
    spec = seed_rows()
    assert len(spec) == 19
    ours = {p.name: p for p in params.ORIGINAL}
    assert set(spec) <= set(ours)
    for name, (type_name, default) in spec.items():
        p = ours[name]
        assert p.type.__name__ == type_name, name
        if default == "None":
            assert p.required, name
        elif p.type is list:
            assert p.default == eval(default), name  # the spec writes Python list literals
        elif p.type is bool:
            assert p.default is (default == "True"), name
        else:
            assert p.coerce(default) == p.default, name


def test_upstream_inputs_are_the_original_ones_in_order() -> None:
    """Upstream's current osft_minimal (20 inputs) plus the seed's hf_token, which upstream dropped."""
    upstream = upstream_inputs()
    assert len(upstream) == 20
    assert [p.name for p in params.UPSTREAM] == [u["name"] for u in upstream]
    assert [p.name for p in params.ORIGINAL if not p.upstream] == ["phase_01_dataset_opt_hf_token"]
    assert [p.name for p in params.PARAMS[:len(params.ORIGINAL)]] == [p.name for p in params.ORIGINAL]
    for u in upstream:
        p = params.BY_NAME[u["name"]]
        assert p.type.__name__ == u["type"], u["name"]
        assert p.required if u.get("required") else p.default == u["default"], u["name"]
    assert "phase_02_train_opt_runtime" in {u["name"] for u in upstream}  # original, not added
    assert params.BY_NAME["phase_04_registry_opt_format_version"].default == "2.9"


def test_added_names_follow_upstreams_full_osft_pipeline() -> None:
    """seed, eval batch and limit carry the names and defaults of upstream's full osft pipeline."""
    full = json.loads(UPSTREAM.read_text(encoding="utf-8"))["full_osft_pipeline"]["inputs"]
    assert {f["name"] for f in full} == {"phase_02_train_opt_seed", "phase_03_eval_opt_batch",
                                         "phase_03_eval_opt_limit"}
    for f in full:
        p = params.BY_NAME[f["name"]]
        assert (p.type.__name__, p.default, p.original) == (f["type"], f["default"], False), f["name"]
    assert "phase_03_eval_opt_batch_size" not in params.BY_NAME


def test_only_the_data_uri_is_required() -> None:
    assert [p.name for p in params.PARAMS if p.required] == ["phase_01_dataset_man_data_uri"]
    with pytest.raises(ParamError, match="phase_01_dataset_man_data_uri is required"):
        params.validate({})


def test_strings_from_argo_are_coerced() -> None:
    got = params.validate({
        "phase_01_dataset_man_data_uri": "hf://LipengCS/Table-GPT:All",
        "phase_01_dataset_man_data_split": "0.8",
        "phase_02_train_man_train_batch": "16",
        "phase_02_train_opt_use_liger": "false",
        "phase_03_eval_man_eval_tasks": '["arc_easy", "mmlu"]',
    })
    assert got["phase_01_dataset_man_data_split"] == 0.8
    assert got["phase_02_train_man_train_batch"] == 16
    assert got["phase_02_train_opt_use_liger"] is False
    assert got["phase_03_eval_man_eval_tasks"] == ["arc_easy", "mmlu"]
    assert params.validate({"phase_01_dataset_man_data_uri": "/d.jsonl",
                            "phase_03_eval_man_eval_tasks": "arc_easy, gsm8k"})["phase_03_eval_man_eval_tasks"] == [
        "arc_easy", "gsm8k"]


@pytest.mark.parametrize(("name", "value", "message"), [
    ("phase_01_dataset_man_data_split", "0", r"must be in \(0, 1\]"),
    ("phase_01_dataset_man_data_split", "1.5", r"must be in \(0, 1\]"),
    ("phase_01_dataset_man_data_split", "abc", "must be a number"),
    ("phase_02_train_man_train_batch", "1.5", "must be an integer"),
    ("phase_02_train_man_train_unfreeze", "0", r"must be in \(0, 1\]"),
    ("phase_02_train_man_train_unfreeze", "1.0", r"silently replaces a frozen-rank ratio of 0 with 0.5"),
    ("phase_02_train_opt_learning_rate", "0.5", r"must be in \[1e-07, 0.01\]"),
    ("phase_02_train_man_train_model", "oci://nothing", "oci://registry/repository"),
    ("phase_04_registry_man_reg_version", "1.0", "semantic version"),
    ("phase_04_registry_opt_port", "70000", r"must be in \[1, 65535\]"),
    ("phase_04_registry_man_address", "not a host!", "not a valid host name"),
    ("phase_03_eval_man_eval_tasks", '["arc easy"]', "invalid task name"),
    ("phase_01_dataset_opt_subset", "-1", "must be >= 0"),
    ("phase_02_train_opt_use_liger", "maybe", "must be true or false"),
    ("phase_01_dataset_man_data_uri", "ftp://host/x.jsonl", "unknown scheme"),
    ("phase_01_dataset_man_data_uri", "pvc://../etc/passwd", "escapes the volume"),
])
def test_bad_values_name_the_parameter(name: str, value: str, message: str) -> None:
    values = {"phase_01_dataset_man_data_uri": "hf://org/name", name: value}
    with pytest.raises(ParamError, match=message) as info:
        params.validate(values)
    assert str(info.value).startswith(name)
    assert "\n" not in str(info.value)


def test_unknown_parameter_suggests_the_closest_name() -> None:
    with pytest.raises(ParamError, match="did you mean phase_01_dataset_man_data_split"):
        params.validate({"phase_01_dataset_man_data_uri": "hf://o/n", "phase_01_dataset_man_data_splt": "0.5"})


def test_secret_values_are_masked_in_errors() -> None:
    p = params.Param("token_like", int, 0, "x", secret=True)
    with pytest.raises(ParamError) as info:
        p.coerce("hf_supersecretvalue")
    assert "supersecret" not in str(info.value)


def test_parse_overrides() -> None:
    assert params.parse_overrides(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(ParamError, match="name=value"):
        params.parse_overrides(["novalue"])


def test_readme_table_is_current() -> None:
    text = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    start, end = "<!-- params:start -->\n", "<!-- params:end -->"
    current = text[text.index(start) + len(start): text.index(end)]
    assert current == params.readme_table(), "docs/parameters.md's table is stale: run `make readme`"
