"""Generalisation: voices and corpora the model has never heard.

  python experiments/generalization.py                      # everything
  python experiments/generalization.py --regimes=global --part=work/gen/global.json
  python experiments/generalization.py --regimes=speaker --part=work/gen/speaker.json
  python experiments/generalization.py --merge=work/gen/global.json,work/gen/speaker.json

RAVDESS and EmoDB pooled on the six classes they share (neutral, happy, sad,
angry, fearful, disgust). Three settings, each trained with the default
recipe (:mod:`nsl_ser.recipe`) in both regimes, 3 seeds:

* ``ravdess_to_emodb``: train RAVDESS actors 01-14 and 19-24 (validation
  15-18), test every EmoDB speaker;
* ``emodb_to_ravdess``: train EmoDB's speakers but fold 1 (validation
  fold 1: 09, 10), test every RAVDESS actor;
* ``union_heldout``: train RAVDESS 01-14 + EmoDB fold 0's training
  speakers, validation RAVDESS 15-18 + EmoDB 09, 10, test RAVDESS 19-24 +
  EmoDB 03, 08 (the default model's recipe, with speakers held out).

Every model is scored two ways on the test speakers: *independent* (raw
features; the model's own training statistics) and *calibrated* (each test
speaker mapped onto the training statistics with its own unlabelled clips,
:func:`nsl_ser.normalization.calibrate`). The regime a model was trained in
decides which way is its headline; both are in the tables. Confidence:
expected calibration error on the test speakers before and after
temperature scaling fitted on the validation speakers, per exit (the
default model ships the temperatures only if they lower it); the
``union_heldout`` row stands in for the default model (same recipe and data,
speakers held out). With ``--functionals`` every exit is also scored fused
with the functionals head of the utterance (rows ``SETTING+functionals``);
the summary's headline keys are the recipe as shipped (fused where
measured; ``*_cnn``: the CNN alone). Writes
experiments/results/generalization.{json,md}.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional

import numpy as np
from absl import app, flags, logging

from nsl_ser import (confidence, evaluation, functionals, models,
                     normalization, pooled, recipe, source, splits)
from nsl_ser.features import FrontEndConfig
from nsl_ser.prepare import PrepareConfig, atomic_write_text, prepare
from nsl_ser.results import markdown_table, write_results

F = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_string("work_dir", "work/generalization", "Scratch folder.")
flags.DEFINE_integer("seeds", 3, "Seeds per setting.")
flags.DEFINE_integer("epochs", 40, "Epochs per student.")
flags.DEFINE_list("regimes", list(normalization.REGIMES), "Regimes to train.")
flags.DEFINE_list("settings", None, "Settings (default: all).")
flags.DEFINE_string("part", None, "Write raw runs here instead of results.")
flags.DEFINE_list("merge", None, "Merge these part files into the results.")
flags.DEFINE_string("results_dir", None, "Default: experiments/results.")
flags.DEFINE_bool("functionals", True,
                  "Also score every model fused with the functionals head "
                  "(nsl_ser.functionals): settings NAME+functionals.")
flags.DEFINE_string("default_regime", "speaker",
                    "Regime of the shipped default model (its ECE row).")
flags.DEFINE_string("default_model", "tflite_models/default/model.json",
                    "Sidecar of the shipped default model (its size).")
flags.DEFINE_string("note", "", "How the merged parts were produced.")
flags.DEFINE_bool("random_crop", False, "Train with random 3 s crops (a "
                  "recipe variant; rows are tagged '+crop').")

CORPORA = ("ravdess", "emodb")
MODES = ("independent", "calibrated")
# ../shared/notes/baselines.md: openSMILE functionals + linear SVM.
BASELINES = {("ravdess_to_emodb", "independent"): "eGeMAPS 27.9, ComParE 19.6",
             ("ravdess_to_emodb", "calibrated"): "eGeMAPS 53.4, ComParE 49.2"}


FUSED = "+functionals"


def settings() -> Dict[str, splits.Split]:
  """{setting: Split over ``corpus:speaker`` keys}."""
  r = splits.get_split("ravdess", 0)
  e0, e1 = splits.get_split("emodb", 0), splits.get_split("emodb", 1)
  every_e = e0.train | e0.val | e0.test
  k = pooled.keys
  return {
      "ravdess_to_emodb": splits.Split(frozenset(k("ravdess", r.train | r.test)),
                                       frozenset(k("ravdess", r.val)),
                                       frozenset(k("emodb", every_e))),
      "emodb_to_ravdess": splits.Split(
          frozenset(k("emodb", every_e - e1.test)), frozenset(k("emodb", e1.test)),
          frozenset(k("ravdess", r.train | r.val | r.test))),
      "union_heldout": splits.Split(
          frozenset(k("ravdess", r.train) + k("emodb", e0.train)),
          frozenset(k("ravdess", r.val) + k("emodb", e0.val)),
          frozenset(k("ravdess", r.test) + k("emodb", e0.test))),
  }


def load() -> pooled.Pool:
  recs = {}
  for c in CORPORA:
    recs[c] = os.path.join(F.work_dir, "records", c)
    prepare(PrepareConfig(c, F.data_dir, recs[c]))
  labels = pooled.shared_labels(source.read_labels(r) for r in recs.values())
  return pooled.load_pool(recs, labels, recipe.Recipe().augment.speeds)


def scores(model, x: Dict[str, np.ndarray], y: Dict[str, np.ndarray],
           corpus: np.ndarray, labels, head: Optional[Dict[str, np.ndarray]] = None
           ) -> dict:
  """Per exit: test UAR/WA (+ per corpus), ECE before/after a temperature
  fitted on the validation speakers, reliability bins after. ``head``
  ({val, test}: the functionals head's probabilities): every exit fused
  with it first (:func:`nsl_ser.functionals.fuse`)."""
  val = model.predict(x["val"], verbose=0)
  test = model.predict(x["test"], verbose=0)
  if head is not None:
    val, test = functionals.fuse(list(val), head["val"]), functionals.fuse(
        list(test), head["test"])
  out = {}
  for name, pv, pt in zip(models.exit_names(model), val, test):
    t = confidence.fit_temperature(pv, y["val"])
    scaled = confidence.apply_temperature(pt, t)
    rep = evaluation.report(y["test"], pt, labels)
    out[name] = {
        "uar": rep["uar"], "wa": rep["wa"],
        "uar_by_corpus": {str(c): evaluation.report(
            y["test"][corpus == c], pt[corpus == c], labels)["uar"]
                          for c in np.unique(corpus)},
        "temperature": t, "ece": confidence.ece(pt, y["test"]),
        "ece_scaled": confidence.ece(scaled, y["test"]),
        "reliability": confidence.reliability(pt, y["test"]),
        "reliability_scaled": confidence.reliability(scaled, y["test"])}
  return out


def head_probs(pool: pooled.Pool, fx: List[np.ndarray], split, regime: str,
               parts, hop_s: float) -> Dict[str, Dict[str, np.ndarray]]:
  """The functionals head trained like the CNN
  (:func:`nsl_ser.functionals.fit_on_speakers`; ``fx``: the utterances'
  functionals at each speed, :func:`nsl_ser.functionals.of_speeds`):
  {mode: {val, test: probabilities}}, speakers raw (independent) or
  calibrated."""
  u = pool.utts  # whole utterances, as predict gives the head
  head, forms = functionals.fit_on_speakers(
      fx[0], u.labels, u.speakers, split.train, split.val, regime,
      len(pool.labels), hop_s, copies=fx[1:])
  row = {i: k for k, i in enumerate(u.ids)}
  return {m: {p: head.probs(forms[m][[row[i] for i in parts[p].ids]])
              for p in ("val", "test")} for m in MODES}


def run(regimes, names) -> List[dict]:
  fe = FrontEndConfig()
  pool = load()
  logging.info("pool: %s", pooled.counts(pool))
  hop_s = fe.hop_ms / 1000.0
  fx = functionals.of_speeds(pool.utts, hop_s)
  rows = []
  for name in names:
    split = settings()[name]
    for regime in regimes:
      rc = recipe.Recipe(regime=regime)
      rc = dataclasses.replace(rc, train=dataclasses.replace(
          rc.train, epochs=F.epochs, verbose=2), augment=dataclasses.replace(
              rc.augment, random_crop=F.random_crop))
      c = source.make_corpus(pool.labels, pool.utts, pool.arrays, split, rc)
      test_corpus = np.array([s.split(":")[0] for s in c.parts["test"].speakers])
      forms = {m: {p: (c.parts[p].features if m == "independent" else
                       normalization.calibrate_by_speaker(
                           c.parts[p].features, c.parts[p].speakers, c.stats,
                           c.reference)) for p in ("val", "test")}
               for m in MODES}
      y = {p: c.parts[p].labels for p in ("val", "test")}
      hp = (head_probs(pool, fx, split, regime, c.parts, hop_s)
            if F.functionals else None)
      for seed in range(F.seeds):
        r = dataclasses.replace(rc, train=dataclasses.replace(rc.train, seed=seed))
        t0 = time.time()
        model, hist = recipe.train_student(
            c.train, c.inputs["val"], y["val"], len(pool.labels), r, fe)
        row = {"setting": name + ("+crop" if F.random_crop else ""),
               "regime": regime, "seed": seed,
               "train_utterances": len(c.train), "test_utterances": len(y["test"]),
               "epochs_run": len(hist["loss"]), "wall_s": time.time() - t0,
               "modes": {m: scores(model, forms[m], y, test_corpus, pool.labels)
                         for m in MODES}}
        logging.info("%s %s seed %d: %s (%.0f s)", name, regime, seed,
                     {m: round(list(v.values())[-1]["uar"], 1)
                      for m, v in row["modes"].items()}, row["wall_s"])
        rows.append(row)
        if hp is not None:
          rows.append({**row, "setting": row["setting"] + FUSED,
                       "modes": {m: scores(model, forms[m], y, test_corpus,
                                           pool.labels, hp[m]) for m in MODES},
                       "head_only": {m: evaluation.report(
                           y["test"], hp[m]["test"], pool.labels)["uar"]
                                     for m in MODES}})
          logging.info("  fused with the functionals head: %s", {
              m: round(list(v.values())[-1]["uar"], 1)
              for m, v in rows[-1]["modes"].items()})
        if F.part:
          atomic_write_text(F.part, json.dumps(rows, indent=1, default=float))
  return rows


def _ms(v) -> str:
  s = evaluation.mean_std(v)
  return f"{s['mean']:.1f} ± {s['std']:.1f}"


def summarize(rows: List[dict], wall: float) -> None:
  names = list(dict.fromkeys(r["setting"] for r in rows))
  full = max(rows[0]["modes"]["independent"], key=lambda n: int(n.split("_")[1]))
  nan = float("nan")

  def sel(name, regime):
    return [r for r in rows if r["setting"] == name and r["regime"] == regime]

  def vals(name, regime, mode, field="uar", exit_=None):
    return [r["modes"][mode][exit_ or full][field] for r in sel(name, regime)]

  agg, table = {}, []
  for name in names:
    for regime in normalization.REGIMES:
      if not sel(name, regime):
        continue
      line = [name, regime]
      for mode in MODES:
        u, w = vals(name, regime, mode), vals(name, regime, mode, "wa")
        agg[f"{name}/{regime}/{mode}"] = {"uar": evaluation.mean_std(u),
                                          "wa": evaluation.mean_std(w)}
        line += [_ms(u), f"{np.mean(w):.1f}"]
      table.append(line + [len(sel(name, regime))])
  md = [F.note + "\n\n" if F.note else "",
        "RAVDESS + EmoDB on their six shared classes; default recipe "
        "(speed perturbation 0.9/1.0/1.1, weight averaging, self-distilled "
        "exits); full-model (%s) UAR / WA in %%, mean ± std over seeds. "
        "*independent*: raw features, the model's training statistics; "
        "*calibrated*: each test speaker mapped onto the training statistics "
        "with its own unlabelled clips. `regime` is how the model was trained "
        "(`speaker`: every training speaker calibrated the same way).\n\n" % full,
        markdown_table(["setting", "trained", "independent UAR", "WA",
                        "calibrated UAR", "WA", "runs"], table)]
  base = [[n, m, BASELINES[(n, m)]] for n in names for m in MODES
          if (n, m) in BASELINES]
  if base:
    md += ["\nopenSMILE functionals + linear SVM on the same split "
           "(`../shared/notes/baselines.md`; *calibrated* = target features "
           "standardised per speaker):\n\n",
           markdown_table(["setting", "mode", "UAR"], base)]
  by_corpus = []
  for regime in normalization.REGIMES:
    rs = sel("union_heldout", regime)
    for mode in MODES:
      if rs:
        by_corpus.append([regime, mode] + [
            _ms([r["modes"][mode][full]["uar_by_corpus"][c] for r in rs])
            for c in CORPORA])
  if by_corpus:
    md += ["\n## union_heldout by corpus (test UAR)\n\n",
           markdown_table(["trained", "mode", "RAVDESS 19–24", "EmoDB 03, 08"],
                          by_corpus)]
  def shipped(name: str, regime: str) -> str:
    """The recipe as shipped: fused with the functionals head where
    measured, else the CNN alone."""
    return name + FUSED if sel(name + FUSED, regime) else name

  conf, temps, helps = [], {}, {}
  for regime in normalization.REGIMES:
    u = shipped("union_heldout", regime)
    rs = sel(u, regime)
    for mode in MODES:
      if not rs:
        continue
      exits = list(rs[0]["modes"][mode])
      t = {e: float(np.exp(np.mean(np.log(vals(u, regime, mode,
                                                "temperature", e)))))
           for e in exits}
      temps[f"{regime}/{mode}"] = t
      helps[f"{regime}/{mode}"] = bool(
          np.mean(vals(u, regime, mode, "ece_scaled"))
          < np.mean(vals(u, regime, mode, "ece")))
      conf.append([u, regime, mode, _ms(vals(u, regime, mode, "ece")),
                   _ms(vals(u, regime, mode, "ece_scaled")),
                   " / ".join(f"{t[e]:.2f}" for e in exits)])
  if conf:
    md += ["\n## Confidence (union_heldout as shipped, full model)\n\nExpected calibration "
           "error (10 bins, %) on the held-out speakers, before and after "
           "temperature scaling fitted on the validation speakers; the "
           "temperatures (geometric mean over seeds) for exit 1…K.\n\n",
           markdown_table(["setting", "trained", "mode", "ECE", "ECE after T",
                           "T exit 1…K"], conf)]
  g = F.default_regime
  rel, rs = None, sel(shipped("union_heldout", g), g)
  scaled = helps.get(f"{g}/independent", False)
  key = "reliability_scaled" if scaled else "reliability"
  if rs and key in rs[0]["modes"]["independent"][full]:
    bins = [r["modes"]["independent"][full][key] for r in rs]
    rel = [{k: float(np.nanmean([b[i][k] for b in bins]))
            for k in ("lo", "hi", "confidence", "accuracy", "count")}
           for i in range(len(bins[0]))]
    md += ["\n## Reliability (%s, %s-trained, independent, %s)"
           "\n\nTemperature scaling %s, so the default model %s.\n\n"
           "![reliability](generalization_reliability.png)\n\n"
           % (shipped("union_heldout", g), g,
              "after T" if scaled else "no temperature",
              "lowers the held-out ECE" if scaled else
              "fitted on the validation speakers raises the held-out ECE",
              "applies it" if scaled else "ships without temperatures"),
           markdown_table(["bin", "mean count", "confidence", "accuracy"],
                          [[f"{b['lo']:.1f}–{b['hi']:.1f}", f"{b['count']:.1f}",
                            b["confidence"], b["accuracy"]] for b in rel
                           if b["count"] > 0])]
  out_dir = F.results_dir or os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results")
  if rel:
    _plot(rel, scaled, os.path.join(out_dir, "generalization_reliability.png"))
  size = nan
  if os.path.exists(F.default_model):
    side = json.load(open(F.default_model))
    size = side["files"]["model_int8.tflite"]["bytes"]

  def get(key):
    return agg[key]["uar"]["mean"] if key in agg else nan

  def ece_of(mode, field=None):
    field = field or ("ece_scaled" if helps.get(f"{g}/{mode}") else "ece")
    v = vals(shipped("union_heldout", g), g, mode, field) if rs else []
    return float(np.mean(v)) if v else nan

  def ship(n: str, mode: str) -> float:
    return get(f"{shipped(n, g)}/{g}/{mode}")

  summary = {
      # the headline: the default model's recipe as shipped (its regime,
      # fused with the functionals head where measured; *_cnn: the CNN alone)
      **{f"{n}_{mode}": ship(n, mode)
         for n in ("ravdess_to_emodb", "emodb_to_ravdess", "union_heldout")
         for mode in MODES},
      **{f"{n}_{mode}_cnn": get(f"{n}/{g}/{mode}")
         for n in ("ravdess_to_emodb", "emodb_to_ravdess", "union_heldout")
         for mode in MODES},
      # global-trained models scored without calibration
      "ravdess_to_emodb_independent_global_trained": get(
          "ravdess_to_emodb/global/independent"),
      "emodb_to_ravdess_independent_global_trained": get(
          "emodb_to_ravdess/global/independent"),
      "union_heldout_independent_global_trained": get(
          "union_heldout/global/independent"),
      "default_model_ece": ece_of("independent"),
      "default_model_ece_unscaled": ece_of("independent", "ece"),
      "default_model_ece_scaled": ece_of("independent", "ece_scaled"),
      "default_model_ece_calibrated": ece_of("calibrated"),
      "default_model_bytes": size,
      "wall_s": wall,
  }
  for n in ("ravdess_to_emodb", "emodb_to_ravdess", "union_heldout"):
    for mode in MODES:
      summary[f"{n}_{mode}_fused"] = get(f"{n}{FUSED}/{g}/{mode}")
      hs = [r["head_only"][mode] for r in sel(n + FUSED, g) if "head_only" in r]
      summary[f"{n}_{mode}_head_only"] = float(np.mean(hs)) if hs else nan
  write_results("generalization", summary,
                {"aggregate": agg, "temperatures": temps,
                 "temperature_helps": helps,
                 "default_regime": g, "reliability": rel, "runs": rows},
                "\n".join(md), out_dir)


def _plot(rel: List[dict], scaled: bool, path: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(4, 4))
  mids = [(b["lo"] + b["hi"]) / 2 for b in rel]
  ax.bar(mids, [b["accuracy"] if b["count"] else 0 for b in rel], width=0.09,
         alpha=0.7, label="accuracy")
  ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
  used = [b for b in rel if b["count"]]
  ax.plot([b["confidence"] for b in used], [b["accuracy"] for b in used], "o-",
          color="C3", label="by bin")
  ax.set_xlabel("confidence" + (" (after temperature)" if scaled else ""))
  ax.set_ylabel("accuracy")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1)
  ax.legend(loc="upper left", fontsize=8)
  fig.tight_layout()
  tmp = path + ".tmp.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)


def main(argv):
  del argv
  t0 = time.time()
  if F.merge:
    rows = [r for p in F.merge for r in json.load(open(p))]
    summarize(rows, sum(r["wall_s"] for r in rows))
    return
  rows = run(F.regimes, F.settings or list(settings()))
  if not F.part:
    summarize(rows, time.time() - t0)


if __name__ == "__main__":
  app.run(main)
