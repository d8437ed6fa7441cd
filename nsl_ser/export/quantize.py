"""The exporter's int8 step: which model the int8 files are converted from.

Post-training quantisation (PTQ) of the float model, or its
quantisation-aware-trained copy (:mod:`nsl_ser.export.qat`) fine-tuned on the
split's training speakers; ``auto`` keeps QAT only where it beats PTQ on the
validation speakers (never the test speakers).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional, Sequence, Tuple

import numpy as np

from nsl_ser import data, records, splits
from nsl_ser.export import qat
from nsl_ser.compat import keras

MODES = ("auto", "ptq", "qat")


@dataclasses.dataclass(frozen=True)
class QATData:
  """Where QAT fine-tunes (training speakers) and is compared with PTQ
  (validation speakers): a prepared corpus and its split fold."""
  records_dir: str
  corpus: str
  fold: int = 0


def _jsonable(x):
  return x.tolist() if hasattr(x, "tolist") else str(x)


def int8_source(model: keras.Model, mode: str, calibration_features: np.ndarray,
                labels: Sequence[str], qat_data: Optional[QATData] = None,
                cfg: qat.QATConfig = qat.QATConfig()
                ) -> Tuple[keras.Model, dict]:
  """(the model the int8 exports are converted from, the sidecar's
  ``quantization`` record).

  ``"ptq"``: ``model`` itself. ``"qat"``: the QAT copy, fine-tuned on
  ``qat_data``'s training speakers (epoch chosen on its validation
  speakers). ``"auto"``: the same copy, compared with PTQ as full-int8
  feature models on the validation speakers; used only when it wins
  (:func:`nsl_ser.export.qat.choose`). ``labels``: the export's classes.
  """
  if mode not in MODES:
    raise ValueError(f"quantization must be one of {MODES}, got {mode!r}")
  if mode == "ptq":
    return model, {"method": "ptq", "mode": mode}
  if qat_data is None:
    raise ValueError(f"quantization {mode!r} needs QATData (records and split)")
  split = splits.get_split(qat_data.corpus, qat_data.fold)
  arrays = data.load_arrays(records.list_shards(qat_data.records_dir), list(labels))
  tr, va = arrays.by_speakers(split.train), arrays.by_speakers(split.val)
  res = qat.compare(model, tr.features, tr.labels, va.features, va.labels,
                    va.features, va.labels, calibration_features, cfg)
  qat_model = res.pop("artifacts")["qat_model"]
  use = mode == "qat" or res["chosen"] == "qat"
  report = json.loads(json.dumps(
      {"method": "qat" if use else "ptq", "mode": mode,
       "compared_on": f"{qat_data.corpus} fold {qat_data.fold} validation speakers",
       **{k: res[k] for k in ("uar", "agreement", "bytes", "chosen")},
       "best_epoch": res["history"].get("best_epoch"), "config": res["config"]},
      default=_jsonable))
  return (qat_model if use else model), report

