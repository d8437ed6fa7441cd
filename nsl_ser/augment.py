"""Training-time augmentation on whole utterances, deterministic per seed.

Whole, variable-length log-Mel utterances (optionally also speed-perturbed
with soxr: ``speeds``) are kept in memory; each training batch takes a
random ``num_frames`` crop of each (shorter clips are placed at a random
offset in log-floor padding, the feature value of zero-padded audio) and
may be mixed up (``mixup_alpha``). Every random draw comes from
``numpy.random.default_rng([seed, epoch, batch])``, so the same seed gives
the same batches in any order of calls.

Evaluation never crops at random: it uses the centre crop of the front end
(:func:`nsl_ser.features.fix_length`), like the deployed models.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soxr

from nsl_ser import data, records
from nsl_ser.compat import keras, tf
from nsl_ser.features import FrontEndConfig, LogMel


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """What the training batches do to the whole utterances."""
  random_crop: bool = True
  mixup_alpha: float = 0.0        # 0: off; Beta(alpha, alpha) mixing weights
  speeds: Tuple[float, ...] = (1.0,)  # soxr speed perturbation factors

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


NONE = AugmentConfig(random_crop=False)
SPEEDS = (1.0, 0.9, 1.1)  # 1.0 first: statistics and centre crops use it


@dataclasses.dataclass
class Utterances:
  """Whole utterances: ``variants[i][j]`` is clip i at ``speeds[j]``
  ([frames_ij, bands] log-Mel), plus labels, ids and speakers."""
  variants: List[List[np.ndarray]]
  labels: np.ndarray
  ids: np.ndarray
  speakers: np.ndarray
  speeds: Tuple[float, ...]

  def __len__(self) -> int:
    return len(self.variants)

  def subset(self, mask: np.ndarray) -> "Utterances":
    idx = np.flatnonzero(mask)
    return Utterances([self.variants[i] for i in idx], self.labels[idx],
                      self.ids[idx], self.speakers[idx], self.speeds)

  def by_speakers(self, speakers) -> "Utterances":
    return self.subset(np.isin(self.speakers, list(speakers)))

  def clips(self, speed_index: int = 0) -> List[np.ndarray]:
    return [v[speed_index] for v in self.variants]


def change_speed(waveform: np.ndarray, factor: float, sample_rate: int
                 ) -> np.ndarray:
  """Plays ``waveform`` ``factor`` times faster (tempo and pitch), with soxr."""
  if factor == 1.0:
    return waveform
  return soxr.resample(waveform, sample_rate * factor, sample_rate).astype(np.float32)


def load_utterances(files: Sequence[str], label_names: Sequence[str],
                    speeds: Sequence[float] = (1.0,),
                    front_end: FrontEndConfig = FrontEndConfig(),
                    progress: bool = True,
                    keep: Optional[Callable[[str], bool]] = None) -> Utterances:
  """Every utterance of the prepared shards whose label is in
  ``label_names`` (and, given ``keep``, whose id it keeps), as
  whole-length log-Mel features at each speed."""
  from tqdm import tqdm
  log_mel = LogMel(front_end)
  table = {n: i for i, n in enumerate(label_names)}
  variants, labels, ids, spk = [], [], [], []
  examples = list(records.read_examples(files))
  for ex in tqdm(examples, desc="utterance features", unit="clip",
                 disable=not progress):
    name = records.feature_value(ex, "label_name")
    if name not in table or (keep is not None and
                             not keep(records.feature_value(ex, "id"))):
      continue
    wav = records.decode_waveform(tf.constant(
        records.feature_value(ex, "waveform"))).numpy()
    row = []
    for s in speeds:
      w = change_speed(wav, s, front_end.sample_rate)
      if w.shape[0] < front_end.frame_length:
        w = np.pad(w, (0, front_end.frame_length - w.shape[0]))
      row.append(log_mel(w[np.newaxis])[0].numpy())
    variants.append(row)
    labels.append(table[name])
    ids.append(records.feature_value(ex, "id"))
    spk.append(records.feature_value(ex, "speaker"))
  if not variants:
    raise ValueError(f"no utterances with labels {list(label_names)} in "
                     f"{list(files)[:2]}")
  order = np.argsort(ids)  # shard order must not matter
  return Utterances([variants[i] for i in order], np.array(labels)[order],
                    np.array(ids)[order], np.array(spk)[order], tuple(speeds))


def utterance_features(files: Sequence[str], label_names: Sequence[str],
                       ids: Sequence[str],
                       front_end: FrontEndConfig = FrontEndConfig()
                       ) -> List[np.ndarray]:
  """Whole-length log-Mel features of the utterances ``ids``, in that
  order (:func:`load_utterances` at speed 1)."""
  u = load_utterances(files, label_names, front_end=front_end)
  whole = dict(zip(u.ids, u.clips(0)))
  return [whole[i] for i in ids]


def crop(clip: np.ndarray, num_frames: int, pad_value,
         rng: Optional[np.random.Generator]) -> np.ndarray:
  """A ``num_frames`` window of ``clip``: random offset with ``rng``, the
  centre without. Short clips are padded with ``pad_value`` (a scalar or
  one value per band)."""
  t = clip.shape[0]
  if t >= num_frames:
    start = (t - num_frames) // 2 if rng is None else int(rng.integers(0, t - num_frames + 1))
    return clip[start:start + num_frames]
  left = (num_frames - t) // 2 if rng is None else int(rng.integers(0, num_frames - t + 1))
  out = np.empty((num_frames, clip.shape[1]), clip.dtype)
  out[:] = pad_value
  out[left:left + t] = clip
  return out


def windows(clip: np.ndarray, num_frames: int, hop_frames: int, pad_value
            ) -> List[np.ndarray]:
  """The ``num_frames`` windows of a whole clip that ``nsl-ser predict``
  classifies (``hop_frames`` apart, the last flush with the end); a clip
  up to one window is its centre-padded :func:`crop`."""
  from nsl_ser.front_end import window_starts
  if clip.shape[0] <= num_frames:
    return [crop(clip, num_frames, pad_value, None)]
  return [clip[s:s + num_frames]
          for s in window_starts(clip.shape[0], num_frames, hop_frames)]


class TrainBatches(keras.utils.Sequence):
  """(inputs, labels[, sample_weight]) batches of random crops, reshuffled
  every epoch from the seed. Labels are one-hot when mixup is on.
  ``pad_values[i][j]`` is the padding row of ``clips[i][j]`` (a scalar for
  all: the log floor of raw features).

  ``neighbours`` ([N, k] row indices into the clips, -1 for none) and
  ``nbr_weights`` ([N, k]) add NSL's ``NL_nbr_<i>_features`` /
  ``NL_nbr_<i>_weight`` inputs for graph regularisation. ``targets``
  ([N, classes] rows summing to 1: soft labels, e.g. a teacher's blended
  with the one-hot labels) replace the integer labels as the batches'
  labels; ``labels`` still weigh the classes.
  """

  def __init__(self, clips: List[List[np.ndarray]], labels: np.ndarray,
               num_classes: int, num_frames: int, pad_values,
               batch_size: int, seed: int, cfg: AugmentConfig,
               sample_weight: Optional[np.ndarray] = None,
               neighbours: Optional[np.ndarray] = None,
               nbr_weights: Optional[np.ndarray] = None,
               targets: Optional[np.ndarray] = None):
    super().__init__()
    self.targets = None if targets is None else np.asarray(targets, np.float32)
    self.clips, self.labels = clips, np.asarray(labels)
    self.k, self.t, self.pad = num_classes, num_frames, pad_values
    self.batch_size, self.seed, self.cfg = batch_size, seed, cfg
    self.sample_weight = sample_weight
    self.neighbours, self.nbr_weights = neighbours, nbr_weights
    self.epoch = 0
    self._order = self._permutation()

  def _permutation(self) -> np.ndarray:
    return np.random.default_rng([self.seed, self.epoch, 1 << 20]).permutation(
        len(self.labels))

  def __len__(self) -> int:
    return int(np.ceil(len(self.labels) / self.batch_size))

  def on_epoch_end(self) -> None:
    self.epoch += 1
    self._order = self._permutation()

  def _features(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = []
    for i in idx:
      j = int(rng.integers(0, len(self.clips[i])))
      pad = self.pad if np.isscalar(self.pad) else self.pad[i][j]
      out.append(crop(self.clips[i][j], self.t, pad,
                      rng if self.cfg.random_crop else None))
    return np.stack(out).astype(np.float32)

  def __getitem__(self, b: int):
    rng = np.random.default_rng([self.seed, self.epoch, b])
    idx = self._order[b * self.batch_size:(b + 1) * self.batch_size]
    x = self._features(idx, rng)
    y = self.labels[idx] if self.targets is None else self.targets[idx]
    w = None if self.sample_weight is None else self.sample_weight[idx]
    inputs: Dict[str, np.ndarray] = {data.FEATURES: x}
    if self.neighbours is not None:
      for j in range(self.neighbours.shape[1]):
        nb = self.neighbours[idx, j]
        feats = self._features(np.maximum(nb, 0), rng)
        inputs[data.nbr_feature_key(j)] = feats
        inputs[data.nbr_weight_key(j)] = np.where(
            nb >= 0, self.nbr_weights[idx, j], 0.0).astype(np.float32)[:, None]
    if self.cfg.mixup_alpha > 0:
      lam = rng.beta(self.cfg.mixup_alpha, self.cfg.mixup_alpha, size=len(idx))
      lam = np.maximum(lam, 1 - lam).astype(np.float32)  # the first clip leads
      perm = rng.permutation(len(idx))
      inputs[data.FEATURES] = (lam[:, None, None] * x
                               + (1 - lam[:, None, None]) * x[perm])
      rows = np.eye(self.k, dtype=np.float32)[y] if y.ndim == 1 else y
      y = lam[:, None] * rows + (1 - lam[:, None]) * rows[perm]
      if w is not None:
        w = lam * w + (1 - lam) * w[perm]
    if w is None:
      return inputs, y
    return inputs, y, np.asarray(w, np.float32)
