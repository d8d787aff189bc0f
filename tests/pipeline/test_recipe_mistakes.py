"""Recipe mistakes that once ended in a traceback or a silent run are refused with the line and key."""
from __future__ import annotations

import pytest

from kit.core.errors import RecipeError
from kit.recipe import load_recipe
from tests.support.recipes import assert_recipe_error


def test_seed_beyond_32_bits():
    assert_recipe_error("seed = 4294967296\n", 1, ["seed", "2**32 - 1"])


def test_absurd_block_shape():
    assert_recipe_error('[prune]\ngranularity = "block"\nblock = "100000x100000"\n', 3, ["block", "1 to 256"])


def test_empty_quantize_mode_list():
    assert_recipe_error("[quantize]\nmode = []\n", 2, ["mode", "lists no mode"])


def test_recipe_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(RecipeError) as e:
        load_recipe(path)
    assert "not UTF-8" in str(e.value) and "latin1.toml" in str(e.value)
