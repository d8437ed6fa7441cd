"""The exporter's microcontroller step: int8 stage models (TFLite Micro),
their C arrays and measured arenas, and the C99 front end that feeds stage 1."""
from __future__ import annotations

import numpy as np

from typing import Optional, Sequence

from nsl_ser import functionals
from nsl_ser.export import micro, micro_front_end, micro_functionals
from nsl_ser.runtime import litert
from nsl_ser.compat import keras
from nsl_ser.export.contract import MICRO_USAGE
from nsl_ser.export.files import Writer
from nsl_ser.features import FrontEndConfig


def write_micro(w: Writer, model: keras.Model, cal_feats: np.ndarray,
                front_end: FrontEndConfig, qat: bool = False,
                functionals_head: Optional[dict] = None,
                temperatures: Sequence[float] = ()) -> dict:
  """``micro/stage_k_int8.tflite`` + ``micro/stage_k/model_data.{cc,h}``
  for every stage, and ``micro/front_end/`` (with the functionals head's
  C sources when the model has one, and the per-exit ``temperatures``
  its ``nsl_fx_fuse_exit`` applies); returns the sidecar's ``micro``
  entry. ``qat``: the model is a QAT copy whose stage boundaries carry
  trained ranges."""
  stages = micro.build_stages(model, cal_feats, pin_boundaries=qat)
  bounds = micro.check_boundaries(stages)
  if not all(b["equal"] for b in bounds):
    raise RuntimeError(f"stage boundaries disagree on qparams: {bounds}")
  qp = micro.stage_input_qparams(stages[0])
  x = qp.quantize(cal_feats[:1])
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
  for name, text in micro_front_end.sources(front_end, qp.scale,
                                            qp.zero_point).items():
    w.add(f"micro/front_end/{name}", text.encode(), target="mcu")
  if functionals_head:
    head = functionals.LinearHead.from_dict(functionals_head)
    for name, text in micro_functionals.sources(head, front_end,
                                                temperatures).items():
      w.add(f"micro/front_end/{name}", text.encode(), target="mcu")
  return {"stages": len(stages), "boundaries": bounds, "arena_bytes": arenas,
          "front_end": "micro/front_end (C99: nsl_ser.export.micro_front_end)",
          "usage": MICRO_USAGE}
