"""Self-distillation with early exits and adaptive inference, on real data."""
import numpy as np
import pytest

from nsl_ser import data, early_exit, models, records, self_distill, splits, training
from nsl_ser.compat import tf

from conftest import SEED


@pytest.fixture(scope="module")
def emodb(records_dir):
  labels = open(f"{records_dir}/emodb/labels.txt").read().split()
  allx = data.load_arrays(records.list_shards(f"{records_dir}/emodb"), labels)
  sp = splits.get_split("emodb", 0)
  return {p: allx.by_speakers(getattr(sp, p)) for p in ("train", "val", "test")}


def test_exit_outputs_are_distributions(emodb):
  bb = models.build_cnn(7, exits=True, with_features=True)
  models.adapt_normalization(bb, emodb["train"].features)
  m = self_distill.SelfDistillationModel(bb, 4)
  probs = m.predict(emodb["test"].features[:16], verbose=0)
  assert len(probs) == 4 and models.exit_names(bb) == [f"exit_{i}" for i in range(1, 5)]
  for p in probs:
    assert p.shape == (16, 7)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_distillation_term_is_zero_when_exit_equals_deepest():
  rng = np.random.default_rng(0)
  p = tf.nn.softmax(rng.normal(size=(8, 7)).astype(np.float32))
  f = tf.constant(rng.normal(size=(8, 64)).astype(np.float32))
  y = tf.constant(rng.integers(0, 7, 8))
  t = self_distill.distillation_terms(y, [p, p, p], [f, f, f],
                                      self_distill.DistillConfig(temperature=3.0))
  for i in (1, 2):
    assert abs(float(t[f"kd_{i}"])) < 1e-5 and abs(float(t[f"feat_{i}"])) < 1e-7
  q = tf.nn.softmax(rng.normal(size=(8, 7)).astype(np.float32))
  t2 = self_distill.distillation_terms(y, [q, p], [f * 2, f],
                                       self_distill.DistillConfig())
  assert float(t2["kd_1"]) > 1e-3 and float(t2["feat_1"]) > 1e-3


def test_tau_extremes():
  rng = np.random.default_rng(1)
  probs = [np.asarray(tf.nn.softmax(rng.normal(size=(50, 7)) * 3)) for _ in range(4)]
  for policy in early_exit.POLICIES:
    assert (early_exit.stop_exit(probs, 0.0, policy) == 0).all()
    assert (early_exit.stop_exit(probs, 1.01, policy) == 3).all()
    mid = early_exit.stop_exit(probs, 0.6, policy)
    assert mid.min() >= 0 and mid.max() <= 3
  pred, idx = early_exit.adaptive_predict(probs, 1.01)
  np.testing.assert_array_equal(pred, probs[-1].argmax(1))
  curve = early_exit.tau_curve(probs, rng.integers(0, 7, 50), [1, 2, 3, 4],
                               [0.0, 1.01], 7)
  assert curve[0]["cost_ratio"] == 0.25 and curve[1]["cost_ratio"] == 1.0


def test_exit_macs_are_cumulative_and_shallow_exit_is_cheap():
  bb = models.build_cnn(7, exits=True, with_features=True)
  macs = models.exit_macs(bb)
  assert macs == sorted(macs) and macs[0] < 0.4 * macs[-1]
  plain = models.build_cnn(7)
  assert macs[-1] > models.count_macs(plain)  # + the earlier exits' heads


def _loss_drops(hist, k):
  for i in range(1, k + 1):
    assert hist[f"ce_{i}"][-1] < hist[f"ce_{i}"][0], (i, hist[f"ce_{i}"])


def test_quick_training_lowers_every_exit_loss(emodb):
  tr = emodb["train"]
  training.set_seed(SEED)  # initial weights, whatever ran before
  bb = models.build_cnn(7, exits=True, with_features=True)
  models.adapt_normalization(bb, tr.features)
  m = self_distill.SelfDistillationModel(bb, 4)
  cfg = training.TrainConfig(epochs=6, verbose=0, patience=100)
  hist = training.fit(m, data.train_dataset(tr.features, tr.labels, 16, 0),
                      lambda: m.predict(emodb["val"].features, verbose=0)[-1],
                      emodb["val"].labels, 7, cfg)
  _loss_drops(hist, 4)
  assert hist["kd"][-1] > 0 and len(hist["val_uar"]) == 6


def test_graph_regularised_self_distillation(emodb, tmp_path):
  """NSL neighbour unpacking + distance inside the custom train step."""
  from nsl_ser.nsl_train import GraphRegParams
  tr = emodb["train"]
  # neighbours: the next training clip of the same speaker (a toy graph)
  n = len(tr)
  nbr = np.roll(np.arange(n), 1)
  x = {"features": tr.features, "NL_nbr_0_features": tr.features[nbr],
       "NL_nbr_0_weight": np.ones((n, 1), np.float32)}
  training.set_seed(SEED)  # initial weights, whatever ran before
  bb = models.build_cnn(7, exits=True, with_features=True)
  models.adapt_normalization(bb, tr.features)
  m = self_distill.SelfDistillationModel(
      bb, 4, graph_reg=GraphRegParams(max_neighbors=1, multiplier=0.5),
      regularize_all_exits=True)
  cfg = training.TrainConfig(epochs=4, verbose=0, patience=100)
  hist = training.fit(m, data.train_dataset(x, tr.labels, 16, 0),
                      lambda: m.predict(emodb["val"].features, verbose=0)[-1],
                      emodb["val"].labels, 7, cfg)
  assert all(g > 0 for g in hist["graph_loss"])
  _loss_drops(hist, 4)
