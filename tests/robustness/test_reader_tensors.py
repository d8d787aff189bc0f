"""The .tflite reader refuses tensors that cannot fit their buffers, before inspect or firmware use them."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kit.core.errors import ModelError
from kit.core.tflite_file import read_tflite

ROOT = Path(__file__).resolve().parents[2]


def _mutate(data: bytes, change) -> bytes:
    """Unpack the flatbuffer with the reader's schema, apply `change(model)`, pack it again."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    change(model)
    builder = flatbuffers.Builder(len(data) * 2)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _weight(model, name_part: str, sparse: bool = False):
    for t in model.subgraphs[0].tensors:
        if name_part in t.name.decode() and (t.sparsity is not None) == sparse and model.buffers[t.buffer].data is not None:
            return t
    raise AssertionError(f"no constant tensor named like {name_part}")


def test_unchanged_round_trip_still_reads(tiny_models):
    """The mutation helper itself keeps a model valid, so the failures below come from the edits."""
    info = read_tflite(_mutate(tiny_models.int8, lambda m: None))
    assert [t.shape for t in info.tensors] == [t.shape for t in read_tflite(tiny_models.int8).tensors]


@pytest.mark.parametrize("shape, words", [
    ([1, 4194307, 3, 64], "buffer holds"),
    ([32, 145], "buffer holds"),
    ([32, -144], "negative dimension"),
    ([1] * 180, "dimensions"),
    ([2**20, 2**20, 2**20], "elements"),
])
def test_weight_shape_that_does_not_fit_its_buffer(tiny_models, shape, words):
    def change(m):
        _weight(m, "dense/MatMul").shape = np.array(shape, dtype=np.int32)

    with pytest.raises(ModelError, match=words) as e:
        read_tflite(_mutate(tiny_models.int8, change))
    assert "sequential/dense/MatMul" in str(e.value)  # the tensor is named


def test_buffer_shorter_than_shape(tiny_models):
    def change(m):
        buf = m.buffers[_weight(m, "dense_1/MatMul").buffer]
        buf.data = buf.data[:-3]

    with pytest.raises(ModelError, match="dense_1/MatMul.*buffer holds 317 bytes"):
        read_tflite(_mutate(tiny_models.int8, change))


def test_activation_with_absurd_shape(tiny_models):
    def change(m):
        sg = m.subgraphs[0]
        sg.tensors[sg.outputs[0]].shape = np.array([1, -10], dtype=np.int32)

    with pytest.raises(ModelError, match="negative dimension"):
        read_tflite(_mutate(tiny_models.int8, change))


def test_buffer_index_out_of_range(tiny_models):
    def change(m):
        _weight(m, "dense/MatMul").buffer = len(m.buffers) + 5

    with pytest.raises(ModelError, match="refers to buffer"):
        read_tflite(_mutate(tiny_models.int8, change))


def test_operator_tensor_index_out_of_range(tiny_models):
    def change(m):
        m.subgraphs[0].operators[0].inputs[0] = 999

    with pytest.raises(ModelError, match="refers to tensor 999"):
        read_tflite(_mutate(tiny_models.int8, change))


def test_sparse_tensor_checked_by_its_metadata(tiny_models):
    assert any(t.storage == "sparse CSR" for t in read_tflite(tiny_models.sparse).tensors)

    def drop_values(m):
        buf = m.buffers[_weight(m, "dense/MatMul", sparse=True).buffer]
        buf.data = buf.data[:-8]

    with pytest.raises(ModelError, match="sparsity metadata describes"):
        read_tflite(_mutate(tiny_models.sparse, drop_values))

    def bad_index(m):
        dims = _weight(m, "dense/MatMul", sparse=True).sparsity.dimMetadata
        sparse_dim = next(d for d in dims if d.format == 1)
        sparse_dim.arrayIndices.values[0] = 250  # the dimension has 144 columns

    with pytest.raises(ModelError, match="index outside"):
        read_tflite(_mutate(tiny_models.sparse, bad_index))

    def bad_dense_size(m):
        dims = _weight(m, "dense/MatMul", sparse=True).sparsity.dimMetadata
        next(d for d in dims if d.format == 0).denseSize += 1

    with pytest.raises(ModelError, match="sparsity metadata"):
        read_tflite(_mutate(tiny_models.sparse, bad_dense_size))


def _bad_model(tiny_models, tmp_path: Path) -> Path:
    def change(m):
        _weight(m, "dense/MatMul").shape = np.array([1, 4194307, 3, 64], dtype=np.int32)

    path = tmp_path / "bad.tflite"
    path.write_bytes(_mutate(tiny_models.int8, change))
    return path


def _kit(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kit", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_inspect_and_firmware_refuse_the_file(tiny_models, tmp_path):
    bad = _bad_model(tiny_models, tmp_path)
    r = _kit("inspect", str(bad), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "buffer holds" in r.stderr
    r = _kit("firmware", str(bad), "-o", str(tmp_path / "fw"), cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and "buffer holds" in r.stderr
    assert not (tmp_path / "fw").exists()


def test_block_sparse_tensor_with_a_padded_last_block_is_valid():
    """302 inputs in 1x4 blocks: the converter pads the last block, and the reader must accept it."""
    import kit  # noqa: F401
    import tf_keras as keras

    from kit.convert.converter import ArtifactSpec, convert

    model = keras.Sequential([keras.layers.Input((302,)), keras.layers.Dense(100)])
    w, b = model.layers[0].get_weights()
    padded = np.pad(w.T, ((0, 0), (0, 2)))  # [100, 304]: 76 blocks of 4, the last one half padding
    blocks = padded.reshape(100, 76, 4)
    blocks[np.random.default_rng(0).random((100, 76)) < 0.9] = 0
    model.layers[0].set_weights([blocks.reshape(100, 304)[:, :302].T, b])
    info = read_tflite(convert(model, ArtifactSpec("float32", "sparse")))
    weight = next(t for t in info.tensors if t.storage.startswith("sparse"))
    assert weight.storage == "sparse block 4" and weight.shape == [100, 302]
