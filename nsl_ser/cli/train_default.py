"""nsl-ser train-default: the default model from every corpus in --data_dir.

prepare every known corpus found (ravdess/, emodb/, tess/, cremad/, savee/)
-> train the early-exit student on all their speakers and shared emotions
(the default recipe) -> export (phone, microcontroller stages, Edge TPU)
-> model card. Resumable like `nsl-ser run`; `--install=tflite_models/default`
replaces the shipped default model.
"""
from __future__ import annotations

import json

from absl import flags

from nsl_ser import default_model, normalization, pipeline

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Data root with the corpora.")
flags.DEFINE_string("work_dir", "work/default", "Where every stage writes.")
flags.DEFINE_enum("normalization", "speaker", list(normalization.REGIMES),
                  "Training regime (speaker: every speaker calibrated onto "
                  "the training statistics; the model still runs "
                  "uncalibrated).")
flags.DEFINE_integer("epochs", 40, "Training epochs.")
flags.DEFINE_integer("seed", 0, "Random seed (same seed, same model).")
flags.DEFINE_bool("quick", False, "A small end-to-end run (tests).")
flags.DEFINE_string("generalization", default_model.GENERALIZATION,
                    "generalization.json: per-exit temperatures and the "
                    "card's numbers.")
flags.DEFINE_string("install", None,
                    "Also install the model here (e.g. tflite_models/default).")


def main(argv) -> None:
  del argv
  cfg = default_model.DefaultConfig(
      data_dir=FLAGS.data_dir, work_dir=FLAGS.work_dir,
      regime=FLAGS.normalization, epochs=FLAGS.epochs, seed=FLAGS.seed,
      quick=FLAGS.quick, generalization=FLAGS.generalization)
  data = pipeline.run_pipeline(cfg, default_model.STAGES)
  print(json.dumps({k: v["summary"] for k, v in data["stages"].items()},
                   indent=1, default=str))
  if FLAGS.install:
    default_model.install(cfg.path("tflite"), FLAGS.install)
    print(f"installed in {FLAGS.install}")
