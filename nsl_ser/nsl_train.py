"""Graph-regularisation parameters (NSL's config) and the single-head
classifier trainer (source model, classic transfer learning).

The graph regulariser itself is NSL's: ``nsl.configs.make_graph_reg_config``
builds the config, and :class:`nsl_ser.self_distill.SelfDistillationModel`
applies NSL's ``NeighborFeatures`` and ``PairwiseDistance`` layers to the
student's ``fc1`` (the NSL-SER authors regularised that layer, not the
output, by patching ``GraphRegularization``).
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from nsl_ser import data, models, training
from nsl_ser.compat import keras, nsl, tf
from nsl_ser.features import FrontEndConfig


@dataclasses.dataclass
class GraphRegParams:
  """``nsl.configs.make_graph_reg_config`` arguments (the layer is ``fc1``)."""
  max_neighbors: int = 3
  multiplier: float = 0.1
  distance_type: str = "cosine"
  sum_over_axis: Optional[int] = -1

  def config(self) -> "nsl.configs.GraphRegConfig":
    return nsl.configs.make_graph_reg_config(
        max_neighbors=self.max_neighbors, multiplier=self.multiplier,
        distance_type=self.distance_type, sum_over_axis=self.sum_over_axis)


def _weights(labels: np.ndarray, k: int, cfg: training.TrainConfig):
  return training.class_weights(labels, k) if cfg.balanced else None


def train_classifier(train: data.Arrays, val: data.Arrays, num_classes: int,
                     cnn: models.CNNConfig, cfg: training.TrainConfig,
                     init_from: Optional[keras.Model] = None,
                     out_dir: Optional[str] = None,
                     front_end: FrontEndConfig = FrontEndConfig(),
                     strategy: Optional[tf.distribute.Strategy] = None,
                     batches=None) -> Tuple[keras.Model, Dict]:
  """A CNN on speech only; ``init_from`` transfers weights by layer name
  (classic transfer learning: every layer is then fine-tuned).
  ``batches`` (:class:`nsl_ser.augment.TrainBatches`, which carry their own
  class weights) replaces the shuffled ``train`` arrays as training input;
  ``train.features`` then only set the ``norm`` statistics."""
  training.set_seed(cfg.seed)
  with (strategy or tf.distribute.get_strategy()).scope():
    model = models.build_cnn(num_classes, cnn, front_end)
  if init_from is not None:
    models.transfer_weights(init_from, model)
  models.adapt_normalization(model, train.features)
  if batches is None:
    ds, cw = (data.train_dataset(train.features, train.labels, cfg.batch_size,
                                 cfg.seed), _weights(train.labels, num_classes, cfg))
  else:
    ds, cw = batches, None
  soft = batches is not None and batches.cfg.mixup_alpha > 0
  hist = training.fit(model, ds, lambda: model.predict(val.features, verbose=0),
                      val.labels, num_classes, cfg, out_dir, cw, strategy,
                      soft_labels=soft)
  return model, hist
