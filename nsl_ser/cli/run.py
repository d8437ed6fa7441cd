"""nsl-ser run: the whole pipeline, corpora -> deployable model, in one go."""
from __future__ import annotations

import os

from absl import flags, logging

from nsl_ser.prepare import PrepareConfig, prepare

FLAGS = flags.FLAGS
flags.DEFINE_string("source", "ravdess", "Source corpus (trains the teacher).")
flags.DEFINE_string("target", "emodb", "Target corpus (trains the student).")
flags.DEFINE_string("data_dir", "../shared/data", "Data root with the corpora.")
flags.DEFINE_string("work_dir", "work", "Where every stage writes its output.")


def main(argv) -> None:
  del argv
  for corpus in (FLAGS.source, FLAGS.target):
    out = os.path.join(FLAGS.work_dir, "records", corpus)
    s = prepare(PrepareConfig(corpus, FLAGS.data_dir, out))
    logging.info("%s: %d read, %d skipped -> %s", corpus, s["files_read"],
                 s["skipped"], out)
