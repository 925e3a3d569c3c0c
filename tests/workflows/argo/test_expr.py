"""The when / depends / expression-tag subsets the local runner evaluates."""

import pytest

from workflows.argo.expr import ExprError, depends_targets, eval_depends, eval_expression, eval_when


@pytest.mark.parametrize(("expr", "expected"), [
    ("'http://mr' != ''", True),
    ("'' != ''", False),
    ("'pass' == 'pass' && 'x' == 'y'", False),
    ("'a' == 'b' || (2 > 1 && !false)", True),
    ("3 >= 3.0", True),
    ('"it\'s" == "it\'s"', True),
    ("true", True),
    ("'1' == 1", False),
])
def test_when(expr: str, expected: bool) -> None:
    assert eval_when(expr) is expected


@pytest.mark.parametrize(("expr", "fragment"), [
    ("foo == 'x'", "bare word 'foo'"),
    ("'a'", "not true/false"),
    ("'abc' =~ 'a.*'", "=~"),
    ("'a' == ", "unexpected"),
    ("'a' < 2", "cannot compare"),
])
def test_when_errors_name_the_expression(expr: str, fragment: str) -> None:
    with pytest.raises(ExprError) as err:
        eval_when(expr)
    assert fragment in str(err.value) and repr(expr) in str(err.value)


def test_depends_semantics() -> None:
    phases = {"a": "Succeeded", "b": "Skipped", "c": "Failed", "train-model": "Omitted"}
    assert eval_depends("a && b", phases)  # a bare name accepts Succeeded or Skipped, as in Argo
    assert not eval_depends("a && c", phases)
    assert eval_depends("c.Failed", phases)
    assert eval_depends("(a.Succeeded || c.Succeeded) && !train-model.Succeeded", phases)
    assert not eval_depends("b.Succeeded", phases)
    assert depends_targets("(a.Succeeded || c) && train-model") == ["a", "c", "train-model"]
    with pytest.raises(ExprError, match="unknown task 'zz'"):
        eval_depends("zz", phases)
    with pytest.raises(ExprError, match="unknown result 'Finished'"):
        eval_depends("a.Finished", phases)


def test_expression_tags() -> None:
    values = {"workflow.parameters.version": "", "workflow.name": "run-1", "workflow.parameters.gpus": "2",
              "tasks.e-1.outputs.result": "ok"}

    def lookup(path: list[str]) -> str:
        return values[".".join(path)]

    assert eval_expression("workflow.parameters.version == '' ? workflow.name : workflow.parameters.version",
                           lookup) == "run-1"
    assert eval_expression("asInt(workflow.parameters.gpus) * 2 + 1", lookup) == 5
    assert eval_expression("tasks['e-1'].outputs.result + '!'", lookup) == "ok!"
    with pytest.raises(ExprError, match=r"function sprig.upper\(\) is not supported"):
        eval_expression("sprig.upper(workflow.name)", lookup)
