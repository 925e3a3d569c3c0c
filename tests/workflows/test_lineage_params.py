"""The continual-learning parameters: one line naming the parameter for each combination the pipeline refuses,
checked before anything runs (the CLI, submit and the preflight task use the same rules)."""

import pytest

from workflows.params import FULL, MINIMAL, ParamError, validate

DATA = {"phase_01_dataset_man_data_uri": "s3://bucket/daily/"}
S3 = {"phase_04_registry_opt_storage_uri": "s3://models/osft"}


@pytest.mark.parametrize("template", [MINIMAL, FULL])
@pytest.mark.parametrize(("values", "message"), [
    ({"phase_02_train_opt_continue_from": "latest"},
     r"^phase_02_train_opt_continue_from: continue_from='latest' needs a storage URI "
     r"\(phase_04_registry_opt_storage_uri"),
    ({**S3, "phase_01_dataset_opt_since": "last"},
     r"^phase_01_dataset_opt_since: since=last needs continue_from"),
    ({**S3, "phase_02_train_opt_continue_from": "latest", "phase_01_dataset_opt_since": "yesterday"},
     r"^phase_01_dataset_opt_since: since='yesterday': must be '' \(all the data\) or 'last'"),
    ({**S3, "phase_03_eval_opt_max_forgetting": "-0.5"},
     r"^phase_03_eval_opt_max_forgetting: max_forgetting=-0.5: must be a number >= 0"),
    ({**S3, "phase_02_train_opt_continue_from": "../etc"},
     r"^phase_02_train_opt_continue_from: continue_from='../etc': must be '' \(train the base model\), 'latest'"),
    ({**S3, "phase_02_train_opt_continue_from": "latest", "phase_01_dataset_opt_since": "last",
      "phase_01_dataset_man_data_uri": "hf://org/chat"},
     r"^phase_01_dataset_opt_since: since=last needs an s3:// prefix or a folder"),
])
def test_refused_with_one_line_naming_the_parameter(template: str, values: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message) as err:
        validate({**DATA, **values}, template)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("template", [MINIMAL, FULL])
def test_the_lineage_settings_pass_with_a_storage_uri(template: str) -> None:
    out = validate({**DATA, **S3, "phase_02_train_opt_continue_from": "latest", "phase_01_dataset_opt_since": "last",
                    "phase_03_eval_opt_max_forgetting": "0"}, template)
    assert out["phase_02_train_opt_continue_from"] == "latest" and out["phase_03_eval_opt_max_forgetting"] == 0.0
    assert validate({**DATA}, template)["phase_02_train_opt_continue_from"] == ""  # default: the base model
