"""Flags shared by the training stages (defined by the modules that use them)."""
from __future__ import annotations

import dataclasses

from absl import flags

from nsl_ser import augment, normalization, recipe, training


def define_train_flags(epochs: int, learning_rate: float = 1e-3) -> None:
  flags.DEFINE_integer("epochs", epochs, "Training epochs.")
  flags.DEFINE_integer("batch_size", 16, "Batch size.")
  flags.DEFINE_float("learning_rate", learning_rate, "Adam learning rate.")
  flags.DEFINE_enum("selection", "average", list(training.SELECTIONS),
                    "Weights kept: mean of the last --average_epochs epochs, "
                    "or the best validation-UAR epoch (early stopping).")
  flags.DEFINE_integer("average_epochs", 10, "Epochs averaged (selection=average).")
  flags.DEFINE_enum("schedule", "cosine", list(training.SCHEDULES),
                    "Learning-rate schedule.")
  flags.DEFINE_integer("patience", 12, "Early-stopping patience (selection=val_uar).")
  flags.DEFINE_bool("random_crop", False, "Random 3 s crops of whole utterances.")
  flags.DEFINE_list("speeds", [str(s) for s in augment.SPEEDS],
                    "soxr speed perturbation factors (1.0 first).")
  flags.DEFINE_float("mixup", 0.0, "Mixup Beta(a, a) parameter (0: off).")
  flags.DEFINE_enum("normalization", "global", list(normalization.REGIMES),
                    "Regime: global (training statistics inside the model) or "
                    "speaker (features z-scored with each speaker's own clips).")
  flags.DEFINE_integer("seed", 0, "Random seed (same seed, same weights).")


def train_recipe() -> recipe.Recipe:
  f = flags.FLAGS
  r = recipe.Recipe(regime=f.normalization, augment=augment.AugmentConfig(
      random_crop=f.random_crop, mixup_alpha=f.mixup,
      speeds=tuple(float(s) for s in f.speeds)))
  return dataclasses.replace(r, train=training.TrainConfig(
      epochs=f.epochs, batch_size=f.batch_size, learning_rate=f.learning_rate,
      selection=f.selection, average_epochs=f.average_epochs,
      schedule=f.schedule, patience=f.patience, seed=f.seed,
      max_steps=r.train.max_steps))
