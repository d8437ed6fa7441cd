"""Phone models: raw 16 kHz audio in, the log-Mel front end inside.

* :func:`convert_staged_phone` (models with exits): signatures
  ``front_end`` (audio -> features, once per window), ``stage_1`` ...
  ``stage_K`` (the previous activations -> ``exit_k`` and
  ``block{k}_act``; :func:`nsl_ser.export.micro.stage_model`, weights shared),
  ``full`` (audio -> every exit in one call), and for live audio
  ``frame_power`` / ``log_mel`` (the front end frame by frame, then the
  window's peak normalisation and log).
* :func:`convert_phone` (single-head models such as the source CNN): one
  signature per output.

The int8 variants are post-training quantised with the front end kept float
(denylisted), so ``QUANTIZE`` sits right before the network; the front end's
large weights are then stored small: the Mel matrix as float16
(:func:`half_front_end_weights`, both DFTs) and, with ``dft="matmul"``,
the two halves of the folded DFT as int8 (:func:`quantize_front_end`).
Between the stages the activations stay int8 (:func:`int8_stage_boundaries`).
:func:`write_phone` is the exporter's phone step.
"""
from __future__ import annotations

import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np

from nsl_ser import models
from nsl_ser.export import convert, micro
from nsl_ser.runtime import litert
from nsl_ser.compat import keras, tf
from nsl_ser.export.files import Writer
from nsl_ser.features import FrontEndConfig, LogMel, fold_centre, mel_bin_range

FRONT_END_SCOPE = "frontend"


class PhoneModule(tf.Module):
  """One ``tf.function`` per exit: audio [1, samples] -> {exit: probs}."""

  def __init__(self, model: keras.Model, front_end: FrontEndConfig,
               dft: str = "fft"):
    super().__init__()
    self.model = model  # tracks the variables once
    self.front_end = LogMel(front_end, dft=dft, name="log_mel")
    self.spec = tf.TensorSpec([1, front_end.clip_samples], tf.float32,
                              name="audio")
    self.functions = {n: self._make(convert.exit_submodel(model, n), n)
                      for n in convert.output_names(model)}

  def _make(self, sub: keras.Model, name: str):
    @tf.function(input_signature=[self.spec])
    def fn(audio):
      with tf.name_scope(FRONT_END_SCOPE):
        feats = self.front_end(audio)
      return {name: sub(feats, training=False)}
    return fn

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    return {n: f.get_concrete_function() for n, f in self.functions.items()}


FRONT_END_SIGNATURES = ("front_end", "frame_power", "log_mel")


def frontend_node_names(data: bytes, scope: str = FRONT_END_SCOPE) -> List[str]:
  """Output-tensor names of the ops built under ``scope`` and of the
  outputs of the :data:`FRONT_END_SIGNATURES` (an op that writes a
  signature output carries the signature's name, not the scope's): the
  keys ``mlir_quantize(denylisted_nodes=...)`` matches."""
  m = litert.model_t(data)
  names = set()
  for sd in m.signatureDefs or []:
    if sd.signatureKey.decode() in FRONT_END_SIGNATURES:
      sg = m.subgraphs[sd.subgraphIndex]
      names.update(sg.tensors[t.tensorIndex].name.decode() for t in sd.outputs)
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
                  dft: str = "fft") -> bytes:
  """Audio-input multi-signature model: float, or int8 PTQ when
  ``representative_audio`` [N, samples] is given.

  ``dft`` (see :class:`LogMel`): "fft" (RFFT2D, a float spectrum, small)
  or, for int8, "matmul", whose DFT weights are then int8 (hybrid
  FULLY_CONNECTED, about 5x faster than RFFT2D, +97 KB); the rest of the
  front end stays float (the Mel weights float16) and ``QUANTIZE`` sits
  right before the network.
  """
  # MEAN instead of whole-time AVERAGE_POOL_2D: same numbers, and XNNPACK
  # runs it (MCU stages keep AVERAGE_POOL_2D, bit-exact with TFLite Micro).
  module = PhoneModule(models.with_time_mean_pools(model), front_end, dft)

  def rep() -> Iterator[Tuple[str, Dict[str, np.ndarray]]]:
    for key in module.functions:
      for a in representative_audio:
        yield key, {"audio": a[None].astype(np.float32)}

  data = _convert_audio_module(module, None if representative_audio is None
                               else rep)
  if representative_audio is None:
    return data
  return _small_front_end(data, front_end, dft)


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
      disable_per_channel_for_dense_layers=not convert.PER_CHANNEL_DENSE)


class StagedPhoneModule(tf.Module):
  """The staged phone model: ``front_end`` (audio -> features) runs once
  per window (streaming instead: ``frame_power``, a frame's raw audio ->
  its Mel power, as each frame arrives, and ``log_mel``, the window's Mel
  power and peak -> the same features, when it is complete;
  :class:`nsl_ser.runtime.litert.PhoneStream`), ``stage_k`` maps features (k = 1)
  or ``block{k-1}_act`` to ``exit_k`` and ``block{k}_act`` (the last
  stage: ``exit_K`` only), and
  ``full`` (audio -> every exit) is the one-call model. The stages are
  :func:`nsl_ser.export.micro.stage_model` of the network, so weights are shared
  and stopping at exit k costs the front end + blocks 1..k + heads 1..k."""

  def __init__(self, model: keras.Model, front_end: FrontEndConfig,
               dft: str = "fft"):
    super().__init__()
    self.model = model  # tracks the variables once
    self.log_mel = LogMel(front_end, dft=dft, name="log_mel")
    self.stages = [micro.stage_model(model, k)
                   for k in range(1, len(convert.output_names(model)) + 1)]
    fe = front_end
    audio = tf.TensorSpec([1, fe.clip_samples], tf.float32, name="audio")
    frame = tf.TensorSpec([1, fe.frame_length], tf.float32, name="frame")
    power = tf.TensorSpec([1, *fe.feature_shape], tf.float32, name="mel_power")
    peak = tf.TensorSpec([1, 1], tf.float32, name="peak")
    self.functions = {"front_end": tf.function(self._front_end,
                                               input_signature=[audio]),
                      "frame_power": tf.function(self._frame_power,
                                                 input_signature=[frame]),
                      "log_mel": tf.function(self._log_mel,
                                             input_signature=[power, peak]),
                      "full": tf.function(self._full, input_signature=[audio])}
    for k, st in enumerate(self.stages, start=1):
      spec = tf.TensorSpec([1, *st.input.shape[1:]], tf.float32,
                           name=st.input.name.split(":")[0])
      self.functions[f"stage_{k}"] = tf.function(
          self._stage_fn(k), input_signature=[spec])

  def _features(self, audio):
    with tf.name_scope(FRONT_END_SCOPE):
      return self.log_mel.framewise(audio)

  def _front_end(self, audio):
    return {"features": self._features(audio)}

  def _frame_power(self, frame):
    with tf.name_scope(FRONT_END_SCOPE):
      return {"mel_power": self.log_mel.mel_power(frame)}

  def _log_mel(self, mel_power, peak):
    with tf.name_scope(FRONT_END_SCOPE):
      return {"features": self.log_mel.log_of_power(mel_power, peak)}

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
    fe = self.log_mel.config
    mid = fe.frame_step * (fe.num_frames // 2)  # the middle frame's start
    for a in audio:
      a = a[None].astype(np.float32)
      yield "front_end", {"audio": a}
      yield "full", {"audio": a}
      power, peak = self.log_mel.window_power(a)
      yield "frame_power", {"frame": a[:, mid:mid + fe.frame_length]}
      yield "log_mel", {"mel_power": np.asarray(power), "peak": np.asarray(peak)}
      x = self.log_mel.log_of_power(power, peak)  # what framewise computes
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
  ``dft="fft"`` (RFFT2D; about 146 KB in all) or ``"matmul"`` (the
  folded int8-weight DFT; a buffered window's front end about 5x faster,
  about 115 KB more); either way the front end computes each frame's Mel
  power, then the window's peak gain and log (``LogMel.framewise``), so
  the streaming signatures give ``front_end``'s features bit for bit;
  the Mel weights float16 in both (:func:`half_front_end_weights`); the
  internal tensors' names blanked (the signatures name their inputs and
  outputs)."""
  module = StagedPhoneModule(models.with_time_mean_pools(model), front_end, dft)
  if representative_audio is None:
    return micro.strip_tensor_names(_convert_audio_module(module))
  data = int8_stage_boundaries(_convert_audio_module(
      module, lambda: module.representative(representative_audio)))
  return micro.strip_tensor_names(_small_front_end(data, front_end, dft))


def _small_front_end(data: bytes, front_end: FrontEndConfig, dft: str) -> bytes:
  """An int8 phone model's float front-end weights stored small: the Mel
  matrix float16 and, for ``dft="matmul"``, the folded DFT int8."""
  if dft == "matmul":
    data = quantize_front_end(data, front_end)
  return half_front_end_weights(data)


def int8_stage_boundaries(data: bytes) -> bytes:
  """Stage k's ``block{k}_act`` leaves it int8 and stage k+1 takes it int8:
  the DEQUANTIZE that ended stage k and the QUANTIZE that opened stage k+1
  are removed, as on the microcontroller, so chaining the stages costs no
  conversion. Producer and consumer were calibrated on the same
  activations: when their qparams agree
  (:func:`nsl_ser.export.micro.boundary_qparams_agree`) the consumer takes the
  producer's; when they do not (QAT: the producer's range is trained), the
  QUANTIZE stays and requantises int8 to int8. Without such a boundary the
  ``full`` signature's tensors then take the stages' qparams
  (:func:`_share_stage_qparams`): the chain and ``full`` compute the same
  tensors and give the same exits."""
  m = litert.model_t(data)
  sub = {sd.signatureKey.decode(): sd for sd in m.signatureDefs}
  ends: Dict[str, Tuple[int, int]] = {}  # block name -> (subgraph, tensor)
  requantised = False
  for key, sd in sub.items():  # producers: drop the final DEQUANTIZE
    if not key.startswith("stage_"):
      continue
    sg = m.subgraphs[sd.subgraphIndex]
    for t in sd.outputs:
      if t.name.decode().startswith("block"):
        op = _only_op(m, sg, "DEQUANTIZE", key,
                      lambda o, i=t.tensorIndex: list(o.outputs) == [i])
        sg.operators.remove(op)
        sg.outputs = [op.inputs[0] if i == t.tensorIndex else i
                      for i in sg.outputs]
        t.tensorIndex = op.inputs[0]
        ends[t.name.decode()] = (sd.subgraphIndex, t.tensorIndex)
  for key, sd in sub.items():  # consumers: drop the opening QUANTIZE
    sg = m.subgraphs[sd.subgraphIndex]
    for t in sd.inputs:
      name = t.name.decode()
      if not key.startswith("stage_") or name not in ends:
        continue
      op = _only_op(m, sg, "QUANTIZE", key,
                    lambda o, i=t.tensorIndex: list(o.inputs) == [i])
      psg, pt = ends.pop(name)
      produced = m.subgraphs[psg].tensors[pt]
      src = litert.tensor_qparams(produced)
      dst = litert.tensor_qparams(sg.tensors[op.outputs[0]])
      if src is None or dst is None:
        raise RuntimeError(f"{key}: {name} is not per-tensor int8")
      if micro.boundary_qparams_agree(src, dst):
        sg.operators.remove(op)  # the same up to calibration rounding
        new = op.outputs[0]
        sg.tensors[new].quantization = produced.quantization
      else:  # e.g. QAT: trained producer range, calibrated consumer range
        inp = litert.schema.TensorT()  # QUANTIZE then requantises int8
        inp.name, inp.shape = produced.name, list(produced.shape)
        inp.type, inp.quantization = produced.type, produced.quantization
        inp.buffer = 0
        sg.tensors.append(inp)
        new = len(sg.tensors) - 1
        op.inputs = [new]
        requantised = True
      sg.inputs = [new if i == t.tensorIndex else i for i in sg.inputs]
      t.tensorIndex = new
  if ends:
    raise RuntimeError(f"no consumer for {sorted(ends)}")
  if not requantised:
    _share_stage_qparams(m, sub)
  return litert.pack(m)


def _share_stage_qparams(m, sub) -> None:
  """The ``full`` signature's network ops, from the features' QUANTIZE on,
  are stage 1's ops, then stage 2's, ...: each of their tensors takes the
  stage's qparams, and each constant the stage's buffer (the converter
  calibrates every signature separately, so qparams and the int32 biases
  derived from them differ by float rounding, and the features' range by
  more)."""
  def network(sg):
    names = [litert.op_name(m, op.opcodeIndex) for op in sg.operators]
    first = next((i for i, n in enumerate(names) if n == "QUANTIZE"
                  and sg.tensors[sg.operators[i].inputs[0]].type
                  == litert.schema.TensorType.FLOAT32), None)
    if first is None:
      raise RuntimeError("no QUANTIZE of the float features")
    return [(names[i], sg, sg.operators[i]) for i in range(first, len(names))]
  full = network(m.subgraphs[sub["full"].subgraphIndex])
  chain = []
  stages = sorted((k for k in sub if k.startswith("stage_")),
                  key=lambda k: int(k.split("_")[1]))
  for key in stages:
    sg = m.subgraphs[sub[key].subgraphIndex]
    chain += (network(sg) if key == "stage_1" else
              [(litert.op_name(m, op.opcodeIndex), sg, op) for op in sg.operators])
  if [n for n, _, _ in full] != [n for n, _, _ in chain]:
    raise RuntimeError("the full signature's ops are not the stages' in order")
  dropped = set()
  for (_, fsg, fop), (_, ssg, sop) in zip(full, chain):
    for fi, si in zip(list(fop.inputs) + list(fop.outputs),
                      list(sop.inputs) + list(sop.outputs)):
      if fi >= 0 and si >= 0:
        ft, st = fsg.tensors[fi], ssg.tensors[si]
        ft.quantization = st.quantization
        if ft.buffer != st.buffer and m.buffers[st.buffer].data is not None:
          # constants: the stage's too (a bias is quantised with its op's
          # input scale, which the converter calibrated per signature)
          dropped.add(ft.buffer)
          ft.buffer = st.buffer
  used = {t.buffer for sg in m.subgraphs for t in sg.tensors}
  for b in dropped - used:
    m.buffers[b].data = None


def _only_op(m, sg, opname: str, where: str,
             match: Callable[[object], bool] = lambda op: True):
  """The one ``opname`` op of subgraph ``sg`` for which ``match(op)``."""
  ops = [op for op in sg.operators
         if litert.op_name(m, op.opcodeIndex) == opname and match(op)]
  if len(ops) != 1:
    raise RuntimeError(f"{where}: expected one {opname} at the stage boundary, "
                       f"found {len(ops)}")
  return ops[0]


def quantize_front_end(data: bytes, front_end: FrontEndConfig) -> bytes:
  """Weight-only int8 for the front end's two DFT FULLY_CONNECTED ops
  (cos and sin halves, :func:`nsl_ser.features.dft_basis`).

  The same hybrid form the converter's dynamic-range quantisation emits:
  int8 weights per output channel, inputs quantised per frame at run time
  (``asymmetric_quantize_inputs``), float output. Framing, power, Mel and
  log stay float. Every signature's DFT ops share their weight buffers.
  """
  schema = litert.schema
  lo, hi = mel_bin_range(front_end)
  length = front_end.frame_length
  shape = [hi - lo, length - fold_centre(length)]  # FC weights: [out, in]
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


def write_phone(w: Writer, model: keras.Model, int8_model: keras.Model,
                front_end: FrontEndConfig, calibration_audio: np.ndarray,
                int8_dft: str) -> None:
  """``model_float.tflite`` and ``model_int8.tflite`` (from ``int8_model``,
  the float model or its QAT copy): staged for models with exits, else one
  signature."""
  staged = len(convert.output_names(model)) > 1
  for kind, rep in (("float", None), ("int8", calibration_audio)):
    dft = "fft" if rep is None else int8_dft
    m = model if rep is None else int8_model
    data = (convert_staged_phone(m, front_end, rep, dft) if staged
            else convert_phone(m, front_end, rep, dft))
    w.add(f"model_{kind}.tflite", data, target="phone",
          weights="float32" if rep is None else
          "int8; front end float32" + (
              " except its DFT weights (int8, hybrid) and Mel weights "
              "(float16)" if dft == "matmul"
              else " except its Mel weights (float16)" if staged else ""),
          front_end_dft=dft, layout="staged" if staged else "one signature",
          input="audio", signatures=litert.io_spec(data))
