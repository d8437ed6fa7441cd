"""tf.data input pipelines from utterance TFRecords (schema: records.py).

Examples become ``({"features": log-Mel [frames, bands]}, label)`` with the
shared front end; labels are re-indexed by ``label_name`` into the label list
a model uses, so corpora can be restricted to shared classes. Packed NSL
records additionally give ``NL_nbr_<i>_features`` and ``NL_nbr_<i>_weight``;
neighbour labels are never read.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Optional, Sequence

import numpy as np

from nsl_ser import records
from nsl_ser.compat import nsl, tf
from nsl_ser.features import FrontEndConfig, LogMel, fix_length

FEATURES = "features"
AUDIO = "audio"


_NBR = nsl.configs.GraphNeighborConfig()  # NSL's prefix/suffix defaults


def nbr_feature_key(i: int, name: str = FEATURES) -> str:
  return f"{_NBR.prefix}{i}_{name}"


def nbr_weight_key(i: int) -> str:
  return f"{_NBR.prefix}{i}{_NBR.weight_suffix}"


def _label_table(label_names: Sequence[str]) -> tf.lookup.StaticHashTable:
  return tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
      tf.constant(list(label_names)), tf.range(len(label_names), dtype=tf.int64)),
      default_value=-1)


def _in(value: tf.Tensor, allowed: Optional[Iterable[str]]) -> tf.Tensor:
  if allowed is None:
    return tf.constant(True)
  return tf.reduce_any(tf.equal(value, tf.constant(sorted(allowed))))


def waveform_to_features(raw: tf.Tensor, front_end: FrontEndConfig) -> tf.Tensor:
  """int16 bytes -> fixed-length waveform -> log-Mel [frames, bands]."""
  w = fix_length(records.decode_waveform(raw), front_end.clip_samples)
  return LogMel(front_end)(w[tf.newaxis])[0]


def utterance_dataset(files: Sequence[str], label_names: Sequence[str],
                      speakers: Optional[Iterable[str]] = None,
                      ids: Optional[Iterable[str]] = None,
                      front_end: FrontEndConfig = FrontEndConfig(),
                      max_nbrs: int = 0,
                      waveform: bool = False) -> tf.data.Dataset:
  """Parsed examples as dicts: features, label, id, speaker (+ neighbours).

  Only examples whose speaker is in ``speakers``, whose id is in ``ids`` and
  whose ``label_name`` is in ``label_names`` are kept. ``waveform`` yields
  the fixed-length float waveform (``audio``) instead of ``features``.
  """
  spec = dict(records.UTTERANCE_FEATURES)
  for i in range(max_nbrs):
    spec[nbr_feature_key(i, "waveform")] = tf.io.FixedLenFeature(
        [], tf.string, default_value="")
    spec[nbr_weight_key(i)] = tf.io.FixedLenFeature([1], tf.float32,
                                                    default_value=[0.0])
  table = _label_table(label_names)
  speakers = None if speakers is None else list(speakers)
  ids = None if ids is None else list(ids)

  def parse(s):
    ex = tf.io.parse_single_example(s, spec)
    out = {"label": table.lookup(ex["label_name"]), "id": ex["id"],
           "speaker": ex["speaker"]}
    if waveform:
      out[AUDIO] = fix_length(records.decode_waveform(ex["waveform"]),
                              front_end.clip_samples)
    else:
      out[FEATURES] = waveform_to_features(ex["waveform"], front_end)
    for i in range(max_nbrs):
      out[nbr_feature_key(i)] = waveform_to_features(
          ex[nbr_feature_key(i, "waveform")], front_end)
      out[nbr_weight_key(i)] = ex[nbr_weight_key(i)]
    return out

  def keep(s):
    ex = tf.io.parse_single_example(s, {k: records.UTTERANCE_FEATURES[k] for k in
                                        ("speaker", "id", "label_name")})
    return (_in(ex["speaker"], speakers) & _in(ex["id"], ids)
            & (table.lookup(ex["label_name"]) >= 0))

  files_ds = tf.data.Dataset.from_tensor_slices(list(files))
  return (files_ds.interleave(tf.data.TFRecordDataset,
                              num_parallel_calls=tf.data.AUTOTUNE,
                              deterministic=True)
          .filter(keep).map(parse, num_parallel_calls=tf.data.AUTOTUNE))


@dataclasses.dataclass
class Arrays:
  """An in-memory partition: features [N, frames, bands], labels, ids."""
  features: np.ndarray
  labels: np.ndarray
  ids: np.ndarray
  speakers: np.ndarray

  def __len__(self) -> int:
    return int(self.labels.shape[0])

  def subset(self, mask: np.ndarray) -> "Arrays":
    return Arrays(self.features[mask], self.labels[mask], self.ids[mask],
                  self.speakers[mask])

  def by_speakers(self, speakers: Iterable[str]) -> "Arrays":
    return self.subset(np.isin(self.speakers, list(speakers)))


def load_arrays(files: Sequence[str], label_names: Sequence[str],
                speakers: Optional[Iterable[str]] = None,
                front_end: FrontEndConfig = FrontEndConfig()) -> Arrays:
  """Materialises a partition (features computed once) as numpy arrays."""
  feats, labels, ids, spk = [], [], [], []
  for ex in utterance_dataset(files, label_names, speakers,
                              front_end=front_end).batch(256):
    feats.append(ex[FEATURES].numpy())
    labels.append(ex["label"].numpy())
    ids.append(ex["id"].numpy().astype(str))
    spk.append(ex["speaker"].numpy().astype(str))
  if not feats:
    raise ValueError(f"no examples in {list(files)[:2]}... for speakers "
                     f"{speakers} and labels {list(label_names)}")
  return Arrays(np.concatenate(feats), np.concatenate(labels),
                np.concatenate(ids), np.concatenate(spk))


def train_dataset(x: Dict[str, np.ndarray] | np.ndarray, y: np.ndarray,
                  batch_size: int, seed: int,
                  sample_weight: Optional[np.ndarray] = None) -> tf.data.Dataset:
  """Shuffled, batched (inputs, label[, weight]) from in-memory arrays."""
  inputs = x if isinstance(x, dict) else {FEATURES: x}
  parts = (inputs, y) if sample_weight is None else (inputs, y, sample_weight)
  return (tf.data.Dataset.from_tensor_slices(parts)
          .shuffle(len(y), seed=seed, reshuffle_each_iteration=True)
          .batch(batch_size).prefetch(tf.data.AUTOTUNE))


def packed_arrays(files: Sequence[str], label_names: Sequence[str],
                  max_nbrs: int, front_end: FrontEndConfig = FrontEndConfig()
                  ) -> Dict[str, np.ndarray]:
  """Packed NSL records -> {features, NL_nbr_i_features, NL_nbr_i_weight,
  label, id} arrays (neighbour labels are not read)."""
  cols: Dict[str, list] = {}
  for ex in utterance_dataset(files, label_names, front_end=front_end,
                              max_nbrs=max_nbrs).batch(128):
    for k, v in ex.items():
      if k != "speaker":
        cols.setdefault(k, []).append(v.numpy())
  return {k: np.concatenate(v) for k, v in cols.items()}
