"""A classic baseline on the toolkit's own front end: utterance functionals of
the log-Mel features + linear SVM, EmoDB 5 folds, both regimes.

  python experiments/functionals_baseline.py

The same protocol as ../shared/notes/baselines.md's openSMILE + SVM rows
(standardised on the training partition, or every speaker on its own
statistics; C chosen on the validation partition, then refit on train +
validation), but with features anyone can compute without openSMILE: per
band over the speech frames (normalization.speech_frames) of the whole
utterance, mean, std, 10th / 50th / 90th percentiles, and mean, std, mean
|.| of the frame-to-frame difference; plus three contour statistics of the
mean log-Mel (std, 90-10 range) and the speech duration: 323 numbers.
It measures what the CNN student has to beat on the same input.
Deterministic (no seeds). Writes experiments/results/functionals.{json,md}.
"""
import os
import time

import numpy as np
from absl import app, flags
from sklearn.metrics import recall_score
from sklearn.svm import LinearSVC

from nsl_ser import (augment, evaluation, functionals, normalization, records,
                     source, splits)
from nsl_ser.prepare import PrepareConfig, prepare
from nsl_ser.results import markdown_table, write_results

flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_string("work_dir", "work/accuracy", "Scratch folder (records).")
flags.DEFINE_list("cs", ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1"],
                  "SVM C values tried on the validation speakers.")
F = flags.FLAGS


def standardize(x: np.ndarray, fit: np.ndarray) -> np.ndarray:
  return (x - x[fit].mean(0)) / (x[fit].std(0) + 1e-8)


def by_speaker(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
  out = np.empty_like(x)
  for s in np.unique(speakers):
    m = speakers == s
    out[m] = standardize(x[m], np.ones(m.sum(), bool))
  return out


def run_fold(x, y, parts, cs, k):
  tr, va, te = parts
  best = max(cs, key=lambda c: recall_score(
      y[va], LinearSVC(C=c, class_weight="balanced", max_iter=50000,
                       random_state=0).fit(x[tr], y[tr]).predict(x[va]),
      average="macro"))
  fit = tr | va
  pred = LinearSVC(C=best, class_weight="balanced", max_iter=50000,
                   random_state=0).fit(x[fit], y[fit]).predict(x[te])
  return {"uar": 100 * evaluation.uar(y[te], pred, k),
          "wa": 100 * float(np.mean(pred == y[te])), "C": best}


def main(argv):
  del argv
  t0 = time.time()
  rec = os.path.join(F.work_dir, "records", "emodb")
  prepare(PrepareConfig("emodb", F.data_dir, rec))
  labels = source.read_labels(rec)
  utts = augment.load_utterances(records.list_shards(rec), labels, (1.0,))
  hop_s = 0.01
  x = functionals.of_clips(utts.clips(0), hop_s)
  y, spk = utts.labels, utts.speakers
  cs = [float(c) for c in F.cs]
  rows, runs = [], []
  for regime in normalization.REGIMES:
    res = []
    for fold in range(splits.num_folds("emodb")):
      sp = splits.get_split("emodb", fold)
      parts = [np.isin(spk, list(getattr(sp, p))) for p in ("train", "val", "test")]
      z = (standardize(x, parts[0]) if regime == "global" else by_speaker(x, spk))
      r = run_fold(z, y, parts, cs, len(labels))
      ref = normalization.BandStats.of(x[parts[0]])
      xr = (x if regime == "global" else functionals.calibrate_by_speaker(
          x, spk, functionals.speaker_stats(x, spk), ref))
      head = functionals.fit_head(xr[parts[0]], y[parts[0]], xr[parts[1]],
                                  y[parts[1]], len(labels), hop_s, ref)
      r["uar_head"] = 100 * evaluation.uar(
          y[parts[2]], head.probs(xr[parts[2]]).argmax(1), len(labels))
      res.append(r)
      runs.append({"regime": regime, "fold": fold, **r})
    u = evaluation.mean_std([r["uar"] for r in res])
    w = evaluation.mean_std([r["wa"] for r in res])
    h = evaluation.mean_std([r["uar_head"] for r in res])
    rows.append([regime, f"{u['mean']:.1f} ± {u['std']:.1f}",
                 f"{w['mean']:.1f} ± {w['std']:.1f}",
                 " / ".join(f"{r['uar']:.1f}" for r in res),
                 f"{h['mean']:.1f} ± {h['std']:.1f}"])
  g = [r["uar"] for r in runs if r["regime"] == "global"]
  c = [r["uar"] for r in runs if r["regime"] == "speaker"]
  summary = {"uar_independent": float(np.mean(g)), "uar_calibrated": float(np.mean(c)),
             "uar_head_independent": float(np.mean([r["uar_head"] for r in runs if r["regime"] == "global"])),
             "uar_head_calibrated": float(np.mean([r["uar_head"] for r in runs if r["regime"] == "speaker"])),
             "wa_independent": float(np.mean([r["wa"] for r in runs if r["regime"] == "global"])),
             "wa_calibrated": float(np.mean([r["wa"] for r in runs if r["regime"] == "speaker"])),
             "features": int(x.shape[1]), "wall_s": time.time() - t0}
  md = ("EmoDB, 7 classes, 5 speaker-independent folds (test fold k, "
        "validation fold k+1). Log-Mel functionals of the toolkit's own front "
        f"end ({x.shape[1]} per utterance, speech frames of the whole "
        "utterance, nsl_ser.functionals) + linear SVM (class-balanced; C on the validation "
        "speakers, refit on train + validation). `global`: standardised on "
        "the training partition; `speaker`: every speaker standardised with "
        "its own statistics (unlabelled, test speakers included). The last column is the functionals head the student is fused with (nsl_ser.functionals.fit_head: logistic regression, same protocol).\n\n")
  md += markdown_table(["regime", "SVM: UAR", "SVM: WA", "SVM: UAR per fold",
                        "logistic regression (the functionals head): UAR"], rows)
  md += ("\nFor comparison (../shared/notes/baselines.md, same folds): "
         "openSMILE eGeMAPS + SVM 63.8 / 77.1, ComParE + SVM 76.6 / 82.7 "
         "(independent / calibrated); the CNN student's default recipe: "
         "experiments/results/accuracy.md.\n")
  print(write_results("functionals", summary, {"runs": runs}, md))


if __name__ == "__main__":
  app.run(main)
