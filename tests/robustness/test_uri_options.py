"""Every target refuses options it does not know, whether given with --option or in the URI's query."""
from __future__ import annotations

import pytest

from kit.core.errors import KitError
from targets.registry import get_target
from targets.uri import parse_target_uri


@pytest.mark.parametrize("uri", ["local?foo=bar", "edgetpu+local?foo=1", "ssh://nobody@127.0.0.1:1?foo=bar",
                                 "adb://emulator-5554?runs=3", "edgetpu+ssh://pi@127.0.0.1:1?x=1"])
def test_a_uri_query_a_target_would_ignore_is_refused_before_connecting(uri):
    with pytest.raises(KitError) as e:
        get_target(uri)
    assert "read no options from the URI" in e.value.message and "--option" in e.value.hint


def test_a_bare_target_word_keeps_its_query():
    u = parse_target_uri("local?foo=bar")
    assert (u.scheme, u.query) == ("local", {"foo": "bar"})
    assert parse_target_uri("local").query == {}


@pytest.mark.parametrize("uri", ["local", "ssh://nobody@127.0.0.1:1", "adb://emulator-5554", "serial:///dev/null"])
def test_unknown_options_name_the_known_ones(uri):
    with pytest.raises(KitError) as e:
        get_target(uri, foo="bar")
    assert "unknown option(s): foo" in e.value.message and "targets take" in e.value.hint
