"""nsl-ser run: the whole pipeline, corpora -> deployable model, in one go.

prepare -> train source -> embed -> build graph -> train student (exits +
self-distillation + graph, with the recipe of nsl_ser.recipe) -> export ->
evaluate -> report. Finished stages are skipped on a rerun (see run_manifest.json).
"""
from __future__ import annotations

import json

from absl import flags

from nsl_ser import export, pipeline, stages, training

FLAGS = flags.FLAGS
flags.DEFINE_string("source", "ravdess", "Source corpus (trains the teacher).")
flags.DEFINE_string("target", "emodb", "Target corpus (trains the student).")
flags.DEFINE_string("data_dir", "../shared/data", "Data root with the corpora.")
flags.DEFINE_string("work_dir", "work", "Where every stage writes its output.")
flags.DEFINE_integer("fold", 0, "Target split fold (its test speakers are held out).")
flags.DEFINE_bool("quick", False, "A small end-to-end run (tests).")
flags.DEFINE_integer("source_epochs", 40, "Source model epochs.")
flags.DEFINE_integer("student_epochs", 40, "Student fine-tuning epochs (target).")
flags.DEFINE_integer("max_nbrs", 3, "Graph neighbours per example.")
flags.DEFINE_float("multiplier", 0.1, "Graph loss multiplier.")
flags.DEFINE_enum("strategy", "default", list(training.STRATEGIES),
                  "tf.distribute strategy for training.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_enum("quantization", "ptq", list(export.QUANTIZATION_MODES),
                  "int8 export: post-training (default: QAT did not beat it "
                  "at the deepest exit, experiments/results/qat.md), "
                  "quantisation-aware training, "
                  "or auto (qat where it beats ptq on validation speakers).")


def main(argv) -> None:
  del argv
  cfg = pipeline.RunConfig(
      source=FLAGS.source, target=FLAGS.target, data_dir=FLAGS.data_dir,
      work_dir=FLAGS.work_dir, fold=FLAGS.fold, quick=FLAGS.quick,
      source_epochs=FLAGS.source_epochs,
      student_epochs=FLAGS.student_epochs, max_nbrs=FLAGS.max_nbrs,
      multiplier=FLAGS.multiplier,
      strategy=FLAGS.strategy, seed=FLAGS.seed,
      quantization=FLAGS.quantization)
  data = pipeline.run_pipeline(cfg, stages.STAGES)
  print(json.dumps({k: v["summary"] for k, v in data["stages"].items()},
                   indent=1, default=str)[:4000])
  print(f"report: {cfg.path('report', 'report.md')}")
