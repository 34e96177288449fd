"""Surgical YAML edits: find nodes with PyYAML's composer (which knows where every node
starts and ends in the text) and splice the text, so comments, key order, quoting and
every other byte stay as they were.  A round trip through a YAML library would lose them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import yaml

from tortie.errors import InvalidInput


@dataclass
class Edits:
    """Replacements of [start, end) character ranges, applied back to front."""

    changes: list[tuple[int, int, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def replace(self, start: int, end: int, text: str, note: str) -> None:
        self.changes.append((start, end, text))
        self.notes.append(note)

    def apply(self, text: str) -> str:
        # back to front; at one place, a removal first, then insertions (the later one
        # goes after the earlier one)
        ordered = sorted(
            enumerate(self.changes),
            key=lambda ic: (ic[1][0], ic[1][1] > ic[1][0], ic[0]),
            reverse=True,
        )
        for _, (start, end, new) in ordered:
            text = text[:start] + new + text[end:]
        return text


def compose(text: str, source: str) -> list[yaml.Node]:
    try:
        return [n for n in yaml.compose_all(text, Loader=yaml.SafeLoader) if n is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise InvalidInput(f"{source}: not valid YAML{where}; fix the syntax first") from None
    except RecursionError:
        raise InvalidInput(f"{source}: nested too deeply to be a manifest") from None


def get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return v  # type: ignore[no-any-return]
    return None


def path(node: yaml.Node | None, *keys: str) -> yaml.Node | None:
    for key in keys:
        node = get(node, key)
    return node


def text_of(node: yaml.Node | None) -> str | None:
    return node.value if isinstance(node, yaml.ScalarNode) else None


def items(node: yaml.Node | None) -> list[yaml.Node]:
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []


def documents_of_kind(docs: list[yaml.Node], kind: str) -> Iterator[yaml.Node]:
    """Documents of ``kind``, looking inside ``List``s too."""
    for doc in docs:
        if text_of(get(doc, "kind")) == kind:
            yield doc
        for item in items(get(doc, "items")):
            if text_of(get(item, "kind")) == kind:
                yield item


def quoted(value: str, like: yaml.ScalarNode | None = None) -> str:
    """``value`` as a YAML scalar in the style of ``like`` (double quotes by default)."""
    style = like.style if like is not None else '"'
    if style == "'":
        return "'" + value.replace("'", "''") + "'"
    if style in (None, "") and value and value.replace(".", "").replace("-", "").isalnum():
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def after_line(text: str, index: int) -> int:
    """The index just after the end of the line holding ``index`` (past its newline)."""
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def end_of_node(text: str, node: yaml.Node) -> int:
    """Where the text after a block node starts: its end mark backed up over trailing
    blank and comment-only lines, so an insertion lands right after the node's content."""
    end = node.end_mark.index
    if node.end_mark.column == 0:  # block nodes end at the start of the following line
        cut = end
        while cut > node.start_mark.index:
            start = line_start(text, cut - 1)
            line = text[start:cut].strip()
            if line and not line.startswith("#"):
                break
            cut = start
        return cut
    return after_line(text, end)
