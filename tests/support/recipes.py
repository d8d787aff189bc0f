"""One check for every test of a refused recipe."""
from __future__ import annotations

import pytest


def assert_recipe_error(text: str, line: int, words: list[str]) -> None:
    """`text` is refused naming the file and line, with every one of `words` in the message or its hint."""
    from kit.core.errors import RecipeError
    from kit.recipe import parse_recipe

    with pytest.raises(RecipeError) as e:
        parse_recipe(text, "r.toml")
    msg = str(e.value)
    assert f"r.toml, line {line}:" in msg, msg
    for w in words:
        assert w in msg, (w, msg)
