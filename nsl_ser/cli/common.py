"""Flags shared by the training stages (defined by the modules that use them)."""
from __future__ import annotations

from absl import flags

from nsl_ser import training


def define_train_flags(epochs: int, learning_rate: float = 1e-3) -> None:
  flags.DEFINE_integer("epochs", epochs, "Training epochs.")
  flags.DEFINE_integer("batch_size", 16, "Batch size.")
  flags.DEFINE_float("learning_rate", learning_rate, "Adam learning rate.")
  flags.DEFINE_float("decay_rate", 0.9, "LR multiplier every --decay_epochs.")
  flags.DEFINE_integer("decay_epochs", 5, "Epochs between LR decays.")
  flags.DEFINE_integer("patience", 12, "Early-stopping patience (val UAR).")
  flags.DEFINE_integer("seed", 0, "Random seed.")


def train_config() -> training.TrainConfig:
  f = flags.FLAGS
  return training.TrainConfig(
      epochs=f.epochs, batch_size=f.batch_size, learning_rate=f.learning_rate,
      decay_rate=f.decay_rate, decay_epochs=f.decay_epochs,
      patience=f.patience, seed=f.seed)
