"""Keras model -> TFLite flatbuffer, checked on every runtime it may ship for."""
