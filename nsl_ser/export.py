"""TFLite conversion helpers (float and int8) for feature-input models."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from nsl_ser.compat import keras, tf


def _static_function(model: keras.Model) -> tf.types.experimental.ConcreteFunction:
  """A batch-1, static-shape concrete function whose outputs keep the Keras
  output names (TFLite reorders outputs; signatures keep names)."""
  specs = [tf.TensorSpec([1, *i.shape[1:]], tf.float32, name=i.name.split(":")[0])
           for i in model.inputs]

  def call(*xs):
    y = model(list(xs) if len(xs) > 1 else xs[0], training=False)
    return dict(zip(model.output_names, tf.nest.flatten(y)))

  return tf.function(call, input_signature=specs).get_concrete_function()


def convert_float(model: keras.Model) -> bytes:
  conv = tf.lite.TFLiteConverter.from_concrete_functions(
      [_static_function(model)], model)
  return conv.convert()


def convert_int8(model: keras.Model, representative: np.ndarray,
                 int8_io: bool = True) -> bytes:
  """Full-integer post-training quantisation (int8 builtins only).

  ``representative``: model inputs (e.g. training-split features), one per
  calibration step.
  """
  conv = tf.lite.TFLiteConverter.from_concrete_functions(
      [_static_function(model)], model)
  conv.optimizations = [tf.lite.Optimize.DEFAULT]
  conv.representative_dataset = lambda: ([x[None].astype(np.float32)]
                                         for x in representative)
  conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  if int8_io:
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
  return conv.convert()
