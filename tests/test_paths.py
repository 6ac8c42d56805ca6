from __future__ import annotations

import re

import pytest
from hypothesis import given, settings, strategies as st

from stateward import InvalidPathError
from stateward.paths import (
    MAX_PATH_DEPTH,
    PatternTrie,
    format_path,
    parse_path,
    parse_pattern,
)


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("", ()),
        ("/", ()),
        ((), ()),
        ("job", ("job",)),
        ("job.bins", ("job", "bins")),
        ("items.0.name", ("items", "0", "name")),
        ("/users/1/name", ("users", "1", "name")),
        ("/hosts/10.0.0.1/up", ("hosts", "10.0.0.1", "up")),
        (("users", 1, "name"), ("users", "1", "name")),
        (["a", "b"], ("a", "b")),
        ("a b.c-d", ("a b", "c-d")),
    ],
)
def test_parse_path_forms(path, segments):
    assert parse_path(path) == segments


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("a..b", "empty segment"),
        (".a", "empty segment"),
        ("a.", "empty segment"),
        ("/a//b", "empty segment"),
        ("/a/", "empty segment"),
        ("/a/../b", "'..' is not a valid segment"),
        ("/a/./b", "'.' is not a valid segment"),
        ("a\x00b", "NUL character in a segment"),
        ("a.*", "'*' is a wildcard: allowed in subscription patterns only"),
        ("a.**", "'**' is a wildcard: allowed in subscription patterns only"),
        (("a/b",), "'/' inside segment 'a/b'"),
        (("a", -1), "segment -1 must be a str or an int >= 0"),
        (("a", True), "segment True must be a str or an int >= 0"),
        (("a", None), "segment None must be a str or an int >= 0"),
        ("a.\ud800", "lone surrogate in a segment"),
        (3, "expected a str or a tuple of segments, got int"),
        (b"a.b", "expected a str or a tuple of segments, got bytes"),
        (".".join(["a"] * (MAX_PATH_DEPTH + 1)), "more than 64 segments"),
        (("a",) * (MAX_PATH_DEPTH + 1), "more than 64 segments"),
        ("x" * 2000, "a segment is longer than 1024 characters"),
        ("a." * 10_000, "longer than 8192 characters"),
    ],
)
def test_parse_path_rejects(path, reason):
    with pytest.raises(InvalidPathError, match=re.escape(reason)) as info:
        parse_path(path)
    assert info.value.reason == reason
    assert isinstance(info.value, ValueError)


def test_error_message_names_the_path():
    with pytest.raises(
        InvalidPathError, match=r"^invalid path 'a\.\.b': empty segment$"
    ):
        parse_path("a..b")


def test_huge_path_is_rejected_before_splitting():
    """A 10 MB path string is refused by its length, without being split."""
    with pytest.raises(InvalidPathError, match="longer than"):
        parse_path("a." * 5_000_000)


def test_patterns_allow_wildcards_and_collapse_double_globstar():
    assert parse_pattern("job.*.status") == ("job", "*", "status")
    assert parse_pattern("**") == ("**",)
    assert parse_pattern("a.**.**.b") == ("a", "**", "b")


@pytest.mark.parametrize(
    ("segments", "text"),
    [
        ((), ""),
        (("a", "b"), "a.b"),
        (("hosts", "10.0.0.1"), "/hosts/10.0.0.1"),
    ],
)
def test_format_path_is_canonical(segments, text):
    assert format_path(segments) == text
    assert parse_path(text) == segments


segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
    min_size=1,
    max_size=8,
).filter(lambda s: s not in (".", "..", "*", "**"))


@given(st.lists(segment, max_size=6))
def test_format_then_parse_round_trips(segments):
    assert parse_path(format_path(tuple(segments))) == tuple(segments)


# -- the trie -----------------------------------------------------------------


def brute_match(pattern: tuple[str, ...], path: tuple[str, ...]):
    """Reference matcher: returns (depth, below) or None, by plain recursion."""

    def full(p, s):  # does pattern p match exactly the segments s?
        if not p:
            return not s
        if p[0] == "**":
            return any(full(p[1:], s[k:]) for k in range(len(s) + 1))
        if not s:
            return False
        return (p[0] == "*" or p[0] == s[0]) and full(p[1:], s[1:])

    def reaches_below(p, s):  # can p match something strictly below s?
        if not s:
            return bool(p) and p != ("**",)
        if not p:
            return False
        if p[0] == "**":
            return any(reaches_below(p[1:], s[k:]) for k in range(len(s) + 1)) or True
        return (p[0] == "*" or p[0] == s[0]) and reaches_below(p[1:], s[1:])

    depths = [k for k in range(len(path) + 1) if full(pattern, path[:k])]
    if depths:
        return (max(depths), False)
    if reaches_below(pattern, path):
        return (len(path), True)
    return None


def test_trie_exact_bubbling_and_below():
    trie: PatternTrie[str] = PatternTrie()
    for name, pattern in {
        "root": (),
        "job": ("job",),
        "bins": ("job", "bins"),
        "star": ("job", "*"),
        "deep": ("job", "**"),
        "other": ("other",),
    }.items():
        trie.add(pattern, name)
    assert trie.match(("job", "bins")) == {
        "root": (0, False),
        "job": (1, False),
        "bins": (2, False),
        "star": (2, False),
        "deep": (2, False),
    }
    # A write above replaces what "bins" and "star" watch: they hear of it.
    assert trie.match(("job",)) == {
        "root": (0, False),
        "job": (1, False),
        "deep": (1, False),
        "bins": (1, True),
        "star": (1, True),
    }
    assert "other" not in trie.match(("job", "bins", "x"))


def test_trie_remove_prunes_nodes():
    trie: PatternTrie[int] = PatternTrie()
    trie.add(("a", "b"), 1)
    trie.add(("a",), 2)
    trie.remove(("a", "b"), 1)
    assert trie.match(("a", "b")) == {2: (1, False)}
    assert len(trie) == 1
    with pytest.raises(KeyError):
        trie.remove(("a", "b"), 1)
    trie.remove(("a",), 2)
    assert trie._root.children == {}


small_segment = st.sampled_from(["a", "b", "c"])
pattern_segment = st.sampled_from(["a", "b", "c", "*", "**"])


@settings(max_examples=300)
@given(
    st.lists(st.lists(pattern_segment, max_size=4), min_size=1, max_size=6),
    st.lists(small_segment, max_size=4),
)
def test_trie_matches_like_brute_force(patterns, path):
    trie: PatternTrie[int] = PatternTrie()
    parsed = [parse_pattern(tuple(p)) for p in patterns]
    for i, p in enumerate(parsed):
        trie.add(p, i)
    expected = {}
    for i, p in enumerate(parsed):
        m = brute_match(p, tuple(path))
        if m is not None:
            expected[i] = m
    assert trie.match(tuple(path)) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.lists(pattern_segment, min_size=1, max_size=32), min_size=1, max_size=4
    ),
    st.lists(small_segment, max_size=64),
)
def test_routing_cost_is_polynomial_for_any_pattern(patterns, path):
    """Each (trie node, prefix length) state is visited at most once."""
    trie: PatternTrie[int] = PatternTrie()
    for i, p in enumerate(patterns):
        trie.add(parse_pattern(tuple(p)), i)
    trie.match(tuple(path))
    # + one "subtree" marker per node: below-matches at the end of the path
    assert trie.last_steps <= trie.node_count() * (len(path) + 2)


def test_10_alternating_globstars_route_a_deep_write_in_bounded_steps():
    """'**.*.**.*...' once took exponential time (14 segments: 13.8 s)."""
    trie: PatternTrie[int] = PatternTrie()
    pattern = parse_pattern(".".join(["**", "*"] * 16))  # 32 segments
    trie.add(pattern, 1)
    path = tuple(["x"] * 64)
    assert trie.match(path) == {1: (64, False)}
    assert trie.last_steps <= 33 * 65 + 33


@pytest.mark.parametrize("parse", [parse_path, parse_pattern])
def test_an_unhashable_segment_is_the_typed_error_not_the_caches(parse):
    # (the parse cache hashes its argument: a list inside a tuple was a
    # TypeError, which a remote get with such a path raised in the owner)
    with pytest.raises(InvalidPathError, match="must be a str or an int"):
        parse(("a", ["b"]))
