"""Keras -> TFLite conversion primitives shared by the exporters, the
microcontroller stages and QAT (:mod:`nsl_ser.export`, :mod:`nsl_ser.export.micro`,
:mod:`nsl_ser.export.qat`); depends on none of them.

* :func:`output_names` / :func:`exits_model` / :func:`exit_submodel`: the
  probability outputs of a (multi-exit) model.
* :func:`convert_float` / :func:`convert_int8`: feature-input, batch-1,
  static-shape models (int8: full integer, int8 builtins only).
* :func:`calibration_subset`: the seeded choice of calibration clips.
"""
from __future__ import annotations

from typing import List

import numpy as np

from nsl_ser import models
from nsl_ser.compat import keras, tf

# Dense layers per tensor: one scale instead of one (float + int64 zero
# point) per output unit; about 1.7 KB less flash per MCU stage, and no
# measurable UAR change on the student (experiments/results/export.md).
PER_CHANNEL_DENSE = False


def output_names(model: keras.Model) -> List[str]:
  """The probability outputs: ``exit_1..exit_K``, or the single softmax."""
  names = models.exit_names(model)
  if names:
    return names
  return ["probs"] if "probs" in model.output_names else model.output_names[:1]


def exits_model(model: keras.Model) -> keras.Model:
  """``model`` restricted to its probability outputs (drops features)."""
  outs = [model.get_layer(n).output for n in output_names(model)]
  return keras.Model(model.input, outs if len(outs) > 1 else outs[0],
                     name=f"{model.name}_exits")


def exit_submodel(model: keras.Model, name: str) -> keras.Model:
  """features -> one exit's probabilities (shares the layers)."""
  return keras.Model(model.input, model.get_layer(name).output,
                     name=f"{model.name}_{name}")


# --------------------------------------------------------------------------
# Feature-input models
# --------------------------------------------------------------------------
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
  """Float32 feature-input model (batch 1, static shapes)."""
  conv = tf.lite.TFLiteConverter.from_concrete_functions(
      [_static_function(model)], model)
  return conv.convert()


def convert_int8(model: keras.Model, representative: np.ndarray,
                 int8_io: bool = True) -> bytes:
  """Full-integer post-training quantisation (int8 builtins only).

  ``representative``: model inputs (e.g. training-split features), one per
  calibration step. Convolutions are quantised per channel, dense layers
  per tensor (:data:`PER_CHANNEL_DENSE`).
  """
  conv = tf.lite.TFLiteConverter.from_concrete_functions(
      [_static_function(model)], model)
  conv.optimizations = [tf.lite.Optimize.DEFAULT]
  # pylint: disable-next=protected-access
  conv._experimental_disable_per_channel_quantization_for_dense_layers = (
      not PER_CHANNEL_DENSE)
  conv.representative_dataset = lambda: ([x[None].astype(np.float32)]
                                         for x in representative)
  conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  if int8_io:
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
  return conv.convert()


def calibration_subset(n_total: int, n: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of at most ``n`` of ``n_total`` items (seeded)."""
  if n >= n_total:
    return np.arange(n_total)
  return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))
