"""The default model: every corpus we have, pooled, one deployable student.

``nsl-ser train-default`` runs these stages with the resumable runner of
:mod:`nsl_ser.pipeline`: prepare every known corpus found under
``data_dir`` -> train the early-exit student with the default recipe on all
their speakers, on the emotions they share (:mod:`nsl_ser.pooled`) ->
export (phone, microcontroller stages, Edge TPU; int8 PTQ) with the
reference statistics, the functionals head of the recipe and per-exit
temperatures in the sidecar -> model card.
With ``install`` the result replaces ``tflite_models/default``.

Nothing here is held out: the numbers on the card come from
``experiments/generalization.py`` (``pooled_heldout``: the same recipe and
data with speakers held out; ``loco_*``: a whole corpus held out), read
from its result file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import zlib
from typing import Dict, List, Optional

import numpy as np

from nsl_ser import corpora, models
from nsl_ser.pipeline import Stage
from nsl_ser.atomic import atomic_write_text

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERALIZATION = os.path.join(REPO_ROOT, "experiments", "results",
                              "generalization.json")
ACCURACY = os.path.join(REPO_ROOT, "experiments", "results", "accuracy.json")


@dataclasses.dataclass
class DefaultConfig:
  data_dir: str = "../shared/data"
  work_dir: str = "work/default"
  regime: str = "speaker"
  epochs: int = 40
  seed: int = 0
  quick: bool = False
  generalization: str = GENERALIZATION  # temperatures + card numbers

  def path(self, *parts: str) -> str:
    return os.path.join(self.work_dir, *parts)


def found_corpora(data_dir: str) -> List[str]:
  """Known corpora (:data:`corpora.CORPORA`) with a folder in ``data_dir``."""
  out = [n for n, c in corpora.CORPORA.items()
         if os.path.isdir(os.path.join(data_dir, c.subdir))]
  if not out:
    raise FileNotFoundError(
        f"{data_dir}: no corpus folder found (expected any of "
        f"{', '.join(c.subdir for c in corpora.CORPORA.values())})")
  return out


def _records(cfg: DefaultConfig) -> Dict[str, str]:
  return {c: cfg.path("records", c) for c in found_corpora(cfg.data_dir)}


def temperatures(path: str, regime: str) -> Optional[Dict[str, float]]:
  """Per-exit temperatures fitted on validation speakers for models of
  ``regime`` used uncalibrated (``generalization.json``), if measured and
  if they lowered the expected calibration error on held-out speakers."""
  if not os.path.exists(path):
    return None
  d = json.load(open(path))
  key = f"{regime}/independent"
  if not d.get("temperature_helps", {}).get(key):
    return None
  return d.get("temperatures", {}).get(key)


# ------------------------------------------------------------------ stages
def run_prepare(cfg: DefaultConfig) -> Dict:
  from nsl_ser.prepare import PrepareConfig, prepare
  out = {}
  for c, rec in _records(cfg).items():
    s = prepare(PrepareConfig(c, cfg.data_dir, rec))
    out[c] = {k: s[k] for k in ("files_read", "skipped")}
  return out


def _pool(cfg: DefaultConfig, speeds):
  from nsl_ser import pooled, source
  recs = _records(cfg)
  labels = pooled.shared_labels(source.read_labels(r) for r in recs.values())
  # quick: a sixth of the clips, chosen by id before any feature is made
  keep = (lambda i: zlib.crc32(i.encode()) % 6 == 0) if cfg.quick else None
  return pooled.load_pool(recs, labels, speeds, keep=keep)


def head_validation(pool) -> frozenset:
  """The speakers that choose the functionals head's C: each corpus' fold-0
  validation speakers (``nsl_ser/splits``) that are in the pool, else
  (no split file, or none of them present) every fourth of its speakers,
  at least one of a corpus with two or more."""
  from nsl_ser import pooled, splits
  out = []
  for c in sorted(set(pool.corpus.tolist())):
    present = pool.speakers_of(c)  # corpus:speaker keys
    try:
      val = sorted(set(pooled.keys(c, splits.get_split(c, 0).val)) & set(present))
    except FileNotFoundError:
      val = []
    out += val or present[3::4] or present[-1:] * (len(present) > 1)
  if not out:
    raise ValueError("the functionals head needs a corpus with two or more "
                     "speakers (one chooses its regularisation)")
  return frozenset(out)


def fit_head(pool, regime: str, hop_s: float):
  """The functionals head on every speaker's whole utterances: C chosen on
  :func:`head_validation`'s speakers, then refit on all
  (:func:`nsl_ser.functionals.fit_on_speakers`)."""
  from nsl_ser import functionals
  u = pool.utts
  val = head_validation(pool)
  train = frozenset(u.speakers.astype(str)) - val
  xs = functionals.of_speeds(u, hop_s)
  head, _ = functionals.fit_on_speakers(
      xs[0], u.labels, u.speakers, train, val, regime, len(pool.labels), hop_s,
      copies=xs[1:])
  return head, sorted(val)


def run_train(cfg: DefaultConfig) -> Dict:
  """The student on every speaker; the 'validation' monitor is a quarter
  of the training clips (nothing is held out; see the card)."""
  from nsl_ser import pooled, recipe, source, splits
  rc = recipe.Recipe(regime=cfg.regime)
  rc = dataclasses.replace(rc, train=dataclasses.replace(
      rc.train, epochs=2 if cfg.quick else cfg.epochs, seed=cfg.seed, verbose=2,
      average_epochs=1 if cfg.quick else rc.train.average_epochs))
  pool = _pool(cfg, rc.augment.speeds)
  everyone = frozenset(pool.utts.speakers)
  c = source.make_corpus(pool.labels, pool.utts, pool.arrays,
                         splits.Split(everyone, everyone, frozenset()), rc)
  mon = slice(None, None, 4)
  model, hist = recipe.train_student(
      c.train, c.inputs["val"][mon], c.parts["val"].labels[mon],
      len(pool.labels), rc, out_dir=cfg.path("student", "train"))
  metrics = {"labels": pool.labels, "counts": pooled.counts(pool),
             "speakers": {str(k): len(pool.speakers_of(k))
                          for k in np.unique(pool.corpus)},
             "params": int(model.count_params()),
             "exit_macs": models.exit_macs(model), "recipe": rc.to_dict(),
             "epochs_run": len(hist["loss"]), "wall_s": hist["wall_s"],
             "normalization": {"regime": cfg.regime,
                               "reference": c.reference.to_dict()}}
  if rc.functionals:
    from nsl_ser.features import FrontEndConfig
    head, val = fit_head(pool, cfg.regime, FrontEndConfig().hop_ms / 1000.0)
    metrics["functionals_head"] = head.to_dict()
    metrics["functionals_head_validation"] = val
  source.save(model, cfg.path("student"), pool.labels, metrics)
  return {"utterances": len(c.train), "labels": pool.labels,
          "params": metrics["params"]}


def normalization_spec(regime: str, reference: dict) -> dict:
  """The sidecar's ``normalization``: the reference statistics a speaker
  is calibrated onto, and how (devices: docs/calibration.md, 'On devices')."""
  from nsl_ser import normalization
  return {"regime": regime, "reference": reference,
          "contract": (
              "Uncalibrated: feed audio (phone: full, or front_end then "
              "the stages) or raw log-Mel (MCU stages). Calibrated: keep "
              "the speaker's per-band log-Mel statistics (count, mean, m2 "
              "over the speech frames of its clips, "
              "nsl_ser.normalization.speech_frames; Chan's update per clip) "
              "and map the features to x * scale + shift per band, with "
              "scale = sqrt(ref_var / spk_var), shift = ref_mean - spk_mean "
              "* scale (variances floored at %g), before stage_1 (phone: "
              "between front_end and stage_1; MCU: nsl_fe_set_calibration)."
              % normalization.VAR_FLOOR)}


def run_export(cfg: DefaultConfig) -> Dict:
  from nsl_ser import export, source
  model = models.load_model(cfg.path("student", source.MODEL_FILE))
  metrics = json.load(open(cfg.path("student", source.METRICS_FILE)))
  labels = metrics["labels"]
  audio = np.concatenate([export.load_audio(rec, labels)[0]
                          for rec in _records(cfg).values()])
  pick = export.calibration_subset(len(audio), 32 if cfg.quick else 200, cfg.seed)
  t = temperatures(cfg.generalization, cfg.regime)
  side = export.export_all(
      model, cfg.path("tflite"), labels, audio[pick],
      provenance={"corpora": sorted(_records(cfg)), "partition": "all speakers"},
      normalization=normalization_spec(cfg.regime,
                                       metrics["normalization"]["reference"]),
      functionals_head=metrics.get("functionals_head"),
      temperature={"per_exit": t, "fitted_on": (
          "experiments/results/generalization.json: pooled_heldout validation "
          "speakers, same recipe and regime (fused with the functionals head "
          "when the model has one), geometric mean over seeds")} if t else None)
  return {f: v["bytes"] for f, v in side["files"].items()
          if f.endswith(".tflite")}


def run_card(cfg: DefaultConfig) -> Dict:
  from nsl_ser import model_card, source
  side = json.load(open(cfg.path("tflite", "model.json")))
  metrics = json.load(open(cfg.path("student", source.METRICS_FILE)))
  gen = json.load(open(cfg.generalization)) if os.path.exists(cfg.generalization) else None
  acc = json.load(open(ACCURACY)) if os.path.exists(ACCURACY) else None
  text = model_card.render(side, metrics, gen, acc)
  atomic_write_text(cfg.path("tflite", "README.md"), text)
  return {"card": cfg.path("tflite", "README.md")}


def install(tflite_dir: str, dest: str) -> None:
  """Copies the phone model, its MCU stages and C front end, labels,
  sidecar and card to ``dest`` (a temporary folder, then renamed)."""
  from nsl_ser import export
  tmp = dest.rstrip("/") + ".tmp"
  if os.path.exists(tmp):
    shutil.rmtree(tmp)
  os.makedirs(tmp)
  side = json.load(open(os.path.join(tflite_dir, "model.json")))
  keep = [f for f in side["files"]
          if f == "model_int8.tflite" or f == "labels.txt"
          or (f.startswith("micro/") and f.endswith(".tflite"))
          or f.startswith("micro/front_end/")]
  for f in keep + ["README.md"]:
    os.makedirs(os.path.dirname(os.path.join(tmp, f)), exist_ok=True)
    shutil.copy2(os.path.join(tflite_dir, f), os.path.join(tmp, f))
  side["files"] = {f: side["files"][f] for f in keep}
  with open(os.path.join(tmp, "model.json"), "w") as f:
    json.dump(side, f, indent=2)
  with open(os.path.join(tmp, "LICENCE.md"), "w") as f:
    f.write("# Licence of these models\n\n" + export.LICENCE + "\n\n"
            "RAVDESS: Livingstone & Russo (2018), PLoS ONE 13(5): e0196391, "
            "CC BY-NC-SA 4.0. EmoDB: Burkhardt et al. (2005), Interspeech, "
            "research use. nEMO: Christop (2024), LREC-COLING, "
            "CC BY-NC-SA 4.0.\n")
  if os.path.exists(dest):
    shutil.rmtree(dest)
  os.replace(tmp, dest)


def _p(*names):
  return lambda cfg: {n: getattr(cfg, n) for n in names}


def _results_key(cfg: DefaultConfig) -> Dict:
  """The result files the card (and temperatures) are read from."""
  from nsl_ser.pipeline import file_sha256
  return {os.path.basename(p): file_sha256(p) if os.path.exists(p) else None
          for p in (cfg.generalization, ACCURACY)}


STAGES: List[Stage] = [
    Stage("prepare", run_prepare, _p("data_dir"),
          lambda c: [os.path.join(r, "summary.json") for r in _records(c).values()]),
    Stage("train", run_train, _p("regime", "epochs", "seed", "quick"),
          lambda c: [c.path("student", "model.keras"),
                     c.path("student", "metrics.json")]),
    Stage("export", run_export,
          lambda c: {"temperature": temperatures(c.generalization, c.regime)},
          lambda c: [c.path("tflite", "model.json")]),
    Stage("card", run_card, _results_key, lambda c: [c.path("tflite", "README.md")]),
]
