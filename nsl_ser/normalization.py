"""Per-band log-Mel statistics and the two normalisation regimes (pure numpy).

* ``global`` (speaker-independent): per-band mean/variance of the training
  data; what a device can apply to a stranger's first utterance. It lives
  inside the model (the ``norm`` layer).
* ``speaker`` (speaker-calibrated): each speaker's features are z-scored
  with the per-band mean/variance of that speaker's own *unlabelled* clips
  (test speakers included, never their labels), before the network.

Statistics are taken over the frames of whole, unpadded utterances
(:class:`BandStats`), and can be accumulated clip by clip (:meth:`update`),
so a device keeps ``count``, ``mean`` and ``m2`` (2 x bands floats + one
integer) and never stores audio.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

REGIMES = ("global", "speaker")
VAR_FLOOR = 1e-3


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
    other = BandStats.of(frames)
    n = self.count + other.count
    if other.count == 0:
      return self
    delta = other.mean - self.mean
    mean = self.mean + delta * other.count / n
    m2 = self.m2 + other.m2 + delta ** 2 * self.count * other.count / n
    return BandStats(n, mean, m2)

  @property
  def var(self) -> np.ndarray:
    return self.m2 / max(self.count, 1)

  def to_dict(self) -> dict:
    return {"count": int(self.count), "mean": self.mean.tolist(),
            "var": self.var.tolist()}


def stats_of(clips: Iterable[np.ndarray], bands: Optional[int] = None) -> BandStats:
  """Batch statistics over every frame of ``clips`` (each [frames, bands])."""
  clips = list(clips)
  if not clips:
    raise ValueError("no clips to compute statistics from")
  return BandStats.of(np.concatenate([np.asarray(c) for c in clips], axis=0))


def standardize(features: np.ndarray, mean: np.ndarray, var: np.ndarray
                ) -> np.ndarray:
  """(features - mean) / sqrt(max(var, floor)), per band (last axis)."""
  scale = 1.0 / np.sqrt(np.maximum(np.asarray(var, np.float64), VAR_FLOOR))
  return ((features - mean) * scale).astype(np.float32)


def speaker_stats(clips: Sequence[np.ndarray], speakers: Sequence[str]
                  ) -> Dict[str, BandStats]:
  """{speaker: statistics over all frames of that speaker's clips}."""
  out: Dict[str, List[np.ndarray]] = {}
  for c, s in zip(clips, speakers):
    out.setdefault(str(s), []).append(c)
  return {s: stats_of(v) for s, v in out.items()}


def standardize_by_speaker(features: np.ndarray, speakers: Sequence[str],
                           stats: Mapping[str, BandStats]) -> np.ndarray:
  """Each row of ``features`` ([N, ..., bands]) z-scored with its speaker's
  statistics. A speaker without statistics is an error, not a fallback."""
  out = np.empty(features.shape, np.float32)
  speakers = np.asarray(speakers).astype(str)
  for s in np.unique(speakers):
    if s not in stats:
      raise KeyError(f"no calibration statistics for speaker {s!r}")
    idx = speakers == s
    out[idx] = standardize(features[idx], stats[s].mean, stats[s].var)
  return out
