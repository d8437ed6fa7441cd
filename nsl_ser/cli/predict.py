"""nsl-ser predict PATH...: emotions of audio files (any libsndfile format).

Prints a table (file, emotion, confidence, exit used, ms); long files get a
timeline. ``--output=x.csv`` or ``x.json`` also writes the results.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import sys

from absl import flags

from nsl_ser import early_exit, predict
from nsl_ser.prepare import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("model", predict.DEFAULT_MODEL,
                    "A phone .tflite (LiteRT) or a Keras .keras exit model.")
flags.DEFINE_float("tau", 0.8, "Early-exit threshold: stop at the first exit "
                   "whose confidence >= tau (0: always exit 1; >1: full model).")
flags.DEFINE_enum("policy", "max_prob", list(early_exit.POLICIES),
                  "Confidence measure.")
flags.DEFINE_float("hop_seconds", 1.5, "Hop between windows of long files.")
flags.DEFINE_string("output", None, "Also write results to a .csv or .json.")


def _rows(results):
  """One row per file; long files add one row per window (the timeline)."""
  for r in results:
    yield [r.path, "", "", r.emotion, f"{r.confidence:.2f}", r.exit, f"{r.ms:.1f}"]
    if len(r.windows) > 1:
      for w in r.windows:
        yield ["", f"{w.start:.1f}", f"{w.end:.1f}", w.emotion,
               f"{w.confidence:.2f}", w.exit, f"{w.ms:.1f}"]


def main(argv) -> None:
  paths = argv[1:]
  if not paths:
    sys.exit("usage: nsl-ser predict [--flags] PATH [PATH...]")
  p = predict.load_predictor(FLAGS.model)
  results, skipped = predict.predict_paths(p, paths, tau=FLAGS.tau,
                                           policy=FLAGS.policy,
                                           hop_seconds=FLAGS.hop_seconds)
  header = ["file", "start", "end", "emotion", "confidence", "exit", "ms"]
  rows = list(_rows(results))
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else []
  if rows:
    for r in [header] + rows:
      print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
  for path, reason in skipped:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  if FLAGS.output:
    if FLAGS.output.endswith(".json"):
      atomic_write_text(FLAGS.output, json.dumps({
          "results": [dict(dataclasses.asdict(r),
                           segments=predict.segments(r.windows)) for r in results],
          "skipped": [{"file": f, "reason": why} for f, why in skipped]},
          indent=2))
    else:
      with open(FLAGS.output + ".tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
        w.writerows([[f_, "", "", "SKIPPED", "", why, ""] for f_, why in skipped])
      os.replace(FLAGS.output + ".tmp", FLAGS.output)
  if not results and skipped:
    sys.exit(1)
