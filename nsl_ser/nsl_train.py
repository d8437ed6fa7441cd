"""Training recipes: plain classifiers, graph-regularised students, heads.

Graph regularisation reuses NSL: :class:`LayerGraphRegularization` is
``nsl.keras.GraphRegularization`` with the regulariser moved from the model
output to a named intermediate layer (the NSL-SER authors regularised the
student's ``fc1``); everything else (neighbour unpacking, distance, loss
scaling) is NSL's own code.
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
  """``nsl.configs.make_graph_reg_config`` arguments + the regularised layer."""
  max_neighbors: int = 3
  multiplier: float = 0.1
  distance_type: str = "cosine"
  sum_over_axis: Optional[int] = -1
  layer: str = "fc1"  # "fc1" (as the paper) or "probs" (NSL's default: output)

  def config(self) -> "nsl.configs.GraphRegConfig":
    return nsl.configs.make_graph_reg_config(
        max_neighbors=self.max_neighbors, multiplier=self.multiplier,
        distance_type=self.distance_type, sum_over_axis=self.sum_over_axis)


class LayerGraphRegularization(nsl.keras.GraphRegularization):
  """GraphRegularization whose graph loss compares a named layer's outputs
  (``layer`` may also be the model output, NSL's own behaviour)."""

  def __init__(self, base_model: keras.Model, graph_reg_config, layer: str):
    super().__init__(base_model, graph_reg_config)
    self.layer = layer
    target = (base_model.output if layer in base_model.output_names
              else base_model.get_layer(layer).output)
    self._dual = keras.Model(base_model.inputs, [base_model.output, target])

  def call(self, inputs, training=False, **kwargs):
    sample, nbrs, nbr_weights = self.nbr_features_layer.call(inputs)
    out, emb = self._dual(sample, training=training, **kwargs)
    if nbr_weights is not None and nbrs and self.graph_reg_config.multiplier > 0:
      # Neighbours run in inference mode: nodes without neighbours carry
      # zero-weight placeholder inputs, which must not enter BatchNorm's
      # moving statistics (in training mode they did, and test UAR fell).
      _, nbr_emb = self._dual(nbrs, training=False, **kwargs)
      graph_loss = self.regularizer(sources=emb, targets=nbr_emb,
                                    weights=nbr_weights)
    else:
      graph_loss = tf.constant(0, dtype=tf.float32)
    scaled = self.graph_reg_config.multiplier * graph_loss
    self.add_metric(scaled, name="scaled_graph_loss", aggregation="mean")
    self.add_loss(scaled)
    return out


def _weights(labels: np.ndarray, k: int, cfg: training.TrainConfig):
  return training.class_weights(labels, k) if cfg.balanced else None


def train_classifier(train: data.Arrays, val: data.Arrays, num_classes: int,
                     cnn: models.CNNConfig, cfg: training.TrainConfig,
                     init_from: Optional[keras.Model] = None,
                     out_dir: Optional[str] = None,
                     front_end: FrontEndConfig = FrontEndConfig(),
                     strategy: Optional[tf.distribute.Strategy] = None
                     ) -> Tuple[keras.Model, Dict]:
  """A CNN on speech only; ``init_from`` transfers weights by layer name
  (classic transfer learning: every layer is then fine-tuned)."""
  training.set_seed(cfg.seed)
  with (strategy or tf.distribute.get_strategy()).scope():
    model = models.build_cnn(num_classes, cnn, front_end)
  if init_from is not None:
    models.transfer_weights(init_from, model)
  models.adapt_normalization(model, train.features)
  ds = data.train_dataset(train.features, train.labels, cfg.batch_size, cfg.seed)
  hist = training.fit(model, ds, lambda: model.predict(val.features, verbose=0),
                      val.labels, num_classes, cfg, out_dir,
                      _weights(train.labels, num_classes, cfg), strategy)
  return model, hist


def train_graph_student(packed: Dict[str, np.ndarray], val: data.Arrays,
                        num_classes: int, cnn: models.CNNConfig,
                        cfg: training.TrainConfig, reg: GraphRegParams,
                        out_dir: Optional[str] = None,
                        front_end: FrontEndConfig = FrontEndConfig()
                        ) -> Tuple[keras.Model, Dict]:
  """The student trained on packed examples with graph regularisation.

  ``packed`` comes from :func:`nsl_ser.data.packed_arrays`. Returns the base
  model (what gets exported) and the history.
  """
  training.set_seed(cfg.seed)
  base = models.build_cnn(num_classes, cnn, front_end)
  models.adapt_normalization(base, packed[data.FEATURES])
  model = LayerGraphRegularization(base, reg.config(), reg.layer)
  inputs = {data.FEATURES: packed[data.FEATURES]}
  for i in range(reg.max_neighbors):
    inputs[data.nbr_feature_key(i)] = packed[data.nbr_feature_key(i)]
    inputs[data.nbr_weight_key(i)] = packed[data.nbr_weight_key(i)]
  labels = packed["label"]
  cw = _weights(labels, num_classes, cfg)
  sw = None if cw is None else np.array([cw[int(l)] for l in labels], np.float32)
  ds = data.train_dataset(inputs, labels, cfg.batch_size, cfg.seed, sw)
  hist = training.fit(model, ds, lambda: base.predict(val.features, verbose=0),
                      val.labels, num_classes, cfg, out_dir)
  return base, hist


def train_head(train_emb: np.ndarray, train_labels: np.ndarray,
               val_emb: np.ndarray, val_labels: np.ndarray, num_classes: int,
               cfg: training.TrainConfig) -> Tuple[keras.Model, Dict]:
  """A new softmax head on frozen embeddings (feature extraction)."""
  training.set_seed(cfg.seed)
  head = keras.Sequential([keras.Input(train_emb.shape[1:]),
                           keras.layers.Dropout(0.2),
                           keras.layers.Dense(num_classes, activation="softmax")])
  ds = data.train_dataset({"x": train_emb}, train_labels, cfg.batch_size,
                          cfg.seed).map(lambda x, y: (x["x"], y))
  hist = training.fit(head, ds, lambda: head.predict(val_emb, verbose=0),
                      val_labels, num_classes, cfg, None,
                      _weights(train_labels, num_classes, cfg))
  return head, hist
