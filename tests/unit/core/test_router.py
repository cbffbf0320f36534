"""ferryman.core.router: longest segment-boundary prefix per listener, and the prefix mapping both ways.

Sources named in the tables:
  APACHE   Apache ProxyPass prefix matching and mapping (observed on Apache 2.4)
  CONTRACT docs/configuration.md, `[[route]]` (`path`, `listener`)
  BRIEF    ferryman's routing rules: a route for a specific listener beats a catch-all, `/` matches
           everything, a member URL may have the root as its prefix
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ferryman.core.router import Router, map_path, unmap_path

SEED = Router(
    [
        (("http",), b"/webapps", "django-http"),
        (("https",), b"/webapps", "django-https"),
        (None, b"/public", "django-http"),
    ]
)

MATCHES = [
    # (source, listener, path, expected (prefix, payload) or None)
    ("CONTRACT prefix itself", "http", b"/webapps", (b"/webapps", "django-http")),
    ("CONTRACT prefix with slash", "http", b"/webapps/", (b"/webapps", "django-http")),
    ("CONTRACT below the prefix", "http", b"/webapps/x", (b"/webapps", "django-http")),
    ("CONTRACT not /webappsX", "http", b"/webappsX", None),
    ("CONTRACT listener decides the pool", "https", b"/webapps/x", (b"/webapps", "django-https")),
    ("CONTRACT omitted listener is every listener", "https", b"/public/echo",
     (b"/public", "django-http")),
    ("APACHE /public/echo is under /public", "http", b"/public/echo", (b"/public", "django-http")),
    ("APACHE /publicity is not under /public", "http", b"/publicity", None),
    ("APACHE /webapps/../etc/passwd normalises out of every route", "http", b"/etc/passwd", None),
    ("BRIEF an unknown listener sees only catch-all routes", "admin", b"/webapps/x", None),
    ("BRIEF an unknown listener still sees catch-alls", "admin", b"/public",
     (b"/public", "django-http")),
    ("BRIEF a kept %2F is not a segment boundary", "http", b"/webapps%2Fx", None),
    ("BRIEF the root path matches no prefix route", "http", b"/", None),
]


@pytest.mark.parametrize(
    ("source", "listener", "path", "expected"), MATCHES, ids=[m[0] for m in MATCHES]
)
def test_the_classic_routes_match_on_segment_boundaries_per_listener(source, listener, path, expected):
    assert SEED.match(listener, path) == expected


def test_the_longest_prefix_wins_whatever_the_order_of_the_entries():
    entries = [(None, b"/", "root"), (None, b"/a", "a"), (None, b"/a/b/c", "abc"), (None, b"/a/b", "ab")]
    for order in (entries, entries[::-1]):
        router = Router(order)
        assert router.match("l", b"/a/b/c/d") == (b"/a/b/c", "abc")
        assert router.match("l", b"/a/b/cd") == (b"/a/b", "ab")
        assert router.match("l", b"/a/bc") == (b"/a", "a")
        assert router.match("l", b"/ab") == (b"/", "root")
        assert router.match("l", b"/") == (b"/", "root")


def test_a_root_route_matches_every_path():
    router = Router([(None, b"/", "root")])
    for path in (b"/", b"/x", b"/x/y/", b"/webapps"):
        assert router.match("any", path) == (b"/", "root")


def test_a_specific_listener_route_beats_a_catch_all_route_with_the_same_prefix():
    for entries in (
        [(None, b"/webapps", "everyone"), (("https",), b"/webapps", "tls-only")],
        [(("https",), b"/webapps", "tls-only"), (None, b"/webapps", "everyone")],
    ):
        router = Router(entries)
        assert router.match("https", b"/webapps/x") == (b"/webapps", "tls-only")
        assert router.match("http", b"/webapps/x") == (b"/webapps", "everyone")


def test_a_longer_catch_all_prefix_still_beats_a_shorter_specific_one():
    router = Router([(("https",), b"/webapps", "short"), (None, b"/webapps/admin", "long")])
    assert router.match("https", b"/webapps/admin/x") == (b"/webapps/admin", "long")


def test_a_route_for_several_listeners_serves_each_of_them():
    router = Router([(("http", "https"), b"/app", "pool")])
    assert router.match("http", b"/app") == router.match("https", b"/app") == (b"/app", "pool")
    assert router.match("other", b"/app") is None


def test_a_trailing_slash_on_a_prefix_routes_like_the_prefix_without_it():
    router = Router([(None, b"/webapps/", "p"), (None, b"/", "root")])
    assert router.match("l", b"/webapps") == (b"/webapps", "p")
    assert router.match("l", b"/webapps/x") == (b"/webapps", "p")


def test_the_match_result_is_built_once_not_per_request():
    router = Router([(None, b"/a/b", "ab"), (None, b"/a", "a")])
    assert router.match("l", b"/a/b/x") is router.match("l", b"/a/b/y")
    assert router.match("l", b"/a/x") is router.match("l", b"/a/y")


@pytest.mark.parametrize(
    ("entries", "fragment"),
    [
        ([(None, b"/a", 1), (None, b"/a/", 2)], "two routes for every listener"),
        ([(("h",), b"/a", 1), (("h", "k"), b"/a", 2)], "two routes for listener 'h'"),
        ([(None, b"a", 1)], "starting with '/'"),
        ([(None, "/a", 1)], "starting with '/'"),
        ([(None, b"/a/../b", 1)], "normalised form"),
        ([(None, b"/%7Euser", 1)], "b'/~user'"),
        ([(None, b"/a%2Fb", 1)], "not a valid path"),
        ([((), b"/a", 1)], "non-empty tuple"),
        ([("http", b"/a", 1)], "non-empty tuple"),
    ],
)
def test_a_route_table_that_could_not_work_is_refused_when_built(entries, fragment):
    with pytest.raises(ValueError, match=re.escape(fragment)):
        Router(entries)


# A brute-force reference: every route this listener sees, filtered on the boundary rule, longest wins.
def _reference_match(entries, listener, path):
    best = None
    for listeners, prefix, payload in entries:
        if listeners is not None and listener not in listeners:
            continue
        canon = prefix.rstrip(b"/")
        if canon and not (path == canon or path.startswith(canon + b"/")):
            continue
        rank = (len(canon), listeners is not None)
        if best is None or rank > best[0]:
            best = (rank, (canon or b"/", payload))
    return None if best is None else best[1]


SEGMENTS = st.sampled_from([b"a", b"b", b"ab", b"webapps", b"x"])
PREFIX = st.lists(SEGMENTS, max_size=3).map(lambda s: b"/" + b"/".join(s))
PATH = st.tuples(st.lists(SEGMENTS, max_size=4), st.booleans()).map(
    lambda t: b"/" + b"/".join(t[0]) + (b"/" if t[1] and t[0] else b"")
)
LISTENERS = st.one_of(st.none(), st.lists(st.sampled_from(["h", "k"]), min_size=1, max_size=2,
                                          unique=True).map(tuple))


@st.composite
def route_tables(draw):
    entries, seen = [], set()
    for i, (listeners, prefix) in enumerate(draw(st.lists(st.tuples(LISTENERS, PREFIX), max_size=6))):
        keys = {(name, prefix) for name in (listeners or ("*",))}
        if keys & seen:
            continue
        seen |= keys
        entries.append((listeners, prefix, i))
    return entries


@given(route_tables(), st.sampled_from(["h", "k", "z"]), PATH)
def test_match_agrees_with_a_brute_force_longest_prefix_search(entries, listener, path):
    assert Router(entries).match(listener, path) == _reference_match(entries, listener, path)


# -- map_path / unmap_path -----------------------------------------------------------------------------

MAPS = [
    # (source, path, public, member, expected)
    ("APACHE /public/echo reaches the member as /webapps/echo",
     b"/public/echo", b"/public", b"/webapps", b"/webapps/echo"),
    ("APACHE /public reaches the member as /webapps/", b"/public", b"/public", b"/webapps", b"/webapps/"),
    ("APACHE same prefix both sides", b"/webapps/x/y", b"/webapps", b"/webapps", b"/webapps/x/y"),
    ("CONTRACT trailing slash kept", b"/public/dir/", b"/public", b"/webapps", b"/webapps/dir/"),
    ("BRIEF public prefix / is the empty prefix", b"/echo", b"/", b"/webapps", b"/webapps/echo"),
    ("BRIEF public root to member prefix", b"/", b"/", b"/webapps", b"/webapps/"),
    ("BRIEF root member gets the rest", b"/public/echo", b"/public", b"", b"/echo"),
    ("BRIEF root member gets / for an empty rest", b"/public", b"/public", b"", b"/"),
    ("BRIEF root member written as /", b"/public/echo", b"/public", b"/", b"/echo"),
    ("BRIEF root to root", b"/x", b"/", b"", b"/x"),
    ("BRIEF prefixes written with a trailing slash",
     b"/public/x", b"/public/", b"/webapps/", b"/webapps/x"),
]


@pytest.mark.parametrize(
    ("source", "path", "public", "member", "expected"), MAPS, ids=[m[0] for m in MAPS]
)
def test_map_path_replaces_the_public_prefix_with_the_member_prefix(
    source, path, public, member, expected
):
    assert map_path(path, public, member) == expected


def test_map_path_refuses_a_path_that_is_not_under_the_public_prefix():
    for path in (b"/publicity", b"/other", b""):
        with pytest.raises(ValueError):
            map_path(path, b"/public", b"/webapps")


UNMAPS = [
    # (source, member path, member prefix, public prefix, expected)
    ("APACHE Location /webapps/target through /public",
     b"/webapps/target", b"/webapps", b"/public", b"/public/target"),
    ("APACHE rewritten even when both prefixes are the same",
     b"/webapps/target", b"/webapps", b"/webapps", b"/webapps/target"),
    ("BRIEF the member prefix itself", b"/webapps", b"/webapps", b"/public", b"/public"),
    ("BRIEF the member prefix with slash", b"/webapps/", b"/webapps", b"/public", b"/public/"),
    ("BRIEF member prefix on a segment boundary only", b"/webappsX", b"/webapps", b"/public", None),
    ("BRIEF a path elsewhere on the member", b"/static/x.css", b"/webapps", b"/public", None),
    ("BRIEF a relative Location is not a member path", b"target", b"", b"/public", None),
    ("BRIEF an empty path is not a member path", b"", b"", b"/public", None),
    ("BRIEF a root member: everything is under it", b"/x", b"", b"/public", b"/public/x"),
    ("BRIEF a root member's root", b"/", b"/", b"/public", b"/public/"),
    ("BRIEF the member prefix onto a root public prefix", b"/webapps", b"/webapps", b"/", b"/"),
    ("BRIEF below the member prefix onto a root public prefix", b"/webapps/x", b"/webapps", b"/", b"/x"),
]


@pytest.mark.parametrize(
    ("source", "path", "member", "public", "expected"), UNMAPS, ids=[u[0] for u in UNMAPS]
)
def test_unmap_path_gives_the_public_path_of_a_member_path_or_none(
    source, path, member, public, expected
):
    assert unmap_path(path, member, public) == expected


PREFIX_OR_ROOT = st.one_of(st.sampled_from([b"", b"/"]), PREFIX)


@given(PREFIX_OR_ROOT, PREFIX_OR_ROOT, st.lists(SEGMENTS, max_size=4), st.booleans())
@example(b"/public", b"/webapps", [], False)
@example(b"/", b"", [], False)
def test_unmapping_a_mapped_path_gives_the_public_path_back(public, member, rest_segs, slash):
    pub = public.rstrip(b"/")
    rest = (b"/" + b"/".join(rest_segs) if rest_segs else b"") + (b"/" if slash else b"")
    path = (pub + rest) or b"/"
    mapped = map_path(path, public, member)
    assert mapped.startswith(b"/")
    back = unmap_path(mapped, member, public)
    if path == pub:  # the empty-rest rule: /public -> /webapps/ -> /public/
        assert back == pub + b"/"
    else:
        assert back == path


@given(PREFIX_OR_ROOT, PREFIX_OR_ROOT, PATH)
def test_mapping_an_unmapped_path_gives_the_member_path_back(member, public, path):
    back = unmap_path(path, member, public)
    if back is not None:
        again = map_path(back, public, member)
        mem = member.rstrip(b"/")
        assert again == path or (path == mem and again == mem + b"/")
