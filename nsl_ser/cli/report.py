"""nsl-ser report: report.md + PNG plots of a pipeline run."""
from __future__ import annotations

import os

from absl import flags

from nsl_ser import report

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "work", "An nsl-ser run folder.")
flags.DEFINE_string("out_dir", None, "Default: <work_dir>/report.")


def main(argv) -> None:
  del argv
  print(report.write_report(FLAGS.work_dir,
                            FLAGS.out_dir or os.path.join(FLAGS.work_dir, "report")))
