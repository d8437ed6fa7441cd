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
       f"--out_dir={out['source']}", "--epochs=2")
  _cli("embed", f"--model={out['source']}/model.keras",
       f"--records_dir={records_dir}/emodb", f"--out_dir={out['emb']}")
  _cli("build-graph", f"--embeddings={out['emb']}",
       f"--records_dir={records_dir}/emodb", f"--graph_dir={out['graphs']}",
       "--fold=0", "--max_nbrs=2")
  _cli("train-student", f"--packed={out['graphs']}/emodb_fold0_packed.tfrecord",
       f"--records_dir={records_dir}/emodb", f"--out_dir={out['student']}",
       "--max_neighbors=2", "--epochs=3", "--fold=0")
  out["records"] = records_dir
  return out


def test_source_outputs(stages):
  m = json.load(open(os.path.join(stages["source"], "metrics.json")))
  assert m["test"]["n"] == 360 and len(m["labels"]) == 8
  assert np.array(m["test"]["confusion_matrix"]).sum() == 360
  train = os.path.join(stages["source"], "train")
  assert os.path.exists(os.path.join(train, "history.csv"))
  assert os.path.exists(os.path.join(train, "best.weights.h5"))
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


def test_student_is_small_and_evaluated(stages):
  m = json.load(open(os.path.join(stages["student"], "metrics.json")))
  assert m["params"] <= 100_000
  assert m["test"]["n"] == len([r for r in read_csv(os.path.join(
      stages["records"], "emodb", "manifest.csv")) if r["speaker"] in ("03", "08")])


def test_quick_experiment_end_to_end(tmp_path):
  """--quick: graph-regularised training lowers its loss on real data."""
  r = subprocess.run([sys.executable, "experiments/nsl_transfer.py", "--quick",
                      f"--work_dir={tmp_path}/w", f"--results_dir={tmp_path}/r"],
                     capture_output=True, text=True, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  res = json.load(open(tmp_path / "r" / "nsl_transfer_quick.json"))
  s = res["summary"]
  for key in ("uar_speech_only", "uar_graph", "uar_finetune", "uar_frozen_head",
              "source_test_uar", "student_params", "student_int8_bytes",
              "finetune_params", "graph_homophily", "wall_s"):
    assert key in s and np.isfinite(s[key])
  assert s["student_params"] <= 100_000 and s["student_int8_bytes"] < 100_000
  assert s["finetune_params"] >= 10 * s["student_params"]
  run = res["per_fold"]["0"]["runs"][0]["graph"]
  assert run["loss_last"] < run["loss_first"]
  assert os.path.exists(tmp_path / "r" / "nsl_transfer_quick.md")
