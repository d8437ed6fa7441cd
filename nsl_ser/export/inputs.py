"""Clips for calibration and evaluation: prepared records -> fixed-length
audio and its log-Mel features."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from nsl_ser import data, records
from nsl_ser.compat import tf
from nsl_ser.features import FrontEndConfig, LogMel


def load_audio(records_dir: str, labels: Sequence[str],
               speakers: Optional[Sequence[str]] = None,
               front_end: FrontEndConfig = FrontEndConfig()
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(audio [N, clip_samples], label indices, ids) of a prepared corpus,
  restricted to ``speakers`` and to utterances whose label is in
  ``labels``, sorted by id; clips are centre-cropped / zero-padded like
  training (:func:`nsl_ser.data.utterance_dataset`)."""
  audio, y, ids = [], [], []
  for ex in data.utterance_dataset(records.list_shards(records_dir), labels,
                                   speakers, front_end=front_end,
                                   waveform=True).batch(256):
    audio.append(ex[data.AUDIO].numpy())
    y.append(ex["label"].numpy())
    ids.append(ex["id"].numpy().astype(str))
  if not audio:
    raise ValueError(f"{records_dir}: no utterances for speakers {speakers}")
  ids = np.concatenate(ids)
  order = np.argsort(ids)
  return (np.concatenate(audio)[order].astype(np.float32),
          np.concatenate(y)[order], ids[order])


def features_of(audio: np.ndarray, front_end: FrontEndConfig = FrontEndConfig(),
                batch: int = 64) -> np.ndarray:
  """Log-Mel features [N, frames, bands] of fixed-length clips."""
  layer = LogMel(front_end)
  return np.concatenate([layer(tf.constant(audio[i:i + batch])).numpy()
                         for i in range(0, len(audio), batch)])


