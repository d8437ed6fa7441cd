"""Static Edge TPU compatibility check of a .tflite flatbuffer.

Mirrors the Edge TPU compiler's documented requirements
(https://coral.ai/docs/edgetpu/models-intro/): every tensor 8-bit
(constant int32 biases/shapes allowed), static shapes, parameters constant
at compile time, tensors at most 3-D (or only the innermost three dims
> 1), supported ops with their documented limitations. The compiler maps
ops to the Edge TPU until the first one it cannot map; that op and every
op after it run on the CPU, so all of them are reported.

:func:`check` returns a list of :class:`Problem` (empty: expected to map
fully). The real authority is ``edgetpu_compiler -s``; this check needs no
compiler (x86-64 Debian only) and runs in the tests.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional

import numpy as np

from nsl_ser.runtime import litert
from nsl_ser.runtime.litert import schema

DOCS_URL = "https://coral.ai/docs/edgetpu/models-intro/#supported-operations"
# The documented table (TFLite builtin names), checked against a copy of the
# coral.ai page; limitations are enforced in _limitations().
DOCUMENTED_OPS = frozenset({
    "LOGISTIC", "RELU", "RELU6", "RELU_N1_TO_1", "TANH", "ADD", "MAXIMUM",
    "MINIMUM", "MUL", "SUB", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D",
    "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "L2_NORMALIZATION", "MAX_POOL_2D",
    "MEAN", "PAD", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR",
    "SLICE", "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE",
})
# Added to the table for newer compilers/runtimes (v14+); not verified
# against the page here, so accepted only when strict=False.
NEWER_OPS = frozenset({
    "EXPAND_DIMS", "PACK", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN",
    "RSQRT", "SQUARED_DIFFERENCE", "SUM", "TRANSPOSE", "TRANSPOSE_CONV",
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
})
BOUNDARY_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})
_INT8 = {schema.TensorType.INT8, schema.TensorType.UINT8}
_PARAM_OPS = {"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}
_NO_FUSED_ACT = {"AVERAGE_POOL_2D", "MAX_POOL_2D", "CONCATENATION"}


@dataclasses.dataclass(frozen=True)
class Problem:
  """Why (part of) a model would not run on the Edge TPU.

  ``op_index``/``op`` are None for model-level problems. ``cpu_fallback``
  marks ops that are fine themselves but follow the first unmappable op.
  """
  subgraph: int
  signature: Optional[str]
  op_index: Optional[int]
  op: Optional[str]
  reason: str
  cpu_fallback: bool = False

  def __str__(self) -> str:
    where = f"[{self.signature or f'subgraph {self.subgraph}'}]"
    if self.op is None:
      return f"{where} {self.reason}"
    return f"{where} op #{self.op_index} {self.op}: {self.reason}"

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def _shape(t) -> List[int]:
  s = t.shapeSignature if t.shapeSignature is not None else t.shape
  return [int(d) for d in (s if s is not None else [])]


def _const(model, t) -> Optional[np.ndarray]:
  data = model.buffers[t.buffer].data
  if data is None or len(data) == 0:
    return None
  dt = {schema.TensorType.INT32: np.int32, schema.TensorType.INT64: np.int64,
        schema.TensorType.INT8: np.int8, schema.TensorType.UINT8: np.uint8,
        schema.TensorType.FLOAT32: np.float32}.get(t.type)
  return None if dt is None else np.frombuffer(bytes(data), dtype=dt)


def _is_const(model, t) -> bool:
  data = model.buffers[t.buffer].data
  return data is not None and len(data) > 0


def _non_unit(shape: List[int]) -> int:
  return sum(1 for d in shape if d != 1)


def _limitations(name: str, op, sg, model) -> List[str]:
  """Documented per-op limitations that the flatbuffer shows."""
  ins = [sg.tensors[j] for j in op.inputs if j >= 0]
  outs = [sg.tensors[j] for j in op.outputs if j >= 0]
  opts, why = op.builtinOptions, []
  if name in _NO_FUSED_ACT and getattr(opts, "fusedActivationFunction", 0):
    why.append("fused activation function not supported")
  if name in _PARAM_OPS:
    for t in ins[1:]:
      if not _is_const(model, t):
        why.append(f"parameter {t.name.decode()} is not a compile-time constant")
  if name == "FULLY_CONNECTED":
    if getattr(opts, "weightsFormat", 0):
      why.append("only the default weights format is supported")
    if outs and _non_unit(_shape(outs[0])) > 1:
      why.append(f"output {_shape(outs[0])} is not one-dimensional")
  if name == "SOFTMAX" and ins:
    s = _shape(ins[0])
    if _non_unit(s) > 1:
      why.append(f"input {s} is not one-dimensional")
    if int(np.prod(s)) > 16000:
      why.append(f"{int(np.prod(s))} elements > 16,000")
  if name == "MEAN" and len(ins) > 1:
    rank, axes = len(_shape(ins[0])), _const(model, ins[1])
    yx = {rank - 3, rank - 2}
    if axes is None or not {int(a) % rank for a in axes} <= yx:
      why.append(f"reduces axes {None if axes is None else axes.tolist()}; "
                 "only x/y supported")
  if name == "PAD" and len(ins) > 1:
    pads = _const(model, ins[1])
    rank = len(_shape(ins[0]))
    if pads is None:
      why.append("paddings are not constant")
    else:
      pads = pads.reshape(rank, 2)
      other = [i for i in range(rank) if i not in (rank - 3, rank - 2)]
      if np.any(pads[other] != 0):
        why.append("pads dims other than x/y")
  if name == "STRIDED_SLICE":
    strides = _const(model, ins[3]) if len(ins) > 3 else None
    if strides is None or np.any(strides != 1):
      why.append("strides must all be 1")
    if getattr(opts, "ellipsisMask", 0) or getattr(opts, "newAxisMask", 0):
      why.append("ellipsis/new-axis masks not supported")
  if name == "CONCATENATION":
    consts = [t for t in ins if _const(model, t) is not None]
    if consts and (len(ins) != 2 or any(np.any(_const(model, t) != 0)
                                         for t in consts)):
      why.append("constant inputs must be one all-zero tensor of two inputs")
  if name == "SQUEEZE" and ins:
    s = _shape(ins[0])
    first = next((i for i, d in enumerate(s) if d != 1), len(s))
    if any(d == 1 for d in s[first:]):
      why.append(f"squeezes inner unit dims of {s} (needs relayout)")
  return why


def _tensor_problems(t, model) -> List[str]:
  why, shape = [], _shape(t)
  is_const = _is_const(model, t)
  if t.type not in _INT8 and not (is_const and t.type == schema.TensorType.INT32):
    why.append(f"tensor {t.name.decode()} is "
               f"{litert.TYPE_NAMES.get(t.type, t.type)} (needs 8-bit)")
  if any(d < 0 for d in shape):
    why.append(f"tensor {t.name.decode()} has dynamic shape {shape}")
  if not is_const and len(shape) > 3 and any(d != 1 for d in shape[:-3]):
    why.append(f"tensor {t.name.decode()} {shape}: more than 3 dims > 1")
  return why


def check(data: bytes, strict: bool = False) -> List[Problem]:
  """Problems keeping ops of ``data`` off the Edge TPU ([] = maps fully).

  Per subgraph, in execution order: the first op that fails a requirement
  gets the reasons, every later op is reported as CPU fallback. Graph-edge
  QUANTIZE/DEQUANTIZE (float interface) stay on the CPU without splitting
  the graph and are not problems. ``strict``: ops from the newer, unverified
  part of the supported list count as unsupported.
  """
  m = litert.model_t(data)
  supported = DOCUMENTED_OPS if strict else DOCUMENTED_OPS | NEWER_OPS
  sig_of = {sd.subgraphIndex: sd.signatureKey.decode()
            for sd in (m.signatureDefs or [])}
  problems: List[Problem] = []
  if len(m.subgraphs) > 1:
    problems.append(Problem(0, None, None, None,
                            f"{len(m.subgraphs)} subgraphs/signatures: the "
                            "compiler maps one graph; export one signature"))
  for sgi, sg in enumerate(m.subgraphs):
    sig = sig_of.get(sgi)
    gin, gout = set(sg.inputs), set(sg.outputs)
    first: Optional[int] = None
    for i, op in enumerate(sg.operators or []):
      name = litert.op_name(m, op.opcodeIndex)
      ins = {j for j in op.inputs if j >= 0}
      outs = {j for j in op.outputs if j >= 0}
      if first is None and ((name == "QUANTIZE" and ins <= gin) or
                            (name == "DEQUANTIZE" and outs <= gout)):
        continue
      why = [] if name in supported else ["operation not supported"]
      for j in sorted(ins | outs):
        why += _tensor_problems(sg.tensors[j], m)
      if name in supported:
        why += _limitations(name, op, sg, m)
      why = list(dict.fromkeys(why))
      if first is None and why:
        first = i
        problems.append(Problem(sgi, sig, i, name, "; ".join(why)))
      elif first is not None:
        problems.append(Problem(sgi, sig, i, name,
                                f"runs on CPU after op #{first}"
                                + (f" ({'; '.join(why)})" if why else ""), True))
  return problems


def report(data: bytes, problems: Optional[List[Problem]] = None) -> Dict:
  """JSON-able compatibility report: ops per signature with where they
  would run, the problems, and the supported-op sources."""
  problems = check(data) if problems is None else problems
  bad = {(p.subgraph, p.op_index) for p in problems if p.op is not None}
  m = litert.model_t(data)
  sig_of = {sd.subgraphIndex: sd.signatureKey.decode()
            for sd in (m.signatureDefs or [])}
  graphs = []
  for sgi, sg in enumerate(m.subgraphs):
    ops = [litert.op_name(m, o.opcodeIndex) for o in (sg.operators or [])]
    graphs.append({
        "signature": sig_of.get(sgi), "subgraph": sgi,
        "ops": [{"index": i, "op": n,
                 "runs_on": "cpu" if (sgi, i) in bad else "edgetpu",
                 **({"unverified_support": True} if n in NEWER_OPS else {})}
                for i, n in enumerate(ops)]})
  return {
      "maps_fully": not problems,
      "problems": [p.to_dict() for p in problems],
      "problem_text": [str(p) for p in problems],
      "graphs": graphs,
      "requirements": DOCS_URL,
      "note": ("Static check against the documented requirements; confirm "
               "with `edgetpu_compiler -s model_int8.tflite`."),
  }
