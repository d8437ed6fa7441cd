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
from nsl_ser.front_end import FrontEndConfig, log_mel, window_starts
from nsl_ser.atomic import atomic_write_text

FORMAT = "nsl-ser-calibration/1"

# Few clips: the speaker's statistics are merged with PRIOR_CLIPS clips'
# worth of the model's reference (normalization.shrink), so one or two clips
# of one emotion cannot remove the emotion itself. 1 clip was chosen on the
# validation speakers (experiments/results/generalization.json:
# calibration_prior_clips; calibrated UAR 57.2 with 1 clip, 64.2 with 2,
# against 40.2 / 26.3 unshrunk and 47.3 independent). A clip's worth of
# band statistics is SPEECH_FRAMES_PER_CLIP speech frames (the default
# model's training clips: 1,145,699 reference frames over 5,084 clips); of
# the head's functionals, one utterance.
PRIOR_CLIPS = 1.0
SPEECH_FRAMES_PER_CLIP = 225
# Below this much speech `predict` and `calibrate` warn: the statistics then
# rest mostly on the prior (docs/calibration.md).
MIN_SPEECH_SECONDS = 10.0


class CalibrationError(ValueError):
  """No usable statistics (names the paths and why)."""


class CalibrationFileError(CalibrationError):
  """A calibration file that does not check out (names it and why)."""


def speaker_stats(paths: Sequence[str], front_end: FrontEndConfig = FrontEndConfig(),
                  hop_seconds: float = 1.5
                  ) -> Tuple[normalization.SpeakerStats, List[str], List[Tuple[str, str]]]:
  """(statistics, files used, skipped [(file, reason)]) of ``paths``
  (files; see :func:`nsl_ser.runtime.predictor.expand_paths` for folders): the
  speech frames' per-band statistics and those of each utterance's
  functionals (:mod:`nsl_ser.functionals`: a file, or its chunks when
  longer than ``functionals.UTTERANCE_S``).

  Raises CalibrationError when no file is usable.
  """
  from nsl_ser import functionals
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
        stats = stats.add_clip(log_mel(w, front_end))
    if len(x) >= front_end.frame_length:  # the head describes utterances
      whole = log_mel(x, front_end)
      fstats = fstats.update(functionals.of_utterances(whole, hop_s)[1])
    used.append(path)
  if not used:
    why = "; ".join(f"{p}: {r}" for p, r in skipped[:5]) or "no audio files"
    raise CalibrationError(f"no usable clip to calibrate with ({why})")
  return (normalization.SpeakerStats(stats.count, stats.mean, stats.m2,
                                     fstats if fstats.count else None),
          used, skipped)


def shrunk(stats: normalization.SpeakerStats, reference: normalization.BandStats,
           head_reference=None, prior_clips: float = PRIOR_CLIPS
           ) -> normalization.SpeakerStats:
  """``stats`` pulled toward the model's references by ``prior_clips``
  clips' worth (bands: SPEECH_FRAMES_PER_CLIP frames a clip; the head's
  functionals: one utterance a clip)."""
  b = normalization.shrink(stats, reference, prior_clips * SPEECH_FRAMES_PER_CLIP)
  f = getattr(stats, "functionals", None)
  if f is not None and head_reference is not None:
    f = normalization.shrink(f, head_reference, prior_clips)
  return normalization.SpeakerStats(b.count, b.mean, b.m2, f)


def speech_seconds(stats: normalization.BandStats, front_end: FrontEndConfig) -> float:
  """Seconds of speech the statistics rest on (speech frames x hop)."""
  return float(stats.count) * front_end.hop_ms / 1000.0


def summary_line(stats: normalization.BandStats, front_end: FrontEndConfig,
                 files: int, skipped: int) -> str:
  """'calibrated on N file(s), S s of speech (...)' with a warning below
  :data:`MIN_SPEECH_SECONDS`."""
  s = speech_seconds(stats, front_end)
  line = (f"calibrated on {files} file(s), {s:.1f} s of speech "
          f"({stats.count} frames)" + (f"; {skipped} skipped" if skipped else ""))
  if s < MIN_SPEECH_SECONDS:
    line += (f"; warning: under {MIN_SPEECH_SECONDS:.0f} s of speech, the "
             "statistics lean on the model's reference (a prior of "
             f"{PRIOR_CLIPS:g} clip); more clips calibrate better")
  return line


def save(path: str, stats: normalization.SpeakerStats, front_end: FrontEndConfig,
         files: Sequence[str], skipped: Sequence[Tuple[str, str]]) -> None:
  atomic_write_text(path, json.dumps({
      "format": FORMAT, **stats.to_dict(), "front_end": front_end.to_dict(),
      "files": list(files),
      "skipped": [{"file": f, "reason": r} for f, r in skipped]}, indent=1))


def load(path: str, front_end: FrontEndConfig = None) -> normalization.SpeakerStats:
  """Statistics saved by :func:`save`, checked: the format, the front end
  (``front_end``: must be the model's), counts >= 1, finite means,
  variances > 0, one value per Mel band. Raises CalibrationFileError (one
  line naming the file and the reason)."""
  from nsl_ser.runtime import model_folder as mf
  try:
    d = mf.read_json(path)
    if d.get("format") != FORMAT:
      raise mf.ModelFolderError(path, f"not a calibration file (format "
                                f"{d.get('format')!r}, expected {FORMAT!r})")
    fe = mf.check_front_end(path, d.get("front_end"))
    if front_end is not None and fe != front_end:
      raise mf.ModelFolderError(path, "computed with another front end than "
                                "the model's; run nsl-ser calibrate again")
    mf.check_stats(path, "the statistics", d, fe.num_mel_bins)
    if d.get("functionals") is not None:
      mf.check_stats(path, "functionals", d["functionals"], None)
  except mf.ModelFolderError as e:
    raise CalibrationFileError(str(e)) from None
  return normalization.SpeakerStats.from_dict(d)
