"""The exporter: one trained Keras model -> every deployable file.

:func:`export_all` is the one orchestrator. In order it
  1. computes the calibration clips' features (:mod:`.inputs`);
  2. picks the model the int8 files come from, PTQ or QAT
     (:mod:`.quantize`, which calls :mod:`nsl_ser.export.qat`);
  3. writes the phone models, audio in (:mod:`.phone`), the
     microcontroller stages with their C front end (:mod:`.mcu`) and the
     Edge TPU model with its compatibility report (:mod:`.tpu`);
  4. writes ``labels.txt`` and the ``model.json`` sidecar (front end,
     labels, exits, I/O, MACs, checksums, arenas, normalisation, licence:
     :mod:`.contract`).

Every file goes through a temporary name (:mod:`.files`). Beside the steps
sit the building blocks they call: :mod:`.convert` (TFLite conversion),
:mod:`.qat`, :mod:`.micro` (TFLite Micro stages), :mod:`.micro_front_end`
and :mod:`.micro_functionals` (the C99 front end and head, from the
templates in ``nsl_ser/c/``) and :mod:`.edgetpu`; they import only each
other, never this package or its steps (tests/test_imports.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Optional, Sequence

import numpy as np

from nsl_ser import models
from nsl_ser.export import qat
from nsl_ser.compat import keras
from nsl_ser.export.convert import (calibration_subset, convert_float, convert_int8,
                                    exit_submodel, exits_model, output_names)
from nsl_ser.export.contract import (DEVICE_CONTRACT, FUSION_CONTRACT,
                                     LICENCE, SIDECAR, front_end_spec,
                                     norm_spec, normalization_of)
from nsl_ser.export.files import Writer, write_atomic
from nsl_ser.export.inputs import features_of, load_audio
from nsl_ser.export.mcu import write_micro
from nsl_ser.export.phone import (convert_phone, convert_staged_phone,
                                  quantize_front_end, write_phone)
from nsl_ser.export.quantize import MODES as QUANTIZATION_MODES
from nsl_ser.export.quantize import QATData, int8_source
from nsl_ser.export.tpu import write_edgetpu
from nsl_ser.features import FrontEndConfig


@dataclasses.dataclass
class ExportConfig:
  """What to write and how to quantise it."""
  front_end: FrontEndConfig = dataclasses.field(default_factory=FrontEndConfig)
  quantization: str = "ptq"   # QUANTIZATION_MODES: auto | ptq | qat
  qat: qat.QATConfig = dataclasses.field(default_factory=qat.QATConfig)
  # The int8 phone model's DFT: "fft" (RFFT2D: under 150 KB in all, and
  # as fast as "matmul" when streamed, whose work at a window's end has no
  # DFT) or "matmul" (folded int8 DFT weights, about 115 KB more: a
  # buffered window's front end about 5x faster; experiments/results/export.md).
  int8_dft: str = "fft"
  micro: bool = True
  edgetpu: bool = True


def export_all(model: keras.Model, out_dir: str, labels: Sequence[str],
               calibration_audio: np.ndarray,
               cfg: ExportConfig = ExportConfig(),
               qat_data: Optional[QATData] = None,
               qat_model: Optional[keras.Model] = None,
               provenance: Optional[dict] = None,
               normalization: Optional[dict] = None,
               calibration_features: Optional[np.ndarray] = None,
               functionals_head: Optional[dict] = None,
               temperature: Optional[dict] = None) -> dict:
  """Writes phone (float + int8), MCU stage and Edge TPU models, C arrays,
  the C front end, ``labels.txt``, ``edgetpu/compat_report.json`` and
  ``model.json`` under ``out_dir``; returns the sidecar dict.

  ``calibration_audio``: training-speaker clips [N, clip_samples] used for
  every post-training quantisation. ``qat_data``: where QAT trains and is
  compared (``cfg.quantization`` "qat" / "auto"); ``qat_model``: an already
  fine-tuned QAT copy to convert instead (skips step 2). The float phone
  model, MACs and parameters always come from ``model``.
  ``normalization``: the regime and training statistics
  (:func:`normalization_of`), recorded in the sidecar.
  ``calibration_features``: the clips' features if the caller has them.
  ``functionals_head``: :meth:`nsl_ser.functionals.LinearHead.to_dict` of
  the head trained with the model, recorded in the sidecar (``predict``
  fuses it with every exit). ``temperature``: ``{"per_exit": {exit: T},
  "fitted_on": ...}``, recorded in the sidecar (``predict`` applies it
  after the fusion) and in the C head (``nsl_fx_fuse_exit``).
  """
  names = output_names(model)
  classes = int(model.get_layer(names[-1]).output.shape[-1])
  if len(labels) != classes:
    raise ValueError(f"{len(labels)} labels for a model with {classes} classes")
  fe = cfg.front_end
  os.makedirs(out_dir, exist_ok=True)
  cal_feats = (features_of(calibration_audio, fe)
               if calibration_features is None else calibration_features)
  if qat_model is not None:
    q, quant = qat_model, {"method": "qat", "mode": "qat"}
  else:
    q, quant = int8_source(model, cfg.quantization, cal_feats, labels,
                           qat_data, cfg.qat)
  is_qat = quant["method"] == "qat"
  w = Writer(out_dir)
  write_phone(w, model, q, fe, calibration_audio, cfg.int8_dft)
  per_exit = (temperature or {}).get("per_exit", {})
  micro_info = (write_micro(w, q, cal_feats, fe, is_qat, functionals_head,
                            [float(per_exit.get(n, 1.0)) for n in names]
                            if per_exit else ())
                if cfg.micro else None)
  if cfg.edgetpu:
    write_edgetpu(w, q, cal_feats)
  w.add("labels.txt", "".join(l + "\n" for l in labels).encode())
  macs = (models.exit_macs(model) if models.exit_names(model)
          else [models.count_macs(model)])
  side = {
      "format": "nsl-ser-export/1",
      "model_name": model.name, "labels": list(labels), "exits": names,
      "exit_macs": dict(zip(names, macs)), "params": int(model.count_params()),
      "front_end": front_end_spec(fe),
      "device_contract": DEVICE_CONTRACT,
      "normalization": normalization or norm_spec(model),
      "calibration": {"clips": int(len(calibration_audio)), **(provenance or {})},
      "quantization": quant,
      "files": w.files, "licence": LICENCE,
  }
  if micro_info:
    side["micro"] = micro_info
  if functionals_head:
    side["functionals_head"] = {**functionals_head, "fusion": FUSION_CONTRACT}
  if temperature:
    side["temperature"] = temperature
  write_atomic(os.path.join(out_dir, SIDECAR), json.dumps(side, indent=2).encode())
  return side


__all__ = [
    "ExportConfig", "QATData", "QUANTIZATION_MODES", "SIDECAR", "LICENCE",
    "export_all", "load_audio", "features_of", "calibration_subset",
    "normalization_of", "norm_spec", "output_names", "exits_model",
    "exit_submodel", "convert_float", "convert_int8", "convert_phone",
    "convert_staged_phone", "quantize_front_end",
]
