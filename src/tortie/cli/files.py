"""Reading the files a command is given (or standard input for ``-``): one place for the
one-line errors about unreadable or non-UTF-8 input."""

from __future__ import annotations

import sys

from tortie.errors import DecodeError, InvalidInput


def read_text(path: str, label: str, fix: str) -> str:
    """The text of ``path`` (``-``: standard input).  ``label`` names the input in errors
    ("file", "report"); ``fix`` says what the user should give instead."""
    where = "standard input" if path == "-" else f"{label} {path}"
    try:
        if path == "-":
            raw = getattr(sys.stdin, "buffer", None)
            data = sys.stdin.read() if raw is None else raw.read()
        else:
            with open(path, "rb") as fh:
                data = fh.read()
        return data if isinstance(data, str) else data.decode("utf-8")
    except OSError as exc:
        raise InvalidInput(f"{where}: cannot read it ({exc.strerror}); {fix}") from None
    except UnicodeDecodeError as exc:
        raise DecodeError(f"{where}: not UTF-8 text (byte {exc.start}); {fix}") from None
