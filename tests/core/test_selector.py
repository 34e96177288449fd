"""Calico label selectors: parsing, matching, canonical text and error messages."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tortie.core.selector import (
    All,
    And,
    Compare,
    Has,
    In,
    Node,
    Not,
    Or,
    Selector,
    parse_selector,
)
from tortie.errors import InvalidInput

LABELS = {"zone": "us-east-1a", "rack": "r1", "example.com/tier": "gold", "empty": ""}


def m(text: str, labels: dict[str, str] | None = None) -> bool:
    return parse_selector(text).matches(LABELS if labels is None else labels)


# --- every operator, including what happens when the label is absent ---------------------


@pytest.mark.parametrize(
    ("text", "present", "absent"),
    [
        ("zone == 'us-east-1a'", True, False),
        ("zone == 'us-east-1b'", False, False),
        ("zone != 'us-east-1b'", True, True),  # Calico: != matches an absent label
        ("zone != 'us-east-1a'", False, True),
        ("zone in {'us-east-1a', 'x'}", True, False),
        ("zone in {'x', 'y'}", False, False),
        ("zone in {}", False, False),
        ("zone not in {'x'}", True, True),  # Calico: not in matches an absent label
        ("zone not in {'us-east-1a'}", False, True),
        ("zone not in {}", True, True),
        ("zone contains 'east'", True, False),
        ("zone contains 'west'", False, False),
        ("zone starts with 'us-'", True, False),
        ("zone starts with 'east'", False, False),
        ("zone ends with '1a'", True, False),
        ("zone ends with 'us'", False, False),
        ("has(zone)", True, False),
        ("!has(zone)", False, True),
        ("all()", True, True),
        ("global()", True, True),
        ("", True, True),
    ],
)
def test_operator(text: str, present: bool, absent: bool) -> None:
    assert m(text) is present
    assert m(text, {"other": "us-east-1a"}) is absent


def test_empty_value_is_a_value_not_absence() -> None:
    assert m("empty == ''")
    assert not m("empty != ''")
    assert m("has(empty)")
    assert m("empty in {''}")
    assert not m("missing == ''")


def test_prefixed_keys_and_keys_that_look_like_keywords() -> None:
    assert m("example.com/tier == 'gold'")
    assert m("has(example.com/tier)")
    labels = {"has": "1", "all": "2", "in": "3", "not": "4", "global": "5", "a_b-c.d": "6"}
    assert m("has == '1' && all == '2' && in in {'3'} && not not in {'x'}", labels)
    assert m("global starts with '5' && a_b-c.d ends with '6'", labels)
    assert str(parse_selector("in in {'3'}")) == 'in in {"3"}'


# --- precedence, grouping, negation ---------------------------------------------------------


def test_and_binds_tighter_than_or() -> None:
    # true || (false && false) -> true; (true || false) && false would be false
    assert m("has(zone) || has(nope) && has(nada)")
    assert not m("(has(zone) || has(nope)) && has(nada)")
    assert m("has(nope) && has(nada) || has(rack)")
    sel = parse_selector("has(a) || has(b) && has(c)")
    assert sel.root == Or((Has("a"), And((Has("b"), Has("c")))))


def test_negation_applies_to_one_term() -> None:
    assert not m("!has(zone) && has(rack)")
    assert m("!(has(zone) && has(nope))")
    assert m("!zone == 'elsewhere'")  # ! binds the comparison, not just the key
    assert m("!!has(zone)")
    assert not m("!!!has(zone)")
    assert parse_selector("!zone == 'x'").root == Not(Compare("zone", "==", "x"))


def test_nested_parentheses() -> None:
    assert m("((((has(zone)))))")
    assert m("(has(zone) && (rack == 'r1' || (has(x) && !has(y)))) && !(zone == 'z')")


def test_deep_nesting_is_rejected_cleanly() -> None:
    with pytest.raises(InvalidInput, match="levels of nesting"):
        parse_selector("(" * 500 + "has(a)" + ")" * 500)
    with pytest.raises(InvalidInput, match="levels of nesting"):
        parse_selector("!" * 500 + "has(a)")


# --- quoting and whitespace ---------------------------------------------------------------


def test_quotes() -> None:
    assert m('zone == "us-east-1a"')
    assert m("""zone in {"x", 'us-east-1a'}""")
    assert m('q == "it\'s"', {"q": "it's"})
    assert m("q == 'say \"hi\"'", {"q": 'say "hi"'})
    assert m("q == 'a && b || !has(c)'", {"q": "a && b || !has(c)"})
    assert m("q == '  spaced  '", {"q": "  spaced  "})
    assert str(parse_selector('q == "it\'s"')) == 'q == "it\'s"'
    assert str(parse_selector("q == 'say \"hi\"'")) == "q == 'say \"hi\"'"


def test_whitespace_is_free() -> None:
    tight = "zone=='us-east-1a'&&!has(x)||rack in{'r1'}&&has(rack)"
    loose = "  zone  ==\t'us-east-1a'  &&\n ! has( x )  ||  rack  in  { 'r1' }  &&  has ( rack ) "
    assert parse_selector(tight) == parse_selector(loose)
    assert m(tight) and m(loose)
    assert parse_selector("zone starts   with 'us'") == parse_selector("zone starts with 'us'")
    assert parse_selector("   ") == parse_selector("all()")


# --- canonical text and equality -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", "all()"),
        ("global()", "global()"),
        ("zone=='a'", 'zone == "a"'),
        ("k in {'b','a','b'}", 'k in {"a", "b"}'),
        ("k not in {}", "k not in {}"),
        ("(has(a) && has(b)) && has(c)", "has(a) && has(b) && has(c)"),
        ("has(a) || (has(b) || has(c))", "has(a) || has(b) || has(c)"),
        ("(has(a) || has(b)) && has(c)", "(has(a) || has(b)) && has(c)"),
        ("has(a) || (has(b) && has(c))", "has(a) || has(b) && has(c)"),
        ("!(k == 'v')", '!(k == "v")'),
        ("!(has(a))", "!has(a)"),
        ("!(has(a) || has(b))", "!(has(a) || has(b))"),
        ("k starts with 'x'", 'k starts with "x"'),
    ],
)
def test_canonical_text(text: str, canonical: str) -> None:
    sel = parse_selector(text)
    assert str(sel) == canonical
    assert parse_selector(canonical) == sel


def test_equality_and_hash_follow_canonical_text() -> None:
    a = parse_selector("k in {'x', 'y'}")
    b = parse_selector('k in {"y","x","x"}')
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != parse_selector("k in {'x'}")
    assert a != 'k in {"x", "y"}'  # a string is not a selector


def test_selector_is_immutable() -> None:
    sel = parse_selector("has(a)")
    with pytest.raises(AttributeError):
        sel.root = All()  # type: ignore[misc]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("zone == ", "expected a quoted string after '==' at position 8"),
        ("zone == us", "expected a quoted string after '==', found 'us' at position 8"),
        ("zone = 'a'", "expected '==', found '=' at position 5"),
        ("has(a) & has(b)", "expected '&&', found '&' at position 7"),
        ("has(a) | has(b)", "expected '||', found '|' at position 7"),
        ("zone == 'a", "expected a closing ' for the string starting at position 8"),
        ('zone == "a', 'expected a closing " for the string starting at position 8'),
        ("(has(a)", "expected ')' closing the '(' from position 0 at position 7"),
        ("has(a))", "expected '&&', '||' or the end of the selector, found ')' at position 6"),
        ("has(a) has(b)", "or the end of the selector, found 'has' at position 7"),
        ("zone equals 'a'", "expected an operator (==, !=, in, not in, contains, starts with,"),
        ("zone", "after label 'zone' at position 4"),
        ("zone starts 'a'", "expected 'with' after 'starts', found \"a\" at position 12"),
        ("zone not {'a'}", "expected 'in' after 'not', found '{' at position 9"),
        ("zone in 'a'", "expected '{' after 'in', found \"a\" at position 8"),
        ("zone in {'a',}", "expected a quoted string in the 'in' set, found '}' at position 13"),
        ("zone in {'a' 'b'}", "expected ',' or '}' in the 'in' set, found \"b\" at position 13"),
        ("zone in {'a'", "expected ',' or '}' in the 'in' set at position 12"),
        ("has()", "expected a label key after 'has(', found ')' at position 4"),
        ("has(a", "expected ')' after the label key in 'has(a' at position 5"),
        ("all(", "expected ')' after 'all(' at position 4"),
        ("!", "expected a label key, '(', '!', has(...), all() or global() at position 1"),
        ("has(a) && ", "expected a label key, '(', '!', has(...), all() or global() at"),
        ("'a' == zone", "expected a label key, '(', '!', has(...), all() or global(), found"),
        ("zone == 'a' @", "unexpected character '@' at position 12"),
        ("zöne == 'a'", "unexpected character 'ö' at position 1"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_selector(text)
    text_quoted = '"' + text.replace('"', '\\"') + '"'
    assert str(info.value).startswith(f"invalid selector {text_quoted}: ")
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_error_message_stays_on_one_line() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_selector("has(a)\n&& ?")
    assert str(info.value) == (
        "invalid selector \"has(a)\\n&& ?\": unexpected character '?' at position 10"
    )


# --- property: render -> parse round-trips and preserves meaning -----------------------------

KEYS = ["a", "b", "zone", "example.com/tier", "has", "all", "in", "not", "contains"]
VALUES = st.text(alphabet="ab '\"-&|(){},!=", max_size=4).filter(
    lambda v: not ('"' in v and "'" in v)
)

leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(All, st.sampled_from(["all", "global"])),
    st.builds(Has, st.sampled_from(KEYS)),
    st.builds(
        Compare,
        st.sampled_from(KEYS),
        st.sampled_from(["==", "!=", "contains", "starts with", "ends with"]),
        VALUES,
    ),
    st.builds(In, st.sampled_from(KEYS), st.frozensets(VALUES, max_size=3), st.booleans()),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    many = st.lists(children, min_size=2, max_size=3).map(tuple)
    return st.one_of(st.builds(Not, children), st.builds(And, many), st.builds(Or, many))


trees = st.recursive(leaves, _extend, max_leaves=12)
label_dicts = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5)


@settings(max_examples=300)
@given(tree=trees, labels=st.lists(label_dicts, min_size=1, max_size=5))
def test_render_parse_round_trip(tree: Node, labels: list[dict[str, str]]) -> None:
    original = Selector(tree)
    reparsed = parse_selector(str(original))
    assert reparsed == original
    assert str(parse_selector(str(reparsed))) == str(reparsed)
    for lab in labels:
        assert reparsed.matches(lab) is tree.matches(lab)
