"""argparse types for addresses, node names, handles and attributes.  Names follow the
rules of :mod:`tortie.core.names` (the same ones the CNI plugins apply), worded for the
command line.  A refused value is a usage error (exit 2) naming the option and the fix."""

from __future__ import annotations

import argparse

from tortie.core.names import attribute_problem, handle_problem, node_name_problem


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:60] + "…")


def single_address(text: str) -> str:
    """``--ip``: one address.  A prefix (``10.10.0.0/24``) is refused, never read as its
    first address."""
    if "/" in text:
        addr = text.split("/", 1)[0]
        raise argparse.ArgumentTypeError(
            f"{_short(text)} is a prefix, not one address; give a single address such as "
            f"{_short(addr)} (use --pool for a range)"
        )
    return text


def node_name(text: str) -> str:
    """``--node``: a DNS name without '/' or spaces (one segment of the key layout)."""
    problem = node_name_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"node name {_short(text)} {problem}; give the node's name as Kubernetes or "
            "'tortie get nodes' shows it"
        )
    return text


def node_name_or_empty(text: str) -> str:
    """Like :func:`node_name`, but empty means "use the default"."""
    return text if text == "" else node_name(text)


def handle_id(text: str) -> str:
    """``--handle``: one key segment (no '/', spaces or control characters)."""
    problem = handle_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"handle {_short(text)} {problem}; use letters, digits and '_.-' "
            "(the CNI plugins use <network>.<container id>)"
        )
    return text


def attribute(text: str) -> tuple[str, str]:
    """``--attr K=V``: a word key and a printable value."""
    key, sep, value = text.partition("=")
    problem = "is not KEY=VALUE" if not sep else attribute_problem(key, value)
    if problem is not None:
        raise argparse.ArgumentTypeError(
            f"{_short(text)} {problem}; write it like --attr pod=web-1"
        )
    return key, value
