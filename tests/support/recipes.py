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


def compress_digits(model, tmp_path, recipe_text: str) -> tuple:
    """`kit compress` of `model` (saved as .h5) with the recipe `recipe_text` on digits, through the CLI; (the
    output folder, its manifest). The run must succeed."""
    import json

    from kit.cli import main

    path = tmp_path / "model.h5"
    model.save(path)
    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text)
    out = tmp_path / "out"
    assert main(["compress", str(path), "--recipe", str(recipe), "--data", "digits", "-o", str(out)]) == 0
    return out, json.loads((out / "manifest.json").read_text())
