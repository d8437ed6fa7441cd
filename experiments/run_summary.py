"""Summarises an `nsl-ser run` into experiments/results/run.json and .md.

  python experiments/run_summary.py --work_dir=work/run \
      --default_model=tflite_models/default/model_int8.tflite

wall_s is the end-to-end time given with --wall_s (e.g. measured with
`time make run` from a fresh clone), else the sum of the stage wall times in
the run manifest.
default_model_uar is the int8 phone model's full-model UAR on the EmoDB
fold-0 test speakers, measured again here with LiteRT.
"""
import json
import os

from absl import app, flags

from nsl_ser import early_exit, evaluation, export, litert, splits
from nsl_ser.results import markdown_table, write_results

flags.DEFINE_string("work_dir", "work/run", "The nsl-ser run folder.")
flags.DEFINE_string("default_model", "tflite_models/default/model_int8.tflite",
                    "The committed default model.")
flags.DEFINE_string("note", "", "Conditions of the run (e.g. shared cores).")
flags.DEFINE_float("wall_s", None, "End-to-end wall time measured outside "
                   "(e.g. `time make run`); default: the sum of the stages.")
F = flags.FLAGS


def main(argv):
  del argv
  man = json.load(open(os.path.join(F.work_dir, "run_manifest.json")))
  stages = {k: v["wall_s"] for k, v in man["stages"].items()}
  model = litert.Model.from_file(F.default_model)
  side = json.load(open(os.path.join(os.path.dirname(F.default_model), "model.json")))
  labels = side["labels"]
  split = splits.get_split("emodb", 0)
  audio, y, _ = export.load_audio(os.path.join(F.work_dir, "records", "emodb"),
                                  labels, split.test)
  exits = sorted(model.signatures, key=lambda s: int(s.split("_")[-1]))
  probs = [litert.run_batch(model, e, "audio", audio)[e] for e in exits]
  per_exit = {e: evaluation.report(y, p, labels)["uar"] for e, p in zip(exits, probs)}
  pred, used = early_exit.adaptive_predict(probs, 0.8)
  summary = {"wall_s": F.wall_s or float(sum(stages.values())),
             "default_model_bytes": os.path.getsize(F.default_model),
             "default_model_uar": per_exit[exits[-1]],
             "default_model_uar_tau_0_8": 100 * evaluation.uar(y, pred, len(labels))}
  md = (markdown_table(["stage", "wall s"], [[k, v] for k, v in stages.items()])
        + f"\nStages {sum(stages.values()) / 60:.1f} min; end to end "
          f"{summary['wall_s'] / 60:.1f} min. {F.note}\n\n"
        + markdown_table(["default model (int8, fold-0 test speakers)", "UAR %"],
                         [[e, u] for e, u in per_exit.items()]
                         + [["adaptive, τ = 0.8", summary["default_model_uar_tau_0_8"]]])
        + f"\nDefault model: {summary['default_model_bytes']} bytes.\n")
  print(write_results("run", summary, {"stages_wall_s": stages, "per_exit_uar": per_exit,
                                       "note": F.note}, md))


if __name__ == "__main__":
  app.run(main)
