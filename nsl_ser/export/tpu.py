"""The exporter's Edge TPU step: one full-int8, single-signature model for
``edgetpu_compiler`` and the offline compatibility report
(:mod:`nsl_ser.export.edgetpu`)."""
from __future__ import annotations

import json

import numpy as np

from nsl_ser.export import convert, edgetpu
from nsl_ser.runtime import litert
from nsl_ser.compat import keras
from nsl_ser.export.files import Writer


def write_edgetpu(w: Writer, model: keras.Model, cal_feats: np.ndarray) -> None:
  """``edgetpu/model_int8.tflite`` and ``edgetpu/compat_report.json``."""
  data = convert.convert_int8(convert.exits_model(model), cal_feats)
  problems = edgetpu.check(data)
  w.add("edgetpu/model_int8.tflite", data, target="edgetpu", weights="int8",
        input="features", signatures=litert.io_spec(data),
        edgetpu_problems=len(problems))
  w.add("edgetpu/compat_report.json",
        json.dumps(edgetpu.report(data, problems), indent=2).encode())
