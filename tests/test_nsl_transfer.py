"""Knowledge transfer with NSL on real data: CLI stages and the experiment."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from nsl_ser import graph, records, splits
from nsl_ser.compat import tf
from nsl_ser.prepare import read_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
  r = subprocess.run([sys.executable, "-m", "nsl_ser.cli", *args],
                     capture_output=True, text=True, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  return r.stdout


@pytest.fixture(scope="module")
def stages(records_dir, tmp_path_factory):
  """train-source -> embed -> build-graph -> train-student, through the CLI."""
  w = tmp_path_factory.mktemp("nsl")
  out = {k: str(w / k) for k in ("source", "emb", "graphs", "student")}
  _cli("train-source", f"--records_dir={records_dir}/ravdess",
       f"--out_dir={out['source']}", "--epochs=2", "--speeds=1.0")
  _cli("embed", f"--model={out['source']}/model.keras",
       f"--records_dir={records_dir}/emodb", f"--out_dir={out['emb']}")
  _cli("build-graph", f"--embeddings={out['emb']}",
       f"--records_dir={records_dir}/emodb", f"--graph_dir={out['graphs']}",
       "--fold=0", "--max_nbrs=2")
  _cli("train-student", f"--packed={out['graphs']}/emodb_fold0_packed.tfrecord",
       f"--records_dir={records_dir}/emodb", f"--out_dir={out['student']}",
       "--max_neighbors=2", "--epochs=3", "--fold=0", "--average_epochs=2")
  out["records"] = records_dir
  return out


def test_source_outputs(stages):
  m = json.load(open(os.path.join(stages["source"], "metrics.json")))
  assert m["test"]["n"] == 360 and len(m["labels"]) == 8
  assert np.array(m["test"]["confusion_matrix"]).sum() == 360
  assert m["epochs_run"] == 2 and m["recipe"]["train"]["selection"] == "average"
  train = os.path.join(stages["source"], "train")
  assert os.path.exists(os.path.join(train, "history.csv"))
  assert os.path.isdir(os.path.join(train, "tensorboard"))


def test_embeddings_are_unit_norm(stages):
  emb = records.read_embeddings(stages["emb"])
  assert len(emb) == 535
  norms = np.linalg.norm(np.stack(list(emb.values())), axis=1)
  np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_graph_joins_training_ids_only(stages):
  manifest = read_csv(os.path.join(stages["records"], "emodb", "manifest.csv"))
  split = splits.get_split("emodb", 0)
  train_ids = {r["id"] for r in manifest if r["speaker"] in split.train}
  g = graph.read_graph(os.path.join(stages["graphs"], "emodb_fold0.tsv"))
  nodes = set(g) | {t for nb in g.values() for t in nb}
  assert nodes and nodes <= train_ids
  stats = json.load(open(os.path.join(stages["graphs"], "emodb_fold0.stats.json")))
  assert stats["nodes"] == len(train_ids) and stats["edges"] > 0
  assert 0.0 <= stats["homophily"] <= 1.0
  assert stats["isolated"] < stats["nodes"]


def test_packed_records_parse(stages):
  path = os.path.join(stages["graphs"], "emodb_fold0_packed.tfrecord")
  manifest = read_csv(os.path.join(stages["records"], "emodb", "manifest.csv"))
  train_ids = {r["id"] for r in manifest if r["speaker"] in splits.get_split("emodb", 0).train}
  n, with_nbr = 0, 0
  for raw in tf.data.TFRecordDataset(path):
    ex = tf.train.Example.FromString(raw.numpy())
    f = ex.features.feature
    assert f["id"].bytes_list.value[0].decode() in train_ids
    if "NL_nbr_0_weight" in f:
      with_nbr += 1
      assert f["NL_nbr_0_id"].bytes_list.value[0].decode() in train_ids
      assert f["NL_nbr_0_waveform"].bytes_list.value[0]
      assert f["NL_nbr_0_weight"].float_list.value[0] > 0
    n += 1
  assert n == len(train_ids) and with_nbr > 0


def test_neighbour_index_reads_the_packed_neighbours_back(stages):
  path = os.path.join(stages["graphs"], "emodb_fold0_packed.tfrecord")
  g = graph.read_graph(os.path.join(stages["graphs"], "emodb_fold0.tsv"))
  manifest = read_csv(os.path.join(stages["records"], "emodb", "manifest.csv"))
  ids = sorted(r["id"] for r in manifest
               if r["speaker"] in splits.get_split("emodb", 0).train)
  nbrs, w = graph.neighbour_index(path, ids, 2)
  assert nbrs.shape == w.shape == (len(ids), 2)
  assert (nbrs >= 0).any()
  for i, uid in enumerate(ids):
    for j in range(2):
      if nbrs[i, j] < 0:
        assert w[i, j] == 0
        continue
      other = ids[nbrs[i, j]]
      assert other != uid and w[i, j] > 0
      # an edge of the graph, in either direction (undirected packing)
      assert other in g.get(uid, {}) or uid in g.get(other, {})


def test_student_is_small_and_evaluated(stages):
  m = json.load(open(os.path.join(stages["student"], "metrics.json")))
  assert m["params"] <= 100_000
  assert m["test"]["n"] == len([r for r in read_csv(os.path.join(
      stages["records"], "emodb", "manifest.csv")) if r["speaker"] in ("03", "08")])


def test_student_trains_with_its_graph(stages):
  """The student's metrics record the graph it was regularised with, every
  exit is evaluated, and the recipe is the documented default."""
  m = json.load(open(os.path.join(stages["student"], "metrics.json")))
  assert m["graph_reg"]["max_neighbors"] == 2 and m["graph_reg"]["multiplier"] > 0
  assert list(m["exits"]["test"]) == ["exit_1", "exit_2", "exit_3", "exit_4"]
  assert m["recipe"]["augment"]["speeds"] == [1.0, 0.9, 1.1]
  assert m["recipe"]["train"]["selection"] == "average" and m["epochs_run"] == 3
  assert len(m["normalization"]["train_stats"]["mean"]) == 40


def test_accuracy_experiment_end_to_end(tmp_path):
  """experiments/accuracy.py on one fold, one seed, two epochs: every row
  kind that needs the source model, the int8 stages, both regimes."""
  r = subprocess.run([sys.executable, "experiments/accuracy.py", "--folds=0",
                      "--seeds=1", "--epochs=2", "--source_epochs=1",
                      "--finetune_epochs=1", "--configs=final,graph",
                      "--regimes=global,speaker", f"--work_dir={tmp_path}/w",
                      f"--results_dir={tmp_path}/r", "--name=acc"],
                     capture_output=True, text=True, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.load(open(tmp_path / "r" / "acc.json"))
  s = res["summary"]
  for key in ("uar_int8_independent", "uar_int8_calibrated", "uar_speech_only",
              "uar_graph", "uar_exit_1", "uar_exit_last", "source_test_uar",
              "graph_homophily", "wall_s"):
    assert np.isfinite(s[key]), key
  assert 0 < s["mcu_int8_bytes"] <= 100_000
  assert {r["regime"] for r in res["runs"]} == {"global", "speaker"}
  assert "speaker: UAR" in open(tmp_path / "r" / "acc.md").read()
