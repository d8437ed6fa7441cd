"""The stages of ``nsl-ser run`` (see :mod:`nsl_ser.pipeline`)."""
from __future__ import annotations

import json
import os
from typing import Dict, List

import numpy as np

from nsl_ser import models, source
from nsl_ser.pipeline import RunConfig, Stage
from nsl_ser.atomic import atomic_write_text


def _records(cfg: RunConfig, corpus: str) -> str:
  return cfg.path("records", corpus)


def _subset(cfg: RunConfig):
  return 3 if cfg.quick else None


def _recipe(cfg: RunConfig, epochs: int):
  """The default recipe (nsl_ser.recipe) in the run's regime and seed."""
  import dataclasses
  from nsl_ser import recipe
  r = recipe.Recipe(regime=cfg.normalization)
  return dataclasses.replace(r, train=dataclasses.replace(
      r.train, epochs=2 if cfg.quick else epochs, seed=cfg.seed, verbose=2,
      average_epochs=1 if cfg.quick else r.train.average_epochs))


def _strategy(cfg: RunConfig):
  from nsl_ser import training
  return training.get_strategy(cfg.strategy)


def _target(cfg: RunConfig):
  """Target arrays (all utterances; a subset with --quick) and labels."""
  from nsl_ser import data, records
  labels = source.read_labels(_records(cfg, cfg.target))
  arrays = data.load_arrays(records.list_shards(_records(cfg, cfg.target)), labels)
  if cfg.quick:  # the same every-third-id subset as source.load_corpus
    arrays = arrays.subset(np.isin(arrays.ids, np.sort(arrays.ids)[::_subset(cfg)]))
  return arrays, labels


def _parts(cfg: RunConfig, arrays):
  from nsl_ser import splits
  split = splits.get_split(cfg.target, cfg.fold)
  return {p: arrays.by_speakers(getattr(split, p)) for p in ("train", "val", "test")}


# ------------------------------------------------------------------ stages
def run_prepare(cfg: RunConfig) -> Dict:
  from nsl_ser.prepare import PrepareConfig, prepare
  out = {}
  for c in (cfg.source, cfg.target):
    s = prepare(PrepareConfig(c, cfg.data_dir, _records(cfg, c)))
    out[c] = {k: s[k] for k in ("files_read", "skipped")}
    if s["files_read"] == 0:
      raise RuntimeError(f"{c}: nothing usable was read from {cfg.data_dir}")
  return out


def run_train_source(cfg: RunConfig) -> Dict:
  _, m = source.train_source(_records(cfg, cfg.source), cfg.source,
                             cfg.path("source"), _recipe(cfg, cfg.source_epochs),
                             subset=_subset(cfg))
  return {"test_uar": m["test"]["uar"], "val_uar": m["val"]["uar"]}


def run_embed(cfg: RunConfig) -> Dict:
  """Source fc1 embeddings of every target utterance, fed in the regime's
  form, centred per speaker and scaled to unit length."""
  import dataclasses
  from nsl_ser import embed
  r = _recipe(cfg, 1)  # speed 1 only: embeddings need no augmented copies
  r = dataclasses.replace(r, augment=dataclasses.replace(r.augment, speeds=(1.0,)))
  c = source.load_corpus(_records(cfg, cfg.target), cfg.target, cfg.fold, r,
                         subset=_subset(cfg))
  arrays = c.parts["train"]
  for p in ("val", "test"):  # every utterance, one regime-form input each
    arrays = type(arrays)(*(np.concatenate([getattr(arrays, f), getattr(c.parts[p], f)])
                            for f in ("features", "labels", "ids", "speakers")))
  x = np.concatenate([c.inputs[p] for p in ("train", "val", "test")])
  model = models.load_model(cfg.path("source", source.MODEL_FILE))
  emb = embed.normalize_embeddings(
      models.embedding_model(model, "fc1").predict(x, verbose=0),
      arrays.speakers, "speaker")
  embed.write_embeddings(cfg.path("embeddings"), arrays.ids, emb,
                         {"layer": "fc1", "normalize": "speaker",
                          "regime": cfg.normalization})
  return {"count": int(len(arrays))}


def run_build_graph(cfg: RunConfig) -> Dict:
  from nsl_ser import graph, records
  emb = records.read_embeddings(cfg.path("embeddings"))
  arrays, labels = _target(cfg)
  train = _parts(cfg, arrays)["train"]
  gcfg = graph.GraphConfig(max_nbrs=cfg.max_nbrs)
  gcfg.similarity_threshold = graph.auto_threshold(
      np.stack([emb[i] for i in train.ids]), cfg.target_degree)
  gpath = graph.build_graph(emb, train.ids, cfg.path("graphs", "graph.tsv"), gcfg)
  stats = graph.graph_stats(gpath, train.ids,
                            {i: labels[l] for i, l in zip(arrays.ids, arrays.labels)})
  stats["threshold"] = gcfg.similarity_threshold
  atomic_write_text(cfg.path("graphs", "stats.json"), json.dumps(stats, indent=2))
  graph.pack(records.list_shards(_records(cfg, cfg.target)), train.ids, gpath,
             cfg.path("graphs", "packed.tfrecord"), gcfg)
  return {k: v for k, v in stats.items() if k != "degrees"}


def run_train_student(cfg: RunConfig) -> Dict:
  from nsl_ser import nsl_train
  reg = nsl_train.GraphRegParams(max_neighbors=cfg.max_nbrs,
                                 multiplier=cfg.multiplier)
  model, m = source.train_student(
      _records(cfg, cfg.target), cfg.target, cfg.fold, cfg.path("student"),
      _recipe(cfg, cfg.student_epochs), cfg.path("graphs", "packed.tfrecord"),
      reg, subset=_subset(cfg), strategy=_strategy(cfg))
  return {n: round(v, 2) for n, v in m["exits"]["test"].items()}


def run_export(cfg: RunConfig) -> Dict:
  from nsl_ser import export, splits
  from nsl_ser.export import qat
  model = models.load_model(cfg.path("student", source.MODEL_FILE))
  labels = source.read_labels(cfg.path("student"))
  split = splits.get_split(cfg.target, cfg.fold)
  records_dir = _records(cfg, cfg.target)
  metrics = json.load(open(cfg.path("student", source.METRICS_FILE)))
  audio, _, _ = export.load_audio(records_dir, labels, split.train)
  pick = export.calibration_subset(len(audio), 32 if cfg.quick else 200, cfg.seed)
  side = export.export_all(
      model, cfg.path("tflite"), labels, audio[pick],
      export.ExportConfig(quantization=cfg.quantization, qat=qat.QATConfig(
          epochs=2 if cfg.quick else 10, verbose=2)),
      qat_data=export.QATData(records_dir, cfg.target, cfg.fold),
      provenance={"corpus": cfg.target, "fold": cfg.fold, "partition": "train"},
      normalization=export.normalization_of(model, metrics),
      functionals_head=metrics.get("functionals_head"))
  return {"quantization": side["quantization"]["method"],
          **{f: v["bytes"] for f, v in side["files"].items() if "bytes" in v}}


def run_evaluate(cfg: RunConfig) -> Dict:
  """int8 phone model on the test speakers' centre windows: every exit
  (fused with the functionals head of the whole utterance when the model
  has one, as predict does; the CNN alone
  in ``per_exit_cnn``), the adaptive policy's τ curve, and the measured
  latency (1 thread, audio in) of a window stopping at each exit and of
  the one-call model."""
  from nsl_ser import early_exit, evaluation, export, splits
  from nsl_ser.runtime import litert
  labels = source.read_labels(cfg.path("student"))
  split = splits.get_split(cfg.target, cfg.fold)
  audio, y, ids = export.load_audio(_records(cfg, cfg.target), labels, split.test)
  if cfg.quick:
    audio, y, ids = audio[::3], y[::3], ids[::3]
  model = litert.Model.from_file(cfg.path("tflite", "model_int8.tflite"))
  by_exit = litert.phone_exits(model, audio)
  exits = list(by_exit)
  probs = [by_exit[e] for e in exits]
  side = json.load(open(cfg.path("tflite", "model.json")))
  result = {}
  if side.get("functionals_head") and litert.is_staged(model):
    # what predict does: the head on the whole utterance, fused with
    # every exit of the (here: centre) window (nsl_ser.functionals)
    from nsl_ser import augment, functionals, records
    from nsl_ser.features import FrontEndConfig
    head = functionals.LinearHead.from_dict(side["functionals_head"])
    clips = augment.utterance_features(
        records.list_shards(_records(cfg, cfg.target)), labels, ids,
        FrontEndConfig.from_dict(side["front_end"]))
    hp = functionals.first_utterance_probs(head, clips)
    result["per_exit_cnn"] = {e: evaluation.report(y, p, labels)
                              for e, p in zip(exits, probs)}
    result["head_only"] = evaluation.report(y, hp, labels)
    probs = functionals.fuse(probs, hp)
  per_exit = {e: evaluation.report(y, p, labels) for e, p in zip(exits, probs)}
  cost = [side["exit_macs"][e] for e in exits]
  taus = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
  curve = early_exit.tau_curve(probs, y, cost, taus, len(labels))
  result.update({"per_exit": per_exit, "tau_curve": curve, "exit_macs": cost,
                 "n": int(len(y)), "fold": cfg.fold,
                 "fused": "head_only" in result})
  if litert.is_staged(model):
    ms = litert.exit_latencies_ms(model, audio[0], runs=10 if cfg.quick else 50)
    for c in curve:  # the same exit shares, costed in measured ms
      c["mean_ms"] = float(np.dot(c["exit_share"], [ms[e] for e in exits]))
    result["latency_ms"] = {**ms, "threads": 1, "input": "audio",
                            "statistic": "median of one window"}
    if "head_only" in result:  # the head runs once per utterance, in numpy
      f0 = clips[0]
      result["latency_ms"]["functionals_head"] = litert.median_ms(
          lambda: head.probs(functionals.functionals(f0, head.hop_s)[None]),
          10 if cfg.quick else 50, 5)
  atomic_write_text(cfg.path("evaluation.json"), json.dumps(result, indent=2))
  return {e: round(r["uar"], 2) for e, r in per_exit.items()}


def run_report(cfg: RunConfig) -> Dict:
  from nsl_ser import report
  path = report.write_report(cfg.work_dir, cfg.path("report"))
  return {"report": path}


def _p(*names):
  return lambda cfg: {n: getattr(cfg, n) for n in names}


STAGES: List[Stage] = [
    Stage("prepare", run_prepare, _p("source", "target", "data_dir"),
          lambda c: [os.path.join(_records(c, x), "summary.json")
                     for x in (c.source, c.target)]),
    Stage("train_source", run_train_source,
          _p("source_epochs", "quick", "seed", "normalization"),
          lambda c: [c.path("source", source.MODEL_FILE),
                     c.path("source", source.METRICS_FILE)]),
    Stage("embed", run_embed, _p("quick", "normalization"),
          lambda c: [c.path("embeddings")]),
    Stage("build_graph", run_build_graph, _p("fold", "max_nbrs", "target_degree"),
          lambda c: [c.path("graphs", "graph.tsv"),
                     c.path("graphs", "packed.tfrecord")]),
    Stage("train_student", run_train_student,
          _p("student_epochs", "multiplier", "seed", "strategy",
             "normalization"),
          lambda c: [c.path("student", source.MODEL_FILE),
                     c.path("student", "metrics.json")]),
    Stage("export", run_export, _p("fold", "quantization"),
          lambda c: [c.path("tflite")]),
    Stage("evaluate", run_evaluate, _p("fold", "quick"),
          lambda c: [c.path("evaluation.json")]),
    Stage("report", run_report, _p(), lambda c: [c.path("report", "report.md")]),
]
