"""Self-distillation with early exits (a Keras model with a custom train_step).

Loss, for exits 1..K (K = the deepest, the full model)::

  CE(y, p_K) + 1/(K-1) * sum_{i<K} [ w_ce  * CE(y, p_i)
                                   + w_kd  * T^2 * KL(soft_T(p_K) || soft_T(p_i))
                                   + w_feat * MSE(f_i, stop_gradient(f_K)) ]

``soft_T(p) = softmax(log p / T)``; ``f_i`` is exit i's projection and ``f_K``
the deepest ``fc1``. With graph regularisation (NSL's own NeighborFeatures
and PairwiseDistance layers) the deepest features — or every exit's — are
also pulled towards those of graph neighbours.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

from nsl_ser.compat import keras, nsl, tf
from nsl_ser.nsl_train import GraphRegParams

EPS = 1e-7


@dataclasses.dataclass
class DistillConfig:
  ce_weight: float = 1.0
  kd_weight: float = 1.0
  feature_weight: float = 1.0
  temperature: float = 2.0


def soften(probs: tf.Tensor, temperature: float) -> tf.Tensor:
  return tf.nn.softmax(tf.math.log(probs + EPS) / temperature, axis=-1)


def kl_divergence(teacher: tf.Tensor, student: tf.Tensor) -> tf.Tensor:
  """Per-example KL(teacher || student) of probability rows."""
  return tf.reduce_sum(teacher * (tf.math.log(teacher + EPS)
                                  - tf.math.log(student + EPS)), axis=-1)


def cross_entropy(labels: tf.Tensor, probs: tf.Tensor) -> tf.Tensor:
  """Per-example CE with integer labels [B] or soft/one-hot labels [B, K]
  (mixup)."""
  if labels.shape.rank == 2:
    return keras.losses.categorical_crossentropy(labels, probs)
  return keras.losses.sparse_categorical_crossentropy(labels, probs)


def distillation_terms(labels: tf.Tensor, probs: Sequence[tf.Tensor],
                       feats: Sequence[tf.Tensor], cfg: DistillConfig,
                       sample_weight: Optional[tf.Tensor] = None
                       ) -> Dict[str, tf.Tensor]:
  """Per-exit CE, KD and feature terms and the weighted total (scalars)."""
  k = len(probs)
  w = (tf.ones(tf.shape(probs[0])[:1], tf.float32) if sample_weight is None
       else tf.cast(tf.reshape(sample_weight, [-1]), tf.float32))

  def mean(v):
    return tf.reduce_sum(w * v) / tf.maximum(tf.reduce_sum(w), EPS)

  teacher = tf.stop_gradient(soften(probs[-1], cfg.temperature))
  deep = tf.stop_gradient(feats[-1])
  out: Dict[str, tf.Tensor] = {}
  extra = tf.constant(0.0)
  for i, p in enumerate(probs, start=1):
    out[f"ce_{i}"] = mean(cross_entropy(labels, p))
    if i < k:
      out[f"kd_{i}"] = mean(kl_divergence(teacher, soften(p, cfg.temperature))
                            ) * cfg.temperature ** 2
      out[f"feat_{i}"] = mean(tf.reduce_mean(tf.square(feats[i - 1] - deep), -1))
      extra += (cfg.ce_weight * out[f"ce_{i}"] + cfg.kd_weight * out[f"kd_{i}"]
                + cfg.feature_weight * out[f"feat_{i}"])
  out["total"] = out[f"ce_{k}"] + (extra / (k - 1) if k > 1 else 0.0)
  return out


class SelfDistillationModel(keras.Model):
  """Wraps a backbone whose outputs are [exit_1..exit_K, feat_1..feat_K]
  (``models.build_cnn(..., exits=True, with_features=True)``). Calling it
  returns the K exit probabilities."""

  computes_own_loss = True  # training.fit compiles it with an optimiser only

  def __init__(self, backbone: keras.Model, num_exits: int,
               config: DistillConfig = DistillConfig(),
               graph_reg: Optional[GraphRegParams] = None,
               regularize_all_exits: bool = False, **kwargs):
    super().__init__(name="self_distillation", **kwargs)
    self.backbone = backbone
    self.num_exits = num_exits
    self.config = config
    self.graph_reg = graph_reg
    self.regularize_all_exits = regularize_all_exits
    if graph_reg is not None:
      reg_cfg = graph_reg.config()
      self.nbr_features_layer = nsl.keras.layers.NeighborFeatures(
          reg_cfg.neighbor_config)
      self.regularizer = nsl.keras.layers.PairwiseDistance(
          reg_cfg.distance_config, name="graph_loss")
    names = (["loss"] + [f"ce_{i}" for i in range(1, num_exits + 1)]
             + ["kd", "feat"] + (["graph_loss"] if graph_reg else []))
    self._trackers = {n: keras.metrics.Mean(name=n) for n in names}

  @property
  def metrics(self):
    return list(self._trackers.values())

  def call(self, inputs, training=False):
    return self.backbone(inputs, training=training)[:self.num_exits]

  def _split(self, x):
    if self.graph_reg is None:
      return x, None, None
    sample, nbrs, weights = self.nbr_features_layer.call(x)
    return sample, (nbrs or None), weights

  def _terms(self, x, y, sw, training):
    sample, nbrs, nbr_w = self._split(x)
    outs = self.backbone(sample, training=training)
    k = self.num_exits
    terms = distillation_terms(y, outs[:k], outs[k:], self.config, sw)
    total = terms["total"]
    if nbrs is not None and training and self.graph_reg.multiplier > 0:
      # inference mode: zero-weight placeholder neighbours must not enter
      # BatchNorm's moving statistics
      nbr_outs = self.backbone(nbrs, training=False)
      which = range(k) if self.regularize_all_exits else [k - 1]
      g = tf.add_n([self.regularizer(sources=outs[k + j], targets=nbr_outs[k + j],
                                     weights=nbr_w) for j in which])
      terms["graph_loss"] = self.graph_reg.multiplier * g
      total += terms["graph_loss"]
    terms["total"] = total
    return terms

  def _update(self, terms):
    k = self.num_exits
    self._trackers["loss"].update_state(terms["total"])
    for i in range(1, k + 1):
      self._trackers[f"ce_{i}"].update_state(terms[f"ce_{i}"])
    if k > 1:
      self._trackers["kd"].update_state(
          tf.add_n([terms[f"kd_{i}"] for i in range(1, k)]) / (k - 1))
      self._trackers["feat"].update_state(
          tf.add_n([terms[f"feat_{i}"] for i in range(1, k)]) / (k - 1))
    if "graph_loss" in terms:
      self._trackers["graph_loss"].update_state(terms["graph_loss"])
    return {n: t.result() for n, t in self._trackers.items()}

  def train_step(self, data):
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    with tf.GradientTape() as tape:
      terms = self._terms(x, y, sw, training=True)
      loss = terms["total"] + tf.add_n(self.backbone.losses or [tf.constant(0.0)])
    grads = tape.gradient(loss, self.backbone.trainable_variables)
    self.optimizer.apply_gradients(zip(grads, self.backbone.trainable_variables))
    return self._update(terms)

  def test_step(self, data):
    x, y, sw = keras.utils.unpack_x_y_sample_weight(data)
    return self._update(self._terms(x, y, sw, training=False))


def train_exit_model(train_x, train_labels, val_features, val_labels,
                     num_classes: int, cnn=None, cfg=None,
                     distill: DistillConfig = DistillConfig(),
                     init_from: Optional[keras.Model] = None,
                     graph_reg: Optional[GraphRegParams] = None,
                     regularize_all_exits: bool = False,
                     out_dir: Optional[str] = None,
                     strategy: Optional[tf.distribute.Strategy] = None,
                     batches=None):
  """Builds the exit backbone, optionally transfers pretrained weights by
  layer name, trains it with self-distillation (and the graph when
  ``train_x`` is a packed dict and ``graph_reg`` is set).

  ``batches`` (an :class:`nsl_ser.augment.TrainBatches`) replaces the plain
  shuffled arrays as the training input; ``train_x`` then only sets the
  ``norm`` layer's statistics.

  Returns (exit model with outputs exit_1..exit_K, distillation model,
  history).
  """
  from nsl_ser import data, models, training
  cnn = cnn or models.STUDENT
  cfg = cfg or training.TrainConfig()
  feats = train_x[data.FEATURES] if isinstance(train_x, dict) else train_x
  training.set_seed(cfg.seed)
  with (strategy or tf.distribute.get_strategy()).scope():
    bb = models.build_cnn(num_classes, cnn, exits=True, with_features=True)
    k = len(models.exit_names(bb))
    if init_from is not None:
      models.transfer_weights(init_from, bb)
    models.adapt_normalization(bb, feats)
    model = SelfDistillationModel(bb, k, distill, graph_reg, regularize_all_exits)
  if batches is not None:
    ds = batches  # carries its own sample weights
  else:
    sw = (training.sample_weights(train_labels, num_classes) if cfg.balanced
          else None)
    if isinstance(train_x, dict):
      train_x = {n: v for n, v in train_x.items() if n not in ("label", "id")}
    ds = data.train_dataset(train_x, train_labels, cfg.batch_size, cfg.seed, sw)
  hist = training.fit(model, ds,
                      lambda: model.predict(val_features, verbose=0)[-1],
                      val_labels, num_classes, cfg, out_dir, strategy=strategy)
  exit_model = keras.Model(bb.inputs, bb.outputs[:k], name=f"{cnn.name}_exits")
  return exit_model, model, hist
