"""Model files that are damaged inside a valid container: a clear ModelError, never an AttributeError."""
from __future__ import annotations

import zipfile

import pytest

from kit.core.errors import ModelError


@pytest.mark.parametrize("metadata", ["[1, 2, 3]", '"3.1.0"', "null", "42"])
def test_a_keras_archive_whose_metadata_is_not_an_object(tmp_path, metadata):
    from kit.models.loading import load_model

    p = tmp_path / "m.keras"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("metadata.json", metadata)
        z.writestr("config.json", '{"class_name": "Sequential", "config": {}}')
        z.writestr("model.weights.h5", b"")
    with pytest.raises(ModelError, match="metadata.json is a .*, not an object"):
        load_model(p)
