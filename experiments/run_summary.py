"""Summarises `nsl-ser run` work folders into experiments/results/run.json/.md.

  for w in s0 s0b s1 s2; do nsl-ser run --work_dir=runs/$w --seed=${w:1:1}; done
  python experiments/run_summary.py --work_dirs=runs/s0,runs/s0b,runs/s1,runs/s2 \
      --default_model=tflite_models/default/model_int8.tflite

Per run: the fold-0 test UAR of the student (float Keras, full model) and
of the int8 phone model (every exit, from the run's evaluation.json), and
the stage wall times. ``seed_spread_uar`` is max - min of the int8
full-model UAR over the distinct seeds; ``repeat_identical`` is 1 when two
runs with the same seed wrote byte-identical student weights and int8
models (and so the same numbers). The committed default model is trained
on every speaker, so only its size is recorded here.
"""
import hashlib
import json
import os

import numpy as np
from absl import app, flags

from nsl_ser import models
from nsl_ser.results import markdown_table, write_results

flags.DEFINE_list("work_dirs", ["work"], "nsl-ser run folders.")
flags.DEFINE_string("default_model", "tflite_models/default/model_int8.tflite",
                    "The committed default model.")
flags.DEFINE_string("note", "", "Conditions of the runs (e.g. shared cores).")
flags.DEFINE_string("results_dir", None, "Default: experiments/results.")
F = flags.FLAGS


def _sha(path: str) -> str:
  return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _run(work: str) -> dict:
  man = json.load(open(os.path.join(work, "run_manifest.json")))
  ev = json.load(open(os.path.join(work, "evaluation.json")))
  st = json.load(open(os.path.join(work, "student", "metrics.json")))
  src = json.load(open(os.path.join(work, "source", "metrics.json")))
  exits = list(ev["per_exit"])
  weights = models.load_model(os.path.join(work, "student", "model.keras")).get_weights()
  h = hashlib.sha256()
  for w in weights:
    h.update(np.ascontiguousarray(w).tobytes())
  return {"work_dir": work, "seed": man["stages"]["train_student"]["params"]["seed"],
          "wall_s": float(sum(v["wall_s"] for v in man["stages"].values())),
          "stages_wall_s": {k: v["wall_s"] for k, v in man["stages"].items()},
          "source_test_uar": src["test"]["uar"],
          "float_uar": st["test"]["uar"],
          "float_exits": st["exits"]["test"],
          "int8_exits": {e: ev["per_exit"][e]["uar"] for e in exits},
          "int8_uar": ev["per_exit"][exits[-1]]["uar"],
          "fused": bool(ev.get("fused")),
          "int8_cnn_exits": {e: ev.get("per_exit_cnn", ev["per_exit"])[e]["uar"]
                             for e in exits},
          "head_uar": ev.get("head_only", {}).get("uar"),
          "student_weights_sha256": h.hexdigest(),
          "int8_model_sha256": _sha(os.path.join(work, "tflite", "model_int8.tflite"))}


def main(argv):
  del argv
  runs = [_run(w) for w in F.work_dirs]
  by_seed = {}
  for r in runs:
    by_seed.setdefault(r["seed"], []).append(r)
  firsts = [v[0]["int8_uar"] for v in by_seed.values()]
  cnn = [list(v[0]["int8_cnn_exits"].values())[-1] for v in by_seed.values()]
  repeats = [v for v in by_seed.values() if len(v) > 1]
  identical = all(r["student_weights_sha256"] == v[0]["student_weights_sha256"]
                  and r["int8_model_sha256"] == v[0]["int8_model_sha256"]
                  and r["int8_exits"] == v[0]["int8_exits"]
                  for v in repeats for r in v)
  summary = {
      "wall_s": float(np.mean([r["wall_s"] for r in runs])),
      "seed_spread_uar": float(max(firsts) - min(firsts)),
      "repeat_identical": int(bool(repeats) and identical),
      "uar_seed_mean": float(np.mean(firsts)),
      "source_test_uar_mean": float(np.mean([v[0]["source_test_uar"]
                                             for v in by_seed.values()])),
      "seed_spread_uar_cnn": float(max(cnn) - min(cnn)),
      "uar_seed_mean_cnn": float(np.mean(cnn)),
      "default_model_bytes": os.path.getsize(F.default_model),
  }
  md = ("`nsl-ser run` from fresh work folders, fold-0 test speakers (UAR %), "
        "the int8 phone model as `nsl-ser predict` runs it: every exit fused "
        "with the functionals head (`nsl_ser.functionals`); the CNN's exits "
        f"alone and the head alone beside it. {F.note}\n\n"
        + markdown_table(
            ["run", "seed", "source (RAVDESS)", "student float (CNN)",
             "int8 exit 1…K (fused)", "int8 full (fused)", "int8 CNN alone: exit 1…K",
             "head alone", "minutes", "student weights sha256"],
            [[os.path.basename(r["work_dir"]), r["seed"], r["source_test_uar"],
              r["float_uar"], " / ".join(f"{v:.1f}" for v in r["int8_exits"].values()),
              r["int8_uar"],
              " / ".join(f"{v:.1f}" for v in r["int8_cnn_exits"].values()),
              r["head_uar"], r["wall_s"] / 60, r["student_weights_sha256"][:12]]
             for r in runs])
        + f"\nSpread of the int8 full-model UAR over seeds: "
          f"{summary['seed_spread_uar']:.1f} points fused, "
          f"{summary['seed_spread_uar_cnn']:.1f} the CNN alone; same seed twice "
          f"identical (student weights, int8 model, every number): "
          f"{'yes' if summary['repeat_identical'] else 'no'}.\n\n"
          f"Default model (`tflite_models/default`, trained on every speaker, "
          f"so not scored here; see its card): {summary['default_model_bytes']} "
          "bytes.\n")
  print(write_results("run", summary, {"runs": runs, "note": F.note}, md,
                      F.results_dir or os.path.join(os.path.dirname(
                          os.path.abspath(__file__)), "results")))


if __name__ == "__main__":
  app.run(main)
