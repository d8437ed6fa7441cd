"""nsl-ser prepare: decode a corpus into sharded utterance TFRecords."""
from __future__ import annotations

import json
import sys

from absl import flags, logging

from nsl_ser import corpora
from nsl_ser.prepare import PrepareConfig, prepare

FLAGS = flags.FLAGS
flags.DEFINE_enum("corpus", None, sorted(corpora.CORPORA), "Corpus reader.")
flags.DEFINE_string("data_dir", "../shared/data",
                    "Data root holding <corpus>/, or the corpus folder itself.")
flags.DEFINE_string("out_dir", None, "Output folder for records and reports.")
flags.DEFINE_integer("num_shards", 4, "Number of TFRecord shards.")
flags.DEFINE_list("emotions", None, "Keep only these classes (default: all).")
flags.DEFINE_integer("workers", None, "Decoding threads (default: CPUs).")
flags.DEFINE_bool("overwrite", False, "Redo a finished output folder.")
flags.mark_flags_as_required(["corpus", "out_dir"])


def main(argv) -> None:
  del argv
  cfg = PrepareConfig(corpus=FLAGS.corpus, data_dir=FLAGS.data_dir,
                      out_dir=FLAGS.out_dir, num_shards=FLAGS.num_shards,
                      emotions=FLAGS.emotions, overwrite=FLAGS.overwrite)
  if FLAGS.workers:
    cfg.workers = FLAGS.workers
  summary = prepare(cfg)
  if summary.get("reused"):
    logging.info("%s is finished already (use --overwrite to redo it).",
                 FLAGS.out_dir)
  print(json.dumps({k: summary[k] for k in (
      "corpus", "files_found", "files_read", "skipped", "audio_hours",
      "realtime_factor")}, indent=2))
  if summary["skipped"]:
    print(f"{summary['skipped']} file(s) skipped: see "
          f"{FLAGS.out_dir}/skipped.csv", file=sys.stderr)
  if summary["files_read"] == 0:
    sys.exit(f"nothing usable was read from {FLAGS.data_dir}")
