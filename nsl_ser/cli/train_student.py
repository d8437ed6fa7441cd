"""nsl-ser train-student: the early-exit student on target speech + graph."""
from __future__ import annotations

import json

from absl import flags

from nsl_ser import nsl_train, source
from nsl_ser.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("packed", "work/graphs/packed.tfrecord",
                    "nsl-ser build-graph output (neighbours of each "
                    "training utterance).")
flags.DEFINE_string("records_dir", "work/records/emodb", "Prepared target corpus.")
flags.DEFINE_string("corpus", "emodb", "Target corpus (selects the split).")
flags.DEFINE_integer("fold", 0, "Split fold (must match the graph's).")
flags.DEFINE_string("out_dir", "work/student", "Model, metrics and logs.")
flags.DEFINE_integer("max_neighbors", 3, "Neighbours used per example.")
flags.DEFINE_float("multiplier", 0.1, "Graph loss multiplier (0: speech only).")
flags.DEFINE_enum("distance_type", "cosine", ["cosine", "l2", "l1"],
                  "Graph distance.")
common.define_train_flags(epochs=40)


def main(argv) -> None:
  del argv
  reg = nsl_train.GraphRegParams(FLAGS.max_neighbors, FLAGS.multiplier,
                                 FLAGS.distance_type)
  _, metrics = source.train_student(
      FLAGS.records_dir, FLAGS.corpus, FLAGS.fold, FLAGS.out_dir,
      common.train_recipe(), FLAGS.packed, reg)
  print(json.dumps({p: {k: round(metrics[p][k], 2) for k in ("uar", "wa")}
                    for p in ("val", "test")}, indent=2))
