"""Shared fixtures. Tests that need ../shared skip with a reason when it is absent."""
from __future__ import annotations

import os
import signal
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PRUNEKIT_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared models and reference outputs are not available")
    return SHARED


def ctrl_c_enabled() -> None:
    """`preexec_fn` for a child a test stops with SIGINT (Ctrl-C).

    A shell that starts a job in the background (`cmd &`) makes it ignore SIGINT, and children inherit
    that; the child must see Ctrl-C however the test run was started.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


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


def shared_file(relative: str) -> Path:
    """A file under ../shared, or skip the calling test."""
    path = SHARED / relative
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory) -> Path:
    """A small float32 .tflite (16 -> 8 -> 4 dense) converted by the real TFLite converter."""
    import kit  # noqa: F401
    import numpy as np
    import tf_keras as keras

    from kit.pipeline.convert import ArtifactSpec, convert

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.InputLayer((16,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(4)])
    path = tmp_path_factory.mktemp("tiny") / "tiny.tflite"
    path.write_bytes(convert(model, ArtifactSpec("float32")))
    np.save(path.with_suffix(".npy"), np.ones((1, 16), np.float32))
    return path
