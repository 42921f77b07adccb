"""`${{ CEL }}` in step config: whole-string values keep their type, text is interpolated."""

from __future__ import annotations

from typing import Any

import pytest

from controller.workflows.templating import TemplateError, compile_errors, render

CONTEXT: dict[str, Any] = {
    "event": {"body": {"deal": {"name": "ACME", "seats": 12, "tags": ["a", "b"], "won": True}}},
    "steps": {"create": {"id": "success", "data": {"id": "ws-1", "size": 3}}},
    "workflow": {"name": "onboarding", "version": 4},
    "run": {"name": "onboarding-0001"},
}


def test_a_whole_string_expression_keeps_its_type() -> None:
    assert render("${{ event.body.deal.seats }}", CONTEXT) == 12
    assert render("${{ event.body.deal.tags }}", CONTEXT) == ["a", "b"]
    assert render("${{ event.body.deal.won }}", CONTEXT) is True
    assert render("${{ steps.create.data }}", CONTEXT) == {"id": "ws-1", "size": 3}
    assert render("${{ steps.create.data.size * 2 }}", CONTEXT) == 6


def test_expressions_inside_text_are_interpolated() -> None:
    assert render("Onboarding: ${{ event.body.deal.name }}", CONTEXT) == "Onboarding: ACME"
    assert (
        render(
            "${{ workflow.name }} v${{ workflow.version }} ok=${{ event.body.deal.won }}", CONTEXT
        )
        == "onboarding v4 ok=true"
    )
    assert render("tags=${{ event.body.deal.tags }}", CONTEXT) == 'tags=["a","b"]'


def test_everything_else_is_literal_and_structure_is_walked() -> None:
    config = {
        "url": "https://api.example.com/workspaces/${{ steps.create.data.id }}",
        "retries": 3,
        "nested": [{"seats": "${{ event.body.deal.seats }}"}, "plain", None],
        "${{ not.a.key }}": "keys are never evaluated",
    }
    assert render(config, CONTEXT) == {
        "url": "https://api.example.com/workspaces/ws-1",
        "retries": 3,
        "nested": [{"seats": 12}, "plain", None],
        "${{ not.a.key }}": "keys are never evaluated",
    }


def test_evaluation_errors_name_the_field_and_expression() -> None:
    with pytest.raises(TemplateError) as missing:
        render({"body": {"name": "${{ event.body.customer.name }}"}}, CONTEXT)
    assert (
        str(missing.value) == "with.body.name: ${{ event.body.customer.name }}: no field 'customer'"
    )
    with pytest.raises(TemplateError, match=r"^with: \$\{\{ nothing \}\}: Undefined variable"):
        render("${{ nothing }}", CONTEXT)
    with pytest.raises(TemplateError, match="string \\+ int"):
        render("${{ 'n=' + steps.create.data.size }}", CONTEXT)


def test_compile_errors_are_found_before_any_run() -> None:
    config = {"ok": "${{ event.body }}", "bad": ["x", "${{ 1 + }}"]}
    (error,) = compile_errors(config, "spec.steps[0].with")
    assert error.startswith("spec.steps[0].with.bad[1]: ${{ 1 + }} does not compile: ")
    assert compile_errors({"plain": "no expressions"}, "with") == []


def test_an_unclosed_expression_is_an_error_never_literal_text() -> None:
    value = {"a": "${{ event.body.x", "b": ["${{ 1 }} and ${{ 2"], "c": "${{ 1 }} fine"}
    assert compile_errors(value, "with") == [
        "with.a: ${{ is not closed: end the expression with }}",
        "with.b[0]: ${{ is not closed: end the expression with }}",
    ]
    with pytest.raises(TemplateError, match=r"with.a: \$\{\{ is not closed"):
        render(value, {})
    assert render({"c": "${{ 1 }} fine"}, {}) == {"c": "1 fine"}


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ("${{ 1 + }}", "it ends at column 4 where more is needed"),
        ("${{ a b }}", "unexpected 'b' at column 3"),
    ],
)
def test_a_compile_error_is_one_line_naming_the_field_and_the_expression(
    expression: str, reason: str
) -> None:
    (error,) = compile_errors({"u": expression}, "with")
    assert error == f"with.u: {expression} does not compile: {reason}"
    assert "expecting" not in error
