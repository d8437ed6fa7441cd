"""Model builders: source CNN, lightweight student CNN, optional early exits.

Every model takes ``features`` (log-Mel, [frames, bands]) and ends in a
softmax. Layers carry stable names (``block{i}_conv``, ``fc1``, ``probs``...)
so weights transfer by name between the plain and the early-exit variants,
and :func:`with_front_end` prepends the :class:`~nsl_ser.features.LogMel`
front end for raw-audio models.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser.compat import keras, tf
from nsl_ser.features import FrontEndConfig, LogMel


@dataclasses.dataclass(frozen=True)
class CNNConfig:
  """Conv2D -> BatchNorm -> ReLU blocks, global pooling, ``fc1``, softmax."""
  name: str = "student"
  # 12 channels at 149x20 after block 1 keep the TFLite Micro arena of the
  # int8 stage models under 64 KB (block 1 + block 2 activations coexist).
  filters: Tuple[int, ...] = (12, 24, 48, 64)
  strides: Tuple[int, ...] = (2, 2, 2, 2)
  pool: bool = False          # 2x2 max-pool after each block
  fc_units: int = 64          # width of fc1 (the embedding layer)
  dropout: float = 0.3
  spec_augment: bool = True   # time/frequency masking while training
  # "global": average over time and frequency before fc1; "time": over time
  # only, so fc1 still sees the (coarse) spectral shape.
  head_pool: str = "global"
  # Frequency bins averaged together by exit k's head (k < K), after the
  # average over time: 2 at exit 1 halves its projection (15.4 k -> 7.7 k
  # weights) and brings the MCU stages under 100,000 bytes.
  exit_freq_pools: Tuple[int, ...] = (2, 2, 2)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# Keras' default 0.99 lets the inference statistics lag far behind on corpora
# of a few hundred clips (20-50 steps an epoch): validation then predicts one
# class while training accuracy climbs. 0.9 tracks them within an epoch.
BN_MOMENTUM = 0.9

STUDENT = CNNConfig(head_pool="time")
SOURCE = CNNConfig(name="source", filters=(32, 64, 128, 256, 256),
                   strides=(1, 1, 1, 1, 1), pool=True, fc_units=256,
                   dropout=0.4)


@keras.utils.register_keras_serializable("nsl_ser")
class SpecAugment(keras.layers.Layer):
  """Masks random time and frequency stripes of [B, T, F, 1] while training."""

  def __init__(self, time_masks: int = 2, time_width: int = 20,
               freq_masks: int = 2, freq_width: int = 5, **kwargs):
    super().__init__(**kwargs)
    self.time_masks, self.time_width = time_masks, time_width
    self.freq_masks, self.freq_width = freq_masks, freq_width

  def _mask(self, batch: tf.Tensor, size: int, count: int, width: int):
    pos = tf.range(size)[tf.newaxis, :]
    keep = tf.ones([batch, size], tf.bool)
    for _ in range(count):
      w = tf.random.uniform([batch, 1], 0, width + 1, tf.int32)
      u = tf.random.uniform([batch, 1])
      s = tf.cast(u * tf.cast(size - w + 1, tf.float32), tf.int32)
      keep &= ~((pos >= s) & (pos < s + w))
    return tf.cast(keep, tf.float32)

  def call(self, x, training=None):
    if not training:
      return x
    b = tf.shape(x)[0]
    t = self._mask(b, x.shape[1], self.time_masks, self.time_width)
    f = self._mask(b, x.shape[2], self.freq_masks, self.freq_width)
    return x * t[:, :, tf.newaxis, tf.newaxis] * f[:, tf.newaxis, :, tf.newaxis]

  def get_config(self):
    return {**super().get_config(), "time_masks": self.time_masks,
            "time_width": self.time_width, "freq_masks": self.freq_masks,
            "freq_width": self.freq_width}


@keras.utils.register_keras_serializable("nsl_ser")
class TimeAveragePool(keras.layers.Layer):
  """[B, T, F, C] -> [B, 1, F // freq_pool, C]: the mean over all frames,
  then over non-overlapping groups of ``freq_pool`` bins (remainder
  dropped). The same numbers as ``AveragePooling2D((T, freq_pool))``, but it
  converts to MEAN ops, which XNNPACK runs, where it leaves every int8
  AVERAGE_POOL_2D to TFLite's own kernel (15 us vs 1.5 us on exit 1).
  TFLite Micro's int8 MEAN rounds differently from LiteRT's reference
  kernel (1 LSB), so MCU stages keep AVERAGE_POOL_2D."""

  def __init__(self, freq_pool: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.freq_pool = int(freq_pool)

  def call(self, x):
    x = tf.reduce_mean(x, axis=1, keepdims=True)
    p = self.freq_pool
    if p > 1:
      f, c = x.shape[2] // p, x.shape[3]
      x = tf.reshape(x[:, :, :f * p], [-1, 1, f, p, c])
      x = tf.reduce_mean(x, axis=3)
    return x

  def compute_output_shape(self, input_shape):
    s = tf.TensorShape(input_shape).as_list()
    return tf.TensorShape([s[0], 1, s[2] // self.freq_pool, s[3]])

  def get_config(self):
    return {**super().get_config(), "freq_pool": self.freq_pool}


def _is_time_pool(layer: keras.layers.Layer) -> bool:
  """An AveragePooling2D whose window spans every frame (non-overlapping)."""
  return (isinstance(layer, keras.layers.AveragePooling2D)
          and layer.padding == "valid"
          and tuple(layer.strides) == tuple(layer.pool_size)
          and layer.pool_size[0] == layer.input_shape[1])


def with_time_mean_pools(model: keras.Model) -> keras.Model:
  """``model`` with each whole-time AveragePooling2D replaced by the
  equivalent :class:`TimeAveragePool` (same name, same outputs): the form
  the phone export uses. Returns ``model`` itself when there is nothing to
  replace."""
  if not any(_is_time_pool(l) for l in model.layers):
    return model

  def clone(layer):
    if _is_time_pool(layer):
      return TimeAveragePool(layer.pool_size[1], name=layer.name)
    return layer.__class__.from_config(layer.get_config())

  out = keras.models.clone_model(model, clone_function=clone)
  out.set_weights(model.get_weights())
  return out


def conv_block(x: tf.Tensor, i: int, filters: int, stride: int,
               pool: bool) -> tf.Tensor:
  x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same",
                          use_bias=False, name=f"block{i}_conv")(x)
  x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{i}_bn")(x)
  x = keras.layers.ReLU(name=f"block{i}_relu")(x)
  if pool:
    x = keras.layers.MaxPool2D(2, padding="same", name=f"block{i}_pool")(x)
  return x


def exit_head(x: tf.Tensor, i: int, num_classes: int, units: int,
              dropout: float, freq_pool: int = 2) -> Tuple[tf.Tensor, tf.Tensor]:
  """Early exit after block i: average over time and groups of
  ``freq_pool`` frequency bins, keeping the spectral shape a shallow exit
  needs -> flatten ->
  projection (as wide as ``fc1``, so the feature loss can compare them) ->
  softmax. Pooling is AVERAGE_POOL_2D, which TFLite Micro runs bit-exactly
  like LiteRT's reference kernels and the Edge TPU maps; the phone export
  swaps it for the equivalent :class:`TimeAveragePool` (MEAN), which
  XNNPACK runs (:func:`with_time_mean_pools`)."""
  h = keras.layers.AveragePooling2D((x.shape[1], freq_pool),
                                    name=f"exit_{i}_pool")(x)
  h = keras.layers.Flatten(name=f"exit_{i}_flatten")(h)
  h = keras.layers.Dense(units, activation="relu", name=f"exit_{i}_fc")(h)
  d = keras.layers.Dropout(dropout, name=f"exit_{i}_dropout")(h)
  return h, keras.layers.Dense(num_classes, activation="softmax",
                               name=f"exit_{i}")(d)


def head_layer_names(model: keras.Model, k: int) -> List[str]:
  """Layers of exit k's head in order (the last exit is the main head)."""
  if k == len(exit_names(model)):
    return ["gap", "flatten", "fc1", "dropout", f"exit_{k}"]
  return [f"exit_{k}_{s}" for s in ("pool", "flatten", "fc", "dropout")] + [f"exit_{k}"]


def build_cnn(num_classes: int, cfg: CNNConfig = STUDENT,
              front_end: FrontEndConfig = FrontEndConfig(),
              exits: bool = False, with_features: bool = False) -> keras.Model:
  """The classifier on log-Mel ``features``.

  Without exits the output is ``probs``. With ``exits`` the outputs are
  ``exit_1`` ... ``exit_K`` (K = number of blocks; exit_K is the full model's
  head, built from the same layers as ``probs``). ``with_features`` adds
  each exit's projected features (``exit_i_fc``, and ``fc1`` for the last).
  """
  inp = keras.Input(front_end.feature_shape, name="features")
  x = keras.layers.Normalization(axis=-1, name="norm")(inp)
  x = keras.layers.Reshape(front_end.feature_shape + (1,), name="add_channel")(x)
  if cfg.spec_augment:
    x = SpecAugment(name="spec_augment")(x)
  probs, feats = [], []
  for i, (f, s) in enumerate(zip(cfg.filters, cfg.strides), start=1):
    x = conv_block(x, i, f, s, cfg.pool)
    if exits and i < len(cfg.filters):
      h, p = exit_head(x, i, num_classes, cfg.fc_units, cfg.dropout,
                       cfg.exit_freq_pools[min(i, len(cfg.exit_freq_pools)) - 1])
      feats.append(h)
      probs.append(p)
  if cfg.head_pool == "time":
    x = keras.layers.AveragePooling2D((x.shape[1], 1), name="gap")(x)
  else:
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  h = keras.layers.Dense(cfg.fc_units, activation="relu", name="fc1")(x)
  x = keras.layers.Dropout(cfg.dropout, name="dropout")(h)
  last = f"exit_{len(cfg.filters)}" if exits else "probs"
  probs.append(keras.layers.Dense(num_classes, activation="softmax",
                                  name=last)(x))
  feats.append(h)
  outputs = probs + feats if with_features else probs
  return keras.Model(inp, outputs if len(outputs) > 1 else outputs[0],
                     name=cfg.name)


def adapt_normalization(model: keras.Model, features: np.ndarray) -> None:
  """Sets the ``norm`` layer's per-band mean/variance from ``features``."""
  norm = model.get_layer("norm")
  mean = features.mean(axis=(0, 1))
  var = features.var(axis=(0, 1))
  norm.set_weights([mean.astype(np.float32), var.astype(np.float32),
                    np.array(features.shape[0] * features.shape[1], np.int64)])


def transfer_weights(src: keras.Model, dst: keras.Model,
                     skip: Sequence[str] = ()) -> List[str]:
  """Copies weights layer by layer where names and shapes match."""
  copied = []
  for layer in dst.layers:
    if layer.name in skip or not layer.weights:
      continue
    try:
      other = src.get_layer(layer.name)
    except ValueError:
      continue
    w = other.get_weights()
    if [a.shape for a in w] == [b.shape for b in layer.get_weights()]:
      layer.set_weights(w)
      copied.append(layer.name)
  return copied


def with_front_end(model: keras.Model,
                   front_end: FrontEndConfig = FrontEndConfig()) -> keras.Model:
  """Raw 16 kHz audio [batch, samples] -> LogMel -> ``model``."""
  audio = keras.Input((front_end.clip_samples,), name="audio")
  out = model(LogMel(front_end, name="log_mel")(audio))
  return keras.Model(audio, out, name=f"{model.name}_audio")


def embedding_model(model: keras.Model, layer: Optional[str] = None) -> keras.Model:
  """Sub-model up to ``layer`` (default: the penultimate layer's input side,
  i.e. ``fc1``)."""
  name = layer or "fc1"
  return keras.Model(model.inputs, model.get_layer(name).output)


def layer_macs(layer: keras.layers.Layer) -> int:
  """Multiply-accumulates of one Conv2D / Dense layer (0 for others)."""
  if isinstance(layer, keras.layers.Conv2D):
    k = int(np.prod(layer.kernel_size)) * layer.input_shape[-1]
    return int(np.prod(layer.output_shape[1:])) * k
  if isinstance(layer, keras.layers.Dense):
    return int(layer.input_shape[-1]) * int(layer.units)
  return 0


def count_macs(model: keras.Model) -> int:
  """Multiply-accumulates of all Conv2D/Dense layers of ``model``."""
  return sum(layer_macs(l) for l in model.layers)


def exit_names(model: keras.Model) -> List[str]:
  return sorted((n for n in model.output_names if n.startswith("exit_")
                 and not n.endswith("_fc")), key=lambda n: int(n.split("_")[1]))


def exit_macs(model: keras.Model) -> List[int]:
  """Cumulative MACs to reach each exit when exits run in order: blocks
  1..k plus the heads of exits 1..k (earlier heads were evaluated first)."""
  names = exit_names(model)
  path = [set(l.name for l in keras.Model(model.inputs,
                                          model.get_layer(n).output).layers)
          for n in names]
  out = []
  for k in range(len(names)):
    layers = set().union(*path[:k + 1])
    out.append(sum(layer_macs(model.get_layer(n)) for n in layers))
  return out


CUSTOM_OBJECTS: Dict[str, type] = {"LogMel": LogMel, "SpecAugment": SpecAugment,
                                   "TimeAveragePool": TimeAveragePool}


def load_model(path: str) -> keras.Model:
  return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS)
