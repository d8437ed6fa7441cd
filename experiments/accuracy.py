"""The accuracy programme: EmoDB 5 folds x 3 seeds, every lever, two regimes.

  python experiments/accuracy.py                      # everything (hours)
  python experiments/accuracy.py --regimes=global --part=work/acc/global.json
  python experiments/accuracy.py --regimes=speaker --part=work/acc/speaker.json
  python experiments/accuracy.py --merge=work/acc/global.json,work/acc/speaker.json

Each configuration trains the early-exit student (self-distillation) on the
training speakers of fold k (validation fold k+1, test fold k) and reports
test UAR / WA per exit, as mean +- std over folds x seeds, in both regimes:
``global`` (speaker-independent: statistics of the training data, inside
the model) and ``speaker`` (speaker-calibrated: every speaker, test
speakers included, calibrated onto the training statistics with the
statistics of its own unlabelled clips, nsl_ser.normalization).
``baseline`` is the recipe main had (centre crop, early stopping on
validation UAR, step decay); every other row adds one lever to it, and
``combined`` takes every lever. The default recipe's models (and
``final`` / ``combined``) are also converted to the int8 microcontroller
stages and scored through the stage chain (LiteRT reference kernels). Writes experiments/results/accuracy.{json,md}.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional

import numpy as np
from absl import app, flags, logging

from nsl_ser import augment, data, embed, evaluation, functionals, graph, models, normalization, nsl_train, records, recipe, source, splits, training
from nsl_ser.export import micro
from nsl_ser.runtime import litert
from nsl_ser.features import FrontEndConfig
from nsl_ser.prepare import PrepareConfig, atomic_write_text, prepare
from nsl_ser.results import markdown_table, write_results

F = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_string("work_dir", "work/accuracy", "Scratch folder.")
flags.DEFINE_list("folds", ["0", "1", "2", "3", "4"], "EmoDB folds.")
flags.DEFINE_integer("seeds", 3, "Seeds per configuration.")
flags.DEFINE_integer("epochs", 40, "Epochs per student.")
flags.DEFINE_list("regimes", list(normalization.REGIMES), "Regimes to run.")
flags.DEFINE_list("configs", None, "Configurations (default: all).")
flags.DEFINE_string("part", None, "Write raw runs here instead of results.")
flags.DEFINE_list("merge", None, "Merge these part files into the results.")
flags.DEFINE_string("name", "accuracy", "Results name.")
flags.DEFINE_string("results_dir", None, "Default: experiments/results.")
flags.DEFINE_string("note", "", "How the merged parts were produced.")
flags.DEFINE_list("final", ["average", "crop", "speed", "mixup"],
                  "Levers of row final (all four: the pipeline's recipe "
                  "before this programme).")
flags.DEFINE_list("transfer", ["average", "speed"],
                  "Levers of the RAVDESS source models and of rows graph, "
                  "pretrain and finetune: the default recipe (row "
                  "average+speed), so that they compare with the "
                  "speech-only student of the same recipe.")
flags.DEFINE_integer("source_epochs", 40, "Epochs of the RAVDESS source CNN.")
flags.DEFINE_integer("finetune_epochs", 15,
                     "Epochs of the fine-tuned source (row finetune; 1 M "
                     "parameters, 10x the student's cost an epoch).")
flags.DEFINE_integer("max_nbrs", 3, "Graph neighbours per example.")
flags.DEFINE_float("multiplier", 0.1, "Graph loss multiplier.")
flags.DEFINE_float("target_degree", 6.0, "Mean graph degree (auto threshold).")
flags.DEFINE_list("fuse", ["average+speed"],
                  "Rows whose models are also scored fused with the "
                  "functionals head (nsl_ser.functionals): row NAME+functionals.")
flags.DEFINE_float("teacher_weight", 0.5, "Weight of the functionals head's "
                   "soft labels in row average+speed+teacher's targets.")
flags.DEFINE_string("keep_previous", None,
                    "A previous accuracy.json: its runs of configurations not "
                    "run now are kept in the tables, marked † (measured with "
                    "the code of that time).")

SPEEDS = augment.SPEEDS


def _baseline(epochs: int) -> recipe.Recipe:
  """main's recipe before this programme."""
  return recipe.Recipe(
      augment=augment.NONE,
      train=training.TrainConfig(epochs=epochs, patience=12, selection="val_uar",
                                 schedule="step", verbose=0))


def final_recipe(epochs: int, levers) -> recipe.Recipe:
  """The baseline with the chosen levers (``average``, ``crop``, ``speed``,
  ``mixup``)."""
  r = _baseline(epochs)
  aug = dataclasses.replace(augment.NONE, random_crop="crop" in levers,
                            speeds=SPEEDS if "speed" in levers else (1.0,),
                            mixup_alpha=0.2 if "mixup" in levers else 0.0)
  train = (dataclasses.replace(r.train, selection="average", schedule="cosine")
           if "average" in levers else r.train)
  return dataclasses.replace(r, augment=aug, train=train)


# Rows that need the RAVDESS source model (trained once per regime).
SOURCE_ROWS = ("graph", "pretrain", "finetune")


def configurations(epochs: int) -> Dict[str, recipe.Recipe]:
  base = _baseline(epochs)
  avg = dataclasses.replace(base.train, selection="average", schedule="cosine")
  crop = augment.AugmentConfig(random_crop=True)
  final = final_recipe(epochs, F.final)
  transfer = final_recipe(epochs, F.transfer)
  return {
      "baseline": base,
      "+average": dataclasses.replace(base, train=avg),
      "+crop": dataclasses.replace(base, augment=crop),
      "+speed": dataclasses.replace(base, augment=dataclasses.replace(
          augment.NONE, speeds=SPEEDS)),
      "+mixup": dataclasses.replace(base, augment=dataclasses.replace(
          augment.NONE, mixup_alpha=0.2)),
      "combined": dataclasses.replace(base, train=avg, augment=dataclasses.replace(
          crop, speeds=SPEEDS, mixup_alpha=0.2)),
      "average+speed": final_recipe(epochs, ("average", "speed")),
      # + soft labels of the functionals head (cross-fitted: each training
      # speaker labelled by a head that never saw it)
      "average+speed+teacher": dataclasses.replace(
          final_recipe(epochs, ("average", "speed")),
          teacher_weight=F.teacher_weight),
      "final": final,
      "graph": transfer,              # + NSL graph from source embeddings
      "pretrain": transfer,           # initialised from a RAVDESS student
      "finetune": dataclasses.replace(transfer, cnn=models.SOURCE),  # classic
  }


class SourceModels:
  """Per regime, trained once and cached under ``work_dir``: the RAVDESS
  source CNN (8 classes) and a RAVDESS-pretrained student with exits."""

  def __init__(self, fe: FrontEndConfig):
    rec = os.path.join(F.work_dir, "records", "ravdess")
    prepare(PrepareConfig("ravdess", F.data_dir, rec))
    self.labels = source.read_labels(rec)
    files = records.list_shards(rec)
    self.fe = fe
    self.utts = augment.load_utterances(files, self.labels, SPEEDS, fe)
    self.arrays = data.load_arrays(files, self.labels, front_end=fe)
    self.stats = normalization.speaker_stats(self.utts.clips(0), self.utts.speakers)
    self.metrics: Dict[str, dict] = {}
    self._cache: Dict[str, object] = {}

  def _train(self, regime: str, kind: str):
    key = f"{kind}_{regime}"
    if key in self._cache:
      return self._cache[key]
    path = os.path.join(F.work_dir, key, source.MODEL_FILE)
    split = splits.get_split("ravdess", 0)
    part = {p: self.arrays.by_speakers(getattr(split, p)) for p in ("val", "test")}
    ref = recipe.reference_stats(self.utts.by_speakers(split.train))
    x = {p: recipe.model_inputs(a, regime, self.stats, ref) for p, a in part.items()}
    if os.path.exists(path):
      model = models.load_model(path)
    else:
      r = final_recipe(F.source_epochs, F.transfer)
      r = dataclasses.replace(r, regime=regime, train=dataclasses.replace(
          r.train, seed=0, verbose=2))
      train = self.utts.by_speakers(split.train)
      if kind == "source":
        model, _ = recipe.train_classifier(
            train, x["val"], part["val"].labels, len(self.labels),
            dataclasses.replace(r, cnn=models.SOURCE), self.fe)
      else:
        model, _ = recipe.train_student(train, x["val"], part["val"].labels,
                                        len(self.labels), r, self.fe)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      model.save(path + ".tmp.keras")
      os.replace(path + ".tmp.keras", path)
    res = recipe.evaluate_exits(model, x["test"], part["test"].labels, self.labels)
    last = list(res)[-1]
    self.metrics[key] = {"test_uar": res[last]["uar"], "test_wa": res[last]["wa"]}
    logging.info("%s: RAVDESS test-actor UAR %.1f", key, res[last]["uar"])
    self._cache[key] = model
    return model

  def source(self, regime: str):
    return self._train(regime, "source")

  def student(self, regime: str):
    return self._train(regime, "student")


def graph_for(src_model, utts: augment.Utterances, arrays: data.Arrays,
              train_ids, regime: str, stats, reference, rec_files, tag: str):
  """NSL graph over the training ids from the source model's fc1
  embeddings (per speaker centred, unit length), packed with nsl.tools;
  returns (neighbour rows into ``train_ids`` order, weights, statistics)."""
  x = recipe.model_inputs(arrays, regime, stats, reference)
  emb = embed.normalize_embeddings(
      models.embedding_model(src_model, "fc1").predict(x, verbose=0),
      arrays.speakers, "speaker")
  by_id = dict(zip(arrays.ids, emb))
  gcfg = graph.GraphConfig(max_nbrs=F.max_nbrs)
  gcfg.similarity_threshold = graph.auto_threshold(
      np.stack([by_id[i] for i in train_ids]), F.target_degree)
  gdir = os.path.join(F.work_dir, "graphs")
  gpath = graph.build_graph(by_id, train_ids, os.path.join(gdir, f"{tag}.tsv"), gcfg)
  stats_g = graph.graph_stats(gpath, train_ids, dict(zip(arrays.ids, arrays.labels)))
  packed = graph.pack(rec_files, train_ids, gpath,
                      os.path.join(gdir, f"{tag}.tfrecord"), gcfg)
  nbrs, w = graph.neighbour_index(packed, train_ids, F.max_nbrs)
  return nbrs, w, {k: v for k, v in stats_g.items() if k != "degrees"}


def _int8_chain(model, calib: np.ndarray, test_x: np.ndarray) -> Dict:
  """MCU int8 stages: total bytes and every exit's probabilities."""
  stages = micro.build_stages(model, calib)
  runners = [litert.Model(s, f"stage {k}") for k, s in enumerate(stages, 1)]
  q_in = runners[0].inputs()[0].qparams
  out_q = [micro.stage_output_qparams(s, f"exit_{k}")
           for k, s in enumerate(stages, start=1)]
  probs: Dict[str, List[np.ndarray]] = {}
  for x in q_in.quantize(test_x):
    o = micro.run_chain(runners, x[None])
    for k, q in enumerate(out_q, start=1):
      probs.setdefault(f"exit_{k}", []).append(q.dequantize(o[f"exit_{k}"])[0])
  return {"bytes": int(sum(len(s) for s in stages)),
          "probs": {n: np.stack(v) for n, v in probs.items()}}


def _scores(y: np.ndarray, probs: Dict[str, np.ndarray], labels) -> Dict:
  out = {}
  for n, p in probs.items():
    r = evaluation.report(y, p, labels)
    out[n] = {"uar": r["uar"], "wa": r["wa"]}
  return out


def _window_inputs(utts: augment.Utterances, ids, regime: str, stats, ref,
                   fe: FrontEndConfig):
  """(windows [W, frames, bands] in the regime's form, owner [W]: index
  into ``ids``) of predict's windows (3 s, 1.5 s apart) of each utterance."""
  row = {u: k for k, u in enumerate(utts.ids)}
  hop = int(round(1.5 / (fe.hop_ms / 1000.0)))
  pad = recipe.pad_value(fe)
  wins, owner = [], []
  for i, u in enumerate(ids):
    k = row[u]
    ws = augment.windows(utts.variants[k][0], fe.num_frames, hop, pad)
    if regime == "speaker":
      st = stats[str(utts.speakers[k])]
      ws = [normalization.calibrate(w, st, ref) for w in ws]
    wins += ws
    owner += [i] * len(ws)
  return np.stack(wins).astype(np.float32), np.asarray(owner)


def _utterance_probs(window_probs: np.ndarray, owner: np.ndarray,
                     head_probs: np.ndarray) -> np.ndarray:
  """predict's file result: every window fused with its utterance's head,
  then averaged over the utterance's windows."""
  fused = functionals.fuse(window_probs, head_probs[owner])
  return np.stack([fused[owner == i].mean(0) for i in range(len(head_probs))])


def _fused_row(row: dict, model, heads: Heads, regime: str, split, part,
               windows, labels, int8_window_probs: Optional[dict]) -> dict:
  """``row``'s model as ``nsl-ser predict`` runs it with the functionals
  head: the CNN on every window of the utterance, each fused with the
  head of the whole utterance, averaged; float exits and, if given, the
  int8 MCU chain's ({exit: probabilities of every window})."""
  y = part["test"].labels
  hp = heads.probs(regime, split, part["test"].ids, len(labels))
  wx, owner = windows
  probs = dict(zip(models.exit_names(model), model.predict(wx, verbose=0)))
  out = {**{k: v for k, v in row.items() if k not in ("exits", "int8_exits")},
         "config": row["config"] + FUSED, "windows": int(len(wx)),
         "exits": _scores(y, {n: _utterance_probs(p, owner, hp)
                              for n, p in probs.items()}, labels),
         "head_only": _scores(y, {"head": hp}, labels)["head"]}
  if int8_window_probs is not None:
    out["int8_exits"] = _scores(y, {n: _utterance_probs(p, owner, hp)
                                    for n, p in int8_window_probs.items()},
                                labels)
  return out


def run(regimes, names) -> List[dict]:
  fe = FrontEndConfig()
  rec = os.path.join(F.work_dir, "records", "emodb")
  prepare(PrepareConfig("emodb", F.data_dir, rec))
  labels = source.read_labels(rec)
  files = records.list_shards(rec)
  utts = augment.load_utterances(files, labels, SPEEDS, fe)
  arrays = data.load_arrays(files, labels, front_end=fe)
  stats = normalization.speaker_stats(utts.clips(0), utts.speakers)
  configs = configurations(F.epochs)
  src = SourceModels(fe) if any(n in SOURCE_ROWS for n in names) else None
  heads = (Heads(utts, fe) if any(n in F.fuse or configs[n].teacher_weight
                                  for n in names) else None)
  rows = []
  for regime in regimes:
    for name in names:
      rc = dataclasses.replace(configs[name], regime=regime)
      for fold in (int(f) for f in F.folds):
        split = splits.get_split("emodb", fold)
        part = {p: arrays.by_speakers(getattr(split, p))
                for p in ("train", "val", "test")}
        train = utts.by_speakers(split.train)
        ref = recipe.reference_stats(train)
        x = {p: recipe.model_inputs(a, regime, stats, ref) for p, a in part.items()}
        if len(rc.augment.speeds) < len(SPEEDS):
          train = dataclasses.replace(train, variants=[v[:1] for v in train.variants],
                                      speeds=(1.0,))
        extra, gstats = {}, None
        if name == "graph":
          nbrs, w, gstats = graph_for(src.source(regime), utts, arrays, train.ids,
                                      regime, stats, ref, files,
                                      f"{regime}_fold{fold}")
          extra["graph"] = (nbrs, w, nsl_train.GraphRegParams(
              max_neighbors=F.max_nbrs, multiplier=F.multiplier))
        elif name == "pretrain":
          extra["init_from"] = src.student(regime)
        elif rc.teacher_weight > 0:
          extra["teacher"] = heads.teacher(regime, split, train.ids,
                                           len(labels))
        elif name == "finetune":
          extra["init_from"] = src.source(regime)
          rc = dataclasses.replace(rc, train=dataclasses.replace(
              rc.train, epochs=F.finetune_epochs,
              average_epochs=min(rc.train.average_epochs, F.finetune_epochs // 2)))
        for seed in range(F.seeds):
          r = dataclasses.replace(rc, train=dataclasses.replace(rc.train, seed=seed))
          t = time.time()
          if name == "finetune":
            model, hist = recipe.train_classifier(
                train, x["val"], part["val"].labels, len(labels), r, fe, **extra)
          else:
            model, hist = recipe.train_student(
                train, x["val"], part["val"].labels, len(labels), r, fe, **extra)
          res = recipe.evaluate_exits(model, x["test"], part["test"].labels, labels)
          if name == "finetune":
            res = {"exit_4": res["probs"]}  # one head: the full model
          row = {"regime": regime, "config": name, "fold": fold, "seed": seed,
                 "epochs_run": len(hist["loss"]), "wall_s": time.time() - t,
                 "exits": {n: {"uar": v["uar"], "wa": v["wa"]}
                           for n, v in res.items()}}
          if gstats is not None:
            row["graph"] = gstats
          if src is not None:
            row["source"] = dict(src.metrics)
          fuse = heads is not None and name in F.fuse
          wins = (_window_inputs(utts, part["test"].ids, regime, stats, ref, fe)
                  if fuse else None)
          q = None
          if name in INT8_ROWS:  # the test centre crops (+ predict's windows)
            n_test = len(x["test"])
            q = _int8_chain(model, x["train"][::2], x["test"] if wins is None
                            else np.concatenate([x["test"], wins[0]]))
            row["mcu_int8_bytes"] = q["bytes"]
            row["int8_exits"] = _scores(
                part["test"].labels,
                {n: p[:n_test] for n, p in q["probs"].items()}, labels)
          logging.info("%s %s fold %d seed %d: %s (%.0f s)", regime, name, fold,
                       seed, {n: round(v["uar"], 1) for n, v in row["exits"].items()},
                       row["wall_s"])
          rows.append(row)
          if fuse:
            q_win = None if q is None else {n: p[n_test:]
                                            for n, p in q["probs"].items()}
            rows.append(_fused_row(row, model, heads, regime, split, part, wins,
                                   labels, q_win))
            logging.info("  fused with the functionals head: %s", {
                n: round(v["uar"], 1) for n, v in rows[-1]["exits"].items()})
          if F.part:
            atomic_write_text(F.part, json.dumps(rows, indent=1))
  return rows


def _ms(values) -> str:
  s = evaluation.mean_std(values)
  return f"{s['mean']:.1f} ± {s['std']:.1f}"


ROW_NOTES = {
    "average+speed+functionals": "the same models as nsl-ser predict runs "
    "them: the CNN on every 3 s window of the utterance (1.5 s apart), each "
    "window fused (product of experts, every exit) with the functionals "
    "head of the whole utterance (423 statistics of its log-Mel speech "
    "frames + logistic regression trained on the utterances and their "
    "speed-perturbed copies, nsl_ser.functionals), averaged",
    "average+speed+teacher": "the default recipe distilled from the "
    "functionals head: half of each training target is the head's soft "
    "label, cross-fitted (each training speaker labelled by a head that "
    "never saw it)",
    "average+speed+teacher+functionals": "those models fused with the "
    "functionals head as nsl-ser predict runs them",
    "baseline": "main's recipe: centre crop, early stopping on val UAR, step decay",
    "+average": "fixed epochs, cosine LR, mean of the last 10 epochs' weights",
    "+crop": "random 3 s crops of whole utterances (random placement if shorter)",
    "+speed": "soxr speed perturbation 0.9 / 1.0 / 1.1",
    "+mixup": "mixup, Beta(0.2, 0.2)",
    "combined": "all four levers",
    "average+speed": "the two levers that helped alone in both regimes: the default recipe now",
    "final": "all four levers (the pipeline's recipe until this table), exit-1 head pooled over frequency pairs (size)",
    "graph": "the --transfer recipe (average+speed; † rows: final's four "
    "levers) + NSL graph regulariser on fc1 (source embeddings)",
    "pretrain": "the --transfer recipe, initialised from a RAVDESS-trained "
    "student",
    "finetune": "classic transfer: the RAVDESS source CNN fine-tuned (the "
    "--transfer recipe: average+speed; † rows: final's four levers)",
}


# Rows whose models are also scored as int8 MCU stages, preferred first
# (the first present is the default recipe's row in the summary).
INT8_ROWS = ("average+speed+functionals", "average+speed", "final", "combined")
FUSED = "+functionals"


class Heads:
  """The functionals head of every (regime, fold), fitted once (it does
  not depend on the CNN's seed): :func:`nsl_ser.functionals.fit_on_speakers`
  on whole utterances (what predict gives it)."""

  def __init__(self, utts: augment.Utterances, fe: FrontEndConfig):
    self.hop_s = fe.hop_ms / 1000.0
    self.x, *self.copies = functionals.of_speeds(utts, self.hop_s)
    self.row = {i: k for k, i in enumerate(utts.ids)}
    self.y, self.speakers = utts.labels, utts.speakers
    self._cache: Dict[tuple, tuple] = {}

  def probs(self, regime: str, split, ids, num_classes: int) -> np.ndarray:
    """The head's probabilities for utterances ``ids`` (test speakers, in
    the regime's form)."""
    key = (regime, tuple(sorted(split.train)), tuple(sorted(split.val)))
    if key not in self._cache:
      self._cache[key] = functionals.fit_on_speakers(
          self.x, self.y, self.speakers, split.train, split.val, regime,
          num_classes, self.hop_s, copies=self.copies)
    head, forms = self._cache[key]
    x = forms["calibrated" if regime == "speaker" else "independent"]
    return head.probs(x[[self.row[i] for i in ids]])

  def teacher(self, regime: str, split, ids, num_classes: int) -> np.ndarray:
    """Soft labels for training utterances ``ids``: the head's
    probabilities from heads that never saw the utterance's speaker
    (:func:`nsl_ser.functionals.cross_fitted_probs`)."""
    p = functionals.cross_fitted_probs(
        self.x, self.y, self.speakers, split.train, split.val, regime,
        num_classes, self.hop_s, copies=self.copies)
    return p[[self.row[i] for i in ids]]


def summarize(rows: List[dict], wall: float) -> None:
  names = list(dict.fromkeys(r["config"] for r in rows))
  regimes = [g for g in normalization.REGIMES if any(r["regime"] == g for r in rows)]
  last = max(int(n.split("_")[1]) for r in rows for n in r["exits"])
  full = f"exit_{last}"

  def sel(regime, name, key="exits"):
    return [r for r in rows if r["regime"] == regime and r["config"] == name
            and key in r]

  table, agg = [], {}
  old = {r["config"] for r in rows if r.get("previous")}
  for name in names:
    line = [name + (" †" if name in old else "")]
    for g in regimes:
      rs = sel(g, name)
      if not rs:
        line += ["–"] * 3
        continue
      uar = [r["exits"][full]["uar"] for r in rs]
      wa = [r["exits"][full]["wa"] for r in rs]
      exits = [n for n in (f"exit_{k}" for k in range(1, last + 1)) if n in rs[0]["exits"]]
      per_exit = {n: float(np.mean([r["exits"][n]["uar"] for r in rs])) for n in exits}
      agg[f"{g}/{name}"] = {"uar": evaluation.mean_std(uar),
                            "wa": evaluation.mean_std(wa), "per_exit_uar": per_exit,
                            "runs": len(rs)}
      line += [_ms(uar), _ms(wa), " / ".join(f"{v:.1f}" for v in per_exit.values())]
    table.append(line + [ROW_NOTES.get(name, "")])
  header = ["row"] + [f"{g}: {m}" for g in regimes
                      for m in ("UAR", "WA", "UAR exit 1…K")] + ["what"]
  # every row on the runs all rows share: seed 0 of each fold (paired)
  paired, paired_rows = {}, []
  for name in names:
    line = [name + (" †" if name in old else "")]
    for g in regimes:
      rs = [r for r in sel(g, name) if r["seed"] == 0]
      v = [r["exits"][full]["uar"] for r in rs]
      paired[f"{g}/{name}"] = float(np.mean(v)) if len(v) == len(F.folds) else float("nan")
      line.append(_ms(v) if len(v) == len(F.folds) else "–")
    paired_rows.append(line + [ROW_NOTES.get(name, "")])
  md = [F.note + "\n\n" if F.note else "",
        "EmoDB, 7 classes, speaker-independent folds (test fold k, validation "
        "fold k+1); UAR and WA of the full model (exit_%d) in %%, mean ± std "
        "over %s runs (5 folds × 3 seeds); mean UAR of every exit. "
        "`global` = speaker-independent regime (statistics of the training "
        "speakers, inside the model); `speaker` = speaker-calibrated regime "
        "(every speaker calibrated per band with the statistics of its own "
        "unlabelled clips, test speakers included, never their labels). "
        "Float Keras models.%s\n"
        % (last, sorted({v["runs"] for v in agg.values()}),
           "" if not old else
           " † rows were measured with the code of their time (`--keep_previous`: "
           "before the front end's peak normalisation and speech-frame "
           "statistics); the other rows with the current code."),
        markdown_table(header, table),
        "\n## Paired: seed 0 of every fold\n\nThe rows that could only be "
        "run with one seed (graph, finetune, single levers: compute), next to "
        "the others' seed-0 runs on the same folds. Full-model UAR, mean ± "
        "std over the 5 folds.\n\n",
        markdown_table(["row"] + [f"{g}: UAR" for g in regimes] + ["what"],
                       paired_rows)]
  int8 = {}
  int8_row = next((n for n in INT8_ROWS if any(sel(g, n, "int8_exits")
                                               for g in regimes)), INT8_ROWS[0])
  for g in regimes:
    rs = sel(g, int8_row, "int8_exits")
    if rs:
      exits = list(rs[0]["int8_exits"])
      int8[g] = {n: evaluation.mean_std([r["int8_exits"][n]["uar"] for r in rs])
                 for n in exits}
      int8[g]["wa"] = evaluation.mean_std([r["int8_exits"][full]["wa"] for r in rs])
      int8[g]["bytes"] = int(max(r["mcu_int8_bytes"] for r in rs))
      int8[g]["row"] = int8_row
  if int8:
    md.append(f"\n## int8 microcontroller stages (row `{int8_row}`)\n\n"
              "Every run's model converted to the full-int8 MCU stages "
              "(`micro.build_stages`, calibrated on training clips) and run as "
              "a chain in LiteRT (reference kernels)"
              + (" on every window of the utterance, each window's exits "
                 "fused with the utterance's functionals head (float), "
                 "averaged" if int8_row.endswith(FUSED) else "")
              + ".\n\n")
    md.append(markdown_table(
        ["regime", "stages bytes (max)", "UAR full", "WA full", "UAR exit 1…K"],
        [[g, v["bytes"], f"{v[full]['mean']:.1f} ± {v[full]['std']:.1f}",
          f"{v['wa']['mean']:.1f}",
          " / ".join(f"{v[n]['mean']:.1f}" for n in v if n.startswith("exit_"))]
         for g, v in int8.items()]))
  src = {}
  for r in sorted(rows, key=lambda r: not r.get("previous")):  # current last
    src.update(r.get("source", {}))
  homophily = {g: float(np.mean([r["graph"]["homophily"] for r in sel(g, "graph", "graph")]))
               for g in regimes if sel(g, "graph", "graph")}
  if src:
    md.append("\n## Source models (RAVDESS, 8 classes, test actors 19–24, seed 0)\n\n")
    md.append(markdown_table(["model", "UAR", "WA"],
                             [[k, v["test_uar"], v["test_wa"]] for k, v in src.items()]))
  if homophily:
    md.append("\nGraph label homophily (share of edges joining the same "
              "emotion), mean over folds: " + ", ".join(
                  f"{g} {v:.2f}" for g, v in homophily.items()) + "\n")

  nan = float("nan")

  def get(key, field="uar"):
    return agg[key][field]["mean"] if key in agg else nan

  # speech-only is compared with graph / finetune on the recipe they share:
  # --transfer's (average+speed) now, final's for rows kept from before (†)
  kept = {r["config"] for r in rows if r.get("previous")}
  main_row = next((n for n in (("final",) if "graph" in kept else ())
                   + ("average+speed", "final", "combined")
                   if f"global/{n}" in agg), "combined")
  # the default recipe's row: float, exits and int8 figures
  default_row = next((n for n in INT8_ROWS if f"global/{n}" in agg), main_row)
  per_exit = agg.get(f"global/{default_row}", {}).get("per_exit_uar", {})
  summary = {
      "uar_int8_independent": int8.get("global", {}).get(full, {}).get("mean", nan),
      "uar_int8_calibrated": int8.get("speaker", {}).get(full, {}).get("mean", nan),
      "wa_int8_independent": int8.get("global", {}).get("wa", {}).get("mean", nan),
      "wa_int8_calibrated": int8.get("speaker", {}).get("wa", {}).get("mean", nan),
      "uar_float_independent": get(f"global/{default_row}"),
      "uar_float_calibrated": get(f"speaker/{default_row}"),
      "uar_average_speed_independent": get("global/average+speed"),
      "uar_average_speed_calibrated": get("speaker/average+speed"),
      "uar_baseline_independent": get("global/baseline"),
      "uar_baseline_calibrated": get("speaker/baseline"),
      "uar_speech_only": get(f"global/{main_row}"),
      "uar_graph": get("global/graph"),
      "uar_finetune": get("global/finetune"),
      "uar_pretrain": get("global/pretrain"),
      "uar_speech_only_calibrated": get(f"speaker/{main_row}"),
      "uar_graph_calibrated": get("speaker/graph"),
      "uar_finetune_calibrated": get("speaker/finetune"),
      "uar_speech_only_seed0": paired.get(f"global/{main_row}", nan),
      "uar_graph_seed0": paired.get("global/graph", nan),
      "uar_finetune_seed0": paired.get("global/finetune", nan),
      "uar_speech_only_seed0_calibrated": paired.get(f"speaker/{main_row}", nan),
      "uar_graph_seed0_calibrated": paired.get("speaker/graph", nan),
      "uar_finetune_seed0_calibrated": paired.get("speaker/finetune", nan),
      "runs_speech_only": agg.get(f"global/{main_row}", {}).get("runs", 0),
      "runs_graph": agg.get("global/graph", {}).get("runs", 0),
      "runs_finetune": agg.get("global/finetune", {}).get("runs", 0),
      "uar_exit_1": per_exit.get("exit_1", nan),
      "uar_exit_last": per_exit.get(full, nan),
      "source_test_uar": src.get("source_global", {}).get("test_uar", nan),
      "source_test_uar_calibrated": src.get("source_speaker", {}).get("test_uar", nan),
      "mcu_int8_bytes": int8.get("global", {}).get("bytes", 0),
      "graph_homophily": homophily.get("global", nan),
      "wall_s": wall,
  }
  for g, key in (("global", "independent"), ("speaker", "calibrated")):
    for name in ("average+speed+teacher", "average+speed+teacher+functionals"):
      if f"{g}/{name}" in agg:  # the distilled student, alone and fused
        summary[f"uar_{name.replace('average+speed+', '').replace('+', '_')}_{key}"] = (
            get(f"{g}/{name}"))
    hs = [r["head_only"]["uar"] for r in sel(g, default_row, "head_only")]
    summary[f"uar_functionals_head_{key}"] = float(np.mean(hs)) if hs else nan
    summary[f"uar_exit_1_{key}"] = agg.get(f"{g}/{default_row}", {}).get(
        "per_exit_uar", {}).get("exit_1", nan)
    summary[f"uar_exit_last_{key}"] = get(f"{g}/{default_row}")
  write_results(F.name, summary, {"aggregate": agg, "paired_seed0": paired,
                                  "int8": int8, "runs": rows},
                "\n".join(md), F.results_dir or os.path.join(
                    os.path.dirname(os.path.abspath(__file__)), "results"))


def previous_runs(rows: List[dict]) -> List[dict]:
  """Runs of ``--keep_previous`` whose configuration was not run now."""
  if not F.keep_previous:
    return []
  now = {r["config"] for r in rows}
  old = json.load(open(F.keep_previous))["runs"]
  return [dict(r, previous=True) for r in old if r["config"] not in now]


def main(argv):
  del argv
  t0 = time.time()
  if F.merge:
    rows = [r for p in F.merge for r in json.load(open(p))]
    summarize(rows + previous_runs(rows), sum(r["wall_s"] for r in rows))
    return
  names = F.configs or list(configurations(F.epochs))
  rows = run(F.regimes, names)
  if not F.part:
    summarize(rows, time.time() - t0)


if __name__ == "__main__":
  app.run(main)
