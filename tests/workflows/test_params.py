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


@pytest.mark.parametrize("template", params.TEMPLATES)
def test_readme_tables_are_current(template: str) -> None:
    from workflows.readme import table_in

    text = (ROOT / "docs" / "parameters.md").read_text(encoding="utf-8")
    assert table_in(text, template) == params.readme_table(template), \
        "docs/parameters.md's table is stale: run `make readme`"


# ------------------------------------------------------------------------------------- the full template

FULL_UPSTREAM = DATA / "upstream-osft-inputs.json"  # upstream osft's 44 inputs


def full_upstream_inputs() -> list[dict]:
    return json.loads(FULL_UPSTREAM.read_text(encoding="utf-8"))["inputs"]


def test_full_template_starts_with_upstream_osfts_44_inputs_in_order() -> None:
    """Names, types, defaults and order of upstream's full osft pipeline, then the additions both templates share."""
    upstream = full_upstream_inputs()
    assert len(upstream) == 44
    full = params.params_for(params.FULL)
    assert [p.name for p in full[:44]] == [u["name"] for u in upstream]
    for p, u in zip(full, upstream, strict=False):
        assert p.type.__name__ == u["type"], u["name"]
        if u.get("required"):
            assert p.required, u["name"]
        else:
            assert p.default_for(params.FULL) == u["default"], u["name"]
            assert type(p.default_for(params.FULL)) is type(u["default"]), u["name"]
    added = [p.name for p in full[44:]]
    minimal_added = [p.name for p in params.params_for(params.MINIMAL) if p.name not in {u["name"] for u in upstream}]
    assert added == minimal_added  # our additions (and the seed's hf_token) belong to both, in one order
    assert "phase_00_workspace_opt_size" in added and "phase_04_registry_opt_storage_uri" in added


def test_a_param_carries_a_default_per_template() -> None:
    cpu, fmt = params.BY_NAME["phase_02_train_opt_cpu"], params.BY_NAME["phase_04_registry_opt_format_version"]
    assert (cpu.default_for(params.MINIMAL), cpu.default_for(params.FULL)) == ("4", "8")
    assert (fmt.default_for(params.MINIMAL), fmt.default_for(params.FULL)) == ("2.9", "1.0")
    data = {"phase_01_dataset_man_data_uri": "/d.jsonl"}
    assert params.validate(data)["phase_02_train_opt_cpu"] == "4"
    assert params.validate(data, params.FULL)["phase_02_train_opt_cpu"] == "8"
    table = params.readme_table(params.MINIMAL)
    assert "| `phase_02_train_opt_cpu` | `str` | `4` |" in table and "(default `8` in osft-pipeline)" in table
    assert "| `phase_02_train_opt_cpu` | `str` | `8` |" in params.readme_table(params.FULL)


def test_the_minimal_template_keeps_its_contract() -> None:
    """The minimal template's parameter list is exactly what it was: upstream osft_minimal's 20 + hf_token + ours
    (the three continual-learning ones included)."""
    minimal = params.params_for(params.MINIMAL)
    assert len(minimal) == 40
    assert [p.name for p in minimal[:21]] == [p.name for p in params.ORIGINAL]
    assert not {p.name for p in minimal} & {"phase_02_train_opt_lr_scheduler", "phase_02_train_opt_labels",
                                             "phase_03_eval_opt_gen_kwargs", "phase_04_registry_man_reg_author"}


def test_a_full_only_parameter_on_the_minimal_template_names_the_full_one() -> None:
    values = {"phase_01_dataset_man_data_uri": "/d.jsonl", "phase_02_train_opt_lr_warmup": "10"}
    with pytest.raises(ParamError, match="is a parameter of the osft-pipeline template") as info:
        params.validate(values)
    assert "templates/osft-pipeline.yaml" in str(info.value)
    assert params.validate(values, params.FULL)["phase_02_train_opt_lr_warmup"] == 10


@pytest.mark.parametrize(("raw", "expected"), [
    ("", {}), ("{}", {}), ('{"dtype": "bfloat16", "max_length": 2048}', {"dtype": "bfloat16", "max_length": 2048}),
    ("max_gen_toks=64, temperature=0.0, do_sample=false", {"max_gen_toks": 64, "temperature": 0.0, "do_sample": False}),
    ({"a": 1}, {"a": 1}),
])
def test_dict_parameters_take_json_or_key_values_typed(raw: object, expected: dict) -> None:
    p = params.BY_NAME["phase_03_eval_opt_gen_kwargs"]
    assert p.coerce(raw) == expected
    assert params.to_text(p.coerce(raw)) == json.dumps(expected)


def test_dict_parameters_refuse_what_is_not_a_mapping() -> None:
    p = params.BY_NAME["phase_03_eval_opt_model_args"]
    for bad in ("[1, 2]", "{oops", "dtype"):
        with pytest.raises(ParamError, match="^phase_03_eval_opt_model_args="):
            p.coerce(bad)
