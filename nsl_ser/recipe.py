"""The student recipe: normalisation regime + augmentation + self-distillation.

One config object (:class:`Recipe`) and two thin functions over it:
:func:`train_student` trains an early-exit student on whole utterances, and
:func:`model_inputs` turns centre-cropped features into what that student
expects in its regime (``global``: the raw log-Mel, the model normalises;
``speaker``: each speaker calibrated onto the training statistics first,
:func:`nsl_ser.normalization.calibrate`).
The defaults are the winner of ``experiments/accuracy.py``.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from nsl_ser import augment, data, models, normalization, self_distill, training
from nsl_ser.compat import keras
from nsl_ser.features import FrontEndConfig
from nsl_ser.nsl_train import GraphRegParams


@dataclasses.dataclass
class Recipe:
  """Everything that decides a trained student, besides its data."""
  regime: str = "global"  # normalization.REGIMES
  # Weight averaging (TrainConfig's default) + speed perturbation: the best
  # 5 folds x 3 seeds row of experiments/results/accuracy.md in both regimes.
  # Random crops and mixup stay available: all four together scored lower.
  augment: augment.AugmentConfig = augment.AugmentConfig(
      random_crop=False, mixup_alpha=0.0, speeds=augment.SPEEDS)
  # 40 epochs, at most 10,000 steps: the size of the two-corpus pools
  # (RAVDESS + EmoDB: 40 x ~200 steps); three corpora get fewer epochs.
  train: training.TrainConfig = dataclasses.field(
      default_factory=lambda: training.TrainConfig(epochs=40, max_steps=10000))
  distill: self_distill.DistillConfig = dataclasses.field(
      default_factory=self_distill.DistillConfig)
  cnn: models.CNNConfig = models.STUDENT
  # Fit the functionals head (nsl_ser.functionals) on whole utterances next
  # to the student and fuse it with every exit of every window: +6.0 / +9.2
  # int8 UAR (independent / calibrated) in experiments/results/accuracy.md.
  functionals: bool = True
  # Weight of a teacher's soft labels in the training targets,
  # ``(1 - w) * one_hot + w * teacher`` (0: the labels alone; see
  # :func:`teacher_targets`).
  teacher_weight: float = 0.0

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def pad_value(front_end: FrontEndConfig) -> float:
  """The log-Mel of zero-padded audio: log(log_floor)."""
  return float(np.log(front_end.log_floor))


def reference_stats(train: augment.Utterances) -> normalization.BandStats:
  """The statistics a speaker is calibrated onto: the speech frames of
  the training clips (speed 1). Also what an uncalibrated speaker is
  assumed to look like."""
  return normalization.stats_of(train.clips(0))


def model_inputs(arrays: data.Arrays, regime: str,
                 stats: Optional[Mapping[str, normalization.BandStats]] = None,
                 reference: Optional[normalization.BandStats] = None
                 ) -> np.ndarray:
  """What a student of ``regime`` takes for ``arrays``' centre-cropped
  features: unchanged (``global``) or calibrated per speaker (``speaker``:
  each speaker's own whole-clip ``stats`` mapped onto ``reference``, the
  training statistics; :func:`normalization.calibrate`)."""
  if regime == "global":
    return arrays.features
  if regime == "speaker":
    if stats is None or reference is None:
      raise ValueError("the speaker regime needs per-speaker and reference "
                       "statistics")
    return normalization.calibrate_by_speaker(arrays.features, arrays.speakers,
                                              stats, reference)
  raise ValueError(f"regime must be one of {normalization.REGIMES}, not {regime!r}")


def training_clips(train: augment.Utterances, regime: str,
                   front_end: FrontEndConfig):
  """(clips, pad values) for :class:`augment.TrainBatches`. In the speaker
  regime each (speaker, speed) pair counts as a speaker of its own: its
  clips are calibrated with its own statistics onto
  :func:`reference_stats`, like a test speaker's."""
  pad = pad_value(front_end)
  if regime == "global":
    return train.variants, pad
  ref = reference_stats(train)
  clips = [list(v) for v in train.variants]
  pads = [[None] * len(v) for v in train.variants]
  for j in range(len(train.speeds)):
    stats = normalization.speaker_stats(train.clips(j), train.speakers)
    for i, s in enumerate(train.speakers):
      st = stats[str(s)]
      clips[i][j] = normalization.calibrate(train.variants[i][j], st, ref)
      pads[i][j] = normalization.calibrate(np.full(st.mean.shape, pad), st, ref)
  return clips, pads


def teacher_targets(labels: np.ndarray, teacher: np.ndarray, num_classes: int,
                    weight: float) -> np.ndarray:
  """Soft training targets: the one-hot labels blended with a teacher's
  probabilities (rows renormalised), ``(1 - weight) * y + weight * p``."""
  p = np.asarray(teacher, np.float64)
  p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
  y = np.eye(num_classes)[np.asarray(labels)]
  return ((1.0 - weight) * y + weight * p).astype(np.float32)


def _batches(train: augment.Utterances, num_classes: int, recipe: Recipe,
             front_end: FrontEndConfig, graph=None,
             teacher: Optional[np.ndarray] = None):
  """(training batches, centre crops of the training clips in the regime's
  form: the ``norm`` layer's statistics)."""
  cfg = recipe.train
  clips, pads = training_clips(train, recipe.regime, front_end)
  centre = np.stack([augment.crop(v[0], front_end.num_frames,
                                  pads if np.isscalar(pads) else pads[i][0], None)
                     for i, v in enumerate(clips)])
  sw = training.sample_weights(train.labels, num_classes) if cfg.balanced else None
  nbrs, nbr_w = graph if graph is not None else (None, None)
  targets = (teacher_targets(train.labels, teacher, num_classes,
                             recipe.teacher_weight)
             if teacher is not None and recipe.teacher_weight > 0 else None)
  batches = augment.TrainBatches(
      clips, train.labels, num_classes, front_end.num_frames, pads,
      cfg.batch_size, cfg.seed, recipe.augment, sw, nbrs, nbr_w, targets)
  return batches, centre


def train_student(train: augment.Utterances, val_inputs: np.ndarray,
                  val_labels: np.ndarray, num_classes: int, recipe: Recipe,
                  front_end: FrontEndConfig = FrontEndConfig(),
                  init_from: Optional[keras.Model] = None,
                  graph: Optional[Tuple[np.ndarray, np.ndarray, GraphRegParams]] = None,
                  out_dir: Optional[str] = None, strategy=None,
                  teacher: Optional[np.ndarray] = None):
  """An early-exit student trained with ``recipe`` on whole utterances.

  ``val_inputs`` are already in the regime's form (:func:`model_inputs`).
  ``graph`` = (neighbour indices [N, k] into ``train``, -1 for none,
  neighbour weights [N, k], NSL parameters) adds graph regularisation.
  ``teacher`` ([len(train), classes] probabilities) becomes soft labels
  with ``recipe.teacher_weight`` (:func:`teacher_targets`); the exits learn
  it through the deepest head's self-distillation.
  Returns (exit model, history).
  """
  batches, centre = _batches(train, num_classes, recipe, front_end,
                             graph[:2] if graph is not None else None, teacher)
  model, _, hist = self_distill.train_exit_model(
      centre, train.labels, val_inputs, val_labels, num_classes, recipe.cnn,
      recipe.train, recipe.distill, init_from=init_from,
      graph_reg=graph[2] if graph is not None else None,
      out_dir=out_dir, strategy=strategy, batches=batches)
  return model, hist


def train_classifier(train: augment.Utterances, val_inputs: np.ndarray,
                     val_labels: np.ndarray, num_classes: int, recipe: Recipe,
                     front_end: FrontEndConfig = FrontEndConfig(),
                     init_from: Optional[keras.Model] = None,
                     out_dir: Optional[str] = None, strategy=None):
  """A single-head CNN (``recipe.cnn``: the source model, or classic
  transfer learning with ``init_from``) trained with ``recipe``'s data,
  augmentation and selection. Returns (model, history)."""
  from nsl_ser import nsl_train
  batches, centre = _batches(train, num_classes, recipe, front_end)
  return nsl_train.train_classifier(
      data.Arrays(centre, train.labels, train.ids, train.speakers),
      data.Arrays(val_inputs, val_labels, val_labels.astype(str),
                  val_labels.astype(str)),
      num_classes, recipe.cnn, recipe.train, init_from=init_from,
      out_dir=out_dir, front_end=front_end, strategy=strategy, batches=batches)


def evaluate_exits(model: keras.Model, inputs: np.ndarray, labels: np.ndarray,
                   label_names) -> Dict[str, dict]:
  """{exit name: evaluation.report} of every exit of ``model``."""
  from nsl_ser import evaluation
  probs = model.predict(inputs, verbose=0)
  probs = probs if isinstance(probs, list) else [probs]
  return {n: evaluation.report(labels, p, label_names)
          for n, p in zip(models.exit_names(model) or ["probs"], probs)}
