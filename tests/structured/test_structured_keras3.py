"""Keras 3 `.keras` files rebuilt in tf_keras give the same outputs; subclassed models get a way out."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import kit  # noqa: F401
from kit.core.errors import ModelError
from kit.models.keras3 import is_keras3_file, load_keras3, load_keras3_weights

pytestmark = pytest.mark.slow  # the Keras 3 models are built in a separate process that imports Keras 3

# Runs in a separate process with real Keras 3 (`import keras`), which must not share a process with tf_keras models.
_BUILD = textwrap.dedent('''
    import sys
    import numpy as np
    import keras
    L = keras.layers
    out = sys.argv[1]
    rng = np.random.default_rng(0)

    def randomize(model):
        for layer in model.layers:
            ws = layer.get_weights()
            new = []
            for v, w in zip(layer.weights, ws):
                if "variance" in v.path:
                    new.append(rng.uniform(0.5, 2.0, w.shape).astype("float32"))
                else:
                    new.append(rng.normal(0, 0.3, w.shape).astype("float32"))
            layer.set_weights(new)

    inp = keras.Input((16, 16, 3))
    x = L.Rescaling(1 / 2.0, offset=-0.5)(inp)
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU(max_value=6.0)(x)
    y = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    y = L.LeakyReLU(negative_slope=0.2)(y)
    y = L.Conv2D(8, 1)(y)
    x = L.Add()([x, y])
    s = L.SeparableConv2D(6, 3, padding="same", activation="relu")(x)
    c = L.Concatenate()([s, L.Conv2D(4, 1, activation="swish")(x)])
    c = L.ZeroPadding2D(1)(L.MaxPooling2D(2)(c))
    c = L.AveragePooling2D(2)(c)
    g = L.GlobalAveragePooling2D()(c)
    g = L.Dense(10, activation="sigmoid")(g)
    c = L.Multiply()([c, L.Reshape((1, 1, 10))(g)])
    f = L.Dropout(0.5)(L.Flatten()(c))
    f = L.Dense(16, activation="tanh")(f)
    f = L.LayerNormalization()(f)
    o = L.Dense(5, activation="softmax")(f)
    functional = keras.Model(inp, o, name="k3_functional")
    randomize(functional)
    functional.save(f"{out}/functional.keras")
    x = rng.normal(size=(4, 16, 16, 3)).astype("float32")
    np.save(f"{out}/x.npy", x)
    np.save(f"{out}/functional.npy", functional.predict(x, verbose=0))

    seq = keras.Sequential([keras.Input((12,)), L.Dense(8, activation="relu"), L.Dense(8, activation="relu"),
                            L.Dense(3)], name="k3_sequential")
    randomize(seq)
    seq.save(f"{out}/sequential.keras")
    xs = rng.normal(size=(5, 12)).astype("float32")
    np.save(f"{out}/xs.npy", xs)
    np.save(f"{out}/sequential.npy", seq.predict(xs, verbose=0))

    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.hidden = L.Dense(8, activation="relu")
            self.head = L.Dense(3)

        def call(self, x):
            return self.head(self.hidden(x))

    net = Net()
    net(xs)
    randomize(net)
    net.save(f"{out}/subclassed.keras")
    np.save(f"{out}/subclassed.npy", net.predict(xs, verbose=0))

    s_in = keras.Input((6,))
    shared = L.Dense(4, activation="relu")
    both = L.Add()([shared(s_in), shared(L.Dense(6)(s_in))])
    shared_model = keras.Model(s_in, L.Dense(2)(both))
    randomize(shared_model)
    shared_model.save(f"{out}/shared.keras")
    xsh = rng.normal(size=(3, 6)).astype("float32")
    np.save(f"{out}/xsh.npy", xsh)
    np.save(f"{out}/shared.npy", shared_model.predict(xsh, verbose=0))

    g_in = keras.Input((6,))
    odd = keras.Model(g_in, L.Dense(2)(L.GroupNormalization(groups=2)(L.Dense(4)(g_in))))
    odd.save(f"{out}/unsupported.keras")
    print(keras.__version__)
''')


@pytest.fixture(scope="module")
def k3_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("keras3")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    proc = subprocess.run([sys.executable, "-c", _BUILD, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0 and "No module named 'keras'" in proc.stderr:
        pytest.skip("Keras 3 is not installed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("3.")
    return out


def test_detects_keras3_files(k3_dir, tmp_path):
    import tf_keras as keras

    assert is_keras3_file(k3_dir / "functional.keras")
    tk = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    tk.save(tmp_path / "tfkeras.keras")
    tk.save(tmp_path / "tfkeras.h5")
    assert not is_keras3_file(tmp_path / "tfkeras.keras")
    assert not is_keras3_file(tmp_path / "tfkeras.h5")
    with pytest.raises(ModelError, match="does not exist"):
        is_keras3_file(tmp_path / "missing.keras")


@pytest.mark.parametrize("name,x", [("functional", "x"), ("sequential", "xs"), ("shared", "xsh")])
def test_round_trip_gives_identical_outputs(k3_dir, name, x):
    import tf_keras as keras

    model = load_keras3(k3_dir / f"{name}.keras")
    assert isinstance(model, keras.Model) and type(model).__module__.startswith("tf_keras")
    inputs = np.load(k3_dir / f"{x}.npy")
    expected = np.load(k3_dir / f"{name}.npy")
    np.testing.assert_allclose(model.predict(inputs, verbose=0), expected, rtol=1e-6, atol=1e-6)


def test_rebuilt_model_can_be_pruned_structurally(k3_dir):
    from kit.techniques.structured import prune_channels

    model = load_keras3(k3_dir / "functional.keras")
    result = prune_channels(model, 0.5)
    x = np.load(k3_dir / "x.npy")
    assert result.model.predict(x, verbose=0).shape == (4, 5)
    assert result.report.cost_after.params < result.report.cost_before.params
    shared = prune_channels(load_keras3(k3_dir / "shared.keras"), 0.5, scope="layer")
    assert any("shared layer" in n for n in shared.report.notes)
    assert shared.model.predict(np.load(k3_dir / "xsh.npy"), verbose=0).shape == (3, 2)


def test_subclassed_model_is_refused_with_the_documented_path(k3_dir):
    with pytest.raises(ModelError, match="subclassed") as e:
        load_keras3(k3_dir / "subclassed.keras")
    assert "Functional API" in e.value.hint and "load_keras3_weights" in e.value.hint


def test_weights_only_path_for_a_subclassed_model(k3_dir):
    import tf_keras as keras

    L = keras.layers
    model = keras.Sequential([keras.Input((12,)), L.Dense(8, activation="relu", name="hidden"),
                              L.Dense(3, name="head")])
    load_keras3_weights(model, k3_dir / "subclassed.keras")
    xs = np.load(k3_dir / "xs.npy")
    np.testing.assert_allclose(model.predict(xs, verbose=0), np.load(k3_dir / "subclassed.npy"), rtol=1e-6,
                               atol=1e-6)
    wrong = keras.Sequential([keras.Input((12,)), L.Dense(8, name="hidden"), L.Dense(3, name="other")])
    with pytest.raises(ModelError, match="do not match"):
        load_keras3_weights(wrong, k3_dir / "subclassed.keras")
    load_keras3_weights(wrong, k3_dir / "subclassed.keras", mapping={"other": "head"})


def test_unsupported_layer_is_named(k3_dir):
    with pytest.raises(ModelError, match="GroupNormalization"):
        load_keras3(k3_dir / "unsupported.keras")


def test_garbage_is_refused(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    assert not is_keras3_file(bad)
    with pytest.raises(ModelError, match="not a Keras 3"):
        load_keras3(bad)


def test_files_without_layer_names_use_the_keras3_path_scheme(k3_dir, tmp_path):
    """Older Keras 3 releases do not record layer names in the weights: paths are class names in snake case."""
    import zipfile

    import h5py

    for name, x in (("functional", "x"), ("sequential", "xs")):
        src = k3_dir / f"{name}.keras"
        with zipfile.ZipFile(src) as z:
            members = {n: z.read(n) for n in z.namelist()}
        weights = tmp_path / "w.h5"
        weights.write_bytes(members["model.weights.h5"])
        with h5py.File(weights, "r+") as f:
            f.visititems(lambda _, obj: obj.attrs.pop("name") if "name" in obj.attrs else None)
        members["model.weights.h5"] = weights.read_bytes()
        stripped = tmp_path / f"{name}.keras"
        with zipfile.ZipFile(stripped, "w") as z:
            for n, data in members.items():
                z.writestr(n, data)
        model = load_keras3(stripped)
        np.testing.assert_allclose(model.predict(np.load(k3_dir / f"{x}.npy"), verbose=0),
                                   np.load(k3_dir / f"{name}.npy"), rtol=1e-6, atol=1e-6)
