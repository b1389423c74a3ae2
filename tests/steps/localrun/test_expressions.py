"""Pure tests of the local runner's expression languages: substitution, when, depends."""

from __future__ import annotations

import re

import pytest

from steps.localrun.expressions import (
    ExpressionError,
    TaskOutcome,
    UnresolvedReferenceError,
    check_when,
    dependencies_expr,
    evaluate_when,
    parse_depends,
    references,
    substitute,
)


class TestSubstitution:
    def test_replaces_every_reference_and_tolerates_spaces_inside_braces(self) -> None:
        scope = {"workflow.name": "wf-1", "inputs.parameters.x": "7"}
        text = "{{workflow.name}}/{{ inputs.parameters.x }}/{{workflow.name}}"
        assert substitute(text, scope) == "wf-1/7/wf-1"

    def test_unknown_reference_names_itself(self) -> None:
        with pytest.raises(UnresolvedReferenceError) as caught:
            substitute("a {{tasks.t.outputs.result}} b", {})
        assert caught.value.name == "tasks.t.outputs.result"
        assert "{{tasks.t.outputs.result}}" in str(caught.value)

    def test_values_are_inserted_verbatim_not_substituted_again(self) -> None:
        assert substitute("{{a}}", {"a": "{{b}}", "b": "no"}) == "{{b}}"

    def test_references_lists_the_stripped_names_in_order(self) -> None:
        assert references("x {{ a.b }} y {{c}}") == ["a.b", "c"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("heads == heads", True),
        ("heads == tails", False),
        ("heads != tails", True),
        ("'a b' == 'a b'", True),
        ("\"a b\" == 'a b'", True),
        ("0.9 > 0.8", True),
        ("0.9 < 0.8", False),
        ("5 >= 5", True),
        ("4 <= 3", False),
        ("10 > 9", True),  # numeric, not lexicographic
        ("'10' > '9'", False),  # quoted: lexicographic strings
        ("1 == 1.0", True),
        ("1 == '1'", False),  # a number never equals a string
        ("-1 < 0", True),
        ("true", True),
        ("false || true", True),
        ("true && false", False),
        ("!false", True),
        ("!(1 > 2)", True),
        ("!true == false", True),  # ! binds tighter than ==
        ("true || false && false", True),  # && binds tighter than ||
        ("(true || false) && false", False),
        ("Succeeded == Succeeded && 3 > 2", True),
        ("v1.2.3 == v1.2.3", True),  # dotted bare words are one string
        ("1.2.3 == 1.2.3", True),
        ("'model-v2' =~ '^model-v[0-9]+$'", True),
        ("'model-x' =~ '^model-v[0-9]+$'", False),
        ("'model-x' !~ '^model-v'", True),
        ("prod =~ 'pro'", True),
    ],
)
def test_when_evaluates_like_argo(expression: str, expected: bool) -> None:
    assert evaluate_when(expression) is expected


def test_when_short_circuits_so_the_unevaluated_side_cannot_fail() -> None:
    assert evaluate_when("false && (1 > 'x')") is False
    assert evaluate_when("true || (1 > 'x')") is True


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", "empty"),
        ("heads", "true/false result"),
        ("1 > 'a'", "mixed types"),
        ("1 && true", "&& needs true/false"),
        ("!'x'", "! needs true/false"),
        ("(true", "missing ')'"),
        ("true)", "unexpected ')'"),
        ("a == ", "expected a value"),
        ("a = b", "unsupported character '='"),
        ("my-value == my-value", "unexpected '-'"),
        ("1 + 1 == 2", "unsupported character '+'"),
        ("'x' =~ '('", "invalid regular expression"),
        ("1 =~ 'x'", "needs a string and a pattern"),
        ("__import__('os').system('true')", "unsupported"),
    ],
)
def test_when_rejects_what_it_cannot_evaluate(expression: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        evaluate_when(expression)


def test_check_when_accepts_references_and_catches_syntax_errors_early() -> None:
    check_when("{{tasks.a.outputs.result}} == 'yes' && {{workflow.parameters.n}} > 2")
    with pytest.raises(ExpressionError):
        check_when("{{tasks.a.outputs.result}} ==")


def outcomes(**phases: str) -> dict[str, TaskOutcome]:
    return {name: TaskOutcome(phase) for name, phase in phases.items()}


class TestDepends:
    @pytest.mark.parametrize(
        ("phase", "expected"),
        [
            ("Succeeded", True),
            ("Skipped", True),
            ("Failed", False),
            ("Error", False),
            ("Omitted", False),
        ],
    )
    def test_plain_name_means_succeeded_or_skipped(self, phase: str, expected: bool) -> None:
        assert parse_depends("A").evaluate(outcomes(A=phase)) is expected

    @pytest.mark.parametrize(
        ("expression", "phase", "expected"),
        [
            ("A.Succeeded", "Succeeded", True),
            ("A.Succeeded", "Skipped", False),
            ("A.Failed", "Failed", True),
            ("A.Failed", "Succeeded", False),
            ("A.Errored", "Error", True),
            ("A.Skipped", "Skipped", True),
            ("A.Omitted", "Omitted", True),
            ("!A.Failed", "Succeeded", True),
        ],
    )
    def test_results(self, expression: str, phase: str, expected: bool) -> None:
        assert parse_depends(expression).evaluate(outcomes(A=phase)) is expected

    def test_combinations_with_parentheses_and_hyphenated_names(self) -> None:
        expr = parse_depends("(task-1.Succeeded || task-1.Skipped) && !task-2.Failed")
        assert expr.tasks == frozenset({"task-1", "task-2"})
        assert expr.evaluate(outcomes(**{"task-1": "Skipped", "task-2": "Succeeded"}))
        assert not expr.evaluate(outcomes(**{"task-1": "Skipped", "task-2": "Failed"}))
        assert not expr.evaluate(outcomes(**{"task-1": "Failed", "task-2": "Succeeded"}))

    def test_or_binds_looser_than_and(self) -> None:
        expr = parse_depends("A.Failed || B && C")
        assert expr.evaluate(outcomes(A="Failed", B="Failed", C="Failed"))
        assert not expr.evaluate(outcomes(A="Succeeded", B="Succeeded", C="Failed"))

    def test_continue_on_lets_a_plain_reference_accept_failure(self) -> None:
        failed = {"A": TaskOutcome("Failed", continue_on_failed=True)}
        errored = {"A": TaskOutcome("Error", continue_on_failed=True)}
        assert parse_depends("A").evaluate(failed)
        assert not parse_depends("A").evaluate(errored)

    def test_legacy_dependencies_are_an_and_of_plain_names(self) -> None:
        expr = dependencies_expr(["A", "B"])
        assert expr.tasks == frozenset({"A", "B"})
        assert expr.evaluate(outcomes(A="Succeeded", B="Skipped"))
        assert not expr.evaluate(outcomes(A="Succeeded", B="Failed"))

    @pytest.mark.parametrize(
        ("expression", "message"),
        [
            ("A.Daemoned", "daemon"),
            ("A.AnySucceeded", "fan-out"),
            ("A.AllFailed", "fan-out"),
            ("A.Finished", "unknown result .Finished"),
            ("A &&", "ends where a task was expected"),
            ("(A || B", "missing ')'"),
            ("A B", "unexpected 'B'"),
            ("A & B", "unexpected '&'"),
            ("", "empty"),
        ],
    )
    def test_rejects(self, expression: str, message: str) -> None:
        with pytest.raises(ExpressionError, match=re.escape(message)):
            parse_depends(expression)
