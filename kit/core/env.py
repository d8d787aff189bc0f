"""Process environment that must be in place before TensorFlow is imported.

TF-MOT only works with tf_keras (Keras 2); TensorFlow picks the Keras flavour
at import time, so this module is imported first by every kit entry point.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GLOG_minloglevel", "2")

if os.environ["TF_USE_LEGACY_KERAS"] != "1":
    raise ImportError(
        "prunekit needs TF_USE_LEGACY_KERAS=1 (TF-MOT works only with tf_keras); "
        "unset TF_USE_LEGACY_KERAS or set it to 1"
    )
