"""nsl-ser: speech-emotion recognition models for phones, MCUs and Edge TPU.

Import TensorFlow, Keras, NSL and tfmot through :mod:`nsl_ser.compat`.
"""
__version__ = "0.1.0"
