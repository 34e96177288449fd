"""Calico's label selector language, as used by an IPPool's ``nodeSelector``.

    parse_selector("zone == 'a' && !has(edge)").matches({"zone": "a"})  -> True

Grammar (``&&`` binds tighter than ``||``; whitespace is free; "" means ``all()``)::

    expr    := and ("||" and)*
    and     := unary ("&&" unary)*
    unary   := "!" unary | "(" expr ")" | "all()" | "global()" | "has(" KEY ")"
             | KEY ("==" | "!=" | "contains" | "starts with" | "ends with") STRING
             | KEY ["not"] "in" "{" [STRING ("," STRING)*] "}"

Like Calico, ``k != 'v'`` and ``k not in {...}`` are true when the label is absent.
Strings are single- or double-quoted with no escapes.  ``str()`` gives canonical text.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable, Mapping

from tortie.core.record import field, record
from tortie.errors import InvalidInput

TYPE_CHECKING = False  # typing stays unimported at run time: plugin start-up
if TYPE_CHECKING:
    from typing import Literal

    CompareOp = Literal["==", "!=", "contains", "starts with", "ends with"]

_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_./-")
_MAX_DEPTH = 100

_COMPARE: dict[CompareOp, Callable[[str | None, str], bool]] = {
    "==": lambda have, want: have == want,
    "!=": lambda have, want: have != want,
    "contains": lambda have, want: have is not None and want in have,
    "starts with": lambda have, want: have is not None and have.startswith(want),
    "ends with": lambda have, want: have is not None and have.endswith(want),
}


def _quote(value: str) -> str:
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise ValueError(f"a selector string cannot contain both quote characters: {value!r}")


class Node:
    """A node of a parsed selector."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        raise NotImplementedError


@record
class All(Node):
    """``all()``; ``global()`` (every non-namespaced resource) also matches every node."""

    name: Literal["all", "global"] = "all"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return True

    def __str__(self) -> str:
        return f"{self.name}()"


@record
class Has(Node):
    key: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.key in labels

    def __str__(self) -> str:
        return f"has({self.key})"


@record
class Compare(Node):
    key: str
    op: CompareOp
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        return _COMPARE[self.op](labels.get(self.key), self.value)

    def __str__(self) -> str:
        return f"{self.key} {self.op} {_quote(self.value)}"


@record
class In(Node):
    key: str
    values: frozenset[str]
    negated: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.key) in self.values) != self.negated

    def __str__(self) -> str:
        items = ", ".join(_quote(v) for v in sorted(self.values))
        return f"{self.key} {'not in' if self.negated else 'in'} {{{items}}}"


@record
class Not(Node):
    child: Node

    def matches(self, labels: Mapping[str, str]) -> bool:
        return not self.child.matches(labels)

    def __str__(self) -> str:
        if isinstance(self.child, All | Has | Not):
            return f"!{self.child}"
        return f"!({self.child})"


@record
class And(Node):
    children: tuple[Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(c.matches(labels) for c in self.children)

    def __str__(self) -> str:
        return " && ".join(f"({c})" if isinstance(c, Or) else str(c) for c in self.children)


@record
class Or(Node):
    children: tuple[Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return any(c.matches(labels) for c in self.children)

    def __str__(self) -> str:
        return " || ".join(str(c) for c in self.children)


@record(eq=False)
class Selector:
    """A parsed selector; equal (and hashed) by its canonical text."""

    root: Node
    _text: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_text", str(self.root))

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.root.matches(labels)

    def __str__(self) -> str:
        return self._text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and self._text == other._text

    def __hash__(self) -> int:
        return hash(self._text)


@record
class _Token:
    kind: Literal["word", "string", "op", "end"]
    text: str  # the word, operator, or string contents
    pos: int

    def describe(self) -> str:
        if self.kind == "end":
            return "end of input"
        return _quote(self.text) if self.kind == "string" else f"'{self.text}'"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = self._tokenize()
        self.i = 0
        self.depth = 0

    def fail(self, detail: str, pos: int) -> InvalidInput:
        quoted = json.dumps(self.text, ensure_ascii=False)
        return InvalidInput(f"invalid selector {quoted}: {detail} at position {pos}")

    def _tokenize(self) -> list[_Token]:
        text, i, tokens = self.text, 0, []
        while i < len(text):
            c = text[i]
            if c.isspace():
                i += 1
            elif text.startswith(("==", "!=", "&&", "||"), i):
                tokens.append(_Token("op", text[i : i + 2], i))
                i += 2
            elif c in "(){},!":
                tokens.append(_Token("op", c, i))
                i += 1
            elif c in "'\"":
                end = text.find(c, i + 1)
                if end < 0:
                    raise self.fail(f"expected a closing {c} for the string starting", i)
                tokens.append(_Token("string", text[i + 1 : end], i))
                i = end + 1
            elif c in _KEY_CHARS:
                start = i
                while i < len(text) and text[i] in _KEY_CHARS:
                    i += 1
                tokens.append(_Token("word", text[start:i], start))
            elif c in "&|=":
                raise self.fail(f"expected '{c * 2}', found '{c}'", i)
            else:
                raise self.fail(f"unexpected character {c!r}", i)
        tokens.append(_Token("end", "", len(text)))
        return tokens

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def expected(self, what: str) -> InvalidInput:
        tok = self.peek()
        found = "" if tok.kind == "end" else f", found {tok.describe()}"
        return self.fail(f"expected {what}{found}", tok.pos)

    def take(self, kind: str, text: str | None, what: str) -> _Token:
        tok = self.peek()
        if tok.kind != kind or (text is not None and tok.text != text):
            raise self.expected(what)
        self.i += 1
        return tok

    def accept(self, kind: str, text: str) -> bool:
        tok = self.peek()
        if tok.kind == kind and tok.text == text:
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        if self.peek().kind == "end":
            return All()
        node = self.parse_or()
        self.take("end", None, "'&&', '||' or the end of the selector")
        return node

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self.accept("op", "||"):
            parts.append(self.parse_and())
        return _join(Or, parts)

    def parse_and(self) -> Node:
        parts = [self.parse_unary()]
        while self.accept("op", "&&"):
            parts.append(self.parse_unary())
        return _join(And, parts)

    def parse_unary(self) -> Node:
        tok = self.peek()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self.fail(f"expected at most {_MAX_DEPTH} levels of nesting", tok.pos)
        try:
            if self.accept("op", "!"):
                return Not(self.parse_unary())
            if self.accept("op", "("):
                node = self.parse_or()
                self.take("op", ")", f"')' closing the '(' from position {tok.pos}")
                return node
            return self.parse_term()
        finally:
            self.depth -= 1

    def parse_term(self) -> Node:
        key = self.take("word", None, "a label key, '(', '!', has(...), all() or global()").text
        if key in ("all", "global", "has") and self.accept("op", "("):
            if key != "has":
                self.take("op", ")", f"')' after '{key}('")
                return All("all" if key == "all" else "global")
            name = self.take("word", None, "a label key after 'has('").text
            self.take("op", ")", f"')' after the label key in 'has({name}'")
            return Has(name)
        op = self.peek()
        self.i += 1
        word = op.text if op.kind != "string" else ""
        if word in ("starts", "ends"):
            self.take("word", "with", f"'with' after '{word}'")
            word += " with"
        for cmp in _COMPARE:
            if word == cmp:
                return Compare(key, cmp, self.string(cmp))
        if word == "not":
            self.take("word", "in", "'in' after 'not'")
            return In(key, self.string_set("not in"), negated=True)
        if word == "in":
            return In(key, self.string_set("in"))
        self.i -= 1
        ops = "==, !=, in, not in, contains, starts with, ends with"
        raise self.expected(f"an operator ({ops}) after label '{key}'")

    def string(self, after: str) -> str:
        return self.take("string", None, f"a quoted string after '{after}'").text

    def string_set(self, after: str) -> frozenset[str]:
        self.take("op", "{", f"'{{' after '{after}'")
        values: set[str] = set()
        if self.accept("op", "}"):
            return frozenset()
        while True:
            values.add(self.take("string", None, f"a quoted string in the '{after}' set").text)
            if self.accept("op", "}"):
                return frozenset(values)
            self.take("op", ",", f"',' or '}}' in the '{after}' set")


def _join(kind: type[And] | type[Or], parts: list[Node]) -> Node:
    if len(parts) == 1:
        return parts[0]
    flat: list[Node] = []
    for part in parts:
        flat.extend(part.children if isinstance(part, kind) else (part,))
    return kind(tuple(flat))


def parse_selector(text: str) -> Selector:
    """Parse Calico selector text; raise InvalidInput naming the position on bad syntax."""
    return Selector(_Parser(text).parse())
