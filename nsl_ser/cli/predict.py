"""nsl-ser predict PATH...: emotions of audio files (any libsndfile format).

Prints a table (file, start, end, emotion, confidence, exit used, ms);
``--output=x.csv`` or ``x.json`` also writes the results.

Rows: every row names its file. Each file has one summary row, with start
and end empty; a file longer than the model's window (3 s by default) adds
a row per window (the timeline; start and end in seconds). Windows with too
little speech (voice activity detection, ``--min_speech``) are ``no_speech``
(confidence 1.0, exit "-", not classified); a file without speech is
``no_speech``.
CSV rows of skipped files (unreadable, empty, silent, too short) have
emotion SKIPPED and the reason in the exit column. The JSON holds per file
its windows, segments (consecutive windows of one emotion merged), each
also naming the file, and a list of skipped files with reasons.

Speaker calibration: ``--calibrate=PATH[,PATH]`` (that speaker's clips or
folders, no labels) or ``--calibrate=self`` (the files being predicted,
as one speaker) or ``--calibration=speaker.json`` (``nsl-ser calibrate``)
maps the speaker's features onto the model's reference statistics between
the staged phone model's front end and its first stage.
"""
from __future__ import annotations

import csv
import json
import os
import sys

from absl import flags

from nsl_ser import early_exit, predict, vad
from nsl_ser.prepare import atomic_write_text

FLAGS = flags.FLAGS
flags.DEFINE_string("model", predict.DEFAULT_MODEL,
                    "A phone .tflite (LiteRT) or a Keras .keras exit model.")
flags.DEFINE_float("tau", 0.8, "Early-exit threshold: stop at the first exit "
                   "whose confidence >= tau (0: always exit 1; >1: full model).")
flags.DEFINE_enum("policy", "max_prob", list(early_exit.POLICIES),
                  "Confidence measure.")
flags.DEFINE_float("hop_seconds", 1.5, "Hop between windows of long files.")
flags.DEFINE_bool("vad", True, "Voice activity detection: windows with too "
                  "little speech are reported as no_speech, not classified.")
flags.DEFINE_float("min_speech", vad.MIN_SPEECH_SECONDS,
                   "Seconds: shortest speech span kept by the VAD; a window "
                   "needs min(this, half the window) of speech to be classified.",
                   lower_bound=0.0)
flags.DEFINE_list("calibrate", None,
                  "Calibrate to one speaker from these clips/folders "
                  "(unlabelled), or 'self': the files being predicted.")
flags.DEFINE_string("calibration", None,
                    "A speaker's statistics saved by nsl-ser calibrate.")
flags.DEFINE_string("output", None, "Also write results to a .csv or .json.")


def _speaker(p, paths):
  """The speaker's statistics the flags ask for, or None."""
  from nsl_ser import calibration
  if FLAGS.calibrate and FLAGS.calibration:
    sys.exit("nsl-ser predict: give --calibrate or --calibration, not both")
  try:
    if FLAGS.calibration:
      return calibration.load(FLAGS.calibration, p.front_end)
    if FLAGS.calibrate:
      src = paths if FLAGS.calibrate == ["self"] else FLAGS.calibrate
      stats, used, skipped = calibration.speaker_stats(
          predict.expand_paths(src), p.front_end, FLAGS.hop_seconds)
      print(f"calibrated on {len(used)} file(s), {stats.count} speech frames"
            + (f"; {len(skipped)} skipped" if skipped else ""), file=sys.stderr)
      return stats
  except (calibration.CalibrationError, FileNotFoundError) as e:
    sys.exit(f"nsl-ser predict: calibration: {e}")
  return None


def main(argv) -> None:
  paths = argv[1:]
  if not paths:
    sys.exit("usage: nsl-ser predict [--flags] PATH [PATH...]")
  p = predict.load_predictor(FLAGS.model)
  speaker = _speaker(p, paths)
  if speaker is not None:
    p = predict.load_predictor(FLAGS.model, speaker=speaker)
  results, skipped = predict.predict_paths(
      p, paths, tau=FLAGS.tau, policy=FLAGS.policy,
      hop_seconds=FLAGS.hop_seconds, min_speech=FLAGS.min_speech,
      use_vad=FLAGS.vad)
  header, rows = predict.ROW_HEADER, list(predict.table_rows(results))
  widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else []
  if rows:
    for r in [header] + rows:
      print("  ".join(str(v).ljust(w) for v, w in zip(r, widths)))
  for path, reason in skipped:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  if FLAGS.output:
    if FLAGS.output.endswith(".json"):
      atomic_write_text(FLAGS.output, json.dumps({
          "results": [predict.result_record(r) for r in results],
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
