"""tortie.model.names: the one rule for node names, handles and attribute names that
the CLI and the CNI plugins share, and the bounded quoting of user values."""

from __future__ import annotations

import pytest

from tortie.errors import InvalidInput
from tortie.model.names import (
    MAX_HANDLE,
    MAX_NODE_NAME,
    check_attribute,
    check_handle,
    check_node_name,
    name_problem,
    quoted,
)


@pytest.mark.parametrize("name", ["node1", "ip-10-0-0-1.ec2.internal", "Node_A", "n" * 253])
def test_good_node_names(name: str) -> None:
    assert check_node_name(name, "--node", "fix") == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("a/b", "'/'"),
        ("a b", "whitespace"),
        ("a\nb", "whitespace"),
        ("a\x00b", "control character"),
        ("n" * (MAX_NODE_NAME + 1), f"longer than {MAX_NODE_NAME}"),
    ],
)
def test_bad_node_names_name_source_reason_and_fix(name: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_node_name(name, "--node", "give the node's name")
    text = str(err.value)
    assert reason in text and "(from --node)" in text and "give the node's name" in text
    assert "\n" not in text and len(text) < 300


def test_handles_and_attributes() -> None:
    assert check_handle("k8s-pod-network.0123abc", "--handle", "fix") == "k8s-pod-network.0123abc"
    assert check_handle("h" * MAX_HANDLE, "--handle", "fix")
    for bad in ("", "a/b", "a\tb", "h" * (MAX_HANDLE + 1)):
        assert name_problem(bad, MAX_HANDLE) is not None, bad
        with pytest.raises(InvalidInput, match="handle"):
            check_handle(bad, "--handle", "fix")
    assert check_attribute("namespace", "--attr") == "namespace"
    with pytest.raises(InvalidInput, match="attribute name"):
        check_attribute("po/d", "--attr")


def test_quoted_is_bounded() -> None:
    assert quoted("short") == "'short'"
    long = quoted("x" * 40_000_000)
    assert len(long) < 100 and "40000000 characters" in long
