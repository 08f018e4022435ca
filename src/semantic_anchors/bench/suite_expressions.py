"""``${expression}`` override values: derived from a run's resolved config when it is built.

``loss.drw_start_step=${int(0.8 * trainer.max_steps)}`` in a suite follows a recipe whose step
count is retuned. :func:`split_derived` separates such values from plain overrides (the last
override of a key wins, whichever kind it is); :func:`evaluate_expression` computes one with
numbers, ``+ - * / //``, ``int`` / ``round`` / ``min`` / ``max`` and dotted config keys, and
nothing else (no ``eval``).
"""

from __future__ import annotations

import ast
import operator
import re
from typing import Any

__all__ = ["evaluate_expression", "split_derived"]

_DERIVED = re.compile(r"^\$\{(.+)\}$")

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv,
}  # fmt: skip
_FUNCTIONS = {"int": int, "round": round, "min": min, "max": max}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def evaluate_expression(expression: str, config: dict) -> Any:
    """Evaluate ``expression`` with config keys as names: numbers, ``+ - * / //``, ``int``,
    ``round``, ``min``, ``max`` and dotted config keys (``trainer.max_steps``). Nothing else.

    Raises:
        ValueError: a syntax error, an unsupported construct or an unknown config key.

    Example:
        >>> evaluate_expression("int(0.8 * trainer.max_steps)", {"trainer": {"max_steps": 600}})
        480
    """
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError as err:
        raise ValueError(f"cannot parse ${{{expression}}}: {err.msg}") from err

    def walk(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -walk(node.operand)
        if (
            isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS and not node.keywords
        ):  # fmt: skip
            return _FUNCTIONS[node.func.id](*(walk(arg) for arg in node.args))
        key = _dotted(node)
        if key is not None:
            value: Any = config
            for part in key.split("."):
                if not isinstance(value, dict) or part not in value:
                    raise ValueError(f"${{{expression}}}: unknown config key {key!r}")
                value = value[part]
            return value
        raise ValueError(
            f"${{{expression}}}: only numbers, + - * / //, int/round/min/max and config keys "
            f"are allowed, found {ast.dump(node)[:60]}"
        )

    return walk(tree)


def split_derived(
    overrides: list[str] | tuple[str, ...],
) -> tuple[list[str], list[tuple[str, str]]]:
    """Plain overrides and ``(key, expression)`` pairs of ``${...}`` values that are still in force
    (a later plain override of the same key wins over an earlier derived one and vice versa)."""
    last: dict[str, int] = {}
    for i, item in enumerate(overrides):
        last[item.split("=", 1)[0].strip()] = i
    plain, derived = [], []
    for i, item in enumerate(overrides):
        key, value = (part.strip() for part in item.split("=", 1))
        match = _DERIVED.match(value)
        if match is None:
            plain.append(item)
        elif last[key] == i:
            derived.append((key, match.group(1)))
    return plain, derived
