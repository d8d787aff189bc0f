"""Edge TPU requirement check on real models from ../shared and on models made here with the real converter."""
from __future__ import annotations

import numpy as np
import pytest

from tests.support.shared import shared_file
from kit.core.errors import ModelError
from targets.edgetpu import SUPPORTED_OPS, check_edgetpu_requirements

INT8_MODELS = ["mlperf-tiny/ad01_int8.tflite", "mlperf-tiny/vww_96_int8.tflite", "mlperf-tiny/kws_ref_model.tflite",
               "mlperf-tiny/pretrainedResnet_quant.tflite", "tflm-examples/person_detect.tflite",
               "tflm-examples/micro_speech_quantized.tflite", "tflm-examples/hello_world_int8.tflite"]
FLOAT_MODELS = ["mlperf-tiny/ad01_fp32.tflite", "mlperf-tiny/vww_96_float.tflite", "mlperf-tiny/pretrainedResnet.tflite",
                "tflm-examples/hello_world_float.tflite",
                "mlperf-tiny/kws_ref_model_float32.tflite"]  # hybrid: int8 weights, float32 activations


@pytest.mark.parametrize("name", INT8_MODELS)
def test_full_integer_models_map_entirely(name):
    report = check_edgetpu_requirements(shared_file(f"models/{name}"))
    assert not report.compiled and not report.model_issues
    assert report.ops and report.cpu_ops == [], report.summary()
    assert all(o.op in SUPPORTED_OPS for o in report.ops)


@pytest.mark.parametrize("name", FLOAT_MODELS)
def test_float_models_fall_back_op_by_op_and_say_why(name):
    report = check_edgetpu_requirements(shared_file(f"models/{name}"))
    assert report.tpu_ops == [] and len(report.cpu_ops) == len(report.ops) > 0
    for op in report.ops:
        assert any("float32 tensors (the Edge TPU computes only int8/uint8)" in r for r in op.reasons), op
    text = report.summary()
    assert f"0 of {len(report.ops)} ops can map to the Edge TPU" in text and "float32" in text


def test_custom_signal_ops_and_int16_tensors_are_named():
    report = check_edgetpu_requirements(shared_file("models/tflm-examples/audio_preprocessor_int8.tflite"))
    window = report.ops[0]
    assert window.op == "SignalWindow" and not window.on_tpu
    assert "SignalWindow is not an Edge TPU operation" in window.reasons
    assert any(r.startswith("int16 tensors") for r in window.reasons)


def test_unchecked_limits_are_listed_for_the_ops_that_have_them():
    report = check_edgetpu_requirements(shared_file("models/mlperf-tiny/kws_ref_model.tflite"))
    conv = next(o for o in report.ops if o.op == "CONV_2D")
    assert conv.unchecked == "same dilation in x and y"
    assert "batch dimension is -1" in " ".join(report.notes)


def _convert_int8(model, shape):
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    rng = np.random.default_rng(0)
    converter.representative_dataset = lambda: ([rng.random(shape, dtype=np.float32)] for _ in range(16))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


@pytest.fixture(scope="module")
def made_models(tmp_path_factory):
    import kit  # noqa: F401  (tf_keras before TensorFlow)
    import tf_keras

    L = tf_keras.layers
    tf_keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("edgetpu_models")
    # 5-D tensors in the middle, then an op the Edge TPU lacks
    inp = L.Input((24,), batch_size=1)
    x = L.Reshape((24,))(L.Permute((2, 1, 3, 4))(L.Reshape((2, 3, 2, 2))(L.Dense(24)(inp))))
    x = L.Dense(4)(L.LeakyReLU(0.1)(L.Dense(8)(x)))
    (out / "rank5.tflite").write_bytes(_convert_int8(tf_keras.Model(inp, x), (1, 24)))
    # no fixed batch: Keras' Reshape turns into SHAPE/PACK ops and a reshape to a runtime-computed size
    inp = L.Input((24,))
    x = L.Dense(4)(L.Reshape((24,))(L.ReLU()(L.Reshape((2, 3, 4))(L.Dense(24)(inp)))))
    (out / "dynamic.tflite").write_bytes(_convert_int8(tf_keras.Model(inp, x), (1, 24)))
    return out


def test_rank_limit_and_single_partition(made_models):
    report = check_edgetpu_requirements(made_models / "rank5.tflite")
    ops = report.ops
    assert ops[0].op == "FULLY_CONNECTED" and ops[0].on_tpu
    first_cpu = next(i for i, o in enumerate(ops) if not o.on_tpu)
    assert any("4 dimensions larger than 1" in r for r in ops[first_cpu].reasons)
    # everything after the first op that cannot map stays on the CPU, supported or not
    assert all(not o.on_tpu for o in ops[first_cpu:])
    later_fc = [o for o in ops[first_cpu:] if o.op == "FULLY_CONNECTED"]
    assert later_fc and all(f"after op {first_cpu}" in o.reasons[0] for o in later_fc)
    leaky = next(o for o in ops if o.op == "LEAKY_RELU")
    assert "LEAKY_RELU is not an Edge TPU operation" in leaky.reasons


def test_runtime_sized_tensors_stop_compilation(made_models):
    report = check_edgetpu_requirements(made_models / "dynamic.tflite")
    assert any("dynamic-sized tensor" in issue for issue in report.model_issues), report.summary()
    reshape = next(o for o in report.ops if o.op == "RESHAPE" and any("runtime value" in r for r in o.reasons))
    assert not reshape.on_tpu
    assert "will not compile" in report.summary()


def test_garbage_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError):
        check_edgetpu_requirements(bad)
