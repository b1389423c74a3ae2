"""``retryStrategy.expression``: parsing, evaluation, load-time errors and retries in a run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipelines.templates import retry_expression
from steps.core.errors import NOT_RETRIED_EXIT_CODES, WorkflowError
from steps.localrun.expressions import ExpressionError
from steps.localrun.loader import load_workflow
from steps.localrun.pods import NOT_RETRIED
from steps.localrun.retry_expression import LastRetry, parse_retry_expression
from tests.steps.localrun.conftest import RunYaml, WriteYaml, line_of

NO_BAD_INPUT = "asInt(lastRetry.exitCode) != 2"


def last(
    exit_code: int | None = 1,
    status: str = "Failed",
    duration_s: float = 1.5,
    message: str = "exit code 1",
    retries: int = 0,
) -> LastRetry:
    return LastRetry(exit_code, status, duration_s, message, retries)


@pytest.mark.parametrize(
    ("text", "attempt", "retry"),
    [
        (NO_BAD_INPUT, last(1), True),
        (NO_BAD_INPUT, last(2), False),
        (NO_BAD_INPUT, last(None, "Error"), True),  # no exit code: "-1", a lost pod
        ("asInt(lastRetry.exitCode) != 2 && asInt(lastRetry.exitCode) != 3", last(3), False),
        ("asInt(lastRetry.exitCode) != 2 && asInt(lastRetry.exitCode) != 4", last(4), False),
        ("asInt(lastRetry.exitCode) != 2 && asInt(lastRetry.exitCode) != 4", last(3), True),
        ("!(asInt(lastRetry.exitCode) in [2, 3])", last(3), False),
        ("asInt(lastRetry.exitCode) not in [2, 3]", last(137), True),
        ("lastRetry.exitCode != '2'", last(2), False),
        ("lastRetry.status == 'Error' or asFloat(lastRetry.duration) < 60", last(1), True),
        ('lastRetry.status == "Error" and asFloat(lastRetry.duration) > 60', last(1), False),
        ("lastRetry.message matches 'exit code [0-9]+$'", last(1), True),
        ("not (lastRetry.message contains 'code')", last(1), False),
        ("lastRetry.message startsWith 'exit' && lastRetry.message endsWith '1'", last(1), True),
        ("asInt(retries) < 2", last(1, retries=2), False),
        (
            "-1 < 0 && 7 % 3 == 1 && 1 / 2 == 0.5 && 'a' + 'b' == 'ab' && 2 * 3 - 1 == 5",
            last(),
            True,
        ),
        ("1 + 2 * 3 == 7 && (1 + 2) * 3 == 9 && true || false && false", last(), True),
        ("nil == nil && 1 == 1.0 && '1' != 1.0", last(), True),
    ],
)
def test_expressions_evaluate_like_argo(text: str, attempt: LastRetry, retry: bool) -> None:
    assert parse_retry_expression(text).allows_retry(attempt) is retry


def test_variables_are_strings_formatted_as_argo_formats_them() -> None:
    assert last(None, "Error", 2.0, "pod deleted", 1).variables() == {
        "lastRetry.exitCode": "-1",
        "lastRetry.status": "Error",
        "lastRetry.duration": "2",
        "lastRetry.message": "pod deleted",
        "retries": "1",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty expression"),
        ("lastRetry.exitCode != 2", "write asInt(lastRetry.exitCode) != 2"),
        ("asInt(lastRetry.exitcode) != 2", "unknown variable 'lastRetry.exitcode' at position 7"),
        ("sprig.trim(lastRetry.message) == ''", "unknown function 'sprig.trim'"),
        ("lastRetry.exitCode == '1' ? true : false", "unsupported syntax at position 27: '? true"),
        ("retries ?? 1", "unsupported syntax at position 9"),
        ("lastRetry.message | lower()", "unsupported syntax at position 19"),
        ("asInt(lastRetry.exitCode) = 2", "unsupported syntax at position 27"),
        ("(retries == '1'", "expected ')' at position 16, got end of expression"),
        ("retries == '1' &&", "expected a value at position 18"),
        ("retries == '1' retries", "unexpected 'retries' at position 16"),
    ],
)
def test_unsupported_syntax_is_an_error_naming_the_position(text: str, problem: str) -> None:
    with pytest.raises(ExpressionError, match=re.escape(problem)):
        parse_retry_expression(text)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("asInt(lastRetry.message) == 1", "asInt: cannot convert 'exit code 1'"),
        ("lastRetry.exitCode", "expected a true/false result"),
        ("lastRetry.status < asInt(retries)", "mismatched types"),
        ("retries && true", "&& needs true/false"),
    ],
)
def test_type_errors_surface_when_evaluated(text: str, problem: str) -> None:
    expression = parse_retry_expression(text)
    with pytest.raises(ExpressionError, match=re.escape(problem)):
        expression.allows_retry(last())


WORKFLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: retry-
spec:
  entrypoint: main
  arguments:
    parameters:
      - {name: code, value: "1"}
  templates:
    - name: main
      dag:
        tasks:
          - name: step
            template: step
            arguments: {parameters: [{name: code, value: "{{workflow.parameters.code}}"}]}
    - name: step
      inputs:
        parameters:
          - name: code
      retryStrategy:
        limit: 2
        RETRY
      container:
        image: python:3.11
        command: [python, -c]
        args:
          - "import sys; print('attempt'); sys.exit(int(sys.argv[1]))"
          - "{{inputs.parameters.code}}"
"""


def workflow(retry: str) -> str:
    return WORKFLOW.replace("RETRY", retry)


def test_a_bad_expression_fails_the_load_naming_field_and_line(write_yaml: WriteYaml) -> None:
    path = write_yaml(workflow("expression: lastRetry.exitCode != 2"))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line_of(path, 'expression:')}: ")
    assert "spec.templates[1].retryStrategy.expression: invalid expression" in message
    assert "write asInt(lastRetry.exitCode) != 2" in message


def test_a_templated_expression_is_checked_with_placeholders(write_yaml: WriteYaml) -> None:
    good = workflow('expression: "asInt(lastRetry.exitCode) != {{inputs.parameters.code}}"')
    retry = load_workflow(write_yaml(good)).templates["step"].retry
    assert retry is not None and retry.expression is not None
    bad = workflow('expression: "{{inputs.parameters.code}} +"')
    with pytest.raises(WorkflowError, match=r"retryStrategy\.expression: invalid expression"):
        load_workflow(write_yaml(bad, "bad.yaml"))


def test_the_policy_defaults_to_always_with_an_expression(write_yaml: WriteYaml) -> None:
    with_expression = load_workflow(write_yaml(workflow(f"expression: '{NO_BAD_INPUT}'")))
    without = load_workflow(write_yaml(workflow("retryPolicy: OnError"), "plain.yaml"))
    assert with_expression.templates["step"].retry is not None
    assert with_expression.templates["step"].retry.policy == "Always"
    assert without.templates["step"].retry is not None
    assert without.templates["step"].retry.policy == "OnError"


def test_exit_2_is_not_retried(run_yaml: RunYaml) -> None:
    record = run_yaml(workflow(f"expression: '{NO_BAD_INPUT}'"), {"code": "2"})
    node = record.node("step")
    assert (node.phase, node.attempts, node.exit_code) == ("Failed", 1, 2)
    assert node.message == f"exit code 2; {NOT_RETRIED}"
    assert record.phase == "Failed"


@pytest.mark.parametrize("code", NOT_RETRIED_EXIT_CODES)
def test_the_pipelines_expression_never_retries_bad_input_a_gate_or_a_rollback(
    run_yaml: RunYaml, code: int
) -> None:
    assert NOT_RETRIED_EXIT_CODES == (2, 3, 4)
    record = run_yaml(workflow(f"expression: '{retry_expression()}'"), {"code": str(code)})
    node = record.node("step")
    assert (node.phase, node.attempts, node.exit_code) == ("Failed", 1, code)
    assert node.message == f"exit code {code}; {NOT_RETRIED}"


def test_the_pipelines_expression_retries_a_service_failure(run_yaml: RunYaml) -> None:
    record = run_yaml(workflow(f"expression: '{retry_expression()}'"), {"code": "1"})
    assert record.node("step").attempts == 3


def test_exit_1_is_retried_up_to_the_limit(run_yaml: RunYaml) -> None:
    record = run_yaml(workflow(f"expression: '{NO_BAD_INPUT}'"), {"code": "1"})
    node = record.node("step")
    assert (node.phase, node.attempts, node.exit_code) == ("Failed", 3, 1)
    assert node.message == "exit code 1"
    assert Path(node.log or "").read_text().count("attempt") == 3


def test_retries_variable_counts_the_failed_attempts(run_yaml: RunYaml) -> None:
    record = run_yaml(workflow("expression: asInt(retries) < 1"), {"code": "1"})
    assert record.node("step").attempts == 2  # retries 0 -> retry; retries 1 -> stop


@pytest.mark.parametrize(
    ("policy", "expression", "attempts"),
    [
        ("OnFailure", "asInt(lastRetry.exitCode) != 2", 3),  # both allow
        ("OnError", "asInt(lastRetry.exitCode) != 2", 1),  # the policy refuses a Failed node
        ("Always", "lastRetry.status == 'Error'", 1),  # the expression refuses
        ("Always", "lastRetry.status == 'Failed'", 3),
    ],
)
def test_policy_and_expression_must_both_allow_a_retry(
    run_yaml: RunYaml, policy: str, expression: str, attempts: int
) -> None:
    text = workflow(f'retryPolicy: {policy}\n        expression: "{expression}"')
    assert run_yaml(text, {"code": "1"}).node("step").attempts == attempts


@pytest.mark.parametrize(("policy", "attempts"), [("Always", 3), ("OnFailure", 1)])
def test_a_process_that_never_started_is_an_error_retried_by_always(
    run_yaml: RunYaml, policy: str, attempts: int
) -> None:
    text = workflow(f"retryPolicy: {policy}\n        expression: '{NO_BAD_INPUT}'").replace(
        "command: [python, -c]", "command: [/nonexistent/python, -c]"
    )
    node = run_yaml(text).node("step")
    assert (node.phase, node.exit_code, node.attempts) == ("Error", None, attempts)


def test_an_expression_that_fails_to_evaluate_is_a_node_error(run_yaml: RunYaml) -> None:
    record = run_yaml(workflow("expression: asInt(lastRetry.message) == 1"))
    node = record.node("step")
    assert node.phase == "Error"
    assert node.attempts == 1
    assert "retryStrategy.expression 'asInt(lastRetry.message) == 1'" in node.message
    assert "asInt: cannot convert 'exit code 1' to an integer" in node.message
