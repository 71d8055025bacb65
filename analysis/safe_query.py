"""A filter language for ``query --where`` that cannot run code: parsed to an allow-listed tree, evaluated
with pandas comparisons.

``--where`` may come from anyone who can type a command or call the API, so it is never handed to
``DataFrame.query``/``eval`` (whose ``@name`` references, attribute access and calls reach Python objects).
Instead the text is parsed with :func:`ast.parse` (which only parses; it runs nothing) and every node is
checked against a short list:

* column names of the results table (``seed``, ``model``, ...), nothing else;
* literals: strings, numbers, ``True``/``False``/``None``, and lists or tuples of them;
* comparisons ``== != < <= > >=``, chained for ranges (``1 <= seed < 3``), ``in`` / ``not in [...]``;
* ``and`` / ``or`` / ``not``, parentheses, unary minus on numbers. pandas' ``&`` / ``|`` / ``~`` are read as
  ``and`` / ``or`` / ``not`` (with pandas' precedence: ``a == 1 & b < 2`` is ``(a == 1) and (b < 2)``).

Anything else (attribute access, calls, ``@``, subscripts, dunder names, lambdas, f-strings, arithmetic) is
rejected with a :class:`QueryError` listing what is allowed. The checked tree is then evaluated with pandas
Series operations, so the result is a boolean mask over the rows.
"""

from __future__ import annotations

import ast
import io
import operator
import tokenize
from typing import Any

import pandas as pd

from orchestrator.errors import ConfigError

MAX_LENGTH = 2000  # characters; a filter is a line of text, not a program
ALLOWED = ("column names; literals (strings, numbers, True/False/None, [lists]); comparisons == != < <= > >= "
           "(chained for ranges: 1 <= seed < 3); in / not in [...]; and / or / not (or & | ~); parentheses")
EXAMPLE = "--where \"dataset == 'esc50' and init in ['pretrained', 'random'] and 0 <= seed < 3\""
_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge}
_MIRROR = {ast.Lt: ast.Gt, ast.LtE: ast.GtE, ast.Gt: ast.Lt, ast.GtE: ast.LtE, ast.Eq: ast.Eq, ast.NotEq: ast.NotEq}


class QueryError(ConfigError):
    """A ``--where`` filter uses something outside the allowed language, or names an unknown column."""


def parse_where(where: str, columns: list[str]) -> ast.Expression:
    """The checked syntax tree of ``where``; raises QueryError naming the first disallowed part."""
    if not isinstance(where, str):
        raise _error(where, f"a filter is a string, got {type(where).__name__}", columns)
    if len(where) > MAX_LENGTH:
        raise _error(where[:60] + "...", f"longer than {MAX_LENGTH} characters", columns)
    try:
        text = _words_for_symbols(where)
        if text is None:
            raise _error(where, "'@name' references are not allowed (they reach Python objects)", columns)
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError, tokenize.TokenError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else type(exc).__name__
        raise _error(where, f"not a valid filter ({detail})", columns) from None
    _check(tree.body, where, columns)
    return tree


def select_rows(frame: pd.DataFrame, where: str | None) -> pd.DataFrame:
    """Rows of ``frame`` matching the filter ``where`` (all rows when None or blank)."""
    if where is None or not where.strip():
        return frame
    tree = parse_where(where, list(frame.columns))
    mask = _as_mask(_evaluate(tree.body, frame, where), frame, where)
    return frame[mask.to_numpy(dtype=bool)]


def _words_for_symbols(where: str) -> str | None:
    """``&``, ``|``, ``~`` outside string literals -> ``and``, ``or``, ``not`` (tokenize only splits text);
    None when the text holds an ``@`` reference."""
    words = {"&": "and", "|": "or", "~": "not"}
    tokens = []
    for tok in tokenize.generate_tokens(io.StringIO(where.strip()).readline):
        if tok.type == tokenize.OP and tok.string == "@":
            return None
        if tok.type == tokenize.OP and tok.string in words:
            tok = tok._replace(type=tokenize.NAME, string=words[tok.string])
        tokens.append((tok.type, tok.string))
    return tokenize.untokenize(tokens).strip()


def _error(where: Any, reason: str, columns: list[str]) -> QueryError:
    shown = where if len(str(where)) <= 200 else str(where)[:200] + "..."
    return QueryError(f"--where {shown!r}: {reason}. Allowed: {ALLOWED}. Columns: {', '.join(columns)}. "
                      f"Example: {EXAMPLE}")


def _snippet(node: ast.AST, where: str) -> str:
    """The source text of ``node`` (re-printed from the tree: the filter was normalised before parsing)."""
    try:
        return ast.unparse(node)
    except Exception:  # unparse has no reason to fail on a parsed tree; the node type still names it
        return type(node).__name__


def _check(node: ast.AST, where: str, columns: list[str]) -> None:
    """Raise QueryError unless ``node`` and everything below it is in the allowed language."""
    if isinstance(node, ast.BoolOp):
        parts = node.values
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        parts = [node.operand]
    elif isinstance(node, ast.Compare):
        return _check_compare(node, where, columns)
    elif isinstance(node, ast.Name):  # a boolean column on its own: --where "mask"
        return _check_operand(node, where, columns)
    else:
        raise _error(where, f"{_snippet(node, where)!r} is not a condition (expected a comparison such as "
                            "seed < 3, combined with and / or / not)", columns)
    for part in parts:
        _check(part, where, columns)


def _check_compare(node: ast.Compare, where: str, columns: list[str]) -> None:
    operands = [node.left, *node.comparators]
    for op, right in zip(node.ops, node.comparators):
        if isinstance(op, (ast.In, ast.NotIn)):
            if len(node.ops) > 1 or not isinstance(right, (ast.List, ast.Tuple)):
                raise _error(where, f"{_snippet(node, where)!r}: 'in' takes a column on the left and a "
                                    "[list] of literals on the right", columns)
        elif type(op) not in _COMPARE:
            raise _error(where, f"operator in {_snippet(node, where)!r} is not allowed (is / is not: use "
                                "== None / != None)", columns)
    for operand in operands:
        _check_operand(operand, where, columns)


def _check_operand(node: ast.AST, where: str, columns: list[str]) -> None:
    """A column name, a literal, or a list/tuple of literals."""
    if isinstance(node, ast.Name):
        if node.id.startswith("__") or node.id not in columns:
            raise _error(where, f"unknown column {node.id!r}", columns)
        return
    if isinstance(node, (ast.List, ast.Tuple)):
        for item in node.elts:
            _literal(item, where, columns)
        return
    _literal(node, where, columns)


def _literal(node: ast.AST, where: str, columns: list[str]) -> Any:
    """The value of a literal node: str, int, float, bool or None (negative numbers included)."""
    if isinstance(node, ast.Constant) and (node.value is None or type(node.value) in (str, int, float, bool)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd))
            and isinstance(node.operand, ast.Constant) and type(node.operand.value) in (int, float)):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    raise _error(where, f"{_snippet(node, where)!r} is not allowed here (only column names and literals; "
                        "no attribute access, calls, @references, subscripts or arithmetic)", columns)


def _evaluate(node: ast.AST, frame: pd.DataFrame, where: str):
    """A boolean Series for a checked condition node."""
    if isinstance(node, ast.Name):
        column = frame[node.id]
        if not pd.api.types.is_bool_dtype(column):
            raise _error(where, f"column {node.id!r} is not true/false; compare it, e.g. {node.id} == ...",
                         list(frame.columns))
        return column
    if isinstance(node, ast.BoolOp):
        masks = [_as_mask(_evaluate(p, frame, where), frame, where) for p in node.values]
        use_and = isinstance(node.op, ast.And)
        result = masks[0]
        for mask in masks[1:]:
            result = (result & mask) if use_and else (result | mask)
        return result
    if isinstance(node, ast.UnaryOp):
        return ~_as_mask(_evaluate(node.operand, frame, where), frame, where)
    return _evaluate_compare(node, frame, where)


def _evaluate_compare(node: ast.Compare, frame: pd.DataFrame, where: str) -> pd.Series:
    """``a < b <= c`` as ``(a < b) & (b <= c)``; ``col in [...]`` as ``isin``."""
    operands = [node.left, *node.comparators]
    result = pd.Series(True, index=frame.index)
    for left, op, right in zip(operands, node.ops, operands[1:]):
        result &= _as_mask(_compare(left, op, right, frame, where), frame, where)
    return result


def _compare(left: ast.AST, op: ast.cmpop, right: ast.AST, frame: pd.DataFrame, where: str):
    if isinstance(op, (ast.In, ast.NotIn)):
        if not isinstance(left, ast.Name):
            raise _error(where, "'in' needs a column on the left", list(frame.columns))
        values = [_literal(item, where, list(frame.columns)) for item in right.elts]
        for value in values:
            _check_types(frame, left.id, value, where)
        hit = frame[left.id].isin(values)
        return ~hit if isinstance(op, ast.NotIn) else hit
    if not isinstance(left, ast.Name) and isinstance(right, ast.Name):  # 3 > seed  ->  seed < 3
        left, right, op = right, left, _MIRROR[type(op)]()
    lhs = _operand(left, frame, where)
    rhs = _operand(right, frame, where)
    if rhs is None and isinstance(op, (ast.Eq, ast.NotEq)) and isinstance(lhs, pd.Series):
        return lhs.isna() if isinstance(op, ast.Eq) else lhs.notna()
    if isinstance(lhs, pd.Series) and not isinstance(rhs, pd.Series):
        _check_types(frame, left.id, rhs, where)
    try:
        return _COMPARE[type(op)](lhs, rhs)
    except TypeError as exc:
        raise _error(where, f"cannot compare {_snippet(left, where)!r} with {_snippet(right, where)!r} "
                            f"({str(exc).splitlines()[0][:120]})", list(frame.columns)) from None


def _check_types(frame: pd.DataFrame, name: str, value: Any, where: str) -> None:
    """A number against a text column (or text against a numeric one) would match nothing: say so instead."""
    column = frame[name]
    if value is None or isinstance(value, bool) or pd.api.types.is_bool_dtype(column):
        return
    numeric = pd.api.types.is_numeric_dtype(column)
    if numeric and isinstance(value, str):
        raise _error(where, f"column {name!r} holds numbers but is compared with the text {value!r}",
                     list(frame.columns))
    if not numeric and isinstance(value, (int, float)):
        raise _error(where, f"column {name!r} holds text but is compared with the number {value!r} (quote it)",
                     list(frame.columns))


def _operand(node: ast.AST, frame: pd.DataFrame, where: str):
    if isinstance(node, ast.Name):
        return frame[node.id]
    return _literal(node, where, list(frame.columns))


def _as_mask(value, frame: pd.DataFrame, where: str) -> pd.Series:
    """A comparison's result as a boolean Series over ``frame`` (literal-only comparisons broadcast)."""
    if isinstance(value, pd.Series):
        return value.fillna(False).astype(bool) if value.dtype != bool else value
    if isinstance(value, bool):
        return pd.Series(value, index=frame.index)
    raise _error(where, "the filter does not evaluate to true/false per row", list(frame.columns))
