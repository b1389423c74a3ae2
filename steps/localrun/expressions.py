"""Argo's small languages: ``{{...}}`` substitution, ``when`` conditions and ``depends`` logic.

``when`` is evaluated the way Argo does it (govaluate after textual substitution, bare words taken
as strings) by a small recursive-descent parser; nothing here calls Python's ``eval``. Supported:
``==  !=  <  >  <=  >=  =~  !~  &&  ||  !``, parentheses, quoted strings ('x' or "x"), numbers,
``true``/``false`` and bare words. Precedence, tightest first: ``!`` and unary ``-``, comparisons,
``&&``, ``||``.

``depends`` follows Argo's enhanced depends logic: ``A`` means
``A.Succeeded || A.Skipped || A.Daemoned`` (plus ``A.Failed``/``A.Errored`` when the task has
``continueOn``), combined with ``&&``, ``||``, ``!`` and parentheses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import ge, gt, le, lt
from typing import Any

_TAG = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)


class ExpressionError(ValueError):
    """A ``when``/``depends`` expression that cannot be parsed or evaluated."""


class UnresolvedReferenceError(KeyError):
    """A ``{{...}}`` reference with no value in the scope."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"cannot resolve {{{{{self.name}}}}}"


def references(text: str) -> list[str]:
    """Return the names inside every ``{{ ... }}`` of ``text``, stripped, in order."""
    return [match.group(1).strip() for match in _TAG.finditer(text)]


def substitute(text: str, scope: Mapping[str, str]) -> str:
    """Replace every ``{{name}}`` of ``text`` with ``scope[name]``.

    Returns:
        The substituted text (Argo substitutes textually, so values are inserted as they are).

    Raises:
        UnresolvedReferenceError: naming the first reference with no value in ``scope``.
    """

    def replace(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        if name not in scope:
            raise UnresolvedReferenceError(name)
        return scope[name]

    return _TAG.sub(replace, text)


def with_placeholders(text: str, placeholder: str = "placeholder") -> str:
    """Replace every ``{{...}}`` with a bare word, to check an expression's syntax at load time."""
    return _TAG.sub(placeholder, text)


# --- when ------------------------------------------------------------------------------------

Value = bool | float | str
_COMPARATORS = ("==", "!=", ">=", "<=", ">", "<", "=~", "!~")
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<op>&&|\|\||==|!=|>=|<=|=~|!~|>|<|!|-)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<num>\d+(?:\.\d+)?(?![A-Za-z_.]))
      | (?P<word>[A-Za-z0-9_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str  # paren, op, lit, end
    text: str
    value: Value
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            start = len(text) - len(text[position:].lstrip())
            raise ExpressionError(
                f"unsupported character {text[start]!r} at position {start + 1} "
                "(hint: wrap values with spaces or symbols in quotes)"
            )
        kind = match.lastgroup or ""
        raw = match.group(kind)
        start = match.start(kind)
        if kind == "str":
            tokens.append(_Token("lit", raw, _unquote(raw), start))
        elif kind == "num":
            tokens.append(_Token("lit", raw, float(raw), start))
        elif kind == "word":
            value: Value = {"true": True, "false": False}.get(raw, raw)
            tokens.append(_Token("lit", raw, value, start))
        else:
            tokens.append(_Token(kind, raw, raw, start))
        position = match.end()
    tokens.append(_Token("end", "", "", len(text)))
    return tokens


def _unquote(raw: str) -> str:
    return re.sub(r"\\(.)", r"\1", raw[1:-1])


# An expression tree node is a closure: evaluation is lazy so && and || short-circuit.
_Node = Callable[[], Value]


class _WhenParser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> _Node:
        if self.peek().kind == "end":
            raise ExpressionError("empty expression")
        node = self.logical("||", lambda: self.logical("&&", self.comparison))
        token = self.peek()
        if token.kind != "end":
            raise ExpressionError(f"unexpected {token.text!r} at position {token.position + 1}")
        return node

    def logical(self, operator: str, operand: Callable[[], _Node]) -> _Node:
        node = operand()
        while self.peek().kind == "op" and self.peek().text == operator:
            self.take()
            node = _logical_node(operator, node, operand())
        return node

    def comparison(self) -> _Node:
        node = self.unary()
        while self.peek().kind == "op" and self.peek().text in _COMPARATORS:
            operator = self.take().text
            node = _comparison_node(operator, node, self.unary())
        return node

    def unary(self) -> _Node:
        token = self.peek()
        if token.kind == "op" and token.text == "!":
            self.take()
            operand = self.unary()
            return lambda: not _as_bool(operand(), "!")
        if token.kind == "op" and token.text == "-":
            self.take()
            operand = self.unary()
            return lambda: -_as_number(operand(), "-")
        return self.primary()

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "lit":
            value = token.value
            return lambda: value
        if token.kind == "paren" and token.text == "(":
            node = self.logical("||", lambda: self.logical("&&", self.comparison))
            closing = self.take()
            if closing.text != ")":
                raise ExpressionError(f"missing ')' at position {closing.position + 1}")
            return node
        where = "end of expression" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"expected a value at position {token.position + 1}, got {where}")


def _logical_node(operator: str, left: _Node, right: _Node) -> _Node:
    if operator == "&&":
        return lambda: _as_bool(left(), "&&") and _as_bool(right(), "&&")
    return lambda: _as_bool(left(), "||") or _as_bool(right(), "||")


def _comparison_node(operator: str, left: _Node, right: _Node) -> _Node:
    return lambda: _compare(operator, left(), right())


def _compare(operator: str, left: Value, right: Value) -> bool:
    if operator in ("==", "!="):
        equal = type(left) is type(right) and left == right
        return equal if operator == "==" else not equal
    if operator in ("=~", "!~"):
        if not isinstance(left, str) or not isinstance(right, str):
            raise ExpressionError(f"{operator} needs a string and a pattern: {left!r}, {right!r}")
        try:
            found = re.search(right, left) is not None
        except re.error as err:
            raise ExpressionError(f"invalid regular expression {right!r}: {err}") from err
        return found if operator == "=~" else not found
    if isinstance(left, str) and isinstance(right, str):
        return _ORDER[operator](left, right)
    if isinstance(left, float) and isinstance(right, float):
        return _ORDER[operator](left, right)
    raise ExpressionError(f"cannot compare {left!r} {operator} {right!r}: mixed types")


_ORDER: dict[str, Callable[[Any, Any], bool]] = {">": gt, "<": lt, ">=": ge, "<=": le}


def _as_bool(value: Value, operator: str) -> bool:
    if not isinstance(value, bool):
        raise ExpressionError(f"{operator} needs true/false, got {value!r}")
    return value


def _as_number(value: Value, operator: str) -> float:
    if isinstance(value, bool) or not isinstance(value, float):
        raise ExpressionError(f"{operator} needs a number, got {value!r}")
    return value


def check_when(text: str) -> None:
    """Check the syntax of a ``when`` whose ``{{...}}`` references are not resolved yet.

    Raises:
        ExpressionError: describing the first syntax error.
    """
    _WhenParser(with_placeholders(text)).parse()


def evaluate_when(text: str) -> bool:
    """Evaluate an already substituted ``when`` expression.

    Returns:
        The boolean the expression evaluates to.

    Raises:
        ExpressionError: on a syntax error, a type error or a non-boolean result.
    """
    result = _WhenParser(text).parse()()
    if not isinstance(result, bool):
        raise ExpressionError(f"expected a true/false result for {text!r}, got {result!r}")
    return result


# --- depends ---------------------------------------------------------------------------------

RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted")
_FAN_OUT_RESULTS = ("AnySucceeded", "AllFailed")
_PHASE_OF_RESULT = {"Errored": "Error"}
_DEPENDS_TOKEN = re.compile(
    r"\s*(?:(?P<sym>&&|\|\||!|\(|\))|(?P<ref>[A-Za-z0-9_][\w-]*(?:\.\w+)?))"
)


@dataclass(frozen=True)
class TaskOutcome:
    """A finished task as ``depends`` sees it: its phase and its ``continueOn`` flags."""

    phase: str
    continue_on_failed: bool = False
    continue_on_error: bool = False


@dataclass(frozen=True)
class _Ref:
    task: str
    result: str | None


@dataclass(frozen=True)
class _Not:
    operand: _Tree


@dataclass(frozen=True)
class _Binary:
    operator: str  # "&&" or "||"
    left: _Tree
    right: _Tree


_Tree = _Ref | _Not | _Binary


@dataclass(frozen=True)
class DependsExpr:
    """A parsed ``depends`` expression (or a legacy ``dependencies`` list)."""

    text: str
    tasks: frozenset[str]
    tree: _Tree

    def evaluate(self, outcomes: Mapping[str, TaskOutcome]) -> bool:
        """Return whether the task may run, given the outcome of every task it depends on.

        Raises:
            KeyError: when a referenced task has no outcome yet (a scheduling bug).
        """
        return _eval_depends(self.tree, outcomes)


def _eval_depends(tree: _Tree, outcomes: Mapping[str, TaskOutcome]) -> bool:
    if isinstance(tree, _Ref):
        outcome = outcomes[tree.task]
        if tree.result is None:
            return (
                outcome.phase in ("Succeeded", "Skipped")
                or (outcome.phase == "Failed" and outcome.continue_on_failed)
                or (outcome.phase == "Error" and outcome.continue_on_error)
            )
        return outcome.phase == _PHASE_OF_RESULT.get(tree.result, tree.result)
    if isinstance(tree, _Not):
        return not _eval_depends(tree.operand, outcomes)
    if tree.operator == "&&":
        return _eval_depends(tree.left, outcomes) and _eval_depends(tree.right, outcomes)
    return _eval_depends(tree.left, outcomes) or _eval_depends(tree.right, outcomes)


def parse_depends(text: str) -> DependsExpr:
    """Parse an Argo ``depends`` expression.

    Returns:
        The expression, with the set of task names it refers to.

    Raises:
        ExpressionError: on a syntax error or a result the runner does not support
            (``Daemoned``; ``AnySucceeded``/``AllFailed``, which only apply to fan-out).
    """
    tokens: list[tuple[str, int]] = []
    position = 0
    while text[position:].strip():
        match = _DEPENDS_TOKEN.match(text, position)
        if match is None:
            start = len(text) - len(text[position:].lstrip())
            raise ExpressionError(f"unexpected {text[start]!r} at position {start + 1}")
        tokens.append((match.group(match.lastgroup or ""), match.start(match.lastgroup or "")))
        position = match.end()
    if not tokens:
        raise ExpressionError("empty depends")
    parser = _DependsParser(tokens)
    tree = parser.parse_or()
    if parser.index != len(tokens):
        token, where = tokens[parser.index]
        raise ExpressionError(f"unexpected {token!r} at position {where + 1}")
    return DependsExpr(text=text, tasks=frozenset(parser.tasks), tree=tree)


def dependencies_expr(names: list[str]) -> DependsExpr:
    """Return the ``depends`` equivalent of a legacy ``dependencies`` list (``A && B``)."""
    return parse_depends(" && ".join(names))


class _DependsParser:
    def __init__(self, tokens: list[tuple[str, int]]) -> None:
        self.tokens = tokens
        self.index = 0
        self.tasks: set[str] = set()

    def peek(self) -> str:
        return self.tokens[self.index][0] if self.index < len(self.tokens) else ""

    def parse_or(self) -> _Tree:
        tree = self.parse_and()
        while self.peek() == "||":
            self.index += 1
            tree = _Binary("||", tree, self.parse_and())
        return tree

    def parse_and(self) -> _Tree:
        tree = self.parse_unary()
        while self.peek() == "&&":
            self.index += 1
            tree = _Binary("&&", tree, self.parse_unary())
        return tree

    def parse_unary(self) -> _Tree:
        if self.index >= len(self.tokens):
            raise ExpressionError("expression ends where a task was expected")
        symbol, position = self.tokens[self.index]
        self.index += 1
        if symbol == "!":
            return _Not(self.parse_unary())
        if symbol == "(":
            tree = self.parse_or()
            if self.peek() != ")":
                raise ExpressionError(f"missing ')' for '(' at position {position + 1}")
            self.index += 1
            return tree
        if symbol in ("&&", "||", ")"):
            raise ExpressionError(f"expected a task at position {position + 1}, got {symbol!r}")
        return self.reference(symbol, position)

    def reference(self, token: str, position: int) -> _Tree:
        task, _, result = token.partition(".")
        if result in _FAN_OUT_RESULTS:
            raise ExpressionError(f"{token}: .{result} only applies to fan-out tasks (withItems)")
        if result == "Daemoned":
            raise ExpressionError(f"{token}: daemon templates are not supported")
        if result and result not in RESULTS:
            raise ExpressionError(
                f"{token} at position {position + 1}: unknown result .{result} "
                f"(expected one of {', '.join(RESULTS)})"
            )
        self.tasks.add(task)
        return _Ref(task, result or None)
