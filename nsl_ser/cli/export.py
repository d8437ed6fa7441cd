"""nsl-ser export: int8 TFLite models for phones, MCUs and the Edge TPU.

  nsl-ser export --model=work/student/model.keras \
      --representative_records=work/records/emodb --corpus=emodb --fold=0 \
      --out_dir=tflite_models/student

Calibration clips come from the TRAINING speakers of the split only.
"""
from __future__ import annotations

import json
import os

from absl import flags, logging

from nsl_ser import export, models, source, splits
from nsl_ser.export import qat
from nsl_ser.features import FrontEndConfig

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "Trained Keras model (.keras), ideally with exits.")
flags.DEFINE_string("representative_records", None,
                    "Prepared corpus (nsl-ser prepare) for calibration clips.")
flags.DEFINE_string("corpus", "emodb", "Corpus of the records (selects the split).")
flags.DEFINE_integer("fold", 0, "Split fold; only its training speakers are used.")
flags.DEFINE_string("out_dir", None, "Output folder (tflite_models/<name>).")
flags.DEFINE_string("labels", None, "labels.txt (default: the records' labels).")
flags.DEFINE_integer("num_calibration", 200,
                     "Training clips used for calibration (seeded subset).")
flags.DEFINE_integer("seed", 0, "Seed of the calibration subset.")
flags.DEFINE_bool("micro", True, "Also write the MCU stage models.")
flags.DEFINE_bool("edgetpu", True, "Also write the Edge TPU model + report.")
flags.DEFINE_enum("quantization", "auto", list(export.QUANTIZATION_MODES),
                  "int8 method: post-training (ptq), quantisation-aware "
                  "training (qat, fine-tuned on the split's training "
                  "speakers), or auto: qat only where it beats ptq on the "
                  "validation speakers.")
flags.DEFINE_integer("qat_epochs", 10, "QAT fine-tuning epochs.")
flags.DEFINE_enum("int8_dft", "fft", ["fft", "matmul"],
                  "DFT of the int8 phone model's front end: fft (RFFT2D; "
                  "under 150 KB in all; streamed, as fast as matmul) or "
                  "matmul (folded int8 DFT weights, ~115 KB more; a buffered "
                  "window's front end ~5x faster).")
flags.mark_flags_as_required(["model", "representative_records", "out_dir"])


def _metrics(model_path: str):
  """The training run's metrics.json beside the model, if any."""
  path = os.path.join(os.path.dirname(model_path), source.METRICS_FILE)
  return json.load(open(path)) if os.path.exists(path) else None


def main(argv) -> None:
  del argv
  model = models.load_model(FLAGS.model)
  if FLAGS.labels:
    with open(FLAGS.labels) as f:
      labels = f.read().split()
  else:
    labels = source.read_labels(FLAGS.representative_records)
  split = splits.get_split(FLAGS.corpus, FLAGS.fold)
  front_end = FrontEndConfig()
  audio, _, ids = export.load_audio(FLAGS.representative_records, labels,
                                    sorted(split.train), front_end)
  idx = export.calibration_subset(len(audio), FLAGS.num_calibration, FLAGS.seed)
  logging.info("calibrating on %d of %d training clips", len(idx), len(audio))
  side = export.export_all(
      model, FLAGS.out_dir, labels, audio[idx],
      export.ExportConfig(front_end=front_end, quantization=FLAGS.quantization,
                          qat=qat.QATConfig(epochs=FLAGS.qat_epochs),
                          int8_dft=FLAGS.int8_dft, micro=FLAGS.micro,
                          edgetpu=FLAGS.edgetpu),
      qat_data=export.QATData(FLAGS.representative_records, FLAGS.corpus,
                              FLAGS.fold),
      provenance={"corpus": FLAGS.corpus, "fold": FLAGS.fold,
                  "partition": "train", "speakers": sorted(split.train),
                  "seed": FLAGS.seed, "model": os.path.abspath(FLAGS.model)},
      normalization=export.normalization_of(model, _metrics(FLAGS.model)),
      functionals_head=(_metrics(FLAGS.model) or {}).get("functionals_head"))
  logging.info("int8 method: %s", side["quantization"]["method"])
  summary = {rel: info["bytes"] for rel, info in side["files"].items()
             if rel.endswith(".tflite")}
  summary["quantization"] = side["quantization"]["method"]
  if "micro" in side:
    summary["micro_arena_bytes"] = side["micro"]["arena_bytes"]
  print(json.dumps(summary, indent=2))
