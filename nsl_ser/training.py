"""Keras training with the callbacks a long run needs.

Two ways to pick the weights that are kept (``TrainConfig.selection``):

* ``average`` (default): a fixed number of epochs on a cosine learning-rate
  schedule, keeping the mean of the weights of the last ``average_epochs``
  epochs. Nothing depends on the 2-speaker validation set, which on EmoDB
  swings by 10+ UAR points between neighbouring epochs (a run used to keep
  epoch 1 because of it); experiments/results/accuracy.md measures both.
* ``val_uar``: early stopping on validation UAR, best epoch restored.

Training is deterministic: :func:`set_seed` seeds Python, NumPy and TF and
turns on TF op determinism, so the same command and seed give the same
weights.
"""
from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional

import numpy as np

from nsl_ser import evaluation
from nsl_ser.compat import keras, tf


@dataclasses.dataclass
class TrainConfig:
  """Optimisation settings (the papers: Adam 1e-3, x0.9 every 5 epochs)."""
  epochs: int = 40
  batch_size: int = 16
  learning_rate: float = 1e-3
  decay_rate: float = 0.9
  decay_epochs: int = 5
  patience: int = 12          # early stopping on val UAR (selection=val_uar)
  balanced: bool = True       # class weights inversely proportional to counts
  seed: int = 0
  verbose: int = 1
  selection: str = "average"  # "average" | "val_uar" (see module doc)
  average_epochs: int = 10    # epochs whose weights are averaged
  schedule: str = "cosine"    # "cosine" | "step" (x decay_rate every decay_epochs)
  # At most this many optimiser steps (0: no cap): a larger training set
  # gets proportionally fewer epochs (:func:`within_step_budget`).
  max_steps: int = 0


SELECTIONS = ("average", "val_uar")


def within_step_budget(cfg: TrainConfig, steps_per_epoch: int) -> TrainConfig:
  """``cfg`` with fewer epochs when ``epochs * steps_per_epoch`` exceeds
  ``max_steps``: as many epochs as the budget allows (at least 1), the
  averaged epochs scaled by the same factor (at least 1)."""
  if not cfg.max_steps or cfg.epochs * steps_per_epoch <= cfg.max_steps:
    return cfg
  epochs = max(1, cfg.max_steps // max(steps_per_epoch, 1))
  average = max(1, round(cfg.average_epochs * epochs / cfg.epochs))
  return dataclasses.replace(cfg, epochs=epochs, average_epochs=average)
SCHEDULES = ("cosine", "step")


class UARCallback(keras.callbacks.Callback):
  """Adds ``val_uar`` (%) to the epoch logs, before checkpoint/early stop."""

  def __init__(self, predict: Callable[[], np.ndarray], labels: np.ndarray,
               num_classes: int):
    super().__init__()
    self._predict, self._labels, self._k = predict, labels, num_classes

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      pred = np.argmax(self._predict(), axis=-1)
      logs["val_uar"] = 100 * evaluation.uar(self._labels, pred, self._k)


def class_weights(labels: np.ndarray, num_classes: int) -> Dict[int, float]:
  counts = np.bincount(labels, minlength=num_classes).astype(float)
  w = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0)
  return {i: float(v) for i, v in enumerate(w)}


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
  """The learning rate of ``epoch`` (0-based) under ``cfg.schedule``."""
  if cfg.schedule == "cosine":
    return cfg.learning_rate * 0.5 * (1 + np.cos(np.pi * epoch / max(cfg.epochs, 1)))
  if cfg.schedule == "step":
    return cfg.learning_rate * cfg.decay_rate ** (epoch // cfg.decay_epochs)
  raise ValueError(f"schedule must be one of {SCHEDULES}, not {cfg.schedule!r}")


def sample_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """Each example's :func:`class_weights` weight (float32)."""
  cw = class_weights(labels, num_classes)
  return np.array([cw[int(l)] for l in labels], np.float32)


def lr_schedule(cfg: TrainConfig) -> keras.callbacks.LearningRateScheduler:
  return keras.callbacks.LearningRateScheduler(
      lambda epoch: float(learning_rate(cfg, epoch)))


class WeightAverage(keras.callbacks.Callback):
  """Keeps the running mean of the weights (BatchNorm statistics included)
  over the last ``last`` of ``epochs`` epochs and installs it at the end."""

  def __init__(self, epochs: int, last: int):
    super().__init__()
    self.first = max(epochs - last, 0)
    self._sum: Optional[List[np.ndarray]] = None
    self._n = 0

  def on_epoch_end(self, epoch, logs=None):
    if epoch < self.first:
      return
    w = self.model.get_weights()
    self._sum = ([a.astype(np.float64) for a in w] if self._sum is None
                 else [s + a for s, a in zip(self._sum, w)])
    self._n += 1

  def on_train_end(self, logs=None):
    if self._n:
      cur = self.model.get_weights()
      self.model.set_weights([(s / self._n).astype(c.dtype)
                              for s, c in zip(self._sum, cur)])


def make_callbacks(cfg: TrainConfig, uar_cb: UARCallback,
                   out_dir: Optional[str]) -> List[keras.callbacks.Callback]:
  """UAR, LR decay, early stopping; with ``out_dir`` also ModelCheckpoint,
  CSVLogger, TensorBoard and BackupAndRestore (an interrupted run resumes)."""
  if cfg.selection not in SELECTIONS:
    raise ValueError(f"selection must be one of {SELECTIONS}, not {cfg.selection!r}")
  cbs: List[keras.callbacks.Callback] = [uar_cb, lr_schedule(cfg)]
  if cfg.selection == "val_uar":
    cbs.append(keras.callbacks.EarlyStopping(monitor="val_uar", mode="max",
                                             patience=cfg.patience,
                                             restore_best_weights=True))
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    if cfg.selection == "val_uar":
      cbs.append(keras.callbacks.ModelCheckpoint(
          os.path.join(out_dir, "best.weights.h5"), monitor="val_uar",
          mode="max", save_best_only=True, save_weights_only=True))
    cbs += [
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv"),
                                  append=True),
        keras.callbacks.TensorBoard(os.path.join(out_dir, "tensorboard"),
                                    write_graph=False, profile_batch=0),
        keras.callbacks.BackupAndRestore(os.path.join(out_dir, "backup")),
    ]
  if cfg.selection == "average":  # last: after every logger saw the epoch
    cbs.append(WeightAverage(cfg.epochs, cfg.average_epochs))
  return cbs


def fit(model: keras.Model, train_ds,
        val_predict: Callable[[], np.ndarray], val_labels: np.ndarray,
        num_classes: int, cfg: TrainConfig, out_dir: Optional[str] = None,
        class_weight: Optional[Dict[int, float]] = None,
        strategy: Optional[tf.distribute.Strategy] = None,
        soft_labels: bool = False) -> Dict[str, list]:
  """Compiles (Adam, sparse CE on probabilities) and fits; keeps best val UAR.

  Models with their own ``train_step`` loss (``computes_own_loss = True``)
  are compiled with the optimiser only; ``soft_labels`` (mixup) switches
  to categorical cross-entropy. Returns the Keras history dict plus
  ``wall_s``. With a ``strategy`` the model must have been built in its
  scope; compilation happens there too.
  """
  with (strategy or tf.distribute.get_strategy()).scope():
    optimizer = keras.optimizers.Adam(cfg.learning_rate)
    if getattr(model, "computes_own_loss", False):
      model.compile(optimizer=optimizer)
    else:
      loss = (keras.losses.CategoricalCrossentropy() if soft_labels
              else keras.losses.SparseCategoricalCrossentropy())
      acc = (keras.metrics.CategoricalAccuracy(name="acc") if soft_labels
             else keras.metrics.SparseCategoricalAccuracy(name="acc"))
      model.compile(optimizer=optimizer, loss=loss, metrics=[acc])
  if cfg.max_steps:
    try:
      cfg = within_step_budget(cfg, len(train_ds))
    except TypeError as e:  # a tf.data pipeline of unknown length
      raise ValueError("max_steps needs a training set of known length") from e
  uar_cb = UARCallback(val_predict, val_labels, num_classes)
  start = time.time()
  hist = model.fit(train_ds, epochs=cfg.epochs, verbose=cfg.verbose,
                   class_weight=class_weight, shuffle=False,
                   callbacks=make_callbacks(cfg, uar_cb, out_dir))
  h = dict(hist.history)
  h["wall_s"] = time.time() - start
  return h


def set_seed(seed: int) -> None:
  """Seeds Python, NumPy and TF, and makes TF ops deterministic."""
  keras.utils.set_random_seed(seed)
  tf.config.experimental.enable_op_determinism()


STRATEGIES = ("default", "mirrored", "multi_worker")


def get_strategy(name: str = "default") -> tf.distribute.Strategy:
  """``default`` (one device), ``mirrored`` (all local GPUs, or all logical
  CPUs), ``multi_worker`` (MultiWorkerMirroredStrategy from ``TF_CONFIG``)."""
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"strategy must be one of {STRATEGIES}, not {name!r}")
