"""${VAR}, ${VAR:offset:length}, ${FUNC(args)} and $[expression] for the fake's dialplan.

Enough of Asterisk's substitution and expression language for the capture's dialplan and the
project's asterisk_conf/extensions.conf: variables with slices, functions supplied by the
caller (CALLERID, CHANNEL, ...) plus IF/ENV/LEN/ISNULL/EXISTS, and $[...] with comparisons
(numeric when both sides are numbers), & | !, + - * / % and quoted strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.channel import Channel


class Expander:
    """${VAR}, ${VAR:offset:length}, ${FUNC(args)} and $[expression] in dialplan strings."""

    def __init__(
        self,
        lookup: Callable[[str], str | None],
        env: Mapping[str, str],
        functions: Mapping[str, Callable[[str], str]] | None = None,
    ) -> None:
        self.lookup = lookup
        self.env = env
        self.functions = dict(functions or {})
        self.functions.setdefault("IF", self._if)
        self.functions.setdefault("ENV", lambda arg: self.env.get(arg, ""))
        self.functions.setdefault("LEN", lambda arg: str(len(arg)))
        self.functions.setdefault("ISNULL", lambda arg: "1" if arg == "" else "0")
        self.functions.setdefault("EXISTS", lambda arg: "0" if arg == "" else "1")

    def expand(self, text: str) -> str:
        out, i = [], 0
        while i < len(text):
            if text.startswith("${", i) or text.startswith("$[", i):
                opener, closer = text[i + 1], "}" if text[i + 1] == "{" else "]"
                end = _matching(text, i + 1, opener, closer)
                inner = self.expand(text[i + 2 : end])
                out.append(self._variable(inner) if opener == "{" else evaluate(inner))
                i = end + 1
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def _variable(self, expr: str) -> str:
        offset = length = None
        name, *slices = _split_slices(expr)  # ':' inside FUNC(...) is not a slice
        if slices:
            offset = int(slices[0] or 0)
            length = int(slices[1]) if len(slices) > 1 and slices[1] else None
        if name.endswith(")") and "(" in name:
            func, _, arg = name[:-1].partition("(")
            handler = self.functions.get(func.upper())
            value = handler(arg) if handler else ""
        else:
            value = self.lookup(name) or ""
        if offset is not None:
            value = value[offset:] if length is None else value[offset : offset + length]
        return value

    @staticmethod
    def _if(arg: str) -> str:
        cond, _, branches = arg.partition("?")
        yes, _, no = branches.partition(":")
        return yes if truthy(cond) else no


def _split_slices(expr: str) -> list[str]:
    depth = 0
    parts, buf = [], []
    for char in expr:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append("".join(buf))
            buf = []
        else:
            buf.append(char)
    parts.append("".join(buf))
    return parts


def _matching(text: str, start: int, opener: str, closer: str) -> int:
    depth = 0
    for pos in range(start, len(text)):
        if text[pos] == opener:
            depth += 1
        elif text[pos] == closer:
            depth -= 1
            if depth == 0:
                return pos
    raise ValueError(f"unbalanced {opener}{closer} in {text!r}")


def truthy(value: str) -> bool:
    value = value.strip()
    return value not in ("", "0")


_TOKEN_RE = re.compile(r'\s*("(?:[^"\\]|\\.)*"|!=|<=|>=|[=<>&|()+\-*/%!]|[^\s=<>&|()+\-*/%!"]+)')


def evaluate(expr: str) -> str:
    """The subset of Asterisk's $[...] the dialplans use: comparisons, & | !, + - * / %."""
    tokens = [tok for tok in _TOKEN_RE.findall(expr) if tok]
    parser = _ExprParser(tokens)
    value = parser.parse_or()
    return _fmt(value)


def _fmt(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


class _ExprParser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self) -> str:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def parse_or(self) -> str:
        left = self.parse_and()
        while self._peek() == "|":
            self._next()
            right = self.parse_and()
            left = left if truthy(left) else right
        return left

    def parse_and(self) -> str:
        left = self.parse_cmp()
        while self._peek() == "&":
            self._next()
            right = self.parse_cmp()
            left = left if truthy(left) and truthy(right) else "0"
        return left

    def parse_cmp(self) -> str:
        left = self.parse_add()
        while self._peek() in ("=", "!=", "<", ">", "<=", ">="):
            op = self._next()
            right = self.parse_add()
            a, b = _num(left), _num(right)
            numeric = a is not None and b is not None
            x, y = (a, b) if numeric else (left, right)
            result = {
                "=": x == y,
                "!=": x != y,
                "<": x < y,  # type: ignore[operator]
                ">": x > y,  # type: ignore[operator]
                "<=": x <= y,  # type: ignore[operator]
                ">=": x >= y,  # type: ignore[operator]
            }[op]
            left = _fmt(result)
        return left

    def parse_add(self) -> str:
        left = self.parse_unary()
        while self._peek() in ("+", "-", "*", "/", "%"):
            op = self._next()
            right = self.parse_unary()
            a, b = _num(left) or 0.0, _num(right) or 0.0
            if op == "+":
                left = _fmt(a + b)
            elif op == "-":
                left = _fmt(a - b)
            elif op == "*":
                left = _fmt(a * b)
            elif op == "/":
                left = _fmt(float(int(a / b)) if b else 0.0)
            else:
                left = _fmt(a % b if b else 0.0)
        return left

    def parse_unary(self) -> str:
        tok = self._peek()
        if tok == "!":
            self._next()
            return "0" if truthy(self.parse_unary()) else "1"
        if tok == "(":
            self._next()
            value = self.parse_or()
            if self._peek() == ")":
                self._next()
            return value
        if tok is None:
            return ""
        self._next()
        if tok.startswith('"') and tok.endswith('"') and len(tok) >= 2:
            return tok[1:-1]
        return tok


def channel_expander(
    chan: Channel | None,
    globals_: Mapping[str, str],
    env: Mapping[str, str],
    clock: Callable[[], float],
) -> Expander:
    """An Expander for `chan`: its built-in names, its variables, then the globals; the
    dialplan functions that read a channel (CALLERID, CHANNEL, CONNECTEDLINE)."""

    def lookup(name: str) -> str | None:
        if chan is not None:
            builtin = {
                "CHANNEL": chan.name,
                "EXTEN": chan.exten,
                "CONTEXT": chan.context,
                "PRIORITY": str(chan.priority),
                "UNIQUEID": chan.uniqueid,
                "EPOCH": str(int(clock())),
            }
            if name in builtin:
                return builtin[name]
            if name in chan.variables:
                return chan.variables[name]
        return globals_.get(name)

    functions: dict[str, Callable[[str], str]] = {
        "GLOBAL": lambda arg: globals_.get(arg, ""),
        "CDR": lambda arg: "",
    }
    if chan is not None:
        functions["CALLERID"] = lambda arg: _callerid(chan, arg)
        functions["CHANNEL"] = lambda arg: {
            "name": chan.name, "language": chan.language, "uniqueid": chan.uniqueid,
        }.get(arg.strip().lower(), "")  # fmt: skip
        functions["CONNECTEDLINE"] = lambda arg: (
            (chan.conn_num or "") if arg.startswith("num") else (chan.conn_name or "")
        )
    return Expander(lookup, env, functions)


def _callerid(chan: Channel, arg: str) -> str:
    kind = arg.split(",")[0].strip().lower()
    if kind in ("num", "number"):
        return chan.cid_num or ""
    if kind == "name":
        return chan.cid_name or ""
    return chan.callerid_all
