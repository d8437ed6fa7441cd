"""TFLite export: phone (audio in), MCU stages and Edge TPU models + sidecar.

* :func:`convert_float` / :func:`convert_int8`: feature-input, batch-1,
  static-shape models (int8: full integer, int8 builtins only).
* :func:`convert_phone`: raw 16 kHz audio in, the :class:`LogMel` front end
  inside, one SignatureDef per exit (``exit_1`` ... ``exit_K``, sharing
  weights; exit k only computes blocks 1..k). The int8 variant is
  post-training quantised with the front end denylisted, so framing, Mel
  and log stay float and ``QUANTIZE`` sits right before the network; its
  DFT is a matrix product with int8 weights (:func:`quantize_front_end`).
* :func:`export_all`: everything ``nsl-ser export`` writes, with
  ``labels.txt`` and the ``model.json`` sidecar (front end, labels, exits,
  I/O, MACs, checksums, arena sizes, licence).

int8 models come from post-training quantisation, or from a
quantisation-aware-trained copy of the model (``qat_model``, see
:mod:`nsl_ser.qat`; ``nsl-ser export --quantization=auto`` ships QAT only
where it beats PTQ on the validation speakers).
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser import records
from nsl_ser.compat import keras, tf
from nsl_ser.features import FrontEndConfig, LogMel

FRONT_END_SCOPE = "frontend"
# Dense layers per tensor: one scale instead of one (float + int64 zero
# point) per output unit; about 1.7 KB less flash per MCU stage, and no
# measurable UAR change on the student (experiments/results/export.md).
PER_CHANNEL_DENSE = False
# int8 method of an export (nsl_ser.qat.for_export): auto | ptq | qat.
QUANTIZATION_MODES = ("auto", "ptq", "qat")
SIDECAR = "model.json"
LICENCE = ("Trained on RAVDESS (CC BY-NC-SA 4.0: attribution, non-commercial, "
           "share-alike) and EmoDB (research use only). These models are "
           "derived from both: non-commercial research use only, same licence "
           "terms, cite both corpora.")
DEVICE_CONTRACT = (
    "Phone models take raw mono 16 kHz float audio in [-1, 1), exactly "
    "clip_samples long (centre-crop longer clips, zero-pad shorter ones "
    "evenly on both sides) and compute log-Mel features inside. MCU and "
    "Edge TPU models take the log-Mel features computed on the host with "
    "these front_end parameters (nsl_ser.features.log_mel_numpy: the window "
    "scaled to peak 1 if peak_normalize (peak floored at 1/32768), Hann "
    "window, |FFT|^2, HTK Mel filter bank without area normalisation, "
    "natural log of (mel + log_floor)), shape [1, num_frames, num_mel_bins], "
    "quantised with the model input's scale/zero_point; per-band "
    "normalisation is inside the model (stage 1).")

MICRO_USAGE = (
    "Compute the int8 features with micro/front_end (nsl_fe_compute, "
    "nsl_fe_quantize; nsl_fe_set_calibration for a calibrated speaker). "
    "Run stage 1 on the int8 features and read exit_1; to go deeper, copy "
    "stage k's int8 block{k}_act output unchanged into stage k+1's input "
    "(the qparams are identical by construction). arena_bytes is the "
    "RecordingMicroAllocator total on a 64-bit host; 32-bit MCUs need "
    "slightly less; keep about 1 KB of margin.")


# --------------------------------------------------------------------------
# Model surgery
# --------------------------------------------------------------------------
def output_names(model: keras.Model) -> List[str]:
  """The probability outputs: ``exit_1..exit_K``, or the single softmax."""
  from nsl_ser import models
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


# --------------------------------------------------------------------------
# Phone models: audio in, one signature per exit
# --------------------------------------------------------------------------
class PhoneModule(tf.Module):
  """One ``tf.function`` per exit: audio [1, samples] -> {exit: probs}."""

  def __init__(self, model: keras.Model, front_end: FrontEndConfig,
               dft: str = "fft"):
    super().__init__()
    self.model = model  # tracks the variables once
    self.front_end = LogMel(front_end, dft=dft, name="log_mel")
    self.spec = tf.TensorSpec([1, front_end.clip_samples], tf.float32,
                              name="audio")
    self.functions = {n: self._make(exit_submodel(model, n), n)
                      for n in output_names(model)}

  def _make(self, sub: keras.Model, name: str):
    @tf.function(input_signature=[self.spec])
    def fn(audio):
      with tf.name_scope(FRONT_END_SCOPE):
        feats = self.front_end(audio)
      return {name: sub(feats, training=False)}
    return fn

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    return {n: f.get_concrete_function() for n, f in self.functions.items()}


def frontend_node_names(data: bytes, scope: str = FRONT_END_SCOPE) -> List[str]:
  """Output-tensor names of the ops built under ``scope`` (the keys
  ``mlir_quantize(denylisted_nodes=...)`` matches)."""
  from nsl_ser import litert
  m = litert.model_t(data)
  names = set()
  for sg in m.subgraphs:
    for op in sg.operators or []:
      for j in op.outputs:
        n = sg.tensors[j].name.decode()
        if any(part.startswith(scope + "/") or f"/{scope}/" in part
               for part in n.split(";")):
          names.add(n)
  return sorted(names)


def convert_phone(model: keras.Model,
                  front_end: FrontEndConfig = FrontEndConfig(),
                  representative_audio: Optional[np.ndarray] = None,
                  dft: Optional[str] = None) -> bytes:
  """Audio-input multi-signature model: float, or int8 PTQ when
  ``representative_audio`` [N, samples] is given.

  ``dft`` (see :class:`LogMel`): default "fft" for the float model (exact,
  small) and "matmul" for int8, whose DFT weights are then int8 (hybrid
  FULLY_CONNECTED, about 3x faster than RFFT2D, +190 KB); the rest of the
  front end stays float and ``QUANTIZE`` sits right before the network.
  """
  dft = dft or ("fft" if representative_audio is None else "matmul")
  from nsl_ser import models
  # MEAN instead of whole-time AVERAGE_POOL_2D: same numbers, and XNNPACK
  # runs it (MCU stages keep AVERAGE_POOL_2D, bit-exact with TFLite Micro).
  module = PhoneModule(models.with_time_mean_pools(model), front_end, dft)

  def rep() -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
    for key in module.functions:
      for a in representative_audio:
        yield key, {"audio": a[None].astype(np.float32)}

  data = _convert_audio_module(module, None if representative_audio is None
                               else rep)
  if representative_audio is None or dft != "matmul":
    return data
  return quantize_front_end(data, front_end)


def _convert_audio_module(module: tf.Module, representative=None) -> bytes:
  """A tf.Module with ``signatures()`` -> multi-signature .tflite: float,
  or (``representative``: a callable yielding (signature, inputs)) int8
  PTQ with the front end kept float. Calibrate only, then quantise with
  the ops built under :data:`FRONT_END_SCOPE` denylisted (the mechanism
  tf.lite.experimental.QuantizationDebugger uses; private API, hence the
  pinned TensorFlow), and every LOG by op type: a LOG that writes a
  signature output carries the signature's name, not the scope's."""
  sigs = module.signatures()
  with tempfile.TemporaryDirectory() as td:
    tf.saved_model.save(module, td, signatures=sigs)
    conv = tf.lite.TFLiteConverter.from_saved_model(td, signature_keys=list(sigs))
    if representative is None:
      return conv.convert()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                      tf.lite.OpsSet.TFLITE_BUILTINS]
    conv._experimental_calibrate_only = True  # pylint: disable=protected-access
    calibrated = conv.convert()
  from tensorflow.lite.python import convert as lite_convert
  deny = frontend_node_names(calibrated)
  if not deny:
    raise RuntimeError("front-end ops not found; cannot keep them float")
  return lite_convert.mlir_quantize(
      calibrated, denylisted_nodes=deny, denylisted_ops=["LOG"],
      disable_per_channel_for_dense_layers=not PER_CHANNEL_DENSE)


class StagedPhoneModule(tf.Module):
  """The staged phone model: ``front_end`` (audio -> features) runs once
  per window, ``stage_k`` maps features (k = 1) or ``block{k-1}_act`` to
  ``exit_k`` and ``block{k}_act`` (the last stage: ``exit_K`` only), and
  ``full`` (audio -> every exit) is the one-call model. The stages are
  :func:`nsl_ser.micro.stage_model` of the network, so weights are shared
  and stopping at exit k costs the front end + blocks 1..k + heads 1..k."""

  def __init__(self, model: keras.Model, front_end: FrontEndConfig,
               dft: str = "fft"):
    super().__init__()
    from nsl_ser import micro
    self.model = model  # tracks the variables once
    self.log_mel = LogMel(front_end, dft=dft, name="log_mel")
    self.stages = [micro.stage_model(model, k)
                   for k in range(1, len(output_names(model)) + 1)]
    audio = tf.TensorSpec([1, front_end.clip_samples], tf.float32, name="audio")
    self.functions = {"front_end": tf.function(self._front_end,
                                               input_signature=[audio]),
                      "full": tf.function(self._full, input_signature=[audio])}
    for k, st in enumerate(self.stages, start=1):
      spec = tf.TensorSpec([1, *st.input.shape[1:]], tf.float32,
                           name=st.input.name.split(":")[0])
      self.functions[f"stage_{k}"] = tf.function(
          self._stage_fn(k), input_signature=[spec])

  def _features(self, audio):
    with tf.name_scope(FRONT_END_SCOPE):
      return self.log_mel(audio)

  def _front_end(self, audio):
    return {"features": self._features(audio)}

  def _run(self, k: int, x):
    """{exit_k, block{k}_act (not for the last stage)}."""
    out = self.stages[k - 1](x, training=False)
    out = out if isinstance(out, (list, tuple)) else [out]
    if len(out) == 1:
      return {f"exit_{k}": out[0]}
    return {f"block{k}_act": out[0], f"exit_{k}": out[1]}

  def _stage_fn(self, k: int):
    return lambda x: self._run(k, x)

  def _full(self, audio):
    x, out = self._features(audio), {}
    for k in range(1, len(self.stages) + 1):
      o = self._run(k, x)
      out[f"exit_{k}"] = o[f"exit_{k}"]
      x = o.get(f"block{k}_act")
    return out

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    return {n: f.get_concrete_function() for n, f in self.functions.items()}

  def representative(self, audio: np.ndarray
                     ) -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
    """Calibration inputs of every signature from float audio clips."""
    for a in audio:
      a = a[None].astype(np.float32)
      yield "front_end", {"audio": a}
      yield "full", {"audio": a}
      x = self._features(tf.constant(a))
      for k, st in enumerate(self.stages, start=1):
        yield f"stage_{k}", {st.input.name.split(":")[0]: np.asarray(x)}
        x = self._run(k, x).get(f"block{k}_act")


def convert_staged_phone(model: keras.Model,
                         front_end: FrontEndConfig = FrontEndConfig(),
                         representative_audio: Optional[np.ndarray] = None,
                         dft: str = "fft") -> bytes:
  """The staged phone model (:class:`StagedPhoneModule`): float, or int8
  PTQ of the stages (front end float, denylisted as in
  :func:`convert_phone`) when ``representative_audio`` is given.
  ``dft="fft"`` (RFFT2D, its Mel weights float16 in the int8 model:
  :func:`half_front_end_weights`; about 149 KB in all) or ``"matmul"``
  (int8-weight DFT; about 3x faster front end, about 260 KB more)."""
  from nsl_ser import models
  module = StagedPhoneModule(models.with_time_mean_pools(model), front_end, dft)
  if representative_audio is None:
    return _convert_audio_module(module)
  data = _convert_audio_module(
      module, lambda: module.representative(representative_audio))
  if dft == "matmul":
    return quantize_front_end(data, front_end)
  return half_front_end_weights(data)


def quantize_front_end(data: bytes, front_end: FrontEndConfig) -> bytes:
  """Weight-only int8 for the front end's DFT FULLY_CONNECTED.

  The same hybrid form the converter's dynamic-range quantisation emits:
  int8 weights per output channel, inputs quantised per frame at run time
  (``asymmetric_quantize_inputs``), float output. Framing, power, Mel and
  log stay float. Every signature's DFT op shares one weight buffer.
  """
  from nsl_ser import litert
  from nsl_ser.features import mel_bin_range
  schema = litert.schema
  lo, hi = mel_bin_range(front_end)
  shape = [2 * (hi - lo), front_end.frame_length]  # FC weights: [out, in]
  m = litert.model_t(data)
  scales: Dict[int, List[float]] = {}  # weight buffer -> per-channel scales
  for sg in m.subgraphs:
    for op in sg.operators or []:
      if litert.op_name(m, op.opcodeIndex) != "FULLY_CONNECTED":
        continue
      w = sg.tensors[op.inputs[1]]
      if w.type != schema.TensorType.FLOAT32 or list(w.shape) != shape:
        continue
      if w.buffer not in scales:
        buf = m.buffers[w.buffer]
        x = np.frombuffer(bytes(buf.data), np.float32).reshape(shape)
        scale = np.maximum(np.abs(x).max(axis=1), 1e-12) / 127.0
        q = np.clip(np.round(x / scale[:, None]), -127, 127).astype(np.int8)
        scales[w.buffer] = scale.astype(np.float32).tolist()
        buf.data = np.frombuffer(q.tobytes(), np.uint8)
      qp = schema.QuantizationParametersT()
      qp.scale, qp.zeroPoint = scales[w.buffer], [0] * shape[0]
      qp.quantizedDimension = 0
      w.type, w.quantization = schema.TensorType.INT8, qp
      op.builtinOptions.asymmetricQuantizeInputs = True
  if not scales:
    raise RuntimeError(f"no float DFT FULLY_CONNECTED with weights {shape}")
  return litert.pack(m)


def half_front_end_weights(data: bytes, min_elements: int = 4096) -> bytes:
  """Stores the front end's large float32 FULLY_CONNECTED weights (the
  Mel matrix of the RFFT front end) as float16, with a DEQUANTIZE to
  float32 in front of the op (the form TFLite's float16 quantisation
  emits; XNNPACK folds it). Halves their flash; relative weight error
  below 5e-4. Every signature's copy shares one float16 buffer."""
  from nsl_ser import litert
  schema = litert.schema
  m = litert.model_t(data)
  deq = next((i for i, c in enumerate(m.operatorCodes)
              if max(c.builtinCode, c.deprecatedBuiltinCode)
              == schema.BuiltinOperator.DEQUANTIZE), None)
  if deq is None:
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
    code.version = 3
    m.operatorCodes.append(code)
    deq = len(m.operatorCodes) - 1
  halves: Dict[int, int] = {}  # float32 buffer -> float16 buffer
  changed = 0
  for sg in m.subgraphs:
    ops = []
    for op in sg.operators or []:
      w = (sg.tensors[op.inputs[1]]
           if litert.op_name(m, op.opcodeIndex) == "FULLY_CONNECTED" else None)
      buf = m.buffers[w.buffer] if w is not None else None
      if (w is None or w.type != schema.TensorType.FLOAT32 or buf.data is None
          or len(buf.data) < 4 * min_elements
          or not any(FRONT_END_SCOPE in part
                     for part in w.name.decode().split(";"))):
        ops.append(op)
        continue
      if w.buffer not in halves:
        x = np.frombuffer(bytes(buf.data), np.float32).astype(np.float16)
        nb = schema.BufferT()
        nb.data = np.frombuffer(x.tobytes(), np.uint8)
        m.buffers.append(nb)
        halves[w.buffer] = len(m.buffers) - 1
      h = schema.TensorT()
      h.shape, h.type, h.buffer = list(w.shape), schema.TensorType.FLOAT16, halves[w.buffer]
      h.name = w.name + b"_fp16"
      f = schema.TensorT()
      f.shape, f.type, f.buffer = list(w.shape), schema.TensorType.FLOAT32, 0
      f.name = w.name + b"_fp32"
      sg.tensors += [h, f]
      d = schema.OperatorT()
      d.opcodeIndex = deq
      d.inputs, d.outputs = [len(sg.tensors) - 2], [len(sg.tensors) - 1]
      ops += [d, op]
      op.inputs = list(op.inputs)
      op.inputs[1] = len(sg.tensors) - 1
      changed += 1
    sg.operators = ops
  for b in halves:  # the float32 copies are no longer read
    m.buffers[b].data = None
  if not changed:
    raise RuntimeError("no large float front-end FULLY_CONNECTED weights")
  return litert.pack(m)


# --------------------------------------------------------------------------
# Data for calibration and evaluation
# --------------------------------------------------------------------------
def load_audio(records_dir: str, labels: Sequence[str],
               speakers: Optional[Sequence[str]] = None,
               front_end: FrontEndConfig = FrontEndConfig()
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(audio [N, clip_samples], label indices, ids) of a prepared corpus,
  restricted to ``speakers`` and to utterances whose label is in
  ``labels``, sorted by id; clips are centre-cropped / zero-padded like
  training (:func:`nsl_ser.data.utterance_dataset`)."""
  from nsl_ser import data
  audio, y, ids = [], [], []
  for ex in data.utterance_dataset(records.list_shards(records_dir), labels,
                                   speakers, front_end=front_end,
                                   waveform=True).batch(256):
    audio.append(ex[data.AUDIO].numpy())
    y.append(ex["label"].numpy())
    ids.append(ex["id"].numpy().astype(str))
  if not audio:
    raise ValueError(f"{records_dir}: no utterances for speakers {speakers}")
  ids = np.concatenate(ids)
  order = np.argsort(ids)
  return (np.concatenate(audio)[order].astype(np.float32),
          np.concatenate(y)[order], ids[order])


def features_of(audio: np.ndarray, front_end: FrontEndConfig = FrontEndConfig(),
                batch: int = 64) -> np.ndarray:
  """Log-Mel features [N, frames, bands] of fixed-length clips."""
  layer = LogMel(front_end)
  return np.concatenate([layer(tf.constant(audio[i:i + batch])).numpy()
                         for i in range(0, len(audio), batch)])


def calibration_subset(n_total: int, n: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of at most ``n`` of ``n_total`` items (seeded)."""
  if n >= n_total:
    return np.arange(n_total)
  return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))


# --------------------------------------------------------------------------
# Everything `nsl-ser export` writes
# --------------------------------------------------------------------------
def _write(path: str, data: bytes) -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    f.write(data)
  os.replace(path + ".tmp", path)
  return path


def front_end_spec(front_end: FrontEndConfig) -> dict:
  return {**front_end.to_dict(), "clip_samples": front_end.clip_samples,
          "frame_length": front_end.frame_length,
          "frame_step": front_end.frame_step, "num_frames": front_end.num_frames,
          "feature_shape": list(front_end.feature_shape),
          "window": "hann", "spectrum": "power", "mel_scale": "htk",
          "log": "natural, log(mel + log_floor)"}


class _Writer:
  """Writes files under ``out_dir`` and records bytes + sha256 for each."""

  def __init__(self, out_dir: str):
    self.out_dir, self.files = out_dir, {}

  def add(self, rel: str, data: bytes, **info) -> str:
    from nsl_ser import litert
    path = _write(os.path.join(self.out_dir, rel), data)
    self.files[rel] = {"bytes": len(data), "sha256": litert.sha256(data), **info}
    return path


def _export_phone(w: _Writer, model: keras.Model, int8_model: keras.Model,
                  front_end: FrontEndConfig, calibration_audio: np.ndarray,
                  int8_dft: str) -> None:
  """Staged phone models (float and int8) for models with exits, else
  the one-signature audio model."""
  from nsl_ser import litert
  staged = len(output_names(model)) > 1
  for kind, rep in (("float", None), ("int8", calibration_audio)):
    dft = "fft" if rep is None else int8_dft
    m = model if rep is None else int8_model
    data = (convert_staged_phone(m, front_end, rep, dft) if staged
            else convert_phone(m, front_end, rep, dft))
    w.add(f"model_{kind}.tflite", data, target="phone",
          weights="float32" if rep is None else
          "int8; front end float32" + (
              " except its DFT weights (int8, hybrid)" if dft == "matmul"
              else " except its Mel weights (float16)" if staged else ""),
          front_end_dft=dft, layout="staged" if staged else "one signature",
          input="audio", signatures=litert.io_spec(data))


def _export_micro(w: _Writer, model: keras.Model, cal_feats: np.ndarray,
                  front_end: FrontEndConfig, qat: bool = False) -> dict:
  """Stage models, their C arrays, measured TFLM arenas and the C front
  end that feeds stage 1."""
  from nsl_ser import litert, micro, micro_front_end
  stages = micro.build_stages(model, cal_feats, pin_boundaries=qat)
  bounds = micro.check_boundaries(stages)
  assert all(b["equal"] for b in bounds), bounds
  x = micro.stage_input_qparams(stages[0]).quantize(cal_feats[:1])
  arenas = []
  for k, data in enumerate(stages, start=1):
    rt = micro.MicroModel(data, f"stage_{k}")
    out = rt.run(x, raw=True)
    arenas.append(rt.arena_bytes())
    w.add(f"micro/stage_{k}_int8.tflite", data, target="mcu", weights="int8",
          input="features" if k == 1 else f"block{k - 1}_act",
          signatures=litert.io_spec(data), arena_bytes=arenas[-1],
          c_array=f"micro/stage_{k}/model_data.cc")
    cc, h = micro.c_array_sources(data, f"g_stage_{k}_model")
    w.add(f"micro/stage_{k}/model_data.cc", cc.encode())
    w.add(f"micro/stage_{k}/model_data.h", h.encode())
    x = out.get(f"block{k}_act")
  qp = micro.stage_input_qparams(stages[0])
  for name, text in micro_front_end.sources(front_end, qp.scale,
                                            qp.zero_point).items():
    w.add(f"micro/front_end/{name}", text.encode(), target="mcu")
  return {"stages": len(stages), "boundaries": bounds, "arena_bytes": arenas,
          "front_end": "micro/front_end (C99: nsl_ser.micro_front_end)",
          "usage": MICRO_USAGE}


def _export_edgetpu(w: _Writer, model: keras.Model, cal_feats: np.ndarray) -> None:
  from nsl_ser import edgetpu, litert
  data = convert_int8(exits_model(model), cal_feats)
  problems = edgetpu.check(data)
  w.add("edgetpu/model_int8.tflite", data, target="edgetpu", weights="int8",
        input="features", signatures=litert.io_spec(data),
        edgetpu_problems=len(problems))
  w.add("edgetpu/compat_report.json",
        json.dumps(edgetpu.report(data, problems), indent=2).encode())


NORMALIZATION_CONTRACT = (
    "regime 'global' (speaker-independent): the per-band mean/var of the "
    "training speakers' log-Mel frames are inside every model (layer "
    "'norm', stage 1): feed raw log-Mel / audio. To calibrate to a speaker, "
    "map its log-Mel x to x * scale + shift per band before the model, "
    "scale = sqrt(ref_var / spk_var), shift = ref_mean - spk_mean * scale, "
    "where spk are the statistics of the speech frames of that speaker's "
    "unlabelled clips (nsl_ser.normalization.BandStats: keep count, "
    "mean[bands], m2[bands]; merge each clip with Chan's update) and ref "
    "the model's reference statistics (normalization.reference).")


def norm_spec(model: keras.Model) -> dict:
  """The ``norm`` layer's statistics as the sidecar records them."""
  mean, var, count = model.get_layer("norm").get_weights()
  return {"regime": "global", "contract": NORMALIZATION_CONTRACT,
          "norm_layer": {"mean": np.asarray(mean).tolist(),
                         "var": np.asarray(var).tolist(), "count": int(count)}}


def normalization_of(model: keras.Model, metrics: Optional[dict] = None) -> dict:
  """:func:`norm_spec` plus the regime and the reference statistics that a
  training run recorded (its ``metrics.json``), so that the export can be
  calibrated to a speaker."""
  out = norm_spec(model)
  n = (metrics or {}).get("normalization", {})
  out["regime"] = n.get("regime", out["regime"])
  ref = n.get("reference") or n.get("train_stats")
  if ref:
    out["reference"] = ref
  return out


def export_all(model: keras.Model, out_dir: str, labels: Sequence[str],
               calibration_audio: np.ndarray,
               front_end: FrontEndConfig = FrontEndConfig(),
               provenance: Optional[dict] = None,
               micro: bool = True, edgetpu: bool = True,
               int8_dft: str = "matmul",
               qat_model: Optional[keras.Model] = None,
               quantization: Optional[dict] = None,
               calibration_features: Optional[np.ndarray] = None,
               normalization: Optional[dict] = None) -> dict:
  """Writes phone (float + int8), MCU stage and Edge TPU models, C arrays,
  ``labels.txt``, ``edgetpu/compat_report.json`` and ``model.json``.

  ``calibration_audio``: training-speaker clips [N, clip_samples] used for
  every post-training quantisation (features are computed from them).
  ``int8_dft``: the int8 phone model's DFT ("matmul", the default:
  int8-weight DFT matmul, front end about 3.5x faster than RFFT2D; "fft":
  RFFT2D with float16 Mel weights, about 260 KB smaller, under 150 KB).
  ``qat_model`` (:mod:`nsl_ser.qat`): the int8 models are converted from it
  instead of post-training quantising ``model`` (the float phone model,
  MACs and parameters still come from ``model``); ``quantization``: how the
  method was chosen, recorded in the sidecar. ``calibration_features``: the
  clips' features if the caller has them (else computed here).
  ``normalization``: the regime and the training statistics
  (``source.training_stats``), recorded in the sidecar.
  Returns the sidecar dict.
  """
  from nsl_ser import models
  names = output_names(model)
  classes = int(model.get_layer(names[-1]).output.shape[-1])
  if len(labels) != classes:
    raise ValueError(f"{len(labels)} labels for a model with {classes} classes")
  os.makedirs(out_dir, exist_ok=True)
  cal_feats = (features_of(calibration_audio, front_end)
               if calibration_features is None else calibration_features)
  w = _Writer(out_dir)
  q = model if qat_model is None else qat_model
  _export_phone(w, model, q, front_end, calibration_audio, int8_dft)
  micro_info = (_export_micro(w, q, cal_feats, front_end, qat_model is not None)
                if micro else None)
  if edgetpu:
    _export_edgetpu(w, q, cal_feats)
  w.add("labels.txt", "".join(l + "\n" for l in labels).encode())
  macs = (models.exit_macs(model) if models.exit_names(model)
          else [models.count_macs(model)])
  side = {
      "format": "nsl-ser-export/1",
      "model_name": model.name, "labels": list(labels), "exits": names,
      "exit_macs": dict(zip(names, macs)), "params": int(model.count_params()),
      "front_end": front_end_spec(front_end),
      "device_contract": DEVICE_CONTRACT,
      "normalization": normalization or norm_spec(model),
      "calibration": {"clips": int(len(calibration_audio)), **(provenance or {})},
      "quantization": {"method": "ptq" if qat_model is None else "qat",
                       **(quantization or {})},
      "files": w.files, "licence": LICENCE,
  }
  if micro_info:
    side["micro"] = micro_info
  _write(os.path.join(out_dir, SIDECAR), json.dumps(side, indent=2).encode())
  return side
