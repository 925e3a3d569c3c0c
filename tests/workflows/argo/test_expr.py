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


def test_expression_literals_to_json_and_short_circuit() -> None:
    from workflows.argo.expr import go_json, go_sprint, identifiers, parse_expression, render

    expr = ('asInt(workflow.parameters.g) > 0 ? toJson({"containers": [{"name": "main", "n": '
            'string(asInt(workflow.parameters.g)) } ], "lr": 5e-06 }) : toJson({ })')
    assert identifiers(parse_expression(expr)) == ["workflow.parameters.g"]
    assert eval_expression(expr, lambda p: "8") == '{"containers":[{"n":"8","name":"main"}],"lr":0.000005}'
    assert eval_expression(expr, lambda p: "0") == "{}"
    # only the branch taken is evaluated (expr-lang): asInt('x') in the other branch does not fail
    assert eval_expression("true ? 'a' : asInt('x')", lambda p: "") == "a"
    with pytest.raises(ExprError, match=r"asInt\('x'\): not an integer"):
        eval_expression("asInt('x')", lambda p: "")
    assert eval_expression("workflow.parameters.v ?? 'd'", lambda p: None) == "d"
    assert go_json({"b": 1.0, "a": "<x>"}) == '{"a":"\\u003cx\\u003e","b":1}' and go_sprint(5e-06) == "5e-06"
    assert render([1, "a"]) == '[1,"a"]' and render(0.5) == "0.5" and render(True) == "true"


def test_fasttemplate_ends_a_tag_at_the_first_closing_pair() -> None:
    from workflows.argo.fasttemplate import Tag, TemplateError, render, split, tag_problems

    parts = split("a{{x}}b{{= '{\"k\": {\"v\": 1}}' }}c")
    assert parts[0] == "a" and parts[1] == Tag("x", 1, 6) and parts[2] == "b"
    assert parts[3].text == "= '{\"k\": {\"v\": 1" and parts[4] == "' }}c"  # cut inside the JSON literal
    with pytest.raises(TemplateError, match="has no '}}' after it"):
        split("x {{y")
    assert render("{{ a }}-{{=1 + 1}}", lambda n: n.upper(), lambda e: eval_expression(e, lambda p: "")) == "A-2"
    assert tag_problems("{{ =x}}", lambda n: None if n == "=x" else "no") == []  # ' =x' is a plain name in Argo
    assert tag_problems("{{a}} }}", lambda n: None) != []  # a stray '}}' is reported
