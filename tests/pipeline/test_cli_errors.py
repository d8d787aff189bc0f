"""User errors through the `kit` command: a clear message, exit code 2, no traceback."""
import os
import subprocess
import sys

import numpy as np
import pytest

from kit.cli import main


def test_garbage_tflite_is_a_clear_error_without_traceback(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + os.urandom(200))
    proc = subprocess.run([sys.executable, "-m", "kit", "inspect", str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_recipe_typo_exit_code(tmp_path, capsys):
    r = tmp_path / "r.toml"
    r.write_text("[prune]\nfinal_sparsty = 0.5\n")
    assert main(["compress", "lenet-300-100", "--recipe", str(r), "--data", "digits", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "final_sparsity" in err


def test_wrong_data_shape(tmp_path, capsys):
    d = tmp_path / "d.npz"
    rng = np.random.default_rng(0)
    np.savez(d, x_train=rng.random((20, 7)), y_train=np.arange(20) % 3, x_test=rng.random((5, 7)),
             y_test=np.arange(5) % 3)
    assert main(["compress", "lenet5", "--data", str(d), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "(7,)" in err and "(28, 28, 1)" in err


@pytest.mark.parametrize("arrays, words", [
    ({"x_train": np.zeros((4, 3))}, "lacks array(s) y_train, x_test, y_test"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(3), "x_test": np.zeros((2, 3)), "y_test": np.zeros(2)},
     "x_train has 4 samples but y_train has 3"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4), "x_test": np.zeros((2, 5)), "y_test": np.zeros(2)},
     "x_test samples are (5,)"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.full(4, 0.5), "x_test": np.zeros((2, 3)),
      "y_test": np.zeros(2, np.int64)}, "non-integer labels"),
])
def test_bad_npz(tmp_path, arrays, words):
    from kit.data import load_data
    from kit.core.errors import DataError

    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    with pytest.raises(DataError) as e:
        load_data(p)
    assert words in str(e.value)


def test_not_a_model(tmp_path, capsys):
    p = tmp_path / "model.h5"
    p.write_bytes(b"not hdf5 at all")
    assert main(["compress", str(p), "--data", "digits", "-o", str(tmp_path / "o")]) == 2
    assert "cannot load HDF5 model" in capsys.readouterr().err
