"""A speaker's calibration statistics from unlabelled recordings.

``nsl-ser calibrate PATH... --out=speaker.json`` and ``nsl-ser predict
--calibrate=PATH|self`` use these: every file is cut into the windows
``predict`` classifies (a clip up to ``clip_seconds`` is one window,
unpadded), each window goes through the front end, and the speech frames of all of them
(:func:`nsl_ser.normalization.speech_frames`) are accumulated with the
running update a device uses (:meth:`BandStats.add_clip`). Labels are never
needed. The statistics then map that speaker's features onto the model's
reference statistics (:func:`nsl_ser.normalization.calibrate`).
"""
from __future__ import annotations

import json
from typing import List, Sequence, Tuple

import numpy as np

from nsl_ser import audio, normalization
from nsl_ser.features import FrontEndConfig, LogMel
from nsl_ser.predict import window_starts
from nsl_ser.prepare import atomic_write_text

FORMAT = "nsl-ser-calibration/1"


class CalibrationError(ValueError):
  """No usable statistics (names the paths and why)."""


def speaker_stats(paths: Sequence[str], front_end: FrontEndConfig = FrontEndConfig(),
                  hop_seconds: float = 1.5
                  ) -> Tuple[normalization.SpeakerStats, List[str], List[Tuple[str, str]]]:
  """(statistics, files used, skipped [(file, reason)]) of ``paths``
  (files; see :func:`nsl_ser.predict.expand_paths` for folders): the
  speech frames' per-band statistics and those of each utterance's
  functionals (:mod:`nsl_ser.functionals`: a file, or its chunks when
  longer than ``functionals.UTTERANCE_S``).

  Raises CalibrationError when no file is usable.
  """
  from nsl_ser import functionals
  layer = LogMel(front_end)
  stats = normalization.BandStats.empty(front_end.num_mel_bins)
  fstats = normalization.BandStats.empty(
      functionals.num_functionals(front_end.num_mel_bins))
  hop_s = front_end.hop_ms / 1000.0
  used, skipped = [], []
  hop = int(round(hop_seconds * front_end.sample_rate))
  for path in paths:
    try:
      x = audio.load_audio(path, front_end.sample_rate)
    except audio.AudioError as e:
      skipped.append((path, e.reason))
      continue
    for s in window_starts(len(x), front_end.clip_samples, hop):
      w = x[s:s + front_end.clip_samples]  # a short clip: itself, unpadded
      if len(w) >= front_end.frame_length:
        stats = stats.add_clip(layer(w[None].astype(np.float32))[0].numpy())
    if len(x) >= front_end.frame_length:  # the head describes utterances
      whole = layer(x[None].astype(np.float32))[0].numpy()
      fstats = fstats.update(functionals.of_utterances(whole, hop_s)[1])
    used.append(path)
  if not used:
    why = "; ".join(f"{p}: {r}" for p, r in skipped[:5]) or "no audio files"
    raise CalibrationError(f"no usable clip to calibrate with ({why})")
  return (normalization.SpeakerStats(stats.count, stats.mean, stats.m2,
                                     fstats if fstats.count else None),
          used, skipped)


def save(path: str, stats: normalization.SpeakerStats, front_end: FrontEndConfig,
         files: Sequence[str], skipped: Sequence[Tuple[str, str]]) -> None:
  atomic_write_text(path, json.dumps({
      "format": FORMAT, **stats.to_dict(), "front_end": front_end.to_dict(),
      "files": list(files),
      "skipped": [{"file": f, "reason": r} for f, r in skipped]}, indent=1))


def load(path: str, front_end: FrontEndConfig = None) -> normalization.SpeakerStats:
  """Statistics saved by :func:`save`; checks the front end matches."""
  try:
    d = json.load(open(path))
  except (OSError, ValueError) as e:
    raise CalibrationError(f"{path}: not a calibration file ({e})") from None
  if d.get("format") != FORMAT:
    raise CalibrationError(f"{path}: not a calibration file (format "
                           f"{d.get('format')!r}, expected {FORMAT!r})")
  if front_end is not None and FrontEndConfig.from_dict(d["front_end"]) != front_end:
    raise CalibrationError(f"{path}: computed with another front end than "
                           "the model's; run nsl-ser calibrate again")
  return normalization.SpeakerStats.from_dict(d)
