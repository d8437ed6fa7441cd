"""nsl-ser train-student: the small CNN on target speech + the graph."""
from __future__ import annotations

import json
import os

from absl import flags

from nsl_ser import data, evaluation, models, nsl_train, source
from nsl_ser.cli import common
from nsl_ser.prepare import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("packed", "graphs/emodb_fold0_packed.tfrecord",
                    "nsl-ser build-graph output.")
flags.DEFINE_string("records_dir", "work/records/emodb", "Prepared target corpus.")
flags.DEFINE_string("corpus", "emodb", "Target corpus (selects the split).")
flags.DEFINE_integer("fold", 0, "Split fold (must match the graph's).")
flags.DEFINE_string("out_dir", "work/student", "Model, metrics and logs.")
flags.DEFINE_integer("max_neighbors", 3, "Neighbours used per example.")
flags.DEFINE_float("multiplier", 0.1, "Graph loss multiplier (0: speech only).")
flags.DEFINE_enum("distance_type", "cosine", ["cosine", "l2", "l1", "kl_divergence",
                                              "jensen_shannon_divergence"],
                  "Graph distance.")
flags.DEFINE_string("reg_layer", "fc1", "Regularised layer (fc1 or probs).")
common.define_train_flags(epochs=50)


def main(argv) -> None:
  del argv
  parts, labels = source.load_partitions(FLAGS.records_dir, FLAGS.corpus, FLAGS.fold)
  packed = data.packed_arrays([FLAGS.packed], labels, FLAGS.max_neighbors)
  reg = nsl_train.GraphRegParams(FLAGS.max_neighbors, FLAGS.multiplier,
                                 FLAGS.distance_type, layer=FLAGS.reg_layer)
  model, hist = nsl_train.train_graph_student(
      packed, parts["val"], len(labels), models.STUDENT, common.train_config(),
      reg, out_dir=os.path.join(FLAGS.out_dir, "train"))
  metrics = {p: evaluation.report(parts[p].labels,
                                  model.predict(parts[p].features, verbose=0), labels)
             for p in ("val", "test")}
  metrics.update(params=model.count_params(), wall_s=hist["wall_s"],
                 graph_reg=reg.__dict__, fold=FLAGS.fold)
  model.save(os.path.join(FLAGS.out_dir, "model.keras"))
  atomic_write_text(os.path.join(FLAGS.out_dir, "labels.txt"),
                    "".join(l + "\n" for l in labels))
  atomic_write_text(os.path.join(FLAGS.out_dir, "metrics.json"),
                    json.dumps(metrics, indent=2))
  print(json.dumps({p: {k: round(metrics[p][k], 2) for k in ("uar", "wa")}
                    for p in ("val", "test")}, indent=2))
