"""nsl-ser train-source: the source CNN on a prepared corpus' fixed split."""
from __future__ import annotations

import json

from absl import flags

from nsl_ser import source
from nsl_ser.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_string("records_dir", "work/records/ravdess",
                    "Prepared source corpus (nsl-ser prepare).")
flags.DEFINE_string("corpus", "ravdess", "Corpus name (selects the split).")
flags.DEFINE_string("out_dir", "work/source", "Model, metrics and logs.")
common.define_train_flags(epochs=40)


def main(argv) -> None:
  del argv
  _, metrics = source.train_source(FLAGS.records_dir, FLAGS.corpus,
                                   FLAGS.out_dir, common.train_recipe())
  print(json.dumps({p: {k: round(metrics[p][k], 2) for k in ("uar", "wa")}
                    for p in ("val", "test")}, indent=2))
