"""The classic baseline on our splits: openSMILE functionals + linear SVM.

  pip install opensmile==2.6.0          # the optional extra, baselines only
  python experiments/opensmile_baseline.py
  python experiments/opensmile_baseline.py --workers=1   # extraction on one core

openSMILE 2.6.0 eGeMAPSv02 (88) and ComParE_2016 (6,373) functionals of the
16 kHz mono audio (``nsl_ser.audio.load_audio``; nEMO's 24 kHz Ogg Opus is
resampled) and scikit-learn ``LinearSVC`` (class-balanced, squared hinge,
``random_state=0``, ``dual='auto'``), UAR = macro recall, WA = accuracy, in %.
Two regimes everywhere: ``independent`` (features z-scored with the
statistics of the training rows only) and ``calibrated`` (every speaker,
training and test, z-scored with the statistics of its own clips in the
setting: unlabelled clips, never labels).

Settings:

* leave one corpus out (RAVDESS, EmoDB, nEMO; the five shared classes
  neutral, happy, sad, angry, fearful): train on every speaker of two
  corpora, test on every speaker of the third.

  - fixed C, the protocol of ``../shared/notes/baselines.md``: C = 0.1
    (eGeMAPS), 0.001 (ComParE), not tuned;
  - ``valC``: C from ``--cs`` chosen on the validation speakers of the
    training corpora (RAVDESS 15-18, EmoDB fold 1 = 09, 10, nEMO IC0, SM0;
    criterion: the mean over the training corpora of their validation UAR,
    the SVM fitted on their other speakers), then refit on every speaker of
    the training corpora.

  ``baseline_loco_*`` is the better of the two feature sets in each cell (by
  test UAR, as the note's "better" column: a generous bar).
* EmoDB, 7 classes, 5 folds (test fold k, validation fold k+1): C chosen
  on the validation partition, refit on train + validation (the note's
  protocol); the independent regime standardises on the training partition.
* pooled held-out: train on the training speakers of all three corpora (five
  classes), choose C on their validation speakers (same criterion), refit on
  train + validation, test on their test speakers (RAVDESS 19-24, EmoDB fold
  0 = 03, 08, nEMO KD0, TP0); UAR over the pooled test clips and per corpus.

Features are cached in ``--work_dir/{featureset}_{corpus}.npz`` (every clip
of the corpus, all emotions), so reruns only fit SVMs. Deterministic.
Writes ``--results_dir``/baselines.{json,md}.
"""
from __future__ import annotations

# openSMILE's native library must be loaded before TensorFlow's (which
# nsl_ser.results -> nsl_ser.prepare imports): the other order aborts with
# "malloc(): invalid size". Optional: not needed when the features are cached.
try:
  import opensmile
except ImportError:  # pragma: no cover
  opensmile = None

import multiprocessing as mp
import os
import time
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import app, flags, logging
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import recall_score
from sklearn.svm import LinearSVC
from tqdm import tqdm

from nsl_ser import audio, corpora, splits
from nsl_ser.results import RESULTS_DIR, markdown_table, write_results

flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_string("work_dir", "work/opensmile", "Feature cache folder.")
flags.DEFINE_string("results_dir", RESULTS_DIR, "Where baselines.{json,md} go.")
flags.DEFINE_integer("workers", 2, "Extraction processes (at most 2).")
flags.DEFINE_list("cs", ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2", "3e-2", "1e-1"],
                  "SVM C values tried on validation speakers.")
flags.DEFINE_integer("max_iter", 20000, "LinearSVC max_iter.")
F = flags.FLAGS

CORPORA = ("ravdess", "emodb", "nemo")
FEATURE_SETS = ("egemaps", "compare")
FEATURE_NAMES = {"egemaps": "eGeMAPSv02 (88)", "compare": "ComParE_2016 (6,373)"}
# The note's fixed C for leave-one-corpus-out (not tuned).
FIXED_C = {"egemaps": 0.1, "compare": 0.001}
REGIMES = ("independent", "calibrated")
# ../shared/notes/baselines.md, leave one corpus out, UAR %.
NOTE_LOCO = {
    ("egemaps", "ravdess", "independent"): 24.9, ("egemaps", "ravdess", "calibrated"): 44.6,
    ("compare", "ravdess", "independent"): 31.1, ("compare", "ravdess", "calibrated"): 41.6,
    ("egemaps", "emodb", "independent"): 41.0, ("egemaps", "emodb", "calibrated"): 64.9,
    ("compare", "emodb", "independent"): 51.3, ("compare", "emodb", "calibrated"): 65.4,
    ("egemaps", "nemo", "independent"): 39.1, ("egemaps", "nemo", "calibrated"): 47.1,
    ("compare", "nemo", "independent"): 34.7, ("compare", "nemo", "calibrated"): 46.3,
}
# Same note, EmoDB 7 classes 5 folds: UAR mean, sd.
NOTE_EMODB5 = {("egemaps", "independent"): (63.8, 9.6),
               ("compare", "independent"): (76.6, 5.0),
               ("egemaps", "calibrated"): (77.1, 4.0),
               ("compare", "calibrated"): (82.7, 2.8)}


# --------------------------------------------------------------------------
# Feature extraction (cached).

_SMILES: Dict[str, object] = {}


def _init_worker() -> None:
  """Each worker: low priority (the machine is shared), one Smile per set."""
  try:
    os.nice(10)
  except OSError:
    pass
  if opensmile is None:
    raise ImportError("feature extraction needs the optional extra: "
                      "pip install opensmile==2.6.0")
  sets = {"egemaps": opensmile.FeatureSet.eGeMAPSv02,
          "compare": opensmile.FeatureSet.ComParE_2016}
  for name, fs in sets.items():
    _SMILES[name] = opensmile.Smile(
        feature_set=fs, feature_level=opensmile.FeatureLevel.Functionals)


def _extract_one(path: str) -> Dict[str, np.ndarray]:
  x = audio.load_audio(path)
  return {name: smile.process_signal(x, audio.SAMPLE_RATE).to_numpy(
      np.float32)[0] for name, smile in _SMILES.items()}


def _feature_names() -> Dict[str, List[str]]:
  if not _SMILES:
    _init_worker()
  return {n: list(s.feature_names) for n, s in _SMILES.items()}


def cache_path(work_dir: str, fs: str, corpus: str) -> str:
  return os.path.join(work_dir, f"{fs}_{corpus}.npz")


def load_features(corpus: str, data_dir: str, work_dir: str, workers: int
                  ) -> Tuple[List[corpora.Utterance], Dict[str, np.ndarray]]:
  """Every clip of ``corpus`` and its features per set (cache, else extract)."""
  utts, skipped = corpora.scan(corpora.get_corpus(corpus), data_dir)
  if skipped:
    logging.warning("%s: %d files skipped, e.g. %s", corpus, len(skipped),
                    skipped[0])
  ids = [u.id for u in utts]
  cached: Dict[str, Dict[str, np.ndarray]] = {}
  for fs in FEATURE_SETS:
    p = cache_path(work_dir, fs, corpus)
    if os.path.exists(p):
      z = np.load(p, allow_pickle=False)
      cached[fs] = dict(zip(z["ids"].tolist(), z["x"]))
  missing = [u for u in utts
             if not all(u.id in cached.get(fs, {}) for fs in FEATURE_SETS)]
  if missing:
    workers = max(1, min(2, workers))
    logging.info("%s: extracting %d of %d clips with %d process(es)", corpus,
                 len(missing), len(utts), workers)
    paths = [u.path for u in missing]
    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
      out = list(tqdm(pool.imap(_extract_one, paths, chunksize=4),
                      total=len(paths), desc=f"openSMILE {corpus}"))
    names = _feature_names()
    os.makedirs(work_dir, exist_ok=True)
    for fs in FEATURE_SETS:
      d = cached.setdefault(fs, {})
      for u, feats in zip(missing, out):
        d[u.id] = feats[fs]
      x = np.stack([d[i] for i in ids]).astype(np.float32)
      p = cache_path(work_dir, fs, corpus)
      tmp = p + ".tmp.npz"
      np.savez_compressed(tmp, ids=np.array(ids), x=x,
                          speakers=np.array([u.speaker for u in utts]),
                          emotions=np.array([u.emotion for u in utts]),
                          feature_names=np.array(names[fs]))
      os.replace(tmp, p)
  feats = {fs: np.stack([cached[fs][i] for i in ids]).astype(np.float64)
           for fs in FEATURE_SETS}
  for fs, x in feats.items():
    if not np.all(np.isfinite(x)):
      raise ValueError(f"{corpus}/{fs}: non-finite features")
  return utts, feats


# --------------------------------------------------------------------------
# Normalisation, SVM, scores.

def zscore(x: np.ndarray, fit: np.ndarray) -> np.ndarray:
  """Standardised with the statistics of the rows ``fit``."""
  return (x - x[fit].mean(0)) / (x[fit].std(0) + 1e-8)


def by_speaker(x: np.ndarray, speakers: np.ndarray) -> np.ndarray:
  """Every speaker z-scored with its own rows' statistics (no labels)."""
  out = np.empty_like(x)
  for s in np.unique(speakers):
    m = speakers == s
    out[m] = zscore(x[m], np.ones(m.sum(), bool))
  return out


_NOT_CONVERGED: List[str] = []


def fit_svm(x: np.ndarray, y: np.ndarray, c: float, tag: str = "") -> LinearSVC:
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", ConvergenceWarning)
    m = LinearSVC(C=c, class_weight="balanced", dual="auto", random_state=0,
                  max_iter=F.max_iter).fit(x, y)
  if any(issubclass(w.category, ConvergenceWarning) for w in caught):
    _NOT_CONVERGED.append(f"{tag} C={c:g}")
  return m


def uar(y: np.ndarray, p: np.ndarray) -> float:
  """Macro recall over the classes present in ``y``, %."""
  return 100 * float(recall_score(y, p, labels=np.unique(y), average="macro",
                                  zero_division=0))


def wa(y: np.ndarray, p: np.ndarray) -> float:
  return 100 * float(np.mean(y == p))


def choose_c(x: np.ndarray, y: np.ndarray, fit: np.ndarray,
             val_groups: Sequence[np.ndarray], cs: Sequence[float], tag: str
             ) -> Tuple[float, Dict[str, float]]:
  """C maximising the mean over ``val_groups`` of their UAR (SVM on ``fit``);
  ties go to the smallest C."""
  scores = {}
  for c in cs:
    m = fit_svm(x[fit], y[fit], c, tag)
    scores[f"{c:g}"] = float(np.mean([uar(y[g], m.predict(x[g]))
                                      for g in val_groups]))
  best = max(cs, key=lambda c: scores[f"{c:g}"])
  return best, scores


# --------------------------------------------------------------------------
# The data, as flat arrays.

class Table:
  """Every clip of every corpus: features per set, labels, speakers."""

  def __init__(self, per_corpus: Dict[str, Tuple[List[corpora.Utterance],
                                                  Dict[str, np.ndarray]]]):
    utts = [u for c in CORPORA for u in per_corpus[c][0]]
    self.x = {fs: np.concatenate([per_corpus[c][1][fs] for c in CORPORA])
              for fs in FEATURE_SETS}
    self.corpus = np.array([u.corpus for u in utts])
    # Speaker ids collide across corpora (RAVDESS 03 vs EmoDB 03): prefix.
    self.speaker = np.array([f"{u.corpus}/{u.speaker}" for u in utts])
    self.emotion = np.array([u.emotion for u in utts])

  def in_partition(self, corpus: str, split: splits.Split, part: str
                   ) -> np.ndarray:
    ids = [f"{corpus}/{s}" for s in getattr(split, part)]
    return (self.corpus == corpus) & np.isin(self.speaker, ids)


def labels_of(emotion: np.ndarray, classes: Sequence[str]) -> np.ndarray:
  index = {e: i for i, e in enumerate(classes)}
  return np.array([index.get(e, -1) for e in emotion])


# Partitions used by leave-one-corpus-out and pooled: EmoDB fold 0.
def corpus_split(corpus: str) -> splits.Split:
  return splits.get_split(corpus, 0)


# --------------------------------------------------------------------------
# Settings.

def loco(t: Table, classes: Sequence[str], cs: Sequence[float]) -> List[dict]:
  sel = np.isin(t.emotion, classes)
  y = labels_of(t.emotion[sel], classes)
  corpus, speaker = t.corpus[sel], t.speaker[sel]
  runs = []
  for fs in FEATURE_SETS:
    x_all = t.x[fs][sel]
    cal = by_speaker(x_all, speaker)
    for held in CORPORA:
      train, test = corpus != held, corpus == held
      sources = [c for c in CORPORA if c != held]
      val = np.zeros_like(train)
      val_groups = []
      for c in sources:
        v = np.isin(speaker, [f"{c}/{s}" for s in corpus_split(c).val]) & (corpus == c)
        val |= v
        val_groups.append(v)
      for regime in REGIMES:
        tag = f"loco {fs} {held} {regime}"
        x = zscore(x_all, train) if regime == "independent" else cal
        # Fixed C (the note's protocol).
        p = fit_svm(x[train], y[train], FIXED_C[fs], tag).predict(x[test])
        r = {"setting": "loco", "features": fs, "held_out": held,
             "regime": regime, "train_corpora": sources,
             "n_train": int(train.sum()), "n_test": int(test.sum()),
             "fixed_C": FIXED_C[fs], "uar": uar(y[test], p), "wa": wa(y[test], p)}
        # C on the validation speakers of the training corpora.
        fit = train & ~val
        xs = zscore(x_all, fit) if regime == "independent" else cal
        best, scores = choose_c(xs, y, fit, val_groups, cs, tag + " valC")
        p_norefit = fit_svm(xs[fit], y[fit], best, tag).predict(xs[test])
        p = fit_svm(x[train], y[train], best, tag).predict(x[test])
        r.update({"valC": best, "val_uar_by_C": scores,
                  "uar_valC": uar(y[test], p), "wa_valC": wa(y[test], p),
                  "uar_valC_norefit": uar(y[test], p_norefit)})
        logging.info("%s: UAR %.1f (fixed C), %.1f (val C=%g)", tag, r["uar"],
                     r["uar_valC"], best)
        runs.append(r)
  return runs


def emodb5(t: Table, cs: Sequence[float]) -> List[dict]:
  classes = corpora.get_corpus("emodb").emotions
  sel = t.corpus == "emodb"
  y = labels_of(t.emotion[sel], classes)
  speaker = t.speaker[sel]
  runs = []
  for fs in FEATURE_SETS:
    x_all = t.x[fs][sel]
    cal = by_speaker(x_all, speaker)
    for regime in REGIMES:
      for fold in range(splits.num_folds("emodb")):
        sp = splits.get_split("emodb", fold)
        tr, va, te = (np.isin(speaker, [f"emodb/{s}" for s in getattr(sp, p)])
                      for p in ("train", "val", "test"))
        x = zscore(x_all, tr) if regime == "independent" else cal
        tag = f"emodb5 {fs} {regime} fold {fold}"
        best, scores = choose_c(x, y, tr, [va], cs, tag)
        p = fit_svm(x[tr | va], y[tr | va], best, tag).predict(x[te])
        runs.append({"setting": "emodb5", "features": fs, "regime": regime,
                     "fold": fold, "C": best, "val_uar_by_C": scores,
                     "uar": uar(y[te], p), "wa": wa(y[te], p)})
      u = [r["uar"] for r in runs[-5:]]
      logging.info("emodb5 %s %s: UAR %.1f ± %.1f", fs, regime, np.mean(u),
                   np.std(u))
  return runs


def pooled(t: Table, classes: Sequence[str], cs: Sequence[float]) -> List[dict]:
  sel = np.isin(t.emotion, classes)
  y = labels_of(t.emotion[sel], classes)
  corpus, speaker = t.corpus[sel], t.speaker[sel]
  part = {}
  for p in ("train", "val", "test"):
    part[p] = np.zeros(len(y), bool)
    for c in CORPORA:
      part[p] |= (corpus == c) & np.isin(
          speaker, [f"{c}/{s}" for s in getattr(corpus_split(c), p)])
  tr, va, te = part["train"], part["val"], part["test"]
  val_groups = [va & (corpus == c) for c in CORPORA]
  runs = []
  for fs in FEATURE_SETS:
    x_all = t.x[fs][sel]
    cal = by_speaker(x_all, speaker)
    for regime in REGIMES:
      tag = f"pooled {fs} {regime}"
      x = zscore(x_all, tr) if regime == "independent" else cal
      best, scores = choose_c(x, y, tr, val_groups, cs, tag)
      p = fit_svm(x[tr | va], y[tr | va], best, tag).predict(x[te])
      r = {"setting": "pooled", "features": fs, "regime": regime, "C": best,
           "val_uar_by_C": scores, "n_train": int((tr | va).sum()),
           "n_test": int(te.sum()), "uar": uar(y[te], p), "wa": wa(y[te], p)}
      tc = corpus[te]
      for c in CORPORA:
        m = tc == c
        r[f"uar_{c}"] = uar(y[te][m], p[m])
        r[f"wa_{c}"] = wa(y[te][m], p[m])
      r["uar_corpus_mean"] = float(np.mean([r[f"uar_{c}"] for c in CORPORA]))
      logging.info("%s: UAR %.1f (C=%g)", tag, r["uar"], best)
      runs.append(r)
  return runs


# --------------------------------------------------------------------------
# Summary and tables.

def _get(runs: List[dict], **kw) -> dict:
  (r,) = [r for r in runs if all(r.get(k) == v for k, v in kw.items())]
  return r


def summarize(lo: List[dict], e5: List[dict], po: List[dict]) -> Dict[str, float]:
  s: Dict[str, float] = {}
  for sfx, key in (("", "uar"), ("_valC", "uar_valC")):
    for regime in REGIMES:
      for c in CORPORA:
        for fs in FEATURE_SETS:
          s[f"{fs}_loco_{c}_{regime}{sfx}"] = _get(
              lo, features=fs, held_out=c, regime=regime)[key]
        s[f"baseline_loco_{c}_{regime}{sfx}"] = max(
            s[f"{fs}_loco_{c}_{regime}{sfx}"] for fs in FEATURE_SETS)
      s[f"baseline_loco_mean_{regime}{sfx}"] = float(np.mean(
          [s[f"baseline_loco_{c}_{regime}{sfx}"] for c in CORPORA]))
      for fs in FEATURE_SETS:
        s[f"{fs}_loco_mean_{regime}{sfx}"] = float(np.mean(
            [s[f"{fs}_loco_{c}_{regime}{sfx}"] for c in CORPORA]))
  for fs in FEATURE_SETS:
    for regime in REGIMES:
      rs = [r for r in e5 if r["features"] == fs and r["regime"] == regime]
      s[f"{fs}_emodb5_{regime}"] = float(np.mean([r["uar"] for r in rs]))
      s[f"{fs}_emodb5_{regime}_std"] = float(np.std([r["uar"] for r in rs]))
      s[f"{fs}_emodb5_{regime}_wa"] = float(np.mean([r["wa"] for r in rs]))
  for regime in REGIMES:
    for fs in FEATURE_SETS:
      r = _get(po, features=fs, regime=regime)
      s[f"{fs}_pooled_{regime}"] = r["uar"]
      for c in CORPORA:
        s[f"{fs}_pooled_{c}_{regime}"] = r[f"uar_{c}"]
    best = max(FEATURE_SETS, key=lambda fs: s[f"{fs}_pooled_{regime}"])
    s[f"baseline_pooled_{regime}"] = s[f"{best}_pooled_{regime}"]
    for c in CORPORA:
      s[f"baseline_pooled_{c}_{regime}"] = s[f"{best}_pooled_{c}_{regime}"]
  return s


NAMES = {"ravdess": "RAVDESS", "emodb": "EmoDB", "nemo": "nEMO"}


def markdown(s: Dict[str, float], lo: List[dict], e5: List[dict],
             po: List[dict], counts: Dict[str, Dict[str, int]],
             speakers: Dict[str, int], wall: float,
             not_converged: List[str]) -> str:
  classes = list(next(iter(counts.values())).keys())
  md = ["openSMILE 2.6.0 functionals of 16 kHz mono audio + scikit-learn "
        "`LinearSVC` (class-balanced, random_state=0, dual='auto', "
        f"max_iter={F.max_iter}). UAR = macro recall, WA = accuracy, %. "
        "`independent`: z-scored with the training rows' statistics; "
        "`calibrated`: every speaker, training and test, z-scored with its "
        "own clips' statistics (unlabelled, never labels). Protocol and "
        "command lines: the docstring of `experiments/opensmile_baseline.py`.\n"]
  md.append("\nClips per corpus and class (the five shared classes):\n\n"
            + markdown_table(["corpus", "speakers", *classes, "total"],
                             [[NAMES[c], speakers[c], *counts[c].values(),
                               sum(counts[c].values())] for c in CORPORA]))

  def cell(fs, c, regime, sfx=""):
    return s[f"{fs}_loco_{c}_{regime}{sfx}"]

  # LOCO, fixed C, ours vs note.
  rows = []
  for c in CORPORA:
    row = [f"{NAMES[c]} ({speakers[c]} speakers)"]
    for fs in FEATURE_SETS:
      for regime in REGIMES:
        ours, note = cell(fs, c, regime), NOTE_LOCO[(fs, c, regime)]
        row.append(f"{ours:.1f} ({note:.1f})")
    for regime in REGIMES:
      note = max(NOTE_LOCO[(fs, c, regime)] for fs in FEATURE_SETS)
      row.append(f"{s[f'baseline_loco_{c}_{regime}']:.1f} ({note:.1f})")
    rows.append(row)
  mean_row = ["mean"]
  for fs in FEATURE_SETS:
    for regime in REGIMES:
      note = np.mean([NOTE_LOCO[(fs, c, regime)] for c in CORPORA])
      mean_row.append(f"{s[f'{fs}_loco_mean_{regime}']:.1f} ({note:.1f})")
  for regime in REGIMES:
    note = np.mean([max(NOTE_LOCO[(fs, c, regime)] for fs in FEATURE_SETS)
                    for c in CORPORA])
    mean_row.append(f"{s[f'baseline_loco_mean_{regime}']:.1f} ({note:.1f})")
  rows.append(mean_row)
  head = ["held-out corpus", "eGeMAPS independent", "eGeMAPS calibrated",
          "ComParE independent", "ComParE calibrated", "better: independent",
          "better: calibrated"]
  md.append("\n## Leave one corpus out, fixed C (the note's protocol)\n\n"
            "Train on every speaker of the other two corpora, test on every "
            "speaker of the held-out one, five classes. C = 0.1 (eGeMAPS), "
            "0.001 (ComParE), not tuned. UAR %, ours (the note's "
            "../shared/notes/baselines.md in brackets). Summary keys "
            "`{egemaps,compare,baseline}_loco_{corpus}_{regime}`.\n\n"
            + markdown_table(head, rows))
  diffs = [(fs, c, regime, cell(fs, c, regime) - NOTE_LOCO[(fs, c, regime)])
           for fs in FEATURE_SETS for c in CORPORA for regime in REGIMES]
  big = [d for d in diffs if abs(d[3]) > 2]
  md.append(f"\nLargest difference from the note: "
            f"{max(abs(d[3]) for d in diffs):.1f} points; cells differing by "
            f"more than 2 points: {len(big)}"
            + ("" if not big else " (" + ", ".join(
                f"{fs} {c} {r} {d:+.1f}" for fs, c, r, d in big) + ")")
            + ".\n")

  # LOCO, C on validation speakers.
  rows = []
  for c in CORPORA:
    row = [NAMES[c]]
    for fs in FEATURE_SETS:
      for regime in REGIMES:
        r = _get(lo, features=fs, held_out=c, regime=regime)
        row.append(f"{r['uar_valC']:.1f} (C={r['valC']:g}; no refit "
                   f"{r['uar_valC_norefit']:.1f})")
    for regime in REGIMES:
      row.append(f"{s[f'baseline_loco_{c}_{regime}_valC']:.1f}")
    rows.append(row)
  mean_row = ["mean"]
  for fs in FEATURE_SETS:
    for regime in REGIMES:
      mean_row.append(f"{s[f'{fs}_loco_mean_{regime}_valC']:.1f}")
  for regime in REGIMES:
    mean_row.append(f"{s[f'baseline_loco_mean_{regime}_valC']:.1f}")
  rows.append(mean_row)
  md.append("\n## Leave one corpus out, C chosen on validation speakers "
            "(the fair \"better SVM\")\n\n"
            f"C from {', '.join(F.cs)} chosen by the mean over the two "
            "training corpora of the UAR on their validation speakers "
            "(RAVDESS 15-18, EmoDB 09, 10, nEMO IC0, SM0), the SVM fitted on "
            "their other speakers; then refit on every speaker of the two "
            "training corpora with that C (\"no refit\": the model that chose "
            "C, which never saw the validation speakers, as the CNN recipe). "
            "Summary keys `..._valC`.\n\n" + markdown_table(head, rows))

  # EmoDB 5 folds.
  rows = []
  for fs in FEATURE_SETS:
    for regime in REGIMES:
      rs = [r for r in e5 if r["features"] == fs and r["regime"] == regime]
      nm, nsd = NOTE_EMODB5[(fs, regime)]
      rows.append([FEATURE_NAMES[fs], regime,
                   f"{s[f'{fs}_emodb5_{regime}']:.1f} ± "
                   f"{s[f'{fs}_emodb5_{regime}_std']:.1f}",
                   f"{nm:.1f} ± {nsd:.1f}",
                   f"{s[f'{fs}_emodb5_{regime}_wa']:.1f}",
                   " / ".join(f"{r['uar']:.1f}" for r in rs),
                   " / ".join(f"{r['C']:g}" for r in rs)])
  md.append("\n## EmoDB, 7 classes, 5 folds\n\n"
            "Test fold k, validation fold k+1; C chosen on validation, refit on "
            "train + validation; independent = standardised on the training "
            "partition. Summary keys `{egemaps,compare}_emodb5_{regime}`.\n\n"
            + markdown_table(["features", "regime", "UAR mean ± sd",
                              "note: UAR mean ± sd", "WA", "UAR per fold",
                              "C per fold"], rows))

  # Pooled held-out.
  rows = []
  for regime in REGIMES:
    for fs in FEATURE_SETS:
      r = _get(po, features=fs, regime=regime)
      rows.append([FEATURE_NAMES[fs], regime, f"{r['uar']:.1f} / {r['wa']:.1f}",
                   *(f"{r[f'uar_{c}']:.1f}" for c in CORPORA),
                   f"{r['uar_corpus_mean']:.1f}", f"{r['C']:g}"])
  md.append("\n## Pooled held-out speakers (five classes)\n\n"
            "Train on the training speakers of all three corpora, C chosen "
            "on their validation speakers (mean of the three corpora's "
            "validation UAR), refit on train + validation, test on their test "
            "speakers (RAVDESS 19-24, EmoDB 03, 08, nEMO KD0, TP0). "
            "`baseline_pooled_{regime}` (and `_{corpus}_`) is the feature "
            "set with the better pooled UAR: "
            + ", ".join(f"{regime} {s[f'baseline_pooled_{regime}']:.1f}"
                        for regime in REGIMES) + ".\n\n"
            + markdown_table(["features", "regime", "pooled test UAR / WA",
                              "RAVDESS UAR", "EmoDB UAR", "nEMO UAR",
                              "mean of corpora", "C"], rows))
  md.append(f"\nWall time {wall / 60:.1f} min (feature extraction included "
            "unless cached). LinearSVC fits that hit max_iter: "
            + (", ".join(sorted(set(not_converged))) if not_converged
               else "none") + ".\n")
  return "".join(md)


def main(argv):
  del argv
  t0 = time.time()
  cs = sorted(float(c) for c in F.cs)
  per_corpus = {c: load_features(c, F.data_dir, F.work_dir, F.workers)
                for c in CORPORA}
  t_extract = time.time() - t0
  t = Table(per_corpus)
  classes = corpora.shared_emotions(*CORPORA)
  counts = {c: {e: int(np.sum((t.corpus == c) & (t.emotion == e)))
                for e in classes} for c in CORPORA}
  speakers = {c: len(np.unique(t.speaker[t.corpus == c])) for c in CORPORA}
  lo = loco(t, classes, cs)
  e5 = emodb5(t, cs)
  po = pooled(t, classes, cs)
  wall = time.time() - t0
  summary = summarize(lo, e5, po)
  summary["wall_s"] = wall
  summary["extract_s"] = t_extract
  md = markdown(summary, lo, e5, po, counts, speakers, wall, _NOT_CONVERGED)
  extra = {"classes": list(classes), "counts": counts, "cs": cs,
           "fixed_C": FIXED_C, "note_loco": {" ".join(k): v
                                             for k, v in NOTE_LOCO.items()},
           "not_converged": sorted(set(_NOT_CONVERGED)),
           "loco": lo, "emodb5": e5, "pooled": po}
  print(write_results("baselines", summary, extra, md, F.results_dir))


if __name__ == "__main__":
  app.run(main)
