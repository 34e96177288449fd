"""core/names.py: the one set of rules for node names, handles and attributes."""

from __future__ import annotations

import pytest

from tortie.core.names import attribute_problem, handle_problem, node_name_problem


@pytest.mark.parametrize("name", ["node1", "ip-10-0-0-1.ec2.internal", "Node_A", "n" * 253])
def test_good_node_names(name: str) -> None:
    assert node_name_problem(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "is empty"),
        ("a/b", "'/'"),
        (".", "'.' or '..'"),
        ("..", "'.' or '..'"),
        ("a b", "' '"),
        ("a\nb", "'\\n'"),
        ("a\x00b", "'\\x00'"),
        ("n" * 254, "longer than 253"),
    ],
)
def test_bad_node_names(name: str, reason: str) -> None:
    problem = node_name_problem(name)
    assert problem is not None and reason in problem


def test_handles_follow_the_key_segment_rules() -> None:
    assert handle_problem("k8s-pod-network.0123abc") is None
    assert handle_problem("ipip-tunnel-addr-node1") is None
    assert handle_problem("h" * 512) is None
    for bad in ("", "a/b", "..", "a\tb", "h" * 513):
        assert handle_problem(bad) is not None, bad


def test_attributes() -> None:
    assert attribute_problem("pod", "web-1") is None
    assert attribute_problem("namespace", "") is None
    assert attribute_problem("note", "two words") is None
    for key, value in (("", "v"), ("a b", "v"), ("k", "line\nbreak"), ("k", "v" * 1025)):
        assert attribute_problem(key, value) is not None, (key, value)
