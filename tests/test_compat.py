"""The compat module makes NSL + tf-keras + tfmot work on this stack."""
import os

import numpy as np

from nsl_ser.compat import keras, nsl, tf, tfmot
from nsl_ser import records, training

from conftest import SEED


def test_legacy_keras_and_imports():
  assert os.environ["TF_USE_LEGACY_KERAS"] == "1"
  assert keras.__name__.startswith("tf_keras")
  assert tf.keras.layers.Dense is keras.layers.Dense
  assert hasattr(tfmot().quantization.keras, "quantize_model")


def test_pack_nbrs_and_graph_regularization_fit(tmp_path, emodb_files):
  """build_graph -> pack_nbrs ('rU' patch) -> GraphRegularization.fit."""
  from nsl_ser.audio import load_audio
  from nsl_ser.features import log_mel_numpy
  files = emodb_files[:24]
  feats = np.stack([log_mel_numpy(load_audio(f)).mean(0) for f in files])
  feats = (feats - feats.mean(0)) / feats.std(0)  # a well-posed toy problem
  labels = np.array([os.path.basename(f)[5] == "W" for f in files], np.int64)
  emb_path = str(tmp_path / "emb.tfrecord")
  train_path = str(tmp_path / "train.tfrecord")
  with tf.io.TFRecordWriter(emb_path) as we, tf.io.TFRecordWriter(train_path) as wt:
    for i, f in enumerate(feats):
      e = f - feats.mean(0)
      we.write(records.embedding_example(f"u{i}", e / np.linalg.norm(e))
               .SerializeToString())
      wt.write(tf.train.Example(features=tf.train.Features(feature={
          "id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"u{i}".encode()])),
          "x": tf.train.Feature(float_list=tf.train.FloatList(value=f.tolist())),
          "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[labels[i]])),
      })).SerializeToString())
  graph = str(tmp_path / "graph.tsv")
  nsl.tools.build_graph([emb_path], graph, similarity_threshold=0.5)
  assert os.path.getsize(graph) > 0
  packed = str(tmp_path / "packed.tfrecord")
  nsl.tools.pack_nbrs(train_path, "", graph, packed,
                      add_undirected_edges=True, max_nbrs=2)
  spec = {"x": tf.io.FixedLenFeature([40], tf.float32),
          "label": tf.io.FixedLenFeature([], tf.int64)}
  for i in range(2):
    spec[f"NL_nbr_{i}_x"] = tf.io.FixedLenFeature([40], tf.float32,
                                                  default_value=[0.0] * 40)
    spec[f"NL_nbr_{i}_weight"] = tf.io.FixedLenFeature([1], tf.float32,
                                                       default_value=[0.0])
  ds = tf.data.TFRecordDataset(packed).map(
      lambda s: tf.io.parse_single_example(s, spec)).batch(8)
  n_with_nbrs = sum(int(np.sum(b["NL_nbr_0_weight"].numpy() > 0)) for b in ds)
  assert n_with_nbrs > 0
  training.set_seed(SEED)  # the Dense layer's initial weights
  base = keras.Sequential([keras.Input((40,), name="x"),
                           keras.layers.Dense(2)])
  model = nsl.keras.GraphRegularization(
      base, nsl.configs.make_graph_reg_config(max_neighbors=2, multiplier=0.1))
  model.compile(optimizer=keras.optimizers.Adam(0.01),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  hist = model.fit(ds.map(lambda d: (d, d.pop("label"))), epochs=5, verbose=0)
  assert "scaled_graph_loss" in hist.history
  assert hist.history["loss"][-1] < hist.history["loss"][0]
