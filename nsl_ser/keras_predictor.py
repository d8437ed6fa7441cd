"""A Keras exit model run on host features (needs TensorFlow: the
training extra). ``nsl-ser predict --model=x.keras`` uses it; deployed
models go through :mod:`nsl_ser.runtime.predictor`."""
from __future__ import annotations

import os
from typing import Dict, Optional, Sequence

import numpy as np

from nsl_ser.front_end import FrontEndConfig
from nsl_ser.runtime.predictor import Predictor


class KerasPredictor(Predictor):
  """A Keras model on features (with or without exits)."""

  def __init__(self, path: str, labels: Sequence[str],
               front_end: FrontEndConfig = FrontEndConfig()):
    from nsl_ser import models
    self.model = models.load_model(path)
    self.labels = list(labels)
    self.front_end = front_end
    self.exits = models.exit_names(self.model) or list(self.model.output_names)
    self._cache: Dict[str, np.ndarray] = {}

  def start(self, window: np.ndarray) -> None:
    from nsl_ser.features import log_mel_numpy
    outs = self.model(log_mel_numpy(window, self.front_end)[None], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    self._cache = {n: np.asarray(o)[0] for n, o in zip(self.model.output_names, outs)}

  def run_exit(self, name: str, window: np.ndarray) -> np.ndarray:
    return self._cache[name]


def load_keras_predictor(path: str, labels: Optional[Sequence[str]] = None
                         ) -> KerasPredictor:
  """A Keras model with ``labels`` (default: labels.txt beside it)."""
  if labels is None:
    labels_txt = os.path.join(os.path.dirname(path), "labels.txt")
    if not os.path.exists(labels_txt):
      raise FileNotFoundError(f"{path}: no labels.txt beside the Keras model")
    labels = open(labels_txt).read().split()
  return KerasPredictor(path, labels)
