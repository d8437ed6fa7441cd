"""LiteRT runner and .tflite flatbuffer helpers.

:class:`Model` loads a ``.tflite`` (``ai_edge_litert``), lists its
signatures and runs one by name, returning outputs by *name* (the TFLite
output order is not the Keras order). int8 inputs given as float are
quantised and int8 outputs dequantised with the tensors' qparams, unless
``raw=True``. Anything wrong with a file (missing, truncated, corrupt,
checksum or input shapes disagreeing with the ``model.json`` sidecar)
raises :class:`ModelError` naming the file and the reason.

The flatbuffer helpers (:func:`model_t`, :func:`signature_io`,
:func:`op_names`...) read the schema directly; the MCU runner
(:mod:`nsl_ser.export.micro`) and the Edge TPU checker (:mod:`nsl_ser.export.edgetpu`)
use them too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from nsl_ser.logs import quiet_native_logs

SIDECAR = "model.json"
_OP_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items()
             if not k.startswith("_")}
TYPE_NAMES = {v: k.lower() for k, v in vars(schema.TensorType).items()
              if not k.startswith("_")}


class ModelError(Exception):
  """A .tflite file that cannot be used: names the file and the reason."""

  def __init__(self, name: str, reason: str):
    super().__init__(f"{name}: {reason}")
    self.name, self.reason = name, reason


@dataclasses.dataclass(frozen=True)
class QParams:
  """Per-tensor affine int8 quantisation: real = scale * (q - zero_point)."""
  scale: float
  zero_point: int

  def quantize(self, x: np.ndarray) -> np.ndarray:
    q = np.round(np.asarray(x, np.float32) / self.scale) + self.zero_point
    return np.clip(q, -128, 127).astype(np.int8)

  def dequantize(self, q: np.ndarray) -> np.ndarray:
    return (np.asarray(q).astype(np.float32) - self.zero_point) * self.scale

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class TensorInfo:
  """A signature input/output: its signature name, shape, dtype, qparams."""
  name: str
  shape: tuple
  dtype: str
  qparams: Optional[QParams] = None

  def to_dict(self) -> dict:
    d = {"shape": list(self.shape), "dtype": self.dtype}
    if self.qparams is not None:
      d["quantization"] = self.qparams.to_dict()
    return d


def sha256(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def verify(data: bytes, name: str = "<bytes>") -> bytes:
  """Raises ModelError unless ``data`` is a valid TFLite flatbuffer (magic
  plus the LiteRT flatbuffer verifier, which catches truncation)."""
  if len(data) < 8:
    raise ModelError(name, f"{len(data)} bytes is too short for a .tflite")
  if data[4:8] != b"TFL3":
    raise ModelError(name, "not a TFLite flatbuffer (no TFL3 identifier)")
  try:
    with quiet_native_logs():
      Interpreter(model_content=bytes(data))
  except (ValueError, RuntimeError) as e:
    raise ModelError(name, f"corrupt or truncated model ({e})") from None
  return data


def read_tflite(path: str) -> bytes:
  """The bytes of a .tflite file, verified."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ModelError(path, f"cannot read ({e.strerror})") from None
  return verify(data, path)


def model_t(data: bytes) -> "schema.ModelT":
  """The whole flatbuffer as mutable Python objects (schema ModelT)."""
  return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(bytearray(data), 0))


def pack(model: "schema.ModelT") -> bytes:
  """ModelT -> .tflite bytes."""
  import flatbuffers
  b = flatbuffers.Builder(1024)
  b.Finish(model.Pack(b), file_identifier=b"TFL3")
  return bytes(b.Output())


def op_name(model: "schema.ModelT", opcode_index: int) -> str:
  oc = model.operatorCodes[opcode_index]
  code = max(oc.builtinCode, oc.deprecatedBuiltinCode)
  if code == schema.BuiltinOperator.CUSTOM:
    return f"CUSTOM:{oc.customCode.decode() if oc.customCode else '?'}"
  return _OP_NAMES.get(code, str(code))


def op_names(data: bytes) -> List[List[str]]:
  """Op names per subgraph, in execution order."""
  m = model_t(data)
  return [[op_name(m, o.opcodeIndex) for o in (sg.operators or [])]
          for sg in m.subgraphs]


def tensor_qparams(tensor) -> Optional[QParams]:
  """Per-tensor qparams of a schema TensorT (None if float/per-channel)."""
  q = tensor.quantization
  if q is None or q.scale is None or len(q.scale) != 1:
    return None
  return QParams(float(q.scale[0]), int(q.zeroPoint[0]))


def _info(name: str, t) -> TensorInfo:
  shape = t.shapeSignature if t.shapeSignature is not None else t.shape
  return TensorInfo(name, tuple(int(d) for d in (shape if shape is not None
                                                 else [])),
                    TYPE_NAMES.get(t.type, str(t.type)), tensor_qparams(t))


def signature_io(data: bytes) -> Dict[str, Dict[str, object]]:
  """{signature: {subgraph, inputs, outputs}} with inputs/outputs as
  TensorInfo lists in *subgraph* order (index-based runtimes like TFLM)."""
  m = model_t(data)
  res = {}
  for sd in m.signatureDefs or []:
    sg = m.subgraphs[sd.subgraphIndex]
    names_in = {t.tensorIndex: t.name.decode() for t in sd.inputs}
    names_out = {t.tensorIndex: t.name.decode() for t in sd.outputs}
    res[sd.signatureKey.decode()] = {
        "subgraph": sd.subgraphIndex,
        "inputs": [_info(names_in[int(i)], sg.tensors[i]) for i in sg.inputs],
        "outputs": [_info(names_out[int(i)], sg.tensors[i]) for i in sg.outputs],
    }
  return res


def io_spec(data: bytes) -> Dict[str, dict]:
  """Signature inputs/outputs as JSON-able dicts (for the sidecar)."""
  return {k: {"inputs": {t.name: t.to_dict() for t in v["inputs"]},
              "outputs": {t.name: t.to_dict() for t in v["outputs"]}}
          for k, v in signature_io(data).items()}


def find_sidecar(path: str, levels: int = 2) -> Optional[str]:
  """The nearest ``model.json`` in the file's folder or up to ``levels``
  folders above it that lists the file."""
  d = os.path.dirname(os.path.abspath(path))
  for _ in range(levels + 1):
    cand = os.path.join(d, SIDECAR)
    if os.path.exists(cand):
      with open(cand) as f:
        side = json.load(f)
      rel = os.path.relpath(os.path.abspath(path), d).replace(os.sep, "/")
      if rel in side.get("files", {}):
        return cand
    d = os.path.dirname(d)
  return None


def sidecar_entry(path: str, sidecar: str) -> dict:
  """The sidecar's ``files`` entry for ``path``."""
  with open(sidecar) as f:
    side = json.load(f)
  rel = os.path.relpath(os.path.abspath(path), os.path.dirname(
      os.path.abspath(sidecar))).replace(os.sep, "/")
  if rel not in side.get("files", {}):
    raise ModelError(path, f"not listed in {sidecar}")
  return side["files"][rel]


def check_against_sidecar(data: bytes, name: str, entry: Mapping) -> None:
  """Raises ModelError if checksum or any signature input shape/dtype
  differs from the sidecar entry."""
  if "sha256" in entry and entry["sha256"] != sha256(data):
    raise ModelError(name, "sha256 differs from model.json (file changed "
                     "or corrupted)")
  expected = entry.get("signatures", {})
  actual = signature_io(data)
  for key, spec in expected.items():
    if key not in actual:
      raise ModelError(name, f"signature {key!r} of model.json is missing "
                       f"(model has {sorted(actual)})")
    got = {t.name: t for t in actual[key]["inputs"]}
    for inp, want in spec.get("inputs", {}).items():
      if inp not in got:
        raise ModelError(name, f"{key}: input {inp!r} missing")
      if list(got[inp].shape) != list(want["shape"]):
        raise ModelError(name, f"{key}: input {inp!r} has shape "
                         f"{list(got[inp].shape)}, model.json says "
                         f"{list(want['shape'])}")
      if got[inp].dtype != want.get("dtype", got[inp].dtype):
        raise ModelError(name, f"{key}: input {inp!r} is {got[inp].dtype}, "
                         f"model.json says {want['dtype']}")


class Model:
  """A LiteRT interpreter with signature-name based I/O."""

  def __init__(self, data: bytes, name: str = "<bytes>", num_threads: int = 1,
               reference_kernels: bool = False):
    """``reference_kernels``: builtin kernels without the default XNNPACK
    delegate (bit-identical to TFLite Micro for int8; XNNPACK may differ
    by a few LSB)."""
    self.name = name
    self.data = verify(data, name)
    self.io = signature_io(data)
    if not self.io:
      raise ModelError(name, "model has no SignatureDef")
    resolver = (OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
                if reference_kernels else OpResolverType.AUTO)
    try:
      with quiet_native_logs():  # XNNPACK's "Created delegate" line
        self.interpreter = Interpreter(model_content=bytes(data),
                                       num_threads=num_threads,
                                       experimental_op_resolver_type=resolver)
        self.interpreter.allocate_tensors()
        self._runners = {k: self.interpreter.get_signature_runner(k)
                         for k in self.io}
    except (ValueError, RuntimeError) as e:
      raise ModelError(name, f"cannot build interpreter ({e})") from None

  @classmethod
  def from_file(cls, path: str, sidecar: Optional[str] = "auto",
                num_threads: int = 1, reference_kernels: bool = False
                ) -> "Model":
    """Loads ``path``; checks it against the sidecar (``auto``: nearest
    model.json listing the file; None: no check)."""
    data = read_tflite(path)
    if sidecar == "auto":
      sidecar = find_sidecar(path)
    if sidecar:
      check_against_sidecar(data, path, sidecar_entry(path, sidecar))
    return cls(data, path, num_threads, reference_kernels)

  @property
  def signatures(self) -> List[str]:
    return list(self.io)

  def inputs(self, signature: Optional[str] = None) -> List[TensorInfo]:
    return self.io[self._key(signature)]["inputs"]

  def outputs(self, signature: Optional[str] = None) -> List[TensorInfo]:
    return self.io[self._key(signature)]["outputs"]

  def _key(self, signature: Optional[str]) -> str:
    if signature is None:
      if len(self.io) != 1:
        raise ValueError(f"{self.name}: choose one of {self.signatures}")
      return next(iter(self.io))
    if signature not in self.io:
      raise KeyError(f"{self.name}: no signature {signature!r} "
                     f"(has {self.signatures})")
    return signature

  def feed(self, signature: Optional[str], inputs: Mapping[str, np.ndarray]
           ) -> Dict[str, np.ndarray]:
    """Inputs cast/quantised to the tensors' dtypes and checked for shape."""
    out = {}
    for t in self.inputs(signature):
      if t.name not in inputs:
        raise KeyError(f"{self.name}: missing input {t.name!r}")
      x = np.asarray(inputs[t.name])
      if x.shape != t.shape:
        x = x.reshape(t.shape) if x.size == int(np.prod(t.shape)) else x
      if x.shape != t.shape:
        raise ValueError(f"{self.name}: input {t.name!r} needs shape "
                         f"{t.shape}, got {x.shape}")
      if t.dtype == "int8" and x.dtype != np.int8:
        x = t.qparams.quantize(x)
      out[t.name] = x.astype(t.dtype)
    return out

  def run(self, signature: Optional[str] = None, raw: bool = False,
          **inputs: np.ndarray) -> Dict[str, np.ndarray]:
    """Runs one signature; outputs by name (dequantised unless ``raw``)."""
    key = self._key(signature)
    # copies: the signatures of one interpreter share its tensor arena, so
    # an output may be overwritten by the next signature's run
    y = {n: np.array(v) for n, v in self._runners[key](**self.feed(key, inputs)).items()}
    if raw:
      return y
    qp = {t.name: t.qparams for t in self.outputs(key)}
    return {n: (qp[n].dequantize(v) if v.dtype == np.int8 and qp[n] else v)
            for n, v in y.items()}

  def __call__(self, *xs: np.ndarray, raw: bool = False) -> Dict[str, np.ndarray]:
    """Single-signature call with positional inputs (subgraph order)."""
    key = self._key(None)
    return self.run(key, raw=raw, **{t.name: x for t, x in
                                     zip(self.inputs(key), xs)})

  def latency_ms(self, signature: Optional[str] = None, runs: int = 50,
                 warmup: int = 5, **inputs: np.ndarray) -> float:
    """Median wall-clock ms of one invocation (inputs prepared outside the
    timed region)."""
    key = self._key(signature)
    runner, feed = self._runners[key], self.feed(key, inputs)
    return median_ms(lambda: runner(**feed), runs, warmup)


def median_ms(fn: Callable[[], object], runs: int = 50, warmup: int = 5) -> float:
  """Median wall-clock milliseconds of ``fn()`` after ``warmup`` calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(runs):
    t0 = time.perf_counter()
    fn()
    times.append((time.perf_counter() - t0) * 1e3)
  return float(statistics.median(times))


def run_batch(model: Model, signature: Optional[str], name: str,
              x: np.ndarray, raw: bool = False) -> Dict[str, np.ndarray]:
  """Runs a batch-1 signature over each row of ``x`` (input ``name``);
  outputs stacked on axis 0 (the batch-1 axis is dropped)."""
  outs: Dict[str, list] = {}
  for row in x:
    for k, v in model.run(signature, raw=raw, **{name: row[None]}).items():
      outs.setdefault(k, []).append(v[0])
  return {k: np.stack(v) for k, v in outs.items()}


def is_staged(model: Model) -> bool:
  """A staged phone model (``front_end``, ``stage_k``, ``full``)?"""
  return "front_end" in model.signatures and "full" in model.signatures


def exit_signatures(model: Model) -> List[str]:
  """``exit_1`` ... ``exit_K``: the exits a phone model offers."""
  if is_staged(model):
    names = [t.name for t in model.outputs("full")]
  else:
    names = list(model.signatures)
  return sorted((n for n in names if n.startswith("exit_")),
                key=lambda n: int(n.split("_")[1]))


class StagedRunner:
  """A staged phone model run as an app runs it: :meth:`features` once per
  window, then :meth:`stage` k = 1, 2, ... while the exits are not
  confident, stage k's int8 activations going unchanged into stage k+1.
  Signature runners without per-call checks: inputs must already have the
  signature's shape and dtype."""

  def __init__(self, model: Model):
    if not is_staged(model):
      raise ModelError(model.name, "not a staged phone model (front_end, "
                       "stage_k, full signatures)")
    self.model = model
    self.exits = exit_signatures(model)
    self._front_end = model._runners["front_end"]
    self._full = model._runners["full"]
    deepest = {t.name: t for t in model.outputs("full")}[self.exits[-1]]
    self._full_q = deepest.qparams if deepest.dtype == "int8" else None
    self._stages = []
    for k, e in enumerate(self.exits, start=1):
      sig = f"stage_{k}"
      outs = {t.name: t for t in model.outputs(sig)}
      nxt = f"block{k}_act" if f"block{k}_act" in outs else None
      q = outs[e].qparams if outs[e].dtype == "int8" else None
      self._stages.append((model._runners[sig], model.inputs(sig)[0].name,
                           e, q, nxt))

  def features(self, audio: np.ndarray) -> np.ndarray:
    """Float log-Mel features [1, frames, bins] of audio [1, samples]."""
    return self._front_end(audio=audio)["features"]

  def stage(self, k: int, x: np.ndarray
            ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(exit k's float probabilities [1, classes], stage k+1's input or
    None after the last stage) from stage k's input ``x``."""
    run, name, exit_name, q, nxt = self._stages[k - 1]
    out = run(**{name: x})
    p = out[exit_name]
    return (p if q is None else q.dequantize(p)), (out[nxt] if nxt else None)

  def full(self, audio: np.ndarray) -> np.ndarray:
    """The deepest exit's probabilities [1, classes] in one call."""
    p = self._full(audio=audio)[self.exits[-1]]
    return p if self._full_q is None else self._full_q.dequantize(p)


STREAM_SIGNATURES = ("frame_power", "log_mel")


def has_stream(model: Model) -> bool:
  """A staged phone model with the streaming front end's signatures?"""
  return is_staged(model) and all(s in model.signatures
                                  for s in STREAM_SIGNATURES)


class PhoneStream:
  """The phone model's front end fed as the audio arrives, as an app runs
  it (the phone's counterpart of the C ``nsl_fe_stream_*``): :meth:`push`
  any number of samples, repeatedly; each frame goes through the
  ``frame_power`` signature as soon as its last sample is in (the state is
  the window's Mel power and peak, not its audio); :meth:`features`, once
  the window is complete, applies the window's peak normalisation and the
  log (``log_mel``): bit for bit what ``front_end`` computes from the whole
  window. ``frame_step``: the sidecar's ``front_end.frame_step``."""

  def __init__(self, model: Model, frame_step: int):
    if not has_stream(model):
      raise ModelError(model.name, "no streaming front end (frame_power and "
                       "log_mel signatures); export it again")
    self._frame = model._runners["frame_power"]
    self._log = model._runners["log_mel"]
    self.frame_length = model.inputs("frame_power")[0].shape[-1]
    _, self.num_frames, bands = {t.name: t for t in model.inputs("log_mel")}[
        "mel_power"].shape
    self.clip_samples = model.inputs("front_end")[0].shape[-1]
    self.frame_step = int(frame_step)
    if (self.frame_step <= 0 or self.num_frames != 1 + (
        self.clip_samples - self.frame_length) // self.frame_step):
      raise ModelError(model.name, f"frame_step {frame_step} does not match "
                       f"the model's {self.num_frames} frames of "
                       f"{self.frame_length} samples in {self.clip_samples}")
    self._power = np.zeros((1, self.num_frames, bands), np.float32)
    self.reset()

  @property
  def state_bytes(self) -> int:
    """What the stream holds between pushes: the window's Mel power and
    at most one frame of samples."""
    return self._power.nbytes + 4 * self.frame_length

  def reset(self) -> None:
    """Starts a new window."""
    self.samples = self.frames = 0
    self.peak = 0.0
    self._tail = np.zeros(0, np.float32)

  def push(self, samples: np.ndarray) -> int:
    """Adds samples (beyond the window's ``clip_samples`` ignored); returns
    the number of frames done."""
    x = np.asarray(samples, np.float32).ravel()[:self.clip_samples - self.samples]
    if x.size:
      self.peak = max(self.peak, float(np.abs(x).max()))
      self.samples += x.size
    tail = np.concatenate([self._tail, x]) if self._tail.size else x
    start, n = 0, self.frame_length
    while self.frames < self.num_frames and start + n <= tail.size:
      self._power[0, self.frames] = self._frame(
          frame=tail[None, start:start + n])["mel_power"][0]
      self.frames += 1
      start += self.frame_step
    self._tail = (tail[start:].copy() if self.frames < self.num_frames
                  else tail[:0])
    return self.frames

  def features(self) -> Optional[np.ndarray]:
    """The window's float log-Mel features [1, frames, bins] (None until
    ``clip_samples`` samples were pushed)."""
    if self.samples < self.clip_samples:
      return None
    return self._log(mel_power=self._power,
                     peak=np.array([[self.peak]], np.float32))["features"]


def staged_call(model: Model, audio: np.ndarray, k: int) -> Callable[[], None]:
  """One window of a staged phone model up to exit k as an app runs it
  (:class:`StagedRunner`; inputs prepared outside the returned call, for
  timing)."""
  chain = StagedRunner(model)
  a = np.asarray(audio, np.float32).reshape(1, -1)

  def call() -> None:
    x = chain.features(a)
    for j in range(1, k + 1):
      _, x = chain.stage(j, x)
  return call


def exit_latencies_ms(model: Model, audio: np.ndarray, runs: int = 50,
                      warmup: int = 5) -> Dict[str, float]:
  """Measured median ms of one window (audio in) stopping at each exit,
  ``exit_1`` ... ``exit_K``, and of the one-call ``full`` signature
  (staged phone models; the model's own thread count)."""
  if not is_staged(model):
    raise ModelError(model.name, "not a staged phone model (front_end, "
                     "stage_k, full signatures)")
  out = {e: median_ms(staged_call(model, audio, k), runs, warmup)
         for k, e in enumerate(exit_signatures(model), start=1)}
  out["full"] = model.latency_ms("full", runs, warmup,
                                 audio=np.asarray(audio, np.float32).reshape(1, -1))
  return out


def phone_exits(model: Model, audio: np.ndarray) -> Dict[str, np.ndarray]:
  """{exit: probabilities [N, classes]} of a phone model (staged: its
  ``full`` signature; older models: one signature per exit) on clips
  [N, clip_samples]."""
  if is_staged(model):
    return run_batch(model, "full", "audio", audio)
  return {e: run_batch(model, e, "audio", audio)[e]
          for e in exit_signatures(model)}
