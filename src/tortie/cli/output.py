"""Text output for the CLI: calicoctl-style tables and count formatting."""

from __future__ import annotations

from collections.abc import Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], border: bool = True) -> str:
    """A table; with ``border`` in calicoctl's boxed style, else plain columns."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    if not border:
        lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
        lines += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
        ]
        return "\n".join(lines) + "\n"
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    head = "|" + "|".join(f" {h.center(w)} " for h, w in zip(headers, widths, strict=True)) + "|"
    body = [
        "|" + "|".join(f" {c.ljust(w)} " for c, w in zip(r, widths, strict=True)) + "|"
        for r in rows
    ]
    return "\n".join([rule, head, rule, *body, rule]) + "\n"


def count(n: int) -> str:
    """Exact below a billion, else like calicoctl (``1.2089e+24``)."""
    return str(n) if n < 10**9 else f"{n:.5g}"


def with_percent(n: int, total: int) -> str:
    pct = round(100 * n / total) if total else 0
    return f"{count(n)} ({pct}%)"
