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

import sys

from absl import flags

from nsl_ser import early_exit
from nsl_ser.runtime import (calibration, litert, model_folder, output,
                             predictor, vad)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", predictor.DEFAULT_MODEL,
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
flags.DEFINE_string("output", None, "Also write results to a .csv, .json or "
                    ".jsonl (checked before any work; never one of the inputs).")
flags.DEFINE_bool("allow_bare_model", False, "Run a .tflite without its "
                  "model.json (no functionals head, temperatures or reference "
                  "statistics; labels from labels.txt beside it).")


def _speaker(p, paths):
  """The speaker's statistics the flags ask for, or None."""
  if FLAGS.calibrate and FLAGS.calibration:
    sys.exit("nsl-ser predict: give --calibrate or --calibration, not both")
  try:
    if FLAGS.calibration:
      return calibration.load(FLAGS.calibration, p.front_end)
    if FLAGS.calibrate:
      src = (paths if FLAGS.calibrate == ["self"]
             else predictor.expand_paths(FLAGS.calibrate))
      stats, used, skipped = calibration.speaker_stats(
          src, p.front_end, FLAGS.hop_seconds)
      print(calibration.summary_line(stats, p.front_end, len(used),
                                     len(skipped)), file=sys.stderr)
      return stats
  except calibration.CalibrationFileError:
    raise
  except (calibration.CalibrationError, FileNotFoundError) as e:
    sys.exit(f"nsl-ser predict: calibration: {e}")
  return None


def load(path: str) -> predictor.Predictor:
  """The model at ``path``: a phone .tflite through the runtime, a .keras
  model through TensorFlow (the training extra)."""
  if path.endswith(".keras"):
    from nsl_ser import keras_predictor
    return keras_predictor.load_keras_predictor(path)
  return predictor.load_predictor(path, allow_bare=FLAGS.allow_bare_model)


def refuse(e: Exception) -> None:
  """One line naming the file and the reason; exit code 2."""
  sys.stderr.write(f"nsl-ser predict: {e}\n")
  sys.exit(2)


def main(argv) -> None:
  paths = argv[1:]
  if not paths:
    sys.exit("usage: nsl-ser predict [--flags] PATH [PATH...]")
  try:  # everything checked before any audio is read
    files = predictor.expand_paths(paths)
    out_format = (output.check_output(FLAGS.output, files)
                  if FLAGS.output else None)
    p = load(FLAGS.model)
    lacks = getattr(getattr(p, "folder", None), "lacks", None)
    if lacks:
      print(f"{FLAGS.model}: bare model, without " + ", ".join(lacks),
            file=sys.stderr)
    speaker = _speaker(p, files)
    if speaker is not None:
      if not hasattr(p, "set_speaker"):
        sys.exit(f"nsl-ser predict: {FLAGS.model}: speaker calibration needs "
                 "an exported model (.tflite with its model.json)")
      p.set_speaker(speaker)
  except (output.OutputError, model_folder.ModelFolderError,
          litert.ModelError, calibration.CalibrationFileError) as e:
    refuse(e)
  header = predictor.ROW_HEADER
  widths = column_widths(header, files, p.labels)
  print(format_row(header, widths))
  writer = (output.ResultWriter(FLAGS.output, out_format, header)
            if FLAGS.output else None)
  done = skipped = 0
  try:
    for path, r, why in predictor.each_prediction(
        p, files, tau=FLAGS.tau, policy=FLAGS.policy,
        hop_seconds=FLAGS.hop_seconds, min_speech=FLAGS.min_speech,
        use_vad=FLAGS.vad):
      if r is None:
        skipped += 1
        print(f"skipped {path}: {why}", file=sys.stderr)
        if writer:
          writer.skip(path, why)
        continue
      rows = list(predictor.file_rows(r))
      if writer:  # on disk before it is shown
        writer.add(rows, predictor.result_record(r))
      done += 1
      for row in rows:
        print(format_row(row, widths))
      sys.stdout.flush()
  except KeyboardInterrupt:
    kept = writer.abandon() if writer else None
    sys.stderr.write(f"nsl-ser predict: interrupted after {done} file(s)"
                     + (f"; their results are in {kept}\n" if kept else "\n"))
    sys.exit(130)
  except BaseException:
    if writer:
      writer.abandon()
    raise
  if writer:
    writer.close()
  if skipped:
    print(f"{skipped} of {len(files)} file(s) skipped", file=sys.stderr)
  if not done and skipped:
    sys.exit(1)


def column_widths(header, files, labels):
  """Fixed column widths, so that rows print as each file is done."""
  longest = {"file": max([len(f) for f in files] + [4]),
             "start": 7, "end": 7,
             "emotion": max([len(x) for x in labels] + [len(predictor.NO_SPEECH)]),
             "confidence": 10, "exit": 6, "ms": 7}
  return [max(len(h), longest.get(h, 0)) for h in header]


def format_row(row, widths) -> str:
  return "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
