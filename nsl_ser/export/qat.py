"""Quantisation-aware training (QAT) of the early-exit student, int8 conversion.

Post-training quantisation (:func:`nsl_ser.export.convert.convert_int8`) sometimes
costs the small student several UAR points at its deepest exit. This is the
QAT variant: a copy of the exits model with tfmot's default 8-bit scheme
(fake quantisation in the forward pass), fine-tuned briefly, converted to
the same kind of full-integer model.

* :func:`quantize_aware`: features -> ``exit_1..exit_K``, every layer
  annotated, layer and output names kept (no ``quant_`` prefix), so
  :func:`nsl_ser.export.convert.output_names` / ``exit_submodel`` and
  :func:`nsl_ser.export.micro.stage_model` find the layers they look for.
  Conv2D -> BatchNorm -> ReLU blocks get tfmot's transform (per-channel
  kernel fake-quant, BatchNorm unquantized, one fake-quant after the ReLU;
  the converter folds BatchNorm into the convolution). ``norm`` (keras
  Normalization, which tfmot rejects) gets an output-only 8-bit config;
  ``spec_augment`` (identity at inference) becomes a pass-through
  ``Identity``, so fine-tuning sees clean features, like its teacher.
* :func:`calibrate_ranges`: activation ranges from the min/max of the float
  model's tensors on calibration clips (what PTQ measures), weight ranges
  from the weights. tfmot's moving averages (decay 0.999 from [-6, 6])
  would need thousands of steps to get there; a few epochs are ~100.
* :func:`fine_tune`: a few epochs at a low learning rate; per exit
  cross-entropy plus KL distillation from the *float* model's exits;
  BatchNorm frozen (the inference statistics the converter folds); the
  epoch with the best validation UAR of the deepest exit is kept, the
  calibrated starting point (epoch 0) included.
* :func:`convert_qat_int8`: full-integer int8 TFLite, batch 1, static
  shape, signature outputs ``exit_1..exit_K``.
* :func:`compare` / :func:`choose`: PTQ vs QAT UAR per exit on held-out
  clips, both int8 TFLite run through :mod:`nsl_ser.runtime.litert`. The exporter
  makes the choice (:mod:`nsl_ser.export.quantize`); this module never
  calls the exporter.

With the rest of the toolkit (TF 2.21, tfmot 0.8.1):
``nsl_ser.export.phone.convert_phone(qat_model, front_end, audio)`` works (float front
end, int8 network); without ``audio`` it gives the fake-quant simulation
(QUANTIZE/DEQUANTIZE pairs), not a float model, so take the float phone
model from the float model. ``micro.build_stages(qat_model, ...)`` builds
the stages but its boundary check can reject them: the producer's scale is
the QAT range, the consumer's is calibrated on fake-quantized activations,
which may not reach the range's end (a one-sided check would accept it).
``models.layer_macs`` does not look inside QuantizeWrappers (0 MACs).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser import data, evaluation, models, self_distill, training
from nsl_ser.export import convert
from nsl_ser.runtime import litert
from nsl_ser.compat import keras, tf, tfmot

qk = tfmot().quantization.keras


@dataclasses.dataclass(frozen=True)
class QATConfig:
  """QAT fine-tuning settings."""
  epochs: int = 10
  learning_rate: float = 1e-4
  batch_size: int = 32
  ce_weight: float = 1.0       # cross-entropy on the labels, per exit
  kd_weight: float = 1.0       # T^2 * KL to the float model's exit, per exit
  temperature: float = 2.0
  freeze_bn: bool = True       # BatchNorm in inference mode while training
  balanced: bool = True        # class weights, like the float training
  num_calibration: int = 200   # training clips for the initial ranges
  seed: int = 0
  verbose: int = 1             # Keras progress bars

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


# --------------------------------------------------------------------------
# QuantizeConfigs for the layers tfmot's default registry does not know
# --------------------------------------------------------------------------
@keras.utils.register_keras_serializable("nsl_ser")
class PassThroughQuantizeConfig(qk.QuantizeConfig):
  """Quantizes nothing (identity layers: values stay on the input's grid)."""

  def get_weights_and_quantizers(self, layer):
    return []

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    pass

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


@keras.utils.register_keras_serializable("nsl_ser")
class OutputQuantizeConfig(PassThroughQuantizeConfig):
  """8-bit asymmetric moving-average fake-quant of the output only (for
  ``Normalization``: mean and variance become constants of SUB / MUL,
  quantized by the converter)."""

  def get_output_quantizers(self, layer):
    return [qk.quantizers.MovingAverageQuantizer(
        num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]


CUSTOM_OBJECTS: Dict[str, type] = {
    **models.CUSTOM_OBJECTS,
    "OutputQuantizeConfig": OutputQuantizeConfig,
    "PassThroughQuantizeConfig": PassThroughQuantizeConfig}


def _is_quantize_layer(layer: keras.layers.Layer) -> bool:
  """tfmot's QuantizeLayer (not exported by its public API)."""
  return type(layer).__name__ == "QuantizeLayer"


def load_qat_model(path: str) -> keras.Model:
  """A QAT model saved with ``model.save(path)`` (``.keras``)."""
  with qk.quantize_scope(CUSTOM_OBJECTS):
    return keras.models.load_model(path, custom_objects=CUSTOM_OBJECTS)


# --------------------------------------------------------------------------
# The QAT model and its quantizer ranges
# --------------------------------------------------------------------------
def _annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
  """clone_model function: a fresh copy of ``layer``, annotated."""
  if isinstance(layer, keras.layers.InputLayer):
    return layer.__class__.from_config(layer.get_config())
  if isinstance(layer, models.SpecAugment):
    return qk.quantize_annotate_layer(keras.layers.Identity(name=layer.name),
                                      PassThroughQuantizeConfig())
  new = layer.__class__.from_config(layer.get_config())
  if isinstance(layer, keras.layers.Normalization):
    return qk.quantize_annotate_layer(new, OutputQuantizeConfig())
  if isinstance(layer, keras.layers.Identity):
    return qk.quantize_annotate_layer(new, PassThroughQuantizeConfig())
  return qk.quantize_annotate_layer(new)  # tfmot's default 8-bit registry


def quantize_aware(model: keras.Model,
                   calibration: Optional[np.ndarray] = None) -> keras.Model:
  """QAT copy of ``model``'s exits model (features -> exit_1..exit_K).

  Weights start from ``model``; layer and output names are kept. The input
  is not fake-quantized (tfmot's input QuantizeLayer gets a NoQuantizer):
  the converter calibrates the input scale from the representative clips,
  as for PTQ, and the int8 input feeds ``norm`` directly (with a QAT input
  range it leaves a float DEQUANTIZE -> QUANTIZE pair in front). With
  ``calibration`` features the ranges are set from them
  (:func:`calibrate_ranges`); otherwise :func:`fine_tune` does it.
  """
  em = convert.exits_model(model)
  annotated = keras.models.clone_model(em, clone_function=_annotate)
  for src, dst in zip(em.layers, annotated.layers):
    if src.weights:
      assert getattr(dst, "layer", dst).name == src.name, (src.name, dst.name)
      dst.set_weights(src.get_weights())
  with qk.quantize_scope(CUSTOM_OBJECTS):
    applied = qk.quantize_apply(annotated, quantized_layer_name_prefix="")
    rebuilt = qk.remove_input_range(applied)  # rebuilt from config
  for layer in rebuilt.layers:  # the QuantizeLayer lost its range variables
    if layer.weights and not _is_quantize_layer(layer):
      layer.set_weights(applied.get_layer(layer.name).get_weights())
  qat = keras.Model(rebuilt.inputs, rebuilt.outputs, name=f"{model.name}_qat")
  if convert.output_names(qat) != convert.output_names(em):
    raise AssertionError(f"QAT outputs {qat.output_names} != {em.output_names}")
  if calibration is not None:
    calibrate_ranges(qat, model, calibration)
  return qat


def range_variables(model: keras.Model
                    ) -> Dict[Tuple[str, str], Tuple[tf.Variable, tf.Variable]]:
  """{(layer, what): (min, max)} of every fake-quant of a QAT model;
  ``what`` is ``kernel`` (weights; per channel for convolutions),
  ``output``, ``post_activation`` (after a fused ReLU) or
  ``pre_activation`` (logits before a softmax)."""
  out: Dict[Tuple[str, str], list] = {}
  for layer in model.layers:
    for v in layer.non_trainable_weights:
      short = v.name.split("/")[-1].split(":")[0]
      for end, i in (("_min", 0), ("_max", 1)):
        if short.endswith(end):
          out.setdefault((layer.name, short[:-len(end)]), [None, None])[i] = v
  return {k: (lo, hi) for k, (lo, hi) in out.items()
          if lo is not None and hi is not None}


def fake_quant_layers(model: keras.Model) -> List[str]:
  """Names of the layers that fake-quantize something (empty for a float
  model)."""
  return sorted({layer for layer, _ in range_variables(model)})


def ranges_calibrated(model: keras.Model) -> bool:
  """False while every activation range still has tfmot's initial value
  [-6, 6] (no data seen yet)."""
  return any((float(lo.numpy()), float(hi.numpy())) != (-6.0, 6.0)
             for (_, what), (lo, hi) in range_variables(model).items()
             if what != "kernel")


def _observed(qat: keras.Model, float_model: keras.Model):
  """{(layer, what): (float tensor, fn)}: the float model's tensor each
  activation range observes (``fn`` maps its values to the observed
  values, for the logits of a softmax Dense)."""
  targets = {}
  for lname, what in range_variables(qat):
    if what == "kernel":
      continue
    layer = float_model.get_layer(lname)
    if what in ("output", "post_activation"):
      targets[(lname, what)] = (layer.output, None)
    elif what == "pre_activation" and isinstance(layer, keras.layers.Dense):
      kernel, bias = layer.get_weights()
      targets[(lname, what)] = (layer.input, lambda h, k=kernel, b=bias: h @ k + b)
    else:
      raise NotImplementedError(f"{lname}: cannot calibrate the {what!r} "
                                f"range of a {type(layer).__name__}")
  return targets


def calibrate_ranges(qat: keras.Model, float_model: keras.Model,
                     features: np.ndarray, batch_size: int = 64
                     ) -> Dict[str, List[float]]:
  """Sets the quantizer ranges of ``qat`` (made from ``float_model`` by
  :func:`quantize_aware`) from data.

  Activation ranges: min/max (widened to include 0) over ``features`` of
  the float model's corresponding tensors, as PTQ calibration measures
  them. Weight ranges: one training-mode call on two clips (tfmot's
  LastValueQuantizer reads them off the weights); everything else that
  call updates (moving averages, BatchNorm statistics) is restored.
  Returns {"layer/what": [min, max]}.
  """
  ranges = range_variables(qat)
  weight_ranges = {v.ref() for (_, what), pair in ranges.items()
                   if what == "kernel" for v in pair}
  keep = {v.ref(): v.numpy() for v in qat.variables}
  qat(tf.constant(features[:2], tf.float32), training=True)
  for v in qat.variables:
    if v.ref() not in weight_ranges:
      v.assign(keep[v.ref()])

  targets = _observed(qat, float_model)
  keys = list(targets)
  probe = keras.Model(float_model.inputs, [targets[k][0] for k in keys])
  lo, hi = dict.fromkeys(keys, 0.0), dict.fromkeys(keys, 0.0)
  for i in range(0, len(features), batch_size):
    outs = tf.nest.flatten(probe(tf.constant(features[i:i + batch_size],
                                             tf.float32), training=False))
    for k, t in zip(keys, outs):
      fn = targets[k][1]
      a = fn(t.numpy()) if fn else t.numpy()
      lo[k], hi[k] = min(lo[k], float(a.min())), max(hi[k], float(a.max()))
  for k in keys:
    ranges[k][0].assign(lo[k])
    ranges[k][1].assign(hi[k])
  return {f"{l}/{w}": [float(np.min(a.numpy())), float(np.max(b.numpy()))]
          for (l, w), (a, b) in ranges.items()}


# --------------------------------------------------------------------------
# Fine-tuning with distillation from the float model
# --------------------------------------------------------------------------
def qat_loss_terms(labels: tf.Tensor, probs: Sequence[tf.Tensor],
                   teacher: Sequence[tf.Tensor], cfg: QATConfig,
                   sample_weight: Optional[tf.Tensor] = None
                   ) -> Dict[str, tf.Tensor]:
  """Per exit k: ``ce_k = CE(y, p_k)`` and ``kd_k = T^2 *
  KL(soft_T(t_k) || soft_T(p_k))`` (t_k: the float model's exit k);
  ``total`` = mean over exits of ``ce_weight * ce_k + kd_weight * kd_k``."""
  w = (tf.ones_like(tf.cast(labels, tf.float32)) if sample_weight is None
       else tf.cast(tf.reshape(sample_weight, [-1]), tf.float32))

  def mean(v):
    return tf.reduce_sum(w * v) / tf.maximum(tf.reduce_sum(w), self_distill.EPS)

  out: Dict[str, tf.Tensor] = {}
  total = tf.constant(0.0)
  for i, (p, t) in enumerate(zip(probs, teacher), start=1):
    out[f"ce_{i}"] = mean(keras.losses.sparse_categorical_crossentropy(labels, p))
    out[f"kd_{i}"] = mean(self_distill.kl_divergence(
        self_distill.soften(t, cfg.temperature),
        self_distill.soften(p, cfg.temperature))) * cfg.temperature ** 2
    total += cfg.ce_weight * out[f"ce_{i}"] + cfg.kd_weight * out[f"kd_{i}"]
  out["total"] = total / len(probs)
  return out


class QATDistiller(keras.Model):
  """Trains a QAT exits model on (features, (labels, t_1, ..., t_K)[,
  weight]) with :func:`qat_loss_terms`; calling it returns the exits."""

  computes_own_loss = True  # training.fit compiles it with an optimiser only

  def __init__(self, student: keras.Model, cfg: QATConfig, **kwargs):
    super().__init__(name="qat_distiller", **kwargs)
    self.student, self.cfg = student, cfg
    self.num_exits = len(student.outputs)
    names = (["loss"] + [f"ce_{i}" for i in range(1, self.num_exits + 1)]
             + ["kd"])
    self._trackers = {n: keras.metrics.Mean(name=n) for n in names}

  @property
  def metrics(self):
    return list(self._trackers.values())

  def call(self, inputs, training=False):
    return self.student(inputs, training=training)

  def train_step(self, batch):
    x, y, sw = keras.utils.unpack_x_y_sample_weight(batch)
    labels, teacher = y[0], y[1:]
    with tf.GradientTape() as tape:
      probs = tf.nest.flatten(self.student(x, training=True))
      terms = qat_loss_terms(labels, probs, teacher, self.cfg, sw)
      loss = terms["total"] + tf.add_n(self.student.losses or [tf.constant(0.0)])
    variables = self.student.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    k = self.num_exits
    self._trackers["loss"].update_state(terms["total"])
    for i in range(1, k + 1):
      self._trackers[f"ce_{i}"].update_state(terms[f"ce_{i}"])
    self._trackers["kd"].update_state(
        tf.add_n([terms[f"kd_{i}"] for i in range(1, k + 1)]) / k)
    return {n: t.result() for n, t in self._trackers.items()}


def predict_exits(model: keras.Model, x: np.ndarray) -> List[np.ndarray]:
  """The exits' probabilities (a list even for one output)."""
  y = model.predict(x, verbose=0, batch_size=64)
  return list(y) if isinstance(y, (list, tuple)) else [y]


def _batch_norms(model: keras.Model) -> List[keras.layers.Layer]:
  """BatchNorm layers, or their QuantizeWrappers."""
  return [l for l in model.layers if isinstance(
      getattr(l, "layer", l), keras.layers.BatchNormalization)]


def fine_tune(qat_model: keras.Model, float_model: keras.Model,
              features: np.ndarray, labels: np.ndarray,
              val_features: np.ndarray, val_labels: np.ndarray,
              cfg: QATConfig = QATConfig()) -> dict:
  """QAT fine-tuning of ``qat_model`` in place, teacher ``float_model``.

  Uncalibrated ranges (:func:`ranges_calibrated`) are first set from
  ``cfg.num_calibration`` training clips. Uses :func:`nsl_ser.training.fit`
  (constant learning rate, no early stop, best val UAR of the deepest exit
  restored); the calibrated starting point wins ties. Returns the Keras
  history plus ``val_uar_initial``, ``best_epoch`` (0: not fine-tuned),
  ``val_uar_best`` (of the returned weights) and ``wall_s``.
  """
  start = time.time()
  names = convert.output_names(float_model)
  num_classes = int(float_model.get_layer(names[-1]).output.shape[-1])
  if not ranges_calibrated(qat_model):
    idx = convert.calibration_subset(len(features), cfg.num_calibration, cfg.seed)
    calibrate_ranges(qat_model, float_model, features[idx])
  teacher = predict_exits(convert.exits_model(float_model), features)

  def val_probs() -> np.ndarray:
    return predict_exits(qat_model, val_features)[-1]

  def val_uar() -> float:
    return 100 * evaluation.uar(val_labels, val_probs().argmax(-1), num_classes)

  initial_weights, initial_uar = qat_model.get_weights(), val_uar()
  hist: dict = {}
  if cfg.epochs > 0:
    training.set_seed(cfg.seed)
    sw = training.sample_weights(labels, num_classes) if cfg.balanced else None
    ds = data.train_dataset(
        features.astype(np.float32),
        (labels.astype(np.int64), *[t.astype(np.float32) for t in teacher]),
        cfg.batch_size, cfg.seed, sw)
    tcfg = training.TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate, decay_rate=1.0,
        decay_epochs=cfg.epochs, patience=cfg.epochs, balanced=cfg.balanced,
        seed=cfg.seed, verbose=cfg.verbose, selection="val_uar",
        schedule="step")
    bns = ({l: l.trainable for l in _batch_norms(qat_model)}
           if cfg.freeze_bn else {})
    for layer in bns:
      layer.trainable = False  # inference mode: moving statistics
    try:
      hist = training.fit(QATDistiller(qat_model, cfg), ds, val_probs,
                          val_labels, num_classes, tcfg)
    finally:
      for layer, trainable in bns.items():
        layer.trainable = trainable
  best = int(np.argmax(hist["val_uar"])) + 1 if hist.get("val_uar") else 0
  if best and hist["val_uar"][best - 1] <= initial_uar:
    qat_model.set_weights(initial_weights)
    best = 0
  hist.update(val_uar_initial=initial_uar, best_epoch=best,
              val_uar_best=val_uar(), wall_s=time.time() - start)
  return hist


# --------------------------------------------------------------------------
# Conversion and inspection
# --------------------------------------------------------------------------
def convert_qat_int8(qat_model: keras.Model,
                     representative_features: np.ndarray) -> bytes:
  """Full-integer int8 TFLite of a QAT model: int8 builtins, int8 input
  and outputs, batch 1, static shape, outputs ``exit_1..exit_K`` by
  signature name (:func:`nsl_ser.export.convert.convert_int8` as is).

  The fake-quant ranges fix every scale they cover; the representative
  clips only calibrate the rest (the input and the SUB inside ``norm``).
  The converter needs them: without a representative dataset TF 2.21
  rejects the QAT graph ("For full integer quantization, a
  `representative_dataset` must be specified").
  """
  if not ranges_calibrated(qat_model):
    raise ValueError(f"{qat_model.name}: quantizer ranges not calibrated "
                     "(run calibrate_ranges or fine_tune first)")
  return convert.convert_int8(qat_model, representative_features)


def float_tensors(tflite: bytes) -> List[str]:
  """Names of the float32 tensors of every subgraph (none in a
  full-integer model)."""
  m = litert.model_t(tflite)
  return [t.name.decode() for sg in m.subgraphs for t in sg.tensors
          if litert.TYPE_NAMES.get(t.type) == "float32"]


def float_ops(tflite: bytes) -> List[str]:
  """Ops reading or writing a float32 tensor (none in a full-integer
  model)."""
  m = litert.model_t(tflite)
  out = []
  for sg in m.subgraphs:
    for op in sg.operators or []:
      ts = [sg.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0]
      if any(litert.TYPE_NAMES.get(t.type) == "float32" for t in ts):
        out.append(litert.op_name(m, op.opcodeIndex))
  return out


def run_features(tflite: bytes, features: np.ndarray) -> Dict[str, np.ndarray]:
  """{exit: dequantised probabilities [N, C]} of a feature-input model."""
  return litert.run_batch(litert.Model(tflite), None, "features", features)


# --------------------------------------------------------------------------
# PTQ vs QAT
# --------------------------------------------------------------------------
def _uar(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
  return 100 * evaluation.uar(labels, probs.argmax(-1), k)


def _agreement(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]
               ) -> Dict[str, float]:
  return {n: float(np.mean(a[n].argmax(-1) == b[n].argmax(-1))) for n in a}


def compare(float_model: keras.Model, features_train: np.ndarray,
            labels_train: np.ndarray, val_features: np.ndarray,
            val_labels: np.ndarray, test_features: np.ndarray,
            test_labels: np.ndarray, calibration_features: np.ndarray,
            cfg: QATConfig = QATConfig()) -> dict:
  """PTQ vs QAT on test clips, both full-int8 TFLite run with LiteRT.

  PTQ: :func:`nsl_ser.export.convert.convert_int8` of the float exits model,
  calibrated on ``calibration_features``. QAT: :func:`quantize_aware`
  (ranges from the same clips) -> :func:`fine_tune` on the training clips,
  selected on the validation clips -> :func:`convert_qat_int8`.

  Returns ``uar`` {float, qat_keras, ptq, qat: {exit: %}}, ``agreement``
  {ptq, qat: share of test clips where int8 and float Keras predict the
  same class; qat_vs_qat_keras}, ``bytes``, ``float_ops``, ``history``,
  ``config``, ``wall_s`` {ptq, qat}, ``chosen`` (:func:`choose`) and
  ``artifacts`` {ptq_int8, qat_int8: bytes, qat_model} (not JSON).
  """
  names = convert.output_names(float_model)
  k = int(float_model.get_layer(names[-1]).output.shape[-1])
  em = convert.exits_model(float_model)
  fl = dict(zip(names, predict_exits(em, test_features)))

  t0 = time.time()
  ptq_bytes = convert.convert_int8(em, calibration_features)
  ptq = run_features(ptq_bytes, test_features)
  t_ptq = time.time() - t0

  t0 = time.time()
  qat_model = quantize_aware(float_model, calibration_features)
  hist = fine_tune(qat_model, float_model, features_train, labels_train,
                   val_features, val_labels, cfg)
  qat_bytes = convert_qat_int8(qat_model, calibration_features)
  qat = run_features(qat_bytes, test_features)
  t_qat = time.time() - t0
  qk_probs = dict(zip(names, predict_exits(qat_model, test_features)))

  res = {
      "exits": names, "test_clips": int(len(test_labels)),
      "uar": {"float": {n: _uar(test_labels, fl[n], k) for n in names},
              "qat_keras": {n: _uar(test_labels, qk_probs[n], k) for n in names},
              "ptq": {n: _uar(test_labels, ptq[n], k) for n in names},
              "qat": {n: _uar(test_labels, qat[n], k) for n in names}},
      "agreement": {"ptq": _agreement(ptq, fl), "qat": _agreement(qat, fl),
                    "qat_vs_qat_keras": _agreement(qat, qk_probs)},
      "bytes": {"ptq": len(ptq_bytes), "qat": len(qat_bytes)},
      "float_ops": {"ptq": float_ops(ptq_bytes), "qat": float_ops(qat_bytes)},
      "history": hist, "config": cfg.to_dict(),
      "wall_s": {"ptq": t_ptq, "qat": t_qat},
      "artifacts": {"ptq_int8": ptq_bytes, "qat_int8": qat_bytes,
                    "qat_model": qat_model},
  }
  res["chosen"] = choose(res)
  return res


def choose(results: dict) -> str:
  """``"qat"`` only when its int8 UAR at the deepest exit beats PTQ's;
  otherwise ``"ptq"`` (the simpler pipeline wins ties)."""
  deepest = results["exits"][-1]
  u = results["uar"]
  return "qat" if u["qat"][deepest] > u["ptq"][deepest] else "ptq"
