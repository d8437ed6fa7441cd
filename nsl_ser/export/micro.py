"""Microcontroller path: full-int8 stage models, the TFLite Micro runner,
tensor-arena measurement and C arrays.

Stage k of an early-exit CNN maps ``features`` (k = 1, including the
``norm`` layer) or ``block{k-1}_act`` to ``block{k}_act`` and ``exit_k``;
the last stage outputs only its exit. A device runs stage 1, reads exit_1,
and continues with stage 2 on stage 1's int8 activation only when it needs
a deeper exit. Stages are calibrated in sequence on the same clips and the
producer's output qparams are stamped onto the consumer's input, so int8
buffers pass between stages unchanged (asserted at export).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser import early_exit, models
from nsl_ser.export import convert
from nsl_ser.runtime import litert
from nsl_ser.compat import keras
from nsl_ser.runtime.litert import ModelError, QParams

DEFAULT_ARENA = 1 << 20
# Relative scale difference below which int8 values pass a stage boundary
# unchanged (a rescale cannot move a value by half an LSB over 255 steps).
MAX_BOUNDARY_SCALE_DIFF = 1.0 / (2 * 255)


def boundary_qparams_agree(src: QParams, dst: QParams) -> bool:
  """Can int8 values of a stage output (``src``) enter the next stage's
  input (``dst``) unchanged? Same zero point, scales within
  :data:`MAX_BOUNDARY_SCALE_DIFF`."""
  return (src.zero_point == dst.zero_point
          and abs(src.scale - dst.scale) / src.scale <= MAX_BOUNDARY_SCALE_DIFF)


def block_count(model: keras.Model) -> int:
  return sum(1 for l in model.layers if re.fullmatch(r"block\d+_conv", l.name))


def _block_layers(model: keras.Model, k: int) -> List[keras.layers.Layer]:
  names = [l.name for l in model.layers]
  return [model.get_layer(f"block{k}_{s}") for s in ("conv", "bn", "relu", "pool")
          if f"block{k}_{s}" in names]


def _head_layers(model: keras.Model, k: int) -> List[keras.layers.Layer]:
  return [model.get_layer(n) for n in models.head_layer_names(model, k)]


def stage_model(model: keras.Model, k: int) -> keras.Model:
  """Stage k as a Keras model sharing ``model``'s layers (weights).

  Outputs ``[block{k}_act, exit_k]`` (only ``exit_k`` for the last stage).
  A model without exits is a single stage: features -> probs.
  """
  outs = convert.output_names(model)
  if len(outs) == 1:
    return keras.Model(model.input, model.get_layer(outs[0]).output,
                       name="stage_1")
  n = block_count(model)
  if k == 1:
    inp = keras.Input(model.input.shape[1:], name="features")
    x = model.get_layer("add_channel")(model.get_layer("norm")(inp))
  else:
    prev = _block_layers(model, k - 1)[-1].output
    inp = keras.Input(prev.shape[1:], name=f"block{k - 1}_act")
    x = inp
  for layer in _block_layers(model, k):
    x = layer(x, training=False)
  act = keras.layers.Identity(name=f"block{k}_act")(x)
  e = act
  for layer in _head_layers(model, k):
    e = layer(e, training=False)
  return keras.Model(inp, e if k == n else [act, e], name=f"stage_{k}")


def stage_input_qparams(data: bytes) -> QParams:
  (io,) = litert.signature_io(data).values()
  return io["inputs"][0].qparams


def stage_output_qparams(data: bytes, name: str) -> QParams:
  (io,) = litert.signature_io(data).values()
  return {t.name: t.qparams for t in io["outputs"]}[name]


def set_input_qparams(data: bytes, qp: QParams) -> bytes:
  """Copy of a single-input model whose input tensor carries ``qp``."""
  m = litert.model_t(data)
  sg = m.subgraphs[0]
  q = sg.tensors[sg.inputs[0]].quantization
  q.scale, q.zeroPoint = [float(qp.scale)], [int(qp.zero_point)]
  return litert.pack(m)


def strip_tensor_names(data: bytes) -> bytes:
  """Blanks the names of internal tensors (flash bytes an MCU never reads);
  graph input/output tensors keep theirs."""
  m = litert.model_t(data)
  for sg in m.subgraphs:
    keep = set(sg.inputs) | set(sg.outputs)
    for i, t in enumerate(sg.tensors):
      if i not in keep:
        t.name = b""
  return litert.pack(m)


def requantize(q: np.ndarray, src: QParams, dst: QParams) -> np.ndarray:
  """Host-side int8 rescale between two qparams (identity when equal)."""
  return q if src == dst else dst.quantize(src.dequantize(q))


def range_sample(qp: QParams, like: np.ndarray) -> np.ndarray:
  """One calibration input whose min and max are exactly ``qp``'s range."""
  edge = np.zeros_like(like[:1])
  edge.flat[0] = qp.dequantize(np.int8(-128))
  edge.flat[1] = qp.dequantize(np.int8(127))
  return edge


def build_stages(model: keras.Model, calibration: np.ndarray,
                 strip_names: bool = True,
                 pin_boundaries: bool = False) -> List[bytes]:
  """Full-int8 stage models calibrated in sequence on the same features.

  Stage k+1 is calibrated on the float activations stage k gives for the
  calibration clips; its input qparams are then overwritten with stage k's
  output qparams (they agree to float rounding) and equality is asserted.
  ``pin_boundaries`` (QAT models, whose boundary ranges are trained, not
  measured, so the clips need not reach them) adds :func:`range_sample` of
  the producer's range to stage k+1's calibration clips; only unranged
  tensors (the input) are calibrated in a QAT model.
  ``strip_names`` blanks internal tensor names (about 2 KB of flash).
  """
  n = len(convert.output_names(model))
  stages, x = [], calibration
  for k in range(1, n + 1):
    sm = stage_model(model, k)
    src = (stage_output_qparams(stages[-1], f"block{k - 1}_act") if k > 1
           else None)
    rep = (np.concatenate([x, range_sample(src, x)])
           if src is not None and pin_boundaries else x)
    data = convert.convert_int8(sm, rep)
    if src is not None:
      dst = stage_input_qparams(data)
      if not boundary_qparams_agree(src, dst):
        raise AssertionError(f"stage {k}: boundary qparams {src} vs {dst} "
                             "disagree; calibrate stages on the same clips")
      data = set_input_qparams(data, src)
      assert stage_input_qparams(data) == src, "qparams stamp failed"
    stages.append(strip_tensor_names(data) if strip_names else data)
    if k < n:
      x = sm.predict(x, verbose=0, batch_size=64)[0]
  return stages


def check_boundaries(stages: Sequence[bytes]) -> List[dict]:
  """Producer/consumer qparams at each stage boundary (must be equal)."""
  res = []
  for k in range(1, len(stages)):
    src = stage_output_qparams(stages[k - 1], f"block{k}_act")
    dst = stage_input_qparams(stages[k])
    res.append({"boundary": f"block{k}_act", "producer": src.to_dict(),
                "consumer": dst.to_dict(), "equal": src == dst})
  return res


@contextlib.contextmanager
def capture_fd(fd: int = 2) -> Iterator[List[str]]:
  """Captures C-level writes to ``fd`` (TFLM prints to stderr)."""
  sink: List[str] = []
  with tempfile.TemporaryFile(mode="w+b") as tmp:
    sys.stderr.flush()
    saved = os.dup(fd)
    os.dup2(tmp.fileno(), fd)
    try:
      yield sink
    finally:
      os.dup2(saved, fd)
      os.close(saved)
      tmp.seek(0)
      sink.append(tmp.read().decode(errors="replace"))


def _tflm():
  from tflite_micro.python.tflite_micro import runtime
  return runtime


class MicroModel:
  """A TFLite Micro interpreter with name-based outputs (int8 in/out).

  ``run`` takes float or int8 inputs (float is quantised) and returns
  outputs by signature name, dequantised unless ``raw``.
  """

  def __init__(self, data: bytes, name: str = "<bytes>",
               arena_size: int = DEFAULT_ARENA):
    self.name, self.data = name, litert.verify(data, name)
    io = litert.signature_io(data)
    if len(io) != 1:
      raise ModelError(name, f"TFLM runs single-signature models, got {len(io)}")
    (sig,) = io.values()
    self.inputs, self.outputs = sig["inputs"], sig["outputs"]
    try:
      with capture_fd():
        self.interpreter = _tflm().Interpreter.from_bytes(
            bytes(data), arena_size=arena_size)
    except Exception as e:  # RuntimeError: arena too small, bad ops, ...
      raise ModelError(name, f"TFLM cannot load it ({e})") from None

  @classmethod
  def from_file(cls, path: str, sidecar: Optional[str] = "auto",
                arena_size: int = DEFAULT_ARENA) -> "MicroModel":
    data = litert.read_tflite(path)
    if sidecar == "auto":
      sidecar = litert.find_sidecar(path)
    if sidecar:
      litert.check_against_sidecar(data, path, litert.sidecar_entry(path, sidecar))
    return cls(data, path, arena_size)

  def __call__(self, *xs: np.ndarray, raw: bool = False) -> Dict[str, np.ndarray]:
    return self.run(*xs, raw=raw)

  def run(self, *xs: np.ndarray, raw: bool = False) -> Dict[str, np.ndarray]:
    for i, (t, x) in enumerate(zip(self.inputs, xs)):
      x = np.asarray(x)
      if x.dtype != np.int8 and t.dtype == "int8":
        x = t.qparams.quantize(x)
      self.interpreter.set_input(x.reshape(t.shape).astype(t.dtype), i)
    self.interpreter.invoke()
    out = {}
    for i, t in enumerate(self.outputs):
      y = np.array(self.interpreter.get_output(i))
      out[t.name] = y if raw or t.qparams is None else t.qparams.dequantize(y)
    return out

  def latency_ms(self, *xs: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    """Median ms of one invoke on the host (TFLM reference kernels: a
    proxy for relative cost on a device, not device latency)."""
    for i, (t, x) in enumerate(zip(self.inputs, xs)):
      self.interpreter.set_input(np.asarray(x).reshape(t.shape).astype(t.dtype), i)
    return litert.median_ms(self.interpreter.invoke, runs, warmup)

  def arena_bytes(self) -> int:
    """Tensor-arena bytes actually allocated (RecordingMicroAllocator)."""
    with capture_fd() as text:
      self.interpreter.print_allocations()
    m = re.search(r"Arena allocation total (\d+) bytes", text[0])
    if not m:
      raise RuntimeError(f"{self.name}: no arena total in TFLM output")
    return int(m.group(1))


def run_chain(stages: Sequence, features_q: np.ndarray,
              deepest: Optional[int] = None) -> Dict[str, np.ndarray]:
  """Runs stages 1..deepest (MicroModel or litert.Model) on one int8
  feature clip [1, T, F]; stage k's int8 ``block{k}_act`` is fed unchanged
  to stage k+1. Returns the raw int8 exits by name."""
  deepest = deepest or len(stages)
  out: Dict[str, np.ndarray] = {}
  x = features_q
  for k, st in enumerate(stages[:deepest], start=1):
    o = st(x, raw=True)
    out.update({n: v for n, v in o.items() if not n.endswith("_act")})
    x = o.get(f"block{k}_act")
  return out


def run_adaptive(stages: Sequence, features_q: np.ndarray,
                 exit_qparams: Sequence[QParams], tau: float,
                 fuse: Optional[Callable[[np.ndarray, int], np.ndarray]] = None,
                 policy: str = "max_prob") -> Tuple[np.ndarray, int]:
  """The early-exit policy on a device: stages 1, 2, ... on one int8
  feature clip [1, T, F] until exit k's probabilities (dequantised with
  ``exit_qparams[k - 1]``, then ``fuse(probs, k - 1)`` when given, e.g.
  the functionals head's ``nsl_fx_fuse_exit``) reach ``tau``
  (:func:`nsl_ser.early_exit.confidence`); the last exit otherwise. Only
  stages 1..k run. Returns (probabilities [classes], k)."""
  x = features_q
  for k, st in enumerate(stages, start=1):
    o = st(x, raw=True)
    p = exit_qparams[k - 1].dequantize(o[f"exit_{k}"])[0]
    if fuse is not None:
      p = fuse(p, k - 1)
    if k == len(stages) or early_exit.confidence(p[None], policy)[0] >= tau:
      return p, k
    x = o[f"block{k}_act"]
  raise ValueError("run_adaptive needs at least one stage")


def c_array_sources(data: bytes, var_name: str = "g_model_data",
                    header_name: str = "model_data.h",
                    bytes_per_line: int = 12) -> Tuple[str, str]:
  """(model_data.cc, model_data.h) contents: a 16-byte aligned array."""
  guard = re.sub(r"[^A-Z0-9]", "_", header_name.upper()) + "_"
  header = (f"#ifndef {guard}\n#define {guard}\n\n"
            f"extern const unsigned char {var_name}[];\n"
            f"extern const unsigned int {var_name}_len;\n\n#endif  // {guard}\n")
  lines = ["  " + ", ".join(f"0x{b:02x}" for b in data[i:i + bytes_per_line]) + ","
           for i in range(0, len(data), bytes_per_line)]
  source = (f'#include "{header_name}"\n\n'
            f"alignas(16) const unsigned char {var_name}[] = {{\n"
            + "\n".join(lines) + "\n};\n"
            f"const unsigned int {var_name}_len = {len(data)};\n")
  return source, header


def write_c_array(data: bytes, out_dir: str, var_name: str,
                  stem: str = "model_data") -> Tuple[str, str]:
  """Writes ``<stem>.cc`` / ``<stem>.h`` into ``out_dir``; returns paths."""
  os.makedirs(out_dir, exist_ok=True)
  cc, h = c_array_sources(data, var_name, f"{stem}.h")
  paths = os.path.join(out_dir, f"{stem}.cc"), os.path.join(out_dir, f"{stem}.h")
  for p, text in zip(paths, (cc, h)):
    with open(p, "w") as f:
      f.write(text)
  return paths


def parse_c_array(source: str) -> bytes:
  """Bytes of the array in a generated ``.cc`` (for checks)."""
  body = source.split("{", 1)[1].split("}", 1)[0]
  return bytes(int(t, 16) for t in body.replace(",", " ").split())
