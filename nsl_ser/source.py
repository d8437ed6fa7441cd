"""The training stages on prepared corpora: ``train-source`` (the source CNN)
and ``train-student`` (the early-exit student + NSL graph), both with the
recipe of :mod:`nsl_ser.recipe` in one normalisation regime.

Each writes ``model.keras``, ``labels.txt`` and ``metrics.json`` (validation
and test reports, the recipe, the regime's statistics) atomically.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Dict, Optional, Tuple

import numpy as np

from nsl_ser import (augment, data, models, normalization, records,
                     recipe as recipe_lib, splits)
from nsl_ser.compat import keras
from nsl_ser.features import FrontEndConfig
from nsl_ser.atomic import atomic_write_text

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"


def read_labels(records_dir: str) -> list:
  with open(os.path.join(records_dir, "labels.txt")) as f:
    return f.read().split()


def load_partitions(records_dir: str, corpus: str, fold: int = 0,
                    labels: Optional[list] = None,
                    front_end: FrontEndConfig = FrontEndConfig()
                    ) -> Tuple[Dict[str, data.Arrays], list]:
  """{train, val, test} centre-cropped arrays of a prepared corpus under its
  fixed split."""
  labels = labels or read_labels(records_dir)
  files = records.list_shards(records_dir)
  split = splits.get_split(corpus, fold)
  everything = data.load_arrays(files, labels, front_end=front_end)
  return {p: everything.by_speakers(getattr(split, p))
          for p in ("train", "val", "test")}, labels


@dataclasses.dataclass
class Corpus:
  """A prepared corpus in memory for one fold: whole training utterances
  (at the recipe's speeds), centre-cropped partitions in the regime's form,
  every speaker's statistics (the speech frames of its own whole clips)
  and the reference statistics speakers are calibrated onto (the training
  clips')."""
  labels: list
  train: augment.Utterances
  parts: Dict[str, data.Arrays]
  inputs: Dict[str, np.ndarray]
  stats: Dict[str, normalization.BandStats]
  reference: normalization.BandStats
  split: Optional[splits.Split] = None
  utterances: Optional[augment.Utterances] = None  # every speaker, whole


def make_corpus(labels: list, utts: augment.Utterances, arrays: data.Arrays,
                split: splits.Split, rc: recipe_lib.Recipe) -> Corpus:
  """A :class:`Corpus` from whole utterances and their centre crops
  (same ids) under a speaker split."""
  stats = normalization.speaker_stats(utts.clips(0), utts.speakers)
  train = utts.by_speakers(split.train)
  reference = recipe_lib.reference_stats(train)
  parts = {p: arrays.by_speakers(getattr(split, p)) for p in ("train", "val", "test")}
  inputs = {p: recipe_lib.model_inputs(a, rc.regime, stats, reference)
            for p, a in parts.items()}
  return Corpus(labels, train, parts, inputs, stats, reference, split, utts)


def load_corpus(records_dir: str, corpus: str, fold: int, rc: recipe_lib.Recipe,
                front_end: FrontEndConfig = FrontEndConfig(),
                subset: Optional[int] = None) -> Corpus:
  """``subset`` keeps every n-th utterance (quick runs)."""
  labels = read_labels(records_dir)
  files = records.list_shards(records_dir)
  speeds = tuple(dict.fromkeys((1.0,) + tuple(rc.augment.speeds)))
  utts = augment.load_utterances(files, labels, speeds, front_end)
  arrays = data.load_arrays(files, labels, front_end=front_end)
  if subset:
    utts = utts.subset(np.arange(len(utts)) % subset == 0)
    arrays = arrays.subset(np.isin(arrays.ids, utts.ids))
  return make_corpus(labels, utts, arrays, splits.get_split(corpus, fold), rc)


def training_stats(c: Corpus) -> normalization.BandStats:
  """The statistics a model normalises with when no speaker
  calibration is available: the training speakers' whole clips (the
  reference both regimes share)."""
  return c.reference


def save(model: keras.Model, out_dir: str, labels, metrics: dict) -> None:
  os.makedirs(out_dir, exist_ok=True)
  tmp = os.path.join(out_dir, MODEL_FILE + ".tmp.keras")
  model.save(tmp)
  os.replace(tmp, os.path.join(out_dir, MODEL_FILE))
  atomic_write_text(os.path.join(out_dir, "labels.txt"),
                    "".join(l + "\n" for l in labels))
  atomic_write_text(os.path.join(out_dir, METRICS_FILE),
                    json.dumps(metrics, indent=2, default=float))


def _metrics(model, c: Corpus, rc: recipe_lib.Recipe, hist: dict) -> dict:
  out = {p: recipe_lib.evaluate_exits(model, c.inputs[p], c.parts[p].labels,
                                      c.labels) for p in ("val", "test")}
  last = {p: list(r.values())[-1] for p, r in out.items()}
  st = training_stats(c)
  return {"val": last["val"], "test": last["test"],
          "exits": {p: {n: v["uar"] for n, v in r.items()} for p, r in out.items()},
          "labels": c.labels, "params": int(model.count_params()),
          "macs": models.count_macs(model), "epochs_run": len(hist["loss"]),
          "wall_s": hist["wall_s"], "recipe": rc.to_dict(),
          "normalization": {"regime": rc.regime, "train_stats": st.to_dict()}}


def train_source(records_dir: str, corpus: str, out_dir: str,
                 rc: recipe_lib.Recipe = recipe_lib.Recipe(),
                 cnn: models.CNNConfig = models.SOURCE,
                 front_end: FrontEndConfig = FrontEndConfig(),
                 subset: Optional[int] = None) -> Tuple[keras.Model, dict]:
  """The source CNN (one head) on the corpus' fold-0 split; writes
  model.keras + metrics.json."""
  c = load_corpus(records_dir, corpus, 0, rc, front_end, subset)
  rc = dataclasses.replace(rc, cnn=cnn)
  model, hist = recipe_lib.train_classifier(
      c.train, c.inputs["val"], c.parts["val"].labels, len(c.labels), rc,
      front_end, out_dir=os.path.join(out_dir, "train"))
  metrics = {**_metrics(model, c, rc, hist), "corpus": corpus,
             "front_end": front_end.to_dict()}
  save(model, out_dir, c.labels, metrics)
  return model, metrics


def train_student(records_dir: str, corpus: str, fold: int, out_dir: str,
                  rc: recipe_lib.Recipe = recipe_lib.Recipe(),
                  packed: Optional[str] = None, graph_reg=None,
                  front_end: FrontEndConfig = FrontEndConfig(),
                  subset: Optional[int] = None, strategy=None,
                  init_from: Optional[keras.Model] = None
                  ) -> Tuple[keras.Model, dict]:
  """The early-exit student on the target's training speakers; with
  ``packed`` (``nsl.tools.pack_nbrs`` output) and ``graph_reg`` its
  neighbours regularise ``fc1``; ``init_from`` transfers weights by layer
  name first (a pretrained student)."""
  from nsl_ser import graph
  c = load_corpus(records_dir, corpus, fold, rc, front_end, subset)
  g = None
  if packed and graph_reg is not None and graph_reg.multiplier > 0:
    nbrs, w = graph.neighbour_index(packed, c.train.ids, graph_reg.max_neighbors)
    g = (nbrs, w, graph_reg)
  model, hist = recipe_lib.train_student(
      c.train, c.inputs["val"], c.parts["val"].labels, len(c.labels), rc,
      front_end, init_from=init_from, graph=g,
      out_dir=os.path.join(out_dir, "train"), strategy=strategy)
  metrics = {**_metrics(model, c, rc, hist), "corpus": corpus, "fold": fold,
             "exit_macs": models.exit_macs(model),
             "graph_reg": None if g is None else dataclasses.asdict(graph_reg)}
  if rc.functionals:
    head, fused = functionals_head(model, c, rc.regime, front_end)
    metrics["functionals_head"] = head.to_dict()
    metrics["exits_fused"] = fused
  save(model, out_dir, c.labels, metrics)
  return model, metrics


def functionals_head(model: keras.Model, c: Corpus, regime: str,
                     front_end: FrontEndConfig = FrontEndConfig()):
  """The functionals head fitted on ``c``'s training speakers (C on the
  validation speakers, refit on both; speaker regime: every speaker's
  functionals calibrated with its own statistics onto the training
  ones), on whole utterances (what predict gives it) and their
  speed-perturbed copies at the recipe's speeds; and
  {partition: {exit: UAR}} of ``model`` on the centre crops fused with
  it."""
  from nsl_ser import evaluation, functionals
  hop_s = front_end.hop_ms / 1000.0
  u = c.utterances
  xs = functionals.of_speeds(u, hop_s)
  head, forms = functionals.fit_on_speakers(
      xs[0], u.labels, u.speakers, c.split.train, c.split.val, regime,
      len(c.labels), hop_s, copies=xs[1:])
  x = forms["calibrated" if regime == "speaker" else "independent"]
  row = {i: k for k, i in enumerate(u.ids)}
  fused = {}
  for p in ("val", "test"):
    hp = head.probs(x[[row[i] for i in c.parts[p].ids]])
    probs = model.predict(c.inputs[p], verbose=0)
    probs = probs if isinstance(probs, list) else [probs]
    fused[p] = {n: evaluation.report(c.parts[p].labels, q, c.labels)["uar"]
                for n, q in zip(models.exit_names(model) or ["probs"],
                                functionals.fuse(probs, hp))}
  return head, fused
