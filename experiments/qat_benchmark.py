"""Int8 export of the early-exit student: post-training (PTQ) vs
quantisation-aware training (QAT).

  python experiments/qat_benchmark.py --student=work/run/student/model.keras \
      --records_dir=work/run/records/emodb --fold=0

On the EmoDB fold's TEST speakers, both as full-int8 feature-input TFLite
models run with LiteRT:
  * PTQ: nsl_ser.export.convert_int8 of the float exits model, calibrated on
    --num_calibration training clips (export.calibration_subset, the clips
    experiments/export_benchmark.py uses);
  * QAT: nsl_ser.export.qat: ranges from the same clips, fine-tuned --epochs on the
    fold's training speakers (cross-entropy + distillation from the float
    model), epoch chosen on its validation speakers, converted to int8;
plus the float Keras model, and (--phone, default) the audio-input phone
int8 models of both (export.convert_phone). Writes
experiments/results/<name>.{json,md}; the summary says which variant is
better on the test clips (a report only: exports choose on the validation
speakers, nsl_ser.export.quantize.int8_source).
"""
from __future__ import annotations

import os
import time

import numpy as np
from absl import app, flags, logging

from nsl_ser import evaluation, export, models, source, splits
from nsl_ser.export import qat
from nsl_ser.runtime import litert
from nsl_ser.features import FrontEndConfig
from nsl_ser.results import RESULTS_DIR, markdown_table, write_results

F = flags.FLAGS
flags.DEFINE_string("student", None, "Student with exits (.keras).")
flags.DEFINE_string("records_dir", "work/run/records/emodb", "Prepared EmoDB.")
flags.DEFINE_string("corpus", "emodb", "Corpus of --records_dir.")
flags.DEFINE_integer("fold", 0, "Split fold (test speakers are evaluated).")
flags.DEFINE_integer("epochs", qat.QATConfig.epochs, "QAT fine-tuning epochs.")
flags.DEFINE_float("learning_rate", qat.QATConfig.learning_rate, "QAT Adam LR.")
flags.DEFINE_integer("num_calibration", 200, "Training clips for calibration.")
flags.DEFINE_integer("seed", 0, "QAT seed.")
flags.DEFINE_bool("phone", True, "Also compare the audio-input phone int8 "
                  "models (float front end).")
flags.DEFINE_string("out_dir", None, "If set, the int8 models and the QAT "
                    "Keras model are written here.")
flags.DEFINE_string("name", "qat", "Results name.")
flags.DEFINE_string("results_dir", None, "Default: experiments/results.")
flags.mark_flags_as_required(["student"])


def _by_id(arrays):
  """Partition sorted by utterance id (export.load_audio's order)."""
  return arrays.subset(np.argsort(arrays.ids))


def phone_uars(float_model, qat_model, names, labels, cal_idx) -> dict:
  """UAR per exit of the PTQ and QAT phone int8 models on test audio."""
  fe = FrontEndConfig()
  split = splits.get_split(F.corpus, F.fold)
  train_audio, _, _ = export.load_audio(F.records_dir, labels,
                                        sorted(split.train), fe)
  test_audio, y, _ = export.load_audio(F.records_dir, labels,
                                       sorted(split.test), fe)
  out = {"uar": {}, "bytes": {}, "agreement_with_float_keras": {}}
  ref = models.with_front_end(export.exits_model(float_model), fe).predict(
      test_audio, verbose=0)
  ref = dict(zip(names, ref if isinstance(ref, list) else [ref]))
  for variant, m in (("ptq", float_model), ("qat", qat_model)):
    data = export.convert_phone(m, fe, train_audio[cal_idx])
    rt = litert.Model(data, f"{variant} phone int8")
    probs = {n: litert.run_batch(rt, n, "audio", test_audio)[n] for n in names}
    out["uar"][variant] = {n: 100 * evaluation.uar(y, p.argmax(-1), len(labels))
                           for n, p in probs.items()}
    out["agreement_with_float_keras"][variant] = {
        n: float(np.mean(p.argmax(-1) == ref[n].argmax(-1)))
        for n, p in probs.items()}
    out["bytes"][variant] = len(data)
  return out


def main(argv):
  del argv
  t0 = time.time()
  parts, labels = source.load_partitions(F.records_dir, F.corpus, F.fold)
  tr, va, te = (_by_id(parts[p]) for p in ("train", "val", "test"))
  student = models.load_model(F.student)
  names = export.output_names(student)
  deepest = names[-1]
  cal_idx = export.calibration_subset(len(tr), F.num_calibration)
  cfg = qat.QATConfig(epochs=F.epochs, learning_rate=F.learning_rate,
                      num_calibration=F.num_calibration, seed=F.seed)
  logging.info("%d train, %d val, %d test clips, %d calibration clips",
               len(tr), len(va), len(te), len(cal_idx))

  res = qat.compare(student, tr.features, tr.labels, va.features, va.labels,
                    te.features, te.labels, tr.features[cal_idx], cfg)
  art = res.pop("artifacts")
  if F.out_dir:
    os.makedirs(F.out_dir, exist_ok=True)
    for n in ("ptq_int8", "qat_int8"):
      with open(os.path.join(F.out_dir, f"{n}.tflite"), "wb") as f:
        f.write(art[n])
    art["qat_model"].save(os.path.join(F.out_dir, "qat_model.keras"))
  phone = (phone_uars(student, art["qat_model"], names, labels, cal_idx)
           if F.phone else None)

  u, agree, hist = res["uar"], res["agreement"], res["history"]
  summary = {
      "uar_float": u["float"][deepest], "uar_ptq": u["ptq"][deepest],
      "uar_qat": u["qat"][deepest], "uar_qat_keras": u["qat_keras"][deepest],
      **{f"uar_{v}_{n}": u[v][n] for v in ("float", "ptq", "qat") for n in names},
      "agreement_ptq_float": agree["ptq"][deepest],
      "agreement_qat_float": agree["qat"][deepest],
      "agreement_qat_int8_keras": agree["qat_vs_qat_keras"][deepest],
      "bytes_ptq": res["bytes"]["ptq"], "bytes_qat": res["bytes"]["qat"],
      "qat_best_epoch": hist["best_epoch"],
      "qat_val_uar_initial": hist["val_uar_initial"],
      "qat_val_uar_best": hist["val_uar_best"],
      "better_on_test": res["chosen"],
      "wall_ptq_s": res["wall_s"]["ptq"], "wall_qat_s": res["wall_s"]["qat"],
  }
  if phone:
    summary.update({f"uar_phone_{v}": phone["uar"][v][deepest]
                    for v in ("ptq", "qat")})
  summary["wall_s"] = time.time() - t0
  details = {
      "flags": {k: F[k].value for k in ("student", "records_dir", "corpus",
                                        "fold", "epochs", "learning_rate",
                                        "num_calibration", "seed", "phone")},
      "clips": {"train": len(tr), "val": len(va), "test": len(te),
                "calibration": int(len(cal_idx))},
      **{k: res[k] for k in ("uar", "agreement", "bytes", "float_ops",
                             "config", "wall_s", "chosen")},
      "history": {k: (np.asarray(v).tolist() if isinstance(v, (list, np.ndarray))
                      else v) for k, v in hist.items()},
      "phone_int8": phone,
  }
  rows = [[n] + [f"{u[v][n]:.1f}" for v in ("float", "ptq", "qat", "qat_keras")]
          + [f"{100 * agree[v][n]:.0f}%" for v in ("ptq", "qat")]
          + ([f"{phone['uar'][v][n]:.1f}" for v in ("ptq", "qat")] if phone else [])
          for n in names]
  header = (["exit", "UAR float", "UAR PTQ int8", "UAR QAT int8",
             "UAR QAT Keras", "PTQ=float", "QAT=float"]
            + (["UAR phone PTQ int8", "UAR phone QAT int8"] if phone else []))
  md = ("## Per exit (EmoDB fold %d test speakers, %d clips)\n\n"
        % (F.fold, len(te)) + markdown_table(header, rows))
  md += "\n## Summary\n\n" + markdown_table(
      ["metric", "value"], [[k, f"{v:.3f}" if isinstance(v, float) else v]
                            for k, v in summary.items()])
  md += ("\nBoth int8 models are full-integer feature-input TFLite (int8 in "
         "and out), run with LiteRT. PTQ and the QAT ranges use the same %d "
         "training clips. QAT: %d epochs at LR %g, cross-entropy + "
         "distillation (T=%g) from the float model's exits, BatchNorm frozen; "
         "validation UAR of %s per epoch %s (calibrated start: %.1f), kept "
         "epoch %d (0 = the calibrated start). 'X=float': share of test clips "
         "where the int8 model predicts the float model's class. Better on "
         "these test clips: **%s** (QAT only when it beats PTQ at %s). This "
         "is a report; exports choose on the validation speakers "
         "(`nsl-ser export --quantization=auto`, nsl_ser.export.quantize.int8_source).\n"
         % (len(cal_idx), cfg.epochs, cfg.learning_rate, cfg.temperature,
            deepest, [round(v, 1) for v in hist.get("val_uar", [])],
            hist["val_uar_initial"], hist["best_epoch"], res["chosen"],
            deepest))
  path = write_results(F.name, summary, details, md,
                       out_dir=F.results_dir or RESULTS_DIR)
  logging.info("wrote %s in %.0f s; better on test: %s", path,
               time.time() - t0, res["chosen"])


if __name__ == "__main__":
  app.run(main)
