"""Per-band log-Mel statistics and the two normalisation regimes (pure numpy).

* ``global`` (speaker-independent): per-band mean/variance of the training
  data; what a device can apply to a stranger's first utterance. It lives
  inside the model (the ``norm`` layer).
* ``speaker`` (speaker-calibrated): each speaker's features are mapped
  onto the training data's statistics (the *reference*) with the per-band
  mean/variance of that speaker's own *unlabelled* clips (test speakers
  included, never their labels), before the network:
  ``x' = ref_mean + ref_std * (x - spk_mean) / spk_std`` (:func:`calibrate`).
  The model's ``norm`` layer then z-scores with the reference, so it sees
  the speaker's z-scores; an uncalibrated speaker (``spk = ref``) is simply
  fed raw features, which is why one exported model serves both regimes.

Statistics are taken over the *speech* frames of whole, unpadded
utterances (:func:`speech_frames`: within ``SPEECH_TOP_DB`` of the clip's
loudest frame; RAVDESS clips are more than half digital silence, EmoDB's
are trimmed, and silence would otherwise dominate a speaker's statistics),
and can be accumulated clip by clip (:meth:`BandStats.add_clip`), so a
device keeps ``count``, ``mean`` and ``m2`` (2 x bands floats + one
integer) and never stores audio.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

REGIMES = ("global", "speaker")
VAR_FLOOR = 1e-3
SPEECH_TOP_DB = 40.0


def speech_frames(clip: np.ndarray, top_db: float = SPEECH_TOP_DB) -> np.ndarray:
  """The frames of a [frames, bands] log-Mel clip whose power (summed over
  bands) is within ``top_db`` dB of the clip's loudest frame."""
  clip = np.asarray(clip)
  x = clip.astype(np.float64)
  peak = x.max(axis=1, keepdims=True)
  db = (10.0 / np.log(10.0)) * (np.log(np.exp(x - peak).sum(axis=1)) + peak[:, 0])
  return clip[db >= db.max() - top_db]


@dataclasses.dataclass
class BandStats:
  """Running per-band mean and sum of squared deviations (Chan et al.)."""
  count: int
  mean: np.ndarray
  m2: np.ndarray

  @classmethod
  def empty(cls, bands: int) -> "BandStats":
    return cls(0, np.zeros(bands, np.float64), np.zeros(bands, np.float64))

  @classmethod
  def of(cls, frames: np.ndarray) -> "BandStats":
    """Statistics of a [frames, bands] block."""
    frames = np.asarray(frames, np.float64).reshape(-1, frames.shape[-1])
    mean = frames.mean(axis=0)
    return cls(frames.shape[0], mean, ((frames - mean) ** 2).sum(axis=0))

  def update(self, frames: np.ndarray) -> "BandStats":
    """These statistics merged with one more clip's [frames, bands]."""
    return self.merge(BandStats.of(frames))

  def merge(self, other: "BandStats") -> "BandStats":
    """The statistics of both sets of rows (Chan et al.'s pairwise
    update)."""
    n = self.count + other.count
    if other.count == 0:
      return self
    delta = other.mean - self.mean
    mean = self.mean + delta * other.count / n
    m2 = self.m2 + other.m2 + delta ** 2 * self.count * other.count / n
    return BandStats(n, mean, m2)

  def add_clip(self, clip: np.ndarray) -> "BandStats":
    """These statistics merged with one more clip's speech frames (what a
    device does after each utterance)."""
    return self.update(speech_frames(clip))

  @property
  def var(self) -> np.ndarray:
    return self.m2 / max(self.count, 1)

  def to_dict(self) -> dict:
    return {"count": int(self.count), "mean": self.mean.tolist(),
            "var": self.var.tolist()}

  @classmethod
  def from_dict(cls, d: Mapping) -> "BandStats":
    """Inverse of :meth:`to_dict` (``m2`` is rebuilt from ``var``)."""
    mean = np.asarray(d["mean"], np.float64)
    var = np.asarray(d["var"], np.float64)
    if mean.shape != var.shape or mean.ndim != 1:
      raise ValueError(f"mean {mean.shape} and var {var.shape} must be equal 1-D")
    return cls(int(d["count"]), mean, var * int(d["count"]))


@dataclasses.dataclass
class SpeakerStats(BandStats):
  """A speaker's calibration state: the statistics of its log-Mel bands
  (this :class:`BandStats`) and, for models with a functionals head
  (:mod:`nsl_ser.functionals`), those of its clips' functionals (one row a
  clip)."""
  functionals: Optional[BandStats] = None

  def to_dict(self) -> dict:
    d = super().to_dict()
    if self.functionals is not None:
      d["functionals"] = self.functionals.to_dict()
    return d

  @classmethod
  def from_dict(cls, d: Mapping) -> "SpeakerStats":
    b = BandStats.from_dict(d)
    f = d.get("functionals")
    return cls(b.count, b.mean, b.m2, BandStats.from_dict(f) if f else None)


def stats_of(clips: Iterable[np.ndarray]) -> BandStats:
  """Batch statistics over the speech frames of ``clips`` (each
  [frames, bands])."""
  clips = list(clips)
  if not clips:
    raise ValueError("no clips to compute statistics from")
  return BandStats.of(np.concatenate([speech_frames(c) for c in clips], axis=0))


def shrink(speaker: BandStats, reference: BandStats, prior: float) -> BandStats:
  """A speaker's statistics pulled toward the reference: merged with
  ``prior`` pseudo-rows of the reference's mean and variance. With few rows
  (a clip or two of one emotion) the result stays near the reference, so
  calibration cannot remove the emotion itself; with many rows the
  speaker's own statistics dominate. ``prior`` 0 returns ``speaker``."""
  if prior <= 0:
    return speaker
  return BandStats(speaker.count, speaker.mean, speaker.m2).merge(BandStats(
      prior, np.asarray(reference.mean, np.float64),
      np.asarray(reference.var, np.float64) * prior))


def affine(speaker: BandStats, reference: BandStats, floor: float = VAR_FLOOR):
  """(scale, shift) per band with ``calibrate(x) = x * scale + shift``: what
  a device applies between its front end and the model (variances floored
  at ``floor``)."""
  scale = np.sqrt(np.maximum(reference.var, floor)
                  / np.maximum(speaker.var, floor))
  return scale, reference.mean - speaker.mean * scale


def calibrate(features: np.ndarray, speaker: BandStats, reference: BandStats,
              floor: float = VAR_FLOOR) -> np.ndarray:
  """``features`` (last axis: bands) of one speaker mapped onto the
  reference statistics: ``ref_mean + ref_std * (x - spk_mean) / spk_std``."""
  scale, shift = affine(speaker, reference, floor)
  return (features * scale + shift).astype(np.float32)


def speaker_stats(clips: Sequence[np.ndarray], speakers: Sequence[str]
                  ) -> Dict[str, BandStats]:
  """{speaker: statistics over all frames of that speaker's clips}."""
  out: Dict[str, List[np.ndarray]] = {}
  for c, s in zip(clips, speakers):
    out.setdefault(str(s), []).append(c)
  return {s: stats_of(v) for s, v in out.items()}


def calibrate_by_speaker(features: np.ndarray, speakers: Sequence[str],
                         stats: Mapping[str, BandStats], reference: BandStats,
                         floor: float = VAR_FLOOR) -> np.ndarray:
  """Each row of ``features`` ([N, ..., bands]) calibrated with its
  speaker's statistics onto ``reference`` (:func:`calibrate`). A speaker
  without statistics is an error, not a fallback."""
  out = np.empty(features.shape, np.float32)
  speakers = np.asarray(speakers).astype(str)
  for s in np.unique(speakers):
    if s not in stats:
      raise KeyError(f"no calibration statistics for speaker {s!r}")
    idx = speakers == s
    out[idx] = calibrate(features[idx], stats[s], reference, floor)
  return out
