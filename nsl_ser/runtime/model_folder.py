"""A model folder checked before any audio is read, or refused.

:func:`load` reads a phone ``.tflite`` and the ``model.json`` of its own
folder and checks that they belong together and that every number is
usable: the model's sha256 and size are the sidecar's; the labels are
unique names, as many as every exit's outputs (and ``labels.txt``, when
present, says the same); the front end is consistent (sample rate, window
and frames) and matches the model's input; temperatures are finite and
> 0; reference statistics and the functionals head are finite, with
variances > 0 and counts >= 1. Every failure raises
:class:`ModelFolderError`: one line naming the file and the reason.

A ``.tflite`` without a ``model.json`` is refused unless ``allow_bare``:
it then runs without the functionals head, temperatures and reference
statistics, with labels from a ``labels.txt`` beside it, and
:attr:`ModelFolder.lacks` says so.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Dict, List, Optional

import numpy as np

from nsl_ser.audio import file_kind
from nsl_ser.front_end import FrontEndConfig
from nsl_ser.runtime import litert

SIDECAR = "model.json"
LABELS_TXT = "labels.txt"
MAX_TEXT_BYTES = 64 << 20  # a sidecar is ~0.1 MB; refuse to read a disk


class ModelFolderError(ValueError):
  """A model folder or calibration file that does not check out."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


@dataclasses.dataclass
class ModelFolder:
  """What :func:`load` checked: the model, its sidecar and what follows."""
  model_path: str
  model: "litert.Model"
  sidecar_path: Optional[str]
  sidecar: dict
  labels: List[str]
  front_end: FrontEndConfig
  temperature: Dict[str, float]
  lacks: List[str]


def read_text(path: str) -> str:
  """A small regular file's text, or ModelFolderError naming why not."""
  kind = file_kind(path)
  if kind is not None:
    raise ModelFolderError(path, f"is {kind}" if kind != "missing" else "missing")
  if os.path.getsize(path) > MAX_TEXT_BYTES:
    raise ModelFolderError(path, f"larger than {MAX_TEXT_BYTES >> 20} MB")
  try:
    with open(path, encoding="utf-8") as f:
      return f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ModelFolderError(path, f"cannot read ({e})") from None


def read_json(path: str) -> dict:
  """A JSON object, or ModelFolderError naming the file and the line."""
  try:
    d = json.loads(read_text(path))
  except json.JSONDecodeError as e:
    raise ModelFolderError(path, f"not valid JSON ({e.msg} at line {e.lineno})"
                           ) from None
  if not isinstance(d, dict):
    raise ModelFolderError(path, f"not a JSON object (a {type(d).__name__})")
  return d


def finite_array(path: str, what: str, value, positive: bool = False,
                 length: Optional[int] = None) -> np.ndarray:
  """``value`` as a finite float array (``positive``: every entry > 0;
  ``length``: 1-D of that length), or ModelFolderError."""
  try:
    a = np.asarray(value, np.float64)
  except (TypeError, ValueError):
    raise ModelFolderError(path, f"{what} is not numbers") from None
  if a.size == 0:
    raise ModelFolderError(path, f"{what} is empty")
  if not np.all(np.isfinite(a)):
    raise ModelFolderError(path, f"{what} has NaN or infinite values")
  if positive and not np.all(a > 0):
    raise ModelFolderError(path, f"{what} must be > 0 (min {a.min():g})")
  if length is not None and a.shape != (length,):
    raise ModelFolderError(path, f"{what} has shape {list(a.shape)}, "
                           f"expected [{length}]")
  return a


def check_stats(path: str, what: str, d, length: Optional[int]) -> None:
  """``{count, mean, var}``: count >= 1, finite mean, finite var > 0."""
  if not isinstance(d, dict) or not {"count", "mean", "var"} <= set(d):
    raise ModelFolderError(path, f"{what} needs count, mean and var")
  c = d["count"]
  if isinstance(c, bool) or not isinstance(c, (int, float)) or not (
      math.isfinite(c) and c >= 1):
    raise ModelFolderError(path, f"{what}.count must be a number >= 1 "
                           f"(got {c!r})")
  mean = finite_array(path, f"{what}.mean", d["mean"], length=length)
  finite_array(path, f"{what}.var", d["var"], positive=True, length=len(mean))


def check_front_end(path: str, d) -> FrontEndConfig:
  if not isinstance(d, dict):
    raise ModelFolderError(path, "front_end is missing or not an object")
  try:
    fe = FrontEndConfig.from_dict(d)
  except TypeError as e:
    raise ModelFolderError(path, f"front_end: {e}") from None
  numbers = {k: getattr(fe, k) for k in ("sample_rate", "clip_seconds",
                                         "window_ms", "hop_ms", "fft_length",
                                         "num_mel_bins", "log_floor")}
  for k, v in numbers.items():
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (
        math.isfinite(v) and v > 0):
      raise ModelFolderError(path, f"front_end.{k} must be a number > 0 "
                             f"(got {v!r})")
  if not 0 <= fe.lower_hz < fe.upper_hz <= fe.sample_rate / 2:
    raise ModelFolderError(path, f"front_end: Mel range {fe.lower_hz}-"
                           f"{fe.upper_hz} Hz does not fit {fe.sample_rate} Hz")
  if not 0 < fe.frame_step <= fe.frame_length <= min(fe.fft_length,
                                                     fe.clip_samples):
    raise ModelFolderError(path, "front_end: window, hop, FFT and clip "
                           "lengths are inconsistent")
  return fe


def _labels_txt(folder: str) -> Optional[List[str]]:
  """labels.txt beside the model (None: absent); must be a regular file
  inside the folder (a link out of it is refused)."""
  p = os.path.join(folder, LABELS_TXT)
  if not os.path.lexists(p):
    return None
  real_folder = os.path.realpath(folder)
  if os.path.dirname(os.path.realpath(p)) != real_folder:
    raise ModelFolderError(p, "links outside the model folder")
  return read_text(p).split()


def check_labels(path: str, labels) -> List[str]:
  if (not isinstance(labels, list) or not labels
      or not all(isinstance(l, str) and l.strip() and len(l) <= 64
                 for l in labels)):
    raise ModelFolderError(path, "labels must be a non-empty list of names")
  if len(set(labels)) != len(labels):
    raise ModelFolderError(path, "labels has duplicates")
  return list(labels)


def _read_model(path: str) -> bytes:
  kind = file_kind(path)
  if kind is not None:
    raise ModelFolderError(path, f"is {kind}" if kind != "missing"
                           else "no such model file")
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise ModelFolderError(path, f"cannot read ({e.strerror})") from None


def _model(path: str, data: bytes) -> "litert.Model":
  try:
    return litert.Model(data, path)
  except litert.ModelError as e:
    raise ModelFolderError(path, e.reason) from None


def load(path: str, allow_bare: bool = False) -> ModelFolder:
  """The checked folder of the phone model ``path`` (see the module doc)."""
  folder = os.path.dirname(os.path.abspath(path))
  side_path = os.path.join(folder, SIDECAR)
  if not path.endswith(".tflite"):
    raise ModelFolderError(path, "not a .tflite model")
  if not os.path.lexists(side_path):
    if not allow_bare:
      raise ModelFolderError(path, f"no {SIDECAR} beside it (a bare .tflite "
                             "runs only with --allow_bare_model)")
    model = _model(path, _read_model(path))
    labels = _labels_txt(folder)
    if labels is None:
      raise ModelFolderError(path, f"bare model without {LABELS_TXT} beside it")
    labels = check_labels(os.path.join(folder, LABELS_TXT), labels)
    _check_outputs(path, model, labels)
    return ModelFolder(path, model, None, {}, labels, FrontEndConfig(), {},
                       ["functionals head", "temperatures",
                        "reference statistics (no speaker calibration)",
                        "front-end settings (defaults assumed)"])
  side = read_json(side_path)
  files = side.get("files")
  entry = files.get(os.path.basename(path)) if isinstance(files, dict) else None
  if not isinstance(entry, dict):
    raise ModelFolderError(side_path, f"does not list {os.path.basename(path)}"
                           " (files)")
  if not isinstance(entry.get("sha256"), str):
    raise ModelFolderError(side_path, f"files.{os.path.basename(path)} has no "
                           "sha256")
  data = _read_model(path)
  try:  # sha256 first: a truncated file is named as changed, not parsed
    litert.check_against_sidecar(data, path, entry)
  except litert.ModelError as e:
    raise ModelFolderError(path, e.reason) from None
  model = _model(path, data)
  labels = check_labels(side_path, side.get("labels"))
  txt = _labels_txt(folder)
  if txt is not None and txt != labels:
    raise ModelFolderError(os.path.join(folder, LABELS_TXT),
                           f"says {len(txt)} labels {txt[:8]}, {SIDECAR} "
                           f"{len(labels)} {labels[:8]}")
  _check_outputs(path, model, labels)
  fe = check_front_end(side_path, side.get("front_end"))
  for k in ("front_end", "full"):
    if k in model.signatures:
      shape = list(model.inputs(k)[0].shape)
      if shape != [1, fe.clip_samples]:
        raise ModelFolderError(path, f"signature {k} takes {shape}, "
                               f"{SIDECAR}'s front end {fe.clip_samples} "
                               "samples")
  temp = side.get("temperature", {})
  temp = temp.get("per_exit", {}) if isinstance(temp, dict) else None
  if not isinstance(temp, dict):
    raise ModelFolderError(side_path, "temperature.per_exit is not an object")
  exits = litert.exit_signatures(model)
  for k, t in temp.items():
    if k not in exits:
      raise ModelFolderError(side_path, f"temperature for unknown exit {k!r}")
    finite_array(side_path, f"temperature.per_exit.{k}", t, positive=True)
  ref = side.get("normalization", {}).get("reference") \
      if isinstance(side.get("normalization"), dict) else None
  if ref is not None:
    check_stats(side_path, "normalization.reference", ref, fe.num_mel_bins)
  head = side.get("functionals_head")
  if head is not None:
    _check_head(side_path, head, len(labels))
  return ModelFolder(path, model, side_path, side, labels, fe,
                     {k: float(v) for k, v in temp.items()}, [])


def _check_outputs(path: str, model: "litert.Model", labels: List[str]) -> None:
  """Every exit outputs one probability per label."""
  staged = litert.is_staged(model)
  exits = litert.exit_signatures(model)
  if not exits:
    raise ModelFolderError(path, "no exit_k outputs or signatures")
  for sig in (["full"] if staged else exits):
    for o in model.outputs(sig):
      if staged and not o.name.startswith("exit_"):
        continue
      if not o.shape or o.shape[-1] != len(labels):
        raise ModelFolderError(path, f"{o.name if staged else sig} outputs "
                               f"{o.shape[-1] if o.shape else 0} classes, "
                               f"the labels are {len(labels)}")


def _check_head(path: str, head, num_labels: int) -> None:
  if not isinstance(head, dict) or not {"coef", "intercept", "reference",
                                        "hop_s"} <= set(head):
    raise ModelFolderError(path, "functionals_head needs coef, intercept, "
                           "reference and hop_s")
  coef = finite_array(path, "functionals_head.coef", head["coef"])
  finite_array(path, "functionals_head.intercept", head["intercept"],
               length=num_labels)
  if coef.ndim != 2 or coef.shape[0] != num_labels:
    raise ModelFolderError(path, f"functionals_head.coef has shape "
                           f"{list(coef.shape)}, expected [{num_labels}, n]")
  check_stats(path, "functionals_head.reference", head["reference"],
              coef.shape[1])
  finite_array(path, "functionals_head.hop_s", head["hop_s"], positive=True)
