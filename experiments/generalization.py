"""Generalisation: voices, languages and studios the model has never heard.

  python experiments/generalization.py                      # everything
  python experiments/generalization.py --regimes=global --part=work/gen/global.json
  python experiments/generalization.py --regimes=speaker --part=work/gen/speaker.json
  python experiments/generalization.py --merge=work/gen/global.json,work/gen/speaker.json

RAVDESS (English), EmoDB (German) and nEMO (Polish, Ogg Opus) pooled on
the five classes all three share (neutral, happy, sad, angry, fearful).
Four settings, each trained with the default recipe
(:mod:`nsl_ser.recipe`) in both regimes, 3 seeds:

* ``loco_ravdess``, ``loco_emodb``, ``loco_nemo``: leave one corpus out,
  the protocol that predicts what a user sees. Train on the other two
  corpora's speakers but their validation speakers (RAVDESS 15-18, EmoDB
  fold 1: 09, 10, nEMO IC0, SM0), which choose the epoch and the head;
  test on every speaker of the held-out corpus;
* ``pooled_heldout``: train on the training speakers of all three, validate
  on their validation speakers, test on their test speakers (RAVDESS
  19-24, EmoDB fold 0: 03, 08, nEMO KD0, TP0): the default model's recipe
  with speakers held out.

Every model is scored two ways on the test speakers: *independent* (raw
features; the model's own training statistics) and *calibrated* (each test
speaker mapped onto the training statistics with its own unlabelled clips,
:func:`nsl_ser.normalization.calibrate`). The regime a model was trained in
decides which way is its headline; both are in the tables. Confidence:
expected calibration error on the test speakers before and after
temperature scaling fitted on the validation speakers, per exit (the
default model ships the temperatures only if they lower it); the
``pooled_heldout`` row stands in for the default model. With
``--functionals`` every exit is also scored fused with the functionals
head of the utterance (rows ``SETTING+functionals``); the summary's
headline keys are the recipe as shipped (fused where measured; ``*_cnn``:
the CNN alone). Every run's CNN probabilities are kept under
``--work_dir/probs`` so that other heads can be fused later without
training again (``--refuse``). The openSMILE + SVM baselines of the same
split come from ``experiments/results/baselines.json``
(``experiments/opensmile_baseline.py``). Writes
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

from nsl_ser import evaluation, functionals, models, normalization, pooled, recipe, source, splits
from nsl_ser.runtime import confidence
from nsl_ser.features import FrontEndConfig
from nsl_ser.prepare import PrepareConfig, atomic_write_text, prepare
from nsl_ser.results import markdown_table, write_results

F = flags.FLAGS
# The functionals heads compared (--head): see head_features.
HEADS = ("functionals", "functionals+prosody", "prosody", "level_free",
         "level_free+prosody")
flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_string("work_dir", "work/loco", "Scratch folder.")
flags.DEFINE_integer("seeds", 3, "Seeds per setting.")
flags.DEFINE_list("seed_list", None, "These seeds instead of 0..seeds-1 "
                  "(parts run side by side).")
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
flags.DEFINE_string("clips_part", None, "JSON of the calibration-by-clips "
                    "curve (clips_curve): written by --clips_curve, read "
                    "by --merge.")
flags.DEFINE_bool("clips_curve", False, "Measure calibration with 1..20 "
                  "clips a speaker from the saved pooled_heldout models of "
                  "--default_regime (--seed_list) into --clips_part.")
flags.DEFINE_enum("head", "functionals", list(HEADS), "The functionals head "
                  "fused with the CNN: the log-Mel functionals, those and "
                  "the prosodic ones (nsl_ser.prosody) of the waveform, "
                  "the prosodic ones alone, or the log-Mel functionals "
                  "without the band levels (functionals.level_free), "
                  "with or without the prosodic ones.")
flags.DEFINE_string("head_ablation", None, "Write the head-alone ablation "
                    "(every head, setting and regime) to this JSON and to "
                    "experiments/results/head_ablation.{json,md}, and stop "
                    "(an existing JSON is only rendered again).")
flags.DEFINE_bool("refuse", False, "With --merge: make the fused rows again "
                  "from the saved CNN probabilities with the current "
                  "functionals head (no training).")
flags.DEFINE_string("note", "", "How the merged parts were produced.")
flags.DEFINE_bool("random_crop", False, "Train with random 3 s crops (a "
                  "recipe variant; rows are tagged '+crop').")

CORPORA = ("ravdess", "emodb", "nemo")
MODES = ("independent", "calibrated")
LOCO = tuple(f"loco_{c}" for c in CORPORA)
POOLED = "pooled_heldout"
BASELINES_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                              "results", "baselines.json")


def results_dir() -> str:
  """Where the result files go (--results_dir, else experiments/results)."""
  return F.results_dir or os.path.join(
      os.path.dirname(os.path.abspath(__file__)), "results")


def fused_suffix(head: Optional[str] = None) -> str:
  """The tag of rows fused with ``head`` (default: ``--head``)."""
  return "+" + (head or F.head)


def is_fused(setting: str) -> bool:
  return any(setting.endswith(fused_suffix(h)) for h in HEADS)


def _fold_split(corpus: str) -> splits.Split:
  """The corpus' fixed split (EmoDB: fold 0, whose validation is fold 1)."""
  return splits.get_split(corpus, 0)


def settings() -> Dict[str, splits.Split]:
  """{setting: Split over ``corpus:speaker`` keys}."""
  k = pooled.keys
  parts = {c: _fold_split(c) for c in CORPORA}
  out = {}
  for held in CORPORA:
    rest = [c for c in CORPORA if c != held]
    every = parts[held].train | parts[held].val | parts[held].test
    out[f"loco_{held}"] = splits.Split(
        frozenset(x for c in rest for x in k(c, parts[c].train | parts[c].test)),
        frozenset(x for c in rest for x in k(c, parts[c].val)),
        frozenset(k(held, every)))
  out[POOLED] = splits.Split(
      *(frozenset(x for c in CORPORA for x in k(c, getattr(parts[c], p)))
        for p in ("train", "val", "test")))
  return out


def _records() -> Dict[str, str]:
  """{corpus: its prepared records folder} (prepared if need be)."""
  recs = {c: os.path.join(F.work_dir, "records", c) for c in CORPORA}
  for c, r in recs.items():
    prepare(PrepareConfig(c, F.data_dir, r))
  return recs


def load() -> pooled.Pool:
  recs = _records()
  labels = pooled.shared_labels(source.read_labels(r) for r in recs.values())
  return pooled.load_pool(recs, labels, recipe.Recipe().augment.speeds)


def load_with_functionals(fe: FrontEndConfig):
  """(pool, functionals at each speed), cached in ``--work_dir`` as a
  pickle keyed by the prepared records' summaries (what was read, from
  where), the front end, the speeds and the functionals' code, so that --refuse and --clips_curve
  need not decode and transform every clip again."""
  import hashlib
  import pickle
  summaries = []
  for r in _records().values():
    d = json.load(open(os.path.join(r, "summary.json")))
    summaries.append({k: v for k, v in d.items()
                      if k not in ("wall_s", "realtime_factor", "reused")})
  code = hashlib.sha256(open(functionals.__file__, "rb").read()).hexdigest()
  key = hashlib.sha256(json.dumps(
      [summaries, fe.to_dict(), list(recipe.Recipe().augment.speeds), code],
      sort_keys=True).encode()).hexdigest()[:16]
  path = os.path.join(F.work_dir, f"pool-{key}.pkl")
  if os.path.exists(path):
    with open(path, "rb") as f:
      return pickle.load(f)
  pool = load()
  fx = functionals.of_speeds(pool.utts, fe.hop_ms / 1000.0)
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    pickle.dump((pool, fx), f, protocol=pickle.HIGHEST_PROTOCOL)
  os.replace(tmp, path)
  return pool, fx


def prosody_of(fe: FrontEndConfig, pool: pooled.Pool) -> List[np.ndarray]:
  """[N, NUM_PROSODY] prosodic functionals (:mod:`nsl_ser.prosody`) of the
  pool's whole utterances (id order) at each of its speeds, from the
  prepared waveforms; cached in ``--work_dir`` by the prosody code."""
  import hashlib
  from tqdm import tqdm
  from nsl_ser import augment, prosody, records
  from nsl_ser.compat import tf
  code = hashlib.sha256(open(prosody.__file__, "rb").read()).hexdigest()[:16]
  path = os.path.join(F.work_dir, f"prosody-{code}.npz")
  ids = [str(i) for i in pool.utts.ids]
  if os.path.exists(path):
    with np.load(path) as z:
      if list(z["ids"]) == ids:
        return [z[f"speed{j}"] for j in range(len(pool.utts.speeds))]
  wanted, out = set(ids), {}
  examples = [ex for r in _records().values()
              for ex in records.read_examples(records.list_shards(r))]
  for ex in tqdm(examples, desc="prosody", unit="clip"):
    i = records.feature_value(ex, "id")
    if i not in wanted:
      continue
    wav = records.decode_waveform(tf.constant(
        records.feature_value(ex, "waveform"))).numpy()
    out[i] = [prosody.prosody_functionals(
        augment.change_speed(wav, sp, fe.sample_rate), fe.sample_rate)
              for sp in pool.utts.speeds]
  px = [np.stack([out[i][j] for i in ids]).astype(np.float64)
        for j in range(len(pool.utts.speeds))]
  tmp = f"{path}.{os.getpid()}.tmp.npz"
  np.savez(tmp, ids=np.array(ids), **{f"speed{j}": x for j, x in enumerate(px)})
  os.replace(tmp, path)
  return px


def head_features(fe: FrontEndConfig, pool: pooled.Pool,
                  fx: List[np.ndarray], head: Optional[str] = None
                  ) -> List[np.ndarray]:
  """What ``head`` (default ``--head``) sees of each utterance at each
  speed."""
  head = head or F.head
  if head.startswith("level_free"):
    fx = [functionals.level_free(a, fe.num_mel_bins) for a in fx]
  if head in ("functionals", "level_free"):
    return fx
  px = prosody_of(fe, pool)
  if head == "prosody":
    return px
  return [np.concatenate([a, b], axis=1) for a, b in zip(fx, px)]


def head_ablation(regimes: List[str], names: List[str]) -> List[dict]:
  """The functionals head alone, every head of :data:`HEADS`, every
  setting and regime: validation and test UAR, both modes (no CNN, no
  seeds: the head is deterministic)."""
  fe = FrontEndConfig()
  pool, fx = load_with_functionals(fe)
  hop_s = fe.hop_ms / 1000.0
  rows = []
  for head in HEADS:
    hx = head_features(fe, pool, fx, head)
    for name in names:
      split = settings()[name]
      for regime in regimes:
        parts = {p: pool.arrays.by_speakers(getattr(split, p))
                 for p in ("val", "test")}
        lin, hp = head_probs(pool, hx, split, regime, parts, hop_s)
        rows.append({"head": head, "setting": name, "regime": regime,
                     "C": lin.C, **{f"{p}_{m}": evaluation.report(
                         parts[p].labels, hp[m][p], pool.labels)["uar"]
                                    for p in ("val", "test") for m in MODES}})
        logging.info("%s", rows[-1])
  return rows




def scores(probs: Dict[str, List[np.ndarray]], y: Dict[str, np.ndarray],
           corpus: np.ndarray, labels, names: List[str],
           head: Optional[Dict[str, np.ndarray]] = None) -> dict:
  """Per exit (``probs``: {val, test: one [N, classes] array an exit}):
  test UAR/WA (+ per corpus), ECE before/after a temperature fitted on the
  validation speakers, reliability bins after. ``head`` ({val, test}: the
  functionals head's probabilities): every exit fused with it first
  (:func:`nsl_ser.functionals.fuse`)."""
  val, test = probs["val"], probs["test"]
  if head is not None:
    val, test = functionals.fuse(list(val), head["val"]), functionals.fuse(
        list(test), head["test"])
  out = {}
  for name, pv, pt in zip(names, val, test):
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
               parts, hop_s: float):
  """The functionals head trained like the CNN
  (:func:`nsl_ser.functionals.fit_on_speakers`; ``fx``: the utterances'
  functionals at each speed, :func:`nsl_ser.functionals.of_speeds`):
  (head, {mode: {val, test: probabilities}}), speakers raw (independent)
  or calibrated."""
  u = pool.utts  # whole utterances, as predict gives the head
  head, forms = functionals.fit_on_speakers(
      fx[0], u.labels, u.speakers, split.train, split.val, regime,
      len(pool.labels), hop_s, copies=fx[1:])
  row = {i: k for k, i in enumerate(u.ids)}
  return head, {m: {p: head.probs(forms[m][[row[i] for i in parts[p].ids]])
                    for p in ("val", "test")} for m in MODES}


def probs_path(setting: str, regime: str, seed: int) -> str:
  """Where a run's CNN probabilities go (its model: ``.keras`` beside)."""
  return os.path.join(F.work_dir, "probs", f"{setting}-{regime}-{seed}.npz")


def save_probs(path: str, probs: Dict[str, Dict[str, List[np.ndarray]]],
               names: List[str]) -> None:
  """Every exit's val/test probabilities of one run, in both modes."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  arrays = {f"{m}/{p}/{n}": probs[m][p][i] for m in MODES
            for p in ("val", "test") for i, n in enumerate(names)}
  tmp = path + f".{os.getpid()}.tmp.npz"
  np.savez_compressed(tmp, **arrays)
  os.replace(tmp, path)


def load_probs(path: str, names: List[str]) -> Dict[str, Dict[str, List[np.ndarray]]]:
  with np.load(path) as z:
    return {m: {p: [z[f"{m}/{p}/{n}"] for n in names] for p in ("val", "test")}
            for m in MODES}


class Setting:
  """One setting's data in one regime: the corpus, its two test forms and
  labels, the functionals head's probabilities."""

  def __init__(self, pool: pooled.Pool, fx, name: str, regime: str,
               fe: FrontEndConfig):
    self.split = settings()[name]
    rc = recipe.Recipe(regime=regime)
    self.recipe = dataclasses.replace(rc, train=dataclasses.replace(
        rc.train, epochs=F.epochs, verbose=2), augment=dataclasses.replace(
            rc.augment, random_crop=F.random_crop))
    c = source.make_corpus(pool.labels, pool.utts, pool.arrays, self.split,
                           self.recipe)
    self.corpus = c
    self.test_corpus = np.array([s.split(":")[0]
                                 for s in c.parts["test"].speakers])
    self.forms = {m: {p: (c.parts[p].features if m == "independent" else
                          normalization.calibrate_by_speaker(
                              c.parts[p].features, c.parts[p].speakers,
                              c.stats, c.reference)) for p in ("val", "test")}
                  for m in MODES}
    self.y = {p: c.parts[p].labels for p in ("val", "test")}
    self.linear_head, self.head = (
        head_probs(pool, fx, self.split, regime, c.parts, fe.hop_ms / 1000.0)
        if F.functionals else (None, None))


def fused_row(row: dict, st: Setting, probs, names, labels) -> dict:
  """The run ``row``'s exits fused with the setting's functionals head."""
  return {**row, "setting": row["setting"] + fused_suffix(),
          "modes": {m: scores(probs[m], st.y, st.test_corpus, labels, names,
                              st.head[m]) for m in MODES},
          "head_only": {m: evaluation.report(
              st.y["test"], st.head[m]["test"], labels)["uar"] for m in MODES}}


def run(regimes, names) -> List[dict]:
  fe = FrontEndConfig()
  pool, fx = load_with_functionals(fe)
  fx = head_features(fe, pool, fx)
  logging.info("pool: %s", pooled.counts(pool))
  rows = []
  for name in names:
    for regime in regimes:
      st = Setting(pool, fx, name, regime, fe)
      c = st.corpus
      for seed in [int(x) for x in F.seed_list or range(F.seeds)]:
        r = dataclasses.replace(st.recipe, train=dataclasses.replace(
            st.recipe.train, seed=seed))
        t0 = time.time()
        model, hist = recipe.train_student(
            c.train, c.inputs["val"], st.y["val"], len(pool.labels), r, fe)
        wall = time.time() - t0
        exits = models.exit_names(model)
        probs = {m: {p: list(model.predict(st.forms[m][p], verbose=0))
                     for p in ("val", "test")} for m in MODES}
        save_probs(probs_path(name, regime, seed), probs, exits)
        model_path = probs_path(name, regime, seed)[:-len(".npz")] + ".keras"
        model.save(model_path + ".tmp.keras")
        os.replace(model_path + ".tmp.keras", model_path)
        row = {"setting": name + ("+crop" if F.random_crop else ""),
               "regime": regime, "seed": seed,
               "train_utterances": len(c.train),
               "test_utterances": len(st.y["test"]),
               "epochs_run": len(hist["loss"]), "wall_s": wall,
               "exits": exits,
               "modes": {m: scores(probs[m], st.y, st.test_corpus, pool.labels,
                                   exits) for m in MODES}}
        logging.info("%s %s seed %d: %s (%.0f s)", name, regime, seed,
                     {m: round(list(v.values())[-1]["uar"], 1)
                      for m, v in row["modes"].items()}, row["wall_s"])
        rows.append(row)
        if st.head is not None:
          rows.append(fused_row(row, st, probs, exits, pool.labels))
          logging.info("  fused with the functionals head: %s", {
              m: round(list(v.values())[-1]["uar"], 1)
              for m, v in rows[-1]["modes"].items()})
        if F.part:
          atomic_write_text(F.part, json.dumps(rows, indent=1, default=float))
  return rows


def refuse(rows: List[dict]) -> List[dict]:
  """The CNN rows of ``rows`` kept, their fused rows made again from the
  saved probabilities with the current functionals head (no training)."""
  fe = FrontEndConfig()
  pool, fx = load_with_functionals(fe)
  fx = head_features(fe, pool, fx)
  cnn = [r for r in rows if not is_fused(r["setting"])]
  others = [r for r in rows if is_fused(r["setting"])
            and not r["setting"].endswith(fused_suffix())]
  out, cache = [], {}
  for row in cnn:
    key = (row["setting"], row["regime"])
    if key not in cache:
      cache[key] = Setting(pool, fx, row["setting"], row["regime"], fe)
    st = cache[key]
    exits = row.get("exits") or list(row["modes"]["independent"])
    probs = load_probs(probs_path(row["setting"], row["regime"], row["seed"]),
                       exits)
    out += [row, fused_row(row, st, probs, exits, pool.labels)]
  return out + others


def _ms(v) -> str:
  s = evaluation.mean_std(v)
  return f"{s['mean']:.1f} ± {s['std']:.1f}"


CLIP_COUNTS = (1, 2, 5, 10, 20)
# Shrinkage priors tried on the validation speakers, in clips' worth of
# the reference (normalization.shrink).
PRIORS = (0, 1, 2, 5, 10, 20)


def _draws(speakers: np.ndarray, draw: int) -> Dict[str, np.ndarray]:
  """{speaker: the indices of max(CLIP_COUNTS) of its clips in a random
  order}, for speakers with more clips than that (seeded by speaker and
  draw). Calibrating with n clips takes the first n, so every count is
  scored on the same clips: those never drawn."""
  out = {}
  for sp in np.unique(speakers):
    idx = np.flatnonzero(speakers == sp)
    if len(idx) > max(CLIP_COUNTS):
      seed = [draw] + [ord(ch) for ch in str(sp)]
      out[str(sp)] = np.random.default_rng(seed).choice(
          idx, max(CLIP_COUNTS), replace=False)
  return out


def calibrated_with(st: Setting, pool: pooled.Pool, fx0: np.ndarray, part: str,
                    n: int, draw: int, prior: float):
  """(CNN inputs, head probabilities, labels, kept mask) of ``part``'s
  clips that were never drawn (:func:`_draws`), each speaker calibrated
  with the statistics of its first ``n`` drawn clips, shrunk toward the
  reference by ``prior`` clips' worth (:func:`nsl_ser.normalization.shrink`);
  ``n`` 0: independent (raw features)."""
  c, head = st.corpus, st.linear_head
  a = c.parts[part]
  row = {i: k for k, i in enumerate(pool.utts.ids)}
  rows = np.array([row[i] for i in a.ids])
  clips = pool.utts.clips(0)
  frames = c.reference.count / max(len(c.train), 1)  # speech frames a clip
  order = _draws(a.speakers, draw)
  keep = np.isin(a.speakers, list(order))
  keep[np.concatenate(list(order.values()))] = False
  x, hx = a.features[keep].copy(), fx0[rows[keep]].copy()
  sp_keep = a.speakers[keep].astype(str)
  for sp, drawn in order.items() if n else ():
    mine = drawn[:n]
    s = normalization.shrink(normalization.stats_of(
        [clips[rows[i]] for i in mine]), c.reference, prior * frames)
    fs = normalization.shrink(normalization.BandStats.of(fx0[rows[mine]]),
                              head.reference, prior)
    out = sp_keep == sp
    x[out] = normalization.calibrate(x[out], s, c.reference)
    hx[out] = functionals.calibrate_by_speaker(
        hx[out], [sp] * int(out.sum()), {sp: fs}, head.reference)
  return x, head.probs(hx), a.labels[keep], keep


def clips_curve(regime: str, seeds: List[int], draws: int = 3) -> dict:
  """Calibrated UAR of the ``pooled_heldout`` recipe as shipped (its saved
  models of ``regime``) when each speaker's statistics rest on 1, 2, 5, 10
  or 20 of its clips, against independent on the same clips; the
  shrinkage prior chosen on the validation speakers (mean over the
  counts), then reported on the test speakers."""
  fe = FrontEndConfig()
  pool, fx = load_with_functionals(fe)
  fx = head_features(fe, pool, fx)
  st = Setting(pool, fx, POOLED, regime, fe)
  from nsl_ser.compat import keras
  nets = [keras.models.load_model(probs_path(POOLED, regime, s)[:-4] + ".keras",
                                  compile=False) for s in seeds]
  labels = pool.labels

  def fused_uar(x, hp, y):
    return float(np.mean([evaluation.report(y, functionals.fuse(
        net.predict(x, verbose=0)[-1], hp), labels)["uar"] for net in nets]))

  def curve(part, priors, nd):
    out = {}
    for prior in priors:
      for n in CLIP_COUNTS:
        got = [calibrated_with(st, pool, fx[0], part, n, d, prior)
               for d in range(nd)]
        out[(prior, n)] = float(np.mean([fused_uar(x, hp, y)
                                         for x, hp, y, _ in got]))
        logging.info("%s prior %s, %d clips: %.1f", part, prior, n,
                     out[(prior, n)])
    return out

  val = curve("val", PRIORS, 1)
  prior = max(PRIORS, key=lambda k: np.mean([val[(k, n)] for n in CLIP_COUNTS]))
  test = curve("test", sorted({0, prior}), draws)
  indep = float(np.mean([fused_uar(*calibrated_with(
      st, pool, fx[0], "test", 0, d, 0)[:3]) for d in range(draws)]))
  a = st.corpus.parts["test"]
  return {"regime": regime, "seeds": seeds, "draws": draws, "prior": prior,
          "val": {f"{k}/{n}": v for (k, n), v in val.items()},
          "test": {f"{k}/{n}": v for (k, n), v in test.items()},
          "independent_same_speakers": indep,
          "test_speakers": sorted(set(a.speakers.tolist()))}


# ../shared/notes/baselines.md, leave one corpus out: the better of eGeMAPS /
# ComParE + linear SVM per cell, used when baselines.json is absent.
NOTE_BASELINES = {("ravdess", "independent"): 31.1, ("ravdess", "calibrated"): 44.6,
                  ("emodb", "independent"): 51.3, ("emodb", "calibrated"): 65.4,
                  ("nemo", "independent"): 39.1, ("nemo", "calibrated"): 47.1}


def baselines() -> Dict[str, float]:
  """{``baseline_loco_{corpus}_{mode}``: UAR} of the better SVM, from
  ``experiments/results/baselines.json`` where it has the key, else the
  note's table. The bar is generous: in each cell the better of the
  fixed-C protocol and C chosen on validation speakers (``_valC``)."""
  s = {}
  if os.path.exists(BASELINES_JSON):
    s = json.load(open(BASELINES_JSON)).get("summary", {})
  out = {}
  for (c, m), v in NOTE_BASELINES.items():
    k = f"baseline_loco_{c}_{m}"
    out[k] = float(max(s.get(k, v), s.get(k + "_valC", v)))
  return out


def summarize(rows: List[dict], wall: float) -> None:
  names = list(dict.fromkeys(r["setting"] for r in rows))
  full = max(rows[0]["modes"]["independent"], key=lambda n: int(n.split("_")[1]))
  nan = float("nan")
  g = F.default_regime

  def sel(name, regime):
    return [r for r in rows if r["setting"] == name and r["regime"] == regime]

  def vals(name, regime, mode, field="uar", exit_=None):
    return [r["modes"][mode][exit_ or full][field] for r in sel(name, regime)]

  def shipped(name: str, regime: str = g) -> str:
    """The recipe as shipped: fused with the functionals head where
    measured, else the CNN alone."""
    return (name + fused_suffix() if sel(name + fused_suffix(), regime)
            else name)

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
      hs = [r["head_only"] for r in sel(name, regime) if "head_only" in r]
      line.append(" / ".join(f"{np.mean([h[m] for h in hs]):.1f}" for m in MODES)
                  if hs else "")
      table.append(line + [len(sel(name, regime))])

  def get(key):
    return agg[key]["uar"]["mean"] if key in agg else nan

  base = baselines()
  md = [F.note + "\n\n" if F.note else "",
        "RAVDESS, EmoDB and nEMO on the five classes all three share; default "
        "recipe (speed perturbation 0.9/1.0/1.1, weight averaging, "
        "self-distilled exits); full-model (%s) UAR / WA in %%, mean ± std "
        "over seeds. *independent*: raw features, the model's training "
        "statistics; *calibrated*: each test speaker mapped onto the training "
        "statistics with its own unlabelled clips. `trained` is the model's "
        "regime (`speaker`: every training speaker calibrated the same way). "
        "`head alone`: the functionals head without the CNN "
        "(independent / calibrated).\n\n" % full,
        markdown_table(["setting", "trained", "independent UAR", "WA",
                        "calibrated UAR", "WA", "head alone", "runs"], table)]
  loco = []
  for c in CORPORA:
    n = f"loco_{c}"
    if not sel(shipped(n), g):
      continue
    cells = [c]
    for mode in MODES:
      ours, b = get(f"{shipped(n)}/{g}/{mode}"), base[f"baseline_loco_{c}_{mode}"]
      cells += [f"{ours:.1f}", f"{get(f'{n}/{g}/{mode}'):.1f}", f"{b:.1f}",
                f"{ours - b:+.1f}"]
    loco.append(cells)
  if loco:
    md += ["\n## Leave one corpus out: the recipe as shipped against "
           "openSMILE + SVM\n\nThe %s-trained recipe as shipped (fused with "
           "the functionals head), the CNN alone, and the better of "
           "eGeMAPS / ComParE + linear SVM on the same split and classes, "
           "fixed C or C chosen on validation speakers, whichever scored "
           "higher on the test corpus (`experiments/results/baselines.json`, else "
           "`../shared/notes/baselines.md`). UAR %%, mean over 3 seeds.\n\n" % g,
           markdown_table(["held-out corpus", "independent: shipped", "CNN",
                           "SVM", "Δ", "calibrated: shipped", "CNN", "SVM",
                           "Δ"], loco)]
  by_corpus = []
  for regime in normalization.REGIMES:
    for name in (POOLED, POOLED + fused_suffix()):
      rs = sel(name, regime)
      for mode in MODES:
        if rs:
          by_corpus.append([name, regime, mode] + [
              _ms([r["modes"][mode][full]["uar_by_corpus"][c] for r in rs])
              for c in CORPORA])
  if by_corpus:
    md += ["\n## pooled_heldout by corpus (test UAR)\n\n",
           markdown_table(["setting", "trained", "mode", "RAVDESS 19–24",
                           "EmoDB 03, 08", "nEMO KD0, TP0"], by_corpus)]

  conf, temps, helps = [], {}, {}
  for regime in normalization.REGIMES:
    u = shipped(POOLED, regime)
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
    md += ["\n## Confidence (%s as shipped, full model)\n\nExpected "
           "calibration error (10 bins, %%) on the held-out speakers, before "
           "and after temperature scaling fitted on the validation speakers; "
           "the temperatures (geometric mean over seeds) for exit 1…K.\n\n"
           % POOLED,
           markdown_table(["setting", "trained", "mode", "ECE", "ECE after T",
                           "T exit 1…K"], conf)]
  rel, rs = None, sel(shipped(POOLED), g)
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
           % (shipped(POOLED), g,
              "after T" if scaled else "no temperature",
              "lowers the held-out ECE" if scaled else
              "fitted on the validation speakers raises the held-out ECE",
              "applies it" if scaled else "ships without temperatures"),
           markdown_table(["bin", "mean count", "confidence", "accuracy"],
                          [[f"{b['lo']:.1f}–{b['hi']:.1f}", f"{b['count']:.1f}",
                            b["confidence"], b["accuracy"]] for b in rel
                           if b["count"] > 0])]
  out_dir = results_dir()
  if rel:
    _plot(rel, scaled, os.path.join(out_dir, "generalization_reliability.png"))

  def ece_of(mode, field=None):
    field = field or ("ece_scaled" if helps.get(f"{g}/{mode}") else "ece")
    v = vals(shipped(POOLED), g, mode, field) if rs else []
    return float(np.mean(v)) if v else nan

  summary = {
      # the headline: the default model's recipe as shipped (its regime,
      # fused with the functionals head where measured; *_cnn: the CNN alone)
      **{f"{n}_{mode}": get(f"{shipped(n)}/{g}/{mode}")
         for n in (*LOCO, POOLED) for mode in MODES},
      **{f"{n}_{mode}_cnn": get(f"{n}/{g}/{mode}")
         for n in (*LOCO, POOLED) for mode in MODES},
      **{f"{n}_independent_global_trained": get(f"{n}/global/independent")
         for n in (*LOCO, POOLED)},
      **base,
  }
  for mode in MODES:
    summary[f"loco_mean_{mode}"] = float(np.mean(
        [summary[f"loco_{c}_{mode}"] for c in CORPORA]))
    summary[f"baseline_loco_mean_{mode}"] = float(np.mean(
        [base[f"baseline_loco_{c}_{mode}"] for c in CORPORA]))
  for n in (*LOCO, POOLED):
    for mode in MODES:
      hs = [r["head_only"][mode] for r in sel(n + fused_suffix(), g)
            if "head_only" in r]
      summary[f"{n}_{mode}_head_only"] = float(np.mean(hs)) if hs else nan
  if F.clips_part and os.path.exists(F.clips_part):
    cc = json.load(open(F.clips_part))
    k = cc["prior"]
    for n in CLIP_COUNTS:
      summary[f"calibration_clips_{n}_uar"] = cc["test"][f"{k}/{n}"]
      summary[f"calibration_clips_{n}_uar_unshrunk"] = cc["test"][f"0/{n}"]
    summary["independent_uar_same_speakers"] = cc["independent_same_speakers"]
    summary["calibration_prior_clips"] = k
    md += ["\n## Calibration with few clips (%s as shipped, %s-trained)\n\n"
           "Each test speaker (%s) calibrated with n of its own clips (%d "
           "random draws), scored on its clips never drawn, against the same "
           "clips independent (%.1f). The statistics are shrunk toward the "
           "model's reference by a prior of %s clips' worth "
           "(`normalization.shrink`), the prior chosen on the validation "
           "speakers from %s (mean UAR over the counts). UAR %%, mean over "
           "seeds %s.\n\n" % (POOLED, cc["regime"], ", ".join(cc["test_speakers"]),
                               cc["draws"], cc["independent_same_speakers"], k,
                               list(PRIORS), cc["seeds"]),
           markdown_table(["clips a speaker", "calibrated, shrunk",
                           "calibrated, no shrinkage", "independent"],
                          [[n, f"{cc['test'][f'{k}/{n}']:.1f}",
                            f"{cc['test'][f'0/{n}']:.1f}",
                            f"{cc['independent_same_speakers']:.1f}"]
                           for n in CLIP_COUNTS])]
  summary.update({
      "default_model_ece": ece_of("independent"),
      "default_model_ece_unscaled": ece_of("independent", "ece"),
      "default_model_ece_scaled": ece_of("independent", "ece_scaled"),
      "default_model_ece_calibrated": ece_of("calibrated"),
      "wall_s": wall})
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


def headline(regime: str) -> str:
  """The mode a model of ``regime`` is judged by."""
  return "calibrated" if regime == "speaker" else "independent"


def summarize_ablation(rows: List[dict]) -> None:
  """experiments/results/head_ablation.{json,md}: every head alone, its
  validation and test UAR per setting and regime; the head chosen by the
  mean validation UAR over settings and regimes (each in its headline
  mode), never by test."""
  heads = list(dict.fromkeys(r["head"] for r in rows))
  summary, table = {}, []
  for r in rows:
    for part in ("val", "test"):
      for m in MODES:
        summary[f"{r['head']}_{r['setting']}_{r['regime']}_{part}_{m}"] = r[f"{part}_{m}"]
    table.append([r["head"], r["setting"], r["regime"], r["C"],
                  *(f"{r[f'{p}_{m}']:.1f}" for p in ("val", "test") for m in MODES)])
  val = {h: float(np.mean([r[f"val_{headline(r['regime'])}"] for r in rows
                           if r["head"] == h])) for h in heads}
  test = {h: float(np.mean([r[f"test_{headline(r['regime'])}"] for r in rows
                            if r["head"] == h])) for h in heads}
  chosen = max(heads, key=lambda h: val[h])
  for h in heads:
    summary[f"{h}_mean_val"], summary[f"{h}_mean_test"] = val[h], test[h]
  summary["chosen_by_validation"] = heads.index(chosen)
  md = (
      "The functionals head alone (no CNN, deterministic), every head "
      "(`--head`: log-Mel functionals, + the prosodic cues of "
      "`nsl_ser.prosody`, prosody alone, the level-free variants) on the "
      "leave-one-corpus-out and pooled settings of `generalization.md`, "
      "both regimes. C is chosen on the validation speakers. The head is "
      "chosen by the mean validation UAR (each regime in its headline mode: "
      f"global independent, speaker calibrated): **{chosen}** "
      f"(`chosen_by_validation` = {heads.index(chosen)}, the index in "
      f"{heads}).\n\n"
      + markdown_table(["head", "mean val UAR", "mean test UAR"],
                       [[h, f"{val[h]:.1f}", f"{test[h]:.1f}"] for h in heads])
      + "\n\n" + markdown_table(
          ["head", "setting", "regime", "C", "val indep.", "val calib.",
           "test indep.", "test calib."], table) + "\n")
  print(write_results("head_ablation", summary, {"rows": rows, "heads": heads,
                                                 "chosen": chosen}, md,
                      out_dir=results_dir()))


def main(argv):
  del argv
  t0 = time.time()
  if F.head_ablation:
    if not os.path.exists(F.head_ablation):
      atomic_write_text(F.head_ablation, json.dumps(head_ablation(
          F.regimes, F.settings or list(settings())), indent=1))
    summarize_ablation(json.load(open(F.head_ablation)))
    return
  if F.clips_curve:
    out = clips_curve(F.default_regime,
                      [int(x) for x in F.seed_list or range(F.seeds)])
    atomic_write_text(F.clips_part, json.dumps(out, indent=1))
    return
  if F.merge:
    rows = [r for p in F.merge for r in json.load(open(p))]
    if F.refuse:
      rows = refuse(rows)
    summarize(rows, sum(r["wall_s"] for r in rows))
    return
  rows = run(F.regimes, F.settings or list(settings()))
  if not F.part:
    summarize(rows, time.time() - t0)


if __name__ == "__main__":
  app.run(main)
