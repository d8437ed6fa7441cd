"""nsl-ser calibrate PATH... --out=speaker.json: one speaker's statistics.

Reads that speaker's clips or folders of clips (any libsndfile format, no
labels), computes the per-band log-Mel statistics of their speech frames
(the model's front end, read from --model's sidecar) and saves them for
`nsl-ser predict --calibration=speaker.json`. Unusable files are listed as
skipped; if none is usable, nothing is written and the exit code is 1.
"""
from __future__ import annotations

import sys

from absl import flags

from nsl_ser.runtime import calibration, litert, model_folder, output, predictor

FLAGS = flags.FLAGS
flags.DEFINE_string("out", "speaker.json", "Where to write the statistics.")
flags.DEFINE_string("model", predictor.DEFAULT_MODEL,
                    "The phone model whose front end the statistics are for.")
flags.DEFINE_float("hop_seconds", 1.5, "Hop between windows of long files.")


def main(argv) -> None:
  paths = argv[1:]
  if not paths:
    sys.exit("usage: nsl-ser calibrate [--out=speaker.json] PATH [PATH...]")
  try:  # the model and the output checked before any audio is read
    if output.check_output(FLAGS.out, predictor.expand_paths(paths)) != "json":
      raise output.OutputError(FLAGS.out, "a calibration file is .json")
    fe = predictor.load_predictor(FLAGS.model).front_end
  except (output.OutputError, model_folder.ModelFolderError,
          litert.ModelError) as e:
    sys.stderr.write(f"nsl-ser calibrate: {e}\n")
    sys.exit(2)
  try:
    stats, used, skipped = calibration.speaker_stats(
        predictor.expand_paths(paths), fe, FLAGS.hop_seconds)
  except (calibration.CalibrationError, FileNotFoundError) as e:
    sys.exit(f"nsl-ser calibrate: {e}")
  for path, reason in skipped:
    print(f"skipped {path}: {reason}", file=sys.stderr)
  calibration.save(FLAGS.out, stats, fe, used, skipped)
  print(f"{FLAGS.out}: " + calibration.summary_line(stats, fe, len(used),
                                                   len(skipped)))
