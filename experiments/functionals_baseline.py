"""A classic baseline on the toolkit's own front end: utterance functionals of
the log-Mel features + linear SVM, EmoDB 5 folds, both regimes.

  python experiments/functionals_baseline.py

The same protocol as ../shared/notes/baselines.md's openSMILE + SVM rows
(standardised on the training partition, or every speaker on its own
statistics; C chosen on the validation partition, then refit on train +
validation), but with features anyone can compute without openSMILE: per
band over the speech frames (normalization.speech_frames) of the whole
utterance, mean, std, 10th / 50th / 90th percentiles, and mean, std, mean
|.| of the frame-to-frame difference, linear and quadratic regression
coefficients over time; the spread of 20 cepstral coefficients; the std and
90-10 range of the mean log-Mel contour and the speech duration: 423
numbers (nsl_ser.functionals). On whole utterances (the classic protocol)
and on the 3 s centre crops the CNN student sees: what the CNN has to beat
on the same input. A third table is the ablation of the head's groups of
functionals (validation and test UAR), which chose them, and of training
the head on speed-perturbed copies of the utterances as well (soxr 0.9 /
1.1, the CNN's speed lever), which the head does.
Deterministic (no seeds). Writes experiments/results/functionals.{json,md}.
"""
import os
import time

import numpy as np
from absl import app, flags
from sklearn.metrics import recall_score
from sklearn.svm import LinearSVC

from nsl_ser import (augment, data, evaluation, functionals, normalization,
                     records, source, splits)
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


def evaluate(x, y, spk, cs, k, hop_s, copies=()):
  """Both regimes, every fold: SVM and the functionals head (which also
  trains on the speed-perturbed ``copies``)."""
  rows, runs = [], []
  for regime in normalization.REGIMES:
    res = []
    for fold in range(splits.num_folds("emodb")):
      sp = splits.get_split("emodb", fold)
      parts = [np.isin(spk, list(getattr(sp, p))) for p in ("train", "val", "test")]
      z = (standardize(x, parts[0]) if regime == "global" else by_speaker(x, spk))
      r = run_fold(z, y, parts, cs, k)
      head, forms = functionals.fit_on_speakers(x, y, spk, sp.train, sp.val,
                                                regime, k, hop_s, copies)
      xr = forms["calibrated" if regime == "speaker" else "independent"]
      r["uar_head"] = 100 * evaluation.uar(
          y[parts[2]], head.probs(xr[parts[2]]).argmax(1), k)
      res.append(r)
      runs.append({"regime": regime, "fold": fold, **r})
    u = evaluation.mean_std([r["uar"] for r in res])
    w = evaluation.mean_std([r["wa"] for r in res])
    h = evaluation.mean_std([r["uar_head"] for r in res])
    rows.append([regime, f"{u['mean']:.1f} ± {u['std']:.1f}",
                 f"{w['mean']:.1f} ± {w['std']:.1f}",
                 " / ".join(f"{r['uar']:.1f}" for r in res),
                 f"{h['mean']:.1f} ± {h['std']:.1f}"])
  return rows, runs


GROUPS = {
    "statistics, differences, contour (the first head, 323)":
        ("statistics", "differences", "contour"),
    "+ temporal (linear, quadratic)": ("statistics", "differences", "contour",
                                       "temporal"),
    "+ cepstral spread": ("statistics", "differences", "contour", "cepstral"),
    "all (423)": ("statistics", "differences", "contour", "temporal",
                  "cepstral"),
}
# The head as shipped: all 423, trained on the speed-perturbed copies too.
SHIPPED = "all + speed-perturbed copies 0.9 / 1.1 (the head)"


def ablation(x, y, spk, k, hop_s, bands, copies):
  """The head on groups of functionals, then on all of them with the
  speed-perturbed ``copies`` as extra training rows: mean validation UAR
  (the choice) and test UAR over the 5 folds, both regimes."""
  cols = functionals.layout(bands)
  rows, out = [], {}
  for name, groups in [*GROUPS.items(), (SHIPPED, GROUPS["all (423)"])]:
    sel = np.concatenate([cols[g] for g in groups])
    xs = x[:, sel]
    cp = [c[:, sel] for c in copies] if name == SHIPPED else []
    row = [name]
    for regime in normalization.REGIMES:
      val, test = [], []
      for fold in range(splits.num_folds("emodb")):
        sp = splits.get_split("emodb", fold)
        tr, va, te = (np.isin(spk, list(getattr(sp, p)))
                      for p in ("train", "val", "test"))
        head, forms = functionals.fit_on_speakers(xs, y, spk, sp.train, sp.val,
                                                  regime, k, hop_s, cp)
        xr = forms["calibrated" if regime == "speaker" else "independent"]
        cr = [functionals.in_regime(c, spk, regime, head.reference) for c in cp]
        on_train = functionals.fit_head(xr[tr], y[tr], xr[va], y[va], k, hop_s,
                                        head.reference, refit_on_val=False,
                                        train_copies=[c[tr] for c in cr])
        val.append(100 * evaluation.uar(y[va], on_train.probs(xr[va]).argmax(1), k))
        test.append(100 * evaluation.uar(y[te], head.probs(xr[te]).argmax(1), k))
      out[f"{name} | {regime}"] = {"val": val, "test": test}
      row += [f"{np.mean(val):.1f}", f"{np.mean(test):.1f} ± {np.std(test):.1f}"]
    rows.append(row)
  return rows, out


def main(argv):
  del argv
  t0 = time.time()
  rec = os.path.join(F.work_dir, "records", "emodb")
  prepare(PrepareConfig("emodb", F.data_dir, rec))
  labels = source.read_labels(rec)
  files = records.list_shards(rec)
  utts = augment.load_utterances(files, labels, augment.SPEEDS)
  crops = data.load_arrays(files, labels)
  hop_s = 0.01
  cs = [float(c) for c in F.cs]
  whole, *copies = functionals.of_speeds(utts, hop_s)
  inputs = {"whole": (whole, utts.labels, utts.speakers),
            "crop": (functionals.of_clips(crops.features, hop_s), crops.labels,
                     crops.speakers)}
  summary, details, md_parts = {}, {}, []
  for name, (x, y, spk) in inputs.items():
    rows, runs = evaluate(x, y, spk, cs, len(labels), hop_s,
                          copies if name == "whole" else ())
    details[name] = runs
    sfx = "" if name == "whole" else "_crop"
    for regime, key in (("global", "independent"), ("speaker", "calibrated")):
      rs = [r for r in runs if r["regime"] == regime]
      summary[f"uar_{key}{sfx}"] = float(np.mean([r["uar"] for r in rs]))
      summary[f"wa_{key}{sfx}"] = float(np.mean([r["wa"] for r in rs]))
      summary[f"uar_head_{key}{sfx}"] = float(np.mean([r["uar_head"] for r in rs]))
    md_parts.append(
        ("\n## Whole utterances (the classic protocol)\n\n" if name == "whole"
         else "\n## 3 s centre crops (what the CNN sees; the head is "
         "fitted on whole utterances)\n\n")
        + markdown_table(["regime", "SVM: UAR", "SVM: WA", "SVM: UAR per fold",
                          "logistic regression (the functionals head): UAR"], rows))
  x, y, spk = inputs["whole"]
  rows, details["ablation"] = ablation(x, y, spk, len(labels), hop_s,
                                      crops.features.shape[-1], copies)
  md_parts.append(
      "\n## Which functionals: the head on groups of them (whole utterances)\n\n"
      "Chosen by the validation UAR, mean of both regimes (the test columns "
      "are for the record).\n\n"
      + markdown_table(["functionals", "independent: val UAR",
                        "independent: test UAR", "calibrated: val UAR",
                        "calibrated: test UAR"], rows))
  summary["features"] = int(inputs["whole"][0].shape[1])
  summary["wall_s"] = time.time() - t0
  md = ("EmoDB, 7 classes, 5 speaker-independent folds (test fold k, "
        "validation fold k+1). Log-Mel functionals of the toolkit's own front "
        f"end ({summary['features']} per clip over its speech frames, "
        "nsl_ser.functionals) + linear SVM (class-balanced; C on the "
        "validation speakers, refit on train + validation). `global`: "
        "standardised on the training partition; `speaker`: every speaker "
        "standardised with its own statistics (unlabelled, test speakers "
        "included). The last column is the logistic-regression head "
        "(nsl_ser.functionals.fit_on_speakers, same protocol; on whole "
        "utterances it also trains on their speed-perturbed copies, 0.9 / "
        "1.1; the SVM does not).\n"
        + "".join(md_parts)
        + "\nFor comparison (../shared/notes/baselines.md, same folds, whole "
        "utterances): openSMILE eGeMAPS + SVM 63.8 / 77.1, ComParE + SVM "
        "76.6 / 82.7 (independent / calibrated); the CNN student's default "
        "recipe on centre crops: experiments/results/accuracy.md.\n")
  print(write_results("functionals", summary, details, md))


if __name__ == "__main__":
  app.run(main)
