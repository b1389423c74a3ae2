"""``retryStrategy.expression``: the part of expr-lang that Argo evaluates after a failed attempt.

Argo's controller evaluates the expression with `expr <https://expr-lang.org>`_ over these
variables, all strings: ``lastRetry.exitCode`` (``"-1"`` when the attempt left no exit code),
``lastRetry.status`` (``Failed`` or ``Error``), ``lastRetry.duration`` (seconds),
``lastRetry.message`` and ``retries`` (attempts so far minus one). Here the text is parsed into a
tree by a small precedence-climbing parser and walked; nothing calls Python's ``eval``.

Supported, with expr-lang's precedence (loosest first): ``||``/``or``; ``&&``/``and``;
``== != < > <= >=``, ``in [..]``, ``matches``, ``contains``, ``startsWith``, ``endsWith`` (each
of the last five also as ``not in`` etc.); ``+ -``; ``* / %``; unary ``!``/``not`` and ``-``;
parentheses, array literals, ``'..'``/``".."`` strings, integers, floats, ``true``, ``false``,
``nil``; the functions ``asInt``, ``asFloat``, ``int`` and ``float``. Anything else (ternaries,
``??``, pipes, ranges, map literals, other functions or variables) is an :class:`ExpressionError`
at load time.

Values behave as in expr-lang: ``==`` between a string and a number is false (so
``lastRetry.exitCode != 2`` is always true; that comparison is refused at load time, write
``asInt(lastRetry.exitCode) != 2``), ordering needs two numbers or two strings, and the logical
operators need booleans.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from steps.localrun.expressions import ExpressionError

VARIABLES = (
    "lastRetry.exitCode",
    "lastRetry.status",
    "lastRetry.duration",
    "lastRetry.message",
    "retries",
)
Value = bool | int | float | str | None | list["Value"]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<num>(?:\d+\.\d+|\.\d+|\d+)(?![\w.]))
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<op>&&|\|\||==|!=|<=|>=|[<>!+\-*/%(),\[\]])
      | (?P<word>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)
    )""",
    re.VERBOSE,
)
_WORD_OPERATORS = {"and": "&&", "or": "||", "not": "!"}
_NEGATABLE = ("in", "matches", "contains", "startsWith", "endsWith")
_PRECEDENCE = {
    "||": 10,
    "&&": 15,
    **dict.fromkeys(("==", "!=", "<", ">", "<=", ">=", *_NEGATABLE), 20),
    **dict.fromkeys(("+", "-"), 30),
    **dict.fromkeys(("*", "/", "%"), 60),
}
_UNARY_PRECEDENCE = {"!": 50, "-": 90, "+": 90}
_COMPARISONS = ("==", "!=", "<", ">", "<=", ">=")


@dataclass(frozen=True)
class _Token:
    kind: str  # num, str, op, word, end
    text: str
    position: int  # 1-based, for messages


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while text[position:].strip():
        match = _TOKEN.match(text, position)
        if match is None:
            start = len(text) - len(text[position:].lstrip())
            raise ExpressionError(
                f"unsupported syntax at position {start + 1}: {text[start : start + 12]!r}"
            )
        kind = match.lastgroup or ""
        word = match.group(kind)
        start = match.start(kind) + 1
        if kind == "word" and word in _WORD_OPERATORS:
            tokens.append(_Token("op", _WORD_OPERATORS[word], start))
        elif kind == "word" and word in _NEGATABLE:
            tokens.append(_Token("op", word, start))
        else:
            tokens.append(_Token(kind, word, start))
        position = match.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Literal:
    value: Value


@dataclass(frozen=True)
class _Variable:
    name: str


@dataclass(frozen=True)
class _Array:
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Call:
    function: str
    argument: _Node


@dataclass(frozen=True)
class _Unary:
    operator: str
    operand: _Node


@dataclass(frozen=True)
class _Binary:
    operator: str
    left: _Node
    right: _Node
    negated: bool = False  # ``not in``, ``not matches``, ...


_Node = _Literal | _Variable | _Array | _Call | _Unary | _Binary


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self, offset: int = 0) -> _Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def expect(self, text: str) -> None:
        token = self.take()
        if token.text != text or token.kind != "op":
            raise ExpressionError(
                f"expected {text!r} at position {token.position}, got {_shown(token)}"
            )

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise ExpressionError("empty expression")
        node = self.expression(0)
        if self.peek().kind != "end":
            token = self.peek()
            raise ExpressionError(f"unexpected {_shown(token)} at position {token.position}")
        return node

    def expression(self, precedence: int) -> _Node:
        node = self.unary()
        while True:
            token, negated = self.peek(), False
            if token.kind == "op" and token.text == "!" and self.peek(1).text in _NEGATABLE:
                token, negated = self.peek(1), True
            level = _PRECEDENCE.get(token.text) if token.kind == "op" else None
            if level is None or level < precedence:
                return node
            self.index += 2 if negated else 1
            right = self.expression(level + 1)
            node = _Binary(token.text, node, right, negated)
            _check_comparison(node, token)

    def unary(self) -> _Node:
        token = self.peek()
        if token.kind == "op" and token.text in _UNARY_PRECEDENCE:
            self.take()
            return _Unary(token.text, self.expression(_UNARY_PRECEDENCE[token.text]))
        return self.primary()

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "num":
            return _Literal(float(token.text) if "." in token.text else int(token.text))
        if token.kind == "str":
            return _Literal(re.sub(r"\\(.)", r"\1", token.text[1:-1]))
        if token.kind == "op" and token.text == "(":
            node = self.expression(0)
            self.expect(")")
            return node
        if token.kind == "op" and token.text == "[":
            return self.array()
        if token.kind == "word":
            return self.word(token)
        raise ExpressionError(f"expected a value at position {token.position}, got {_shown(token)}")

    def array(self) -> _Array:
        items: list[_Node] = []
        while not (self.peek().kind == "op" and self.peek().text == "]"):
            items.append(self.expression(0))
            if self.peek().text != ",":
                break
            self.take()
        self.expect("]")
        return _Array(tuple(items))

    def word(self, token: _Token) -> _Node:
        constants: dict[str, Value] = {"true": True, "false": False, "nil": None}
        if token.text in constants:
            return _Literal(constants[token.text])
        if self.peek().kind == "op" and self.peek().text == "(":
            if token.text not in FUNCTIONS:
                raise ExpressionError(
                    f"unknown function {token.text!r} at position {token.position} "
                    f"(supported: {', '.join(FUNCTIONS)})"
                )
            self.take()
            argument = self.expression(0)
            self.expect(")")
            return _Call(token.text, argument)
        if token.text not in VARIABLES:
            raise ExpressionError(
                f"unknown variable {token.text!r} at position {token.position} "
                f"(known: {', '.join(VARIABLES)})"
            )
        return _Variable(token.text)


def _check_comparison(node: _Binary, token: _Token) -> None:
    """Refuse a variable compared with a number: Argo's variables are strings, so it never holds."""
    if node.operator not in _COMPARISONS:
        return
    for variable, other in ((node.left, node.right), (node.right, node.left)):
        if not (isinstance(variable, _Variable) and isinstance(other, _Literal)):
            continue
        if _is_number(other.value):
            raise ExpressionError(
                f"{variable.name} is a string, compared with the number {other.value} at "
                f"position {token.position}: a string never equals a number in Argo; "
                f"write asInt({variable.name}) {node.operator} {other.value}"
            )


def _shown(token: _Token) -> str:
    return "end of expression" if token.kind == "end" else repr(token.text)


# --- evaluation --------------------------------------------------------------------------------


def _is_number(value: Value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_int(value: Value) -> Value:
    if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
        return int(value)
    if _is_number(value):
        return int(value)  # type: ignore[arg-type]
    raise ExpressionError(f"asInt: cannot convert {value!r} to an integer")


def _as_float(value: Value) -> Value:
    number = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:[Ii]nf|NaN)"
    if isinstance(value, str) and re.fullmatch(number, value):
        return float(value)
    if _is_number(value):
        return float(value)  # type: ignore[arg-type]
    raise ExpressionError(f"asFloat: cannot convert {value!r} to a number")


FUNCTIONS: dict[str, Callable[[Value], Value]] = {
    "asInt": _as_int,
    "asFloat": _as_float,
    "int": _as_int,
    "float": _as_float,
}


def _equal(left: Value, right: Value) -> bool:
    if _is_number(left) and _is_number(right):
        return left == right
    return type(left) is type(right) and left == right


def _boolean(value: Value, operator_text: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"{operator_text} needs true/false, got {value!r}")
    return value


def _strings(left: Value, right: Value, operator_text: str) -> tuple[str, str]:
    if not isinstance(left, str) or not isinstance(right, str):
        raise ExpressionError(f"{operator_text} needs two strings, got {left!r} and {right!r}")
    return left, right


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}
_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
}


def _evaluate(node: _Node, variables: Mapping[str, str]) -> Value:
    if isinstance(node, _Literal):
        return node.value
    if isinstance(node, _Variable):
        return variables[node.name]
    if isinstance(node, _Array):
        return [_evaluate(item, variables) for item in node.items]
    if isinstance(node, _Call):
        return FUNCTIONS[node.function](_evaluate(node.argument, variables))
    if isinstance(node, _Unary):
        operand = _evaluate(node.operand, variables)
        if node.operator == "!":
            return not _boolean(operand, "!")
        if not _is_number(operand):
            raise ExpressionError(f"unary {node.operator} needs a number, got {operand!r}")
        return -operand if node.operator == "-" else operand  # type: ignore[operator]
    if node.operator in ("&&", "||"):
        left = _boolean(_evaluate(node.left, variables), node.operator)
        if left == (node.operator == "||"):
            return left
        return _boolean(_evaluate(node.right, variables), node.operator)
    result = _binary(
        node.operator, _evaluate(node.left, variables), _evaluate(node.right, variables)
    )
    return not result if node.negated else result


def _binary(operator_text: str, left: Value, right: Value) -> Value:
    if operator_text in ("==", "!="):
        return _equal(left, right) == (operator_text == "==")
    if operator_text in _ORDER:
        if (_is_number(left) and _is_number(right)) or (
            isinstance(left, str) and isinstance(right, str)
        ):
            return _ORDER[operator_text](left, right)
        raise ExpressionError(f"cannot order {left!r} {operator_text} {right!r}: mismatched types")
    if operator_text == "in":
        if not isinstance(right, list):
            raise ExpressionError(f"in needs an array on its right, got {right!r}")
        return any(_equal(left, item) for item in right)
    if operator_text == "matches":
        text, pattern = _strings(left, right, operator_text)
        try:
            return re.search(pattern, text) is not None
        except re.error as err:
            raise ExpressionError(f"invalid regular expression {pattern!r}: {err}") from err
    if operator_text in ("contains", "startsWith", "endsWith"):
        text, part = _strings(left, right, operator_text)
        checks = {"contains": text.__contains__, "startsWith": text.startswith}
        return checks.get(operator_text, text.endswith)(part)
    return _arithmetic(operator_text, left, right)


def _arithmetic(operator_text: str, left: Value, right: Value) -> Value:
    if operator_text == "+" and isinstance(left, str) and isinstance(right, str):
        return left + right
    if not (_is_number(left) and _is_number(right)):
        raise ExpressionError(f"{operator_text} needs two numbers, got {left!r} and {right!r}")
    assert isinstance(left, int | float) and isinstance(right, int | float)
    if operator_text == "/":
        return left / right if right else math.copysign(math.inf, left) if left else math.nan
    if operator_text == "%":
        if not (isinstance(left, int) and isinstance(right, int)) or right == 0:
            raise ExpressionError(f"% needs two integers, the second not 0: {left!r} % {right!r}")
        return int(math.fmod(left, right))  # Go's % truncates toward zero
    return _ARITHMETIC[operator_text](left, right)


# --- the public face ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LastRetry:
    """The attempt that just failed, as the expression sees it."""

    exit_code: int | None
    status: str
    duration_s: float
    message: str
    retries: int

    def variables(self) -> dict[str, str]:
        """The expression's variables, formatted as Argo's controller formats them."""
        duration = repr(float(self.duration_s)).removesuffix(".0")
        return {
            "lastRetry.exitCode": "-1" if self.exit_code is None else str(self.exit_code),
            "lastRetry.status": self.status,
            "lastRetry.duration": duration,
            "lastRetry.message": self.message,
            "retries": str(self.retries),
        }


@dataclass(frozen=True)
class RetryExpression:
    """A parsed ``retryStrategy.expression``."""

    text: str
    tree: _Node

    def allows_retry(self, last: LastRetry) -> bool:
        """Return whether the expression allows another attempt after ``last``.

        Raises:
            ExpressionError: on a type error (e.g. ``asInt`` of a non-number) or a result that
                is not true/false.
        """
        result = _evaluate(self.tree, last.variables())
        if not isinstance(result, bool):
            raise ExpressionError(f"expected a true/false result for {self.text!r}, got {result!r}")
        return result


def parse_retry_expression(text: str) -> RetryExpression:
    """Parse a ``retryStrategy.expression`` (its ``{{...}}`` references already substituted).

    Returns:
        The expression, ready to evaluate after each failed attempt.

    Raises:
        ExpressionError: naming the position and the syntax, variable or function that is not
            supported.
    """
    return RetryExpression(text, _Parser(text).parse())
