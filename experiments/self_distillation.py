"""Self-distillation with early exits on EmoDB, from RAVDESS-pretrained weights.

  python experiments/self_distillation.py           # 5 folds x 3 seeds
  python experiments/self_distillation.py --quick   # 1 fold, 1 seed, few epochs

Backbone: the student CNN (4 blocks, an exit after each), pretrained on the
RAVDESS training actors. Per EmoDB fold and seed:
  (a) fine-tune, no exits            (b) exits + self-distillation from scratch
  (c) fine-tune + self-distillation  (d) (c) + the NSL graph (deepest head)
and the low-label regime: (a) vs (c) with 10/25/50/100 % of training labels.
Adaptive inference: for tau in [0.5, 0.99] UAR, exit shares, mean MACs.
Writes experiments/results/self_distillation{,_quick}.{json,md,png}.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np
from absl import app, flags, logging

from nsl_ser import (data, early_exit, embed, evaluation, graph, models, nsl_train,
                     records, self_distill, source, splits, training)
from nsl_ser.prepare import PrepareConfig, prepare
from nsl_ser.results import RESULTS_DIR, markdown_table, write_results

F = flags.FLAGS
flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_string("work_dir", "work/self_distillation", "Scratch folder.")
flags.DEFINE_string("source_model", "work/nsl_transfer/source/model.keras",
                    "Source model for the graph embeddings (trained if absent).")
flags.DEFINE_bool("quick", False, "One fold, one seed, few epochs.")
flags.DEFINE_list("folds", None, "EmoDB folds (default: all five).")
flags.DEFINE_integer("seeds", 3, "Seeds per configuration.")
flags.DEFINE_integer("pretrain_epochs", 40, "Student pretraining on RAVDESS.")
flags.DEFINE_integer("epochs", 30, "Fine-tuning epochs.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate.")
flags.DEFINE_float("temperature", 2.0, "Distillation temperature.")
flags.DEFINE_float("kd_weight", 1.0, "Weight of the KL term.")
flags.DEFINE_float("feature_weight", 1.0, "Weight of the feature term.")
flags.DEFINE_float("ce_weight", 1.0, "Weight of the shallow exits' CE.")
flags.DEFINE_list("label_shares", ["0.1", "0.25", "0.5"], "Low-label shares.")
flags.DEFINE_integer("low_label_seeds", 1, "Seeds for the low-label runs.")
flags.DEFINE_integer("max_nbrs", 3, "Graph neighbours for (d).")
flags.DEFINE_float("multiplier", 0.1, "Graph multiplier for (d).")
flags.DEFINE_string("results_dir", RESULTS_DIR, "Where results go.")

TAUS = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99]


def stratified_share(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
  """Boolean mask keeping ``share`` of each class (at least one example)."""
  rng = np.random.default_rng(seed)
  keep = np.zeros(len(labels), bool)
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    n = max(1, int(round(share * len(idx))))
    keep[rng.choice(idx, n, replace=False)] = True
  return keep


def main(argv):
  del argv
  t0 = time.time()
  quick = F.quick
  folds = [int(f) for f in F.folds] if F.folds else ([0] if quick else list(range(5)))
  seeds = list(range(1 if quick else F.seeds))
  epochs = 3 if quick else F.epochs
  rec = {}
  for corpus in ("ravdess", "emodb"):
    rec[corpus] = os.path.join(F.work_dir, "records", corpus)
    prepare(PrepareConfig(corpus, F.data_dir, rec[corpus], progress=False))

  # Pretrained backbone: the student CNN on RAVDESS (cached).
  pre_dir = os.path.join(F.work_dir, "pretrained_quick" if quick else "pretrained")
  if os.path.exists(os.path.join(pre_dir, source.METRICS_FILE)):
    pretrained = models.load_model(os.path.join(pre_dir, source.MODEL_FILE))
    pre_metrics = json.load(open(os.path.join(pre_dir, source.METRICS_FILE)))
  else:
    pretrained, pre_metrics = source.train_source(
        rec["ravdess"], "ravdess", pre_dir, cnn=models.STUDENT,
        cfg=training.TrainConfig(epochs=2 if quick else F.pretrain_epochs,
                                 patience=12, verbose=2))
  # Source model for the graph of (d).
  if os.path.exists(F.source_model) and not quick:
    src, embedder = models.load_model(F.source_model), F.source_model
  else:  # no source model yet (or --quick): the pretrained student embeds
    src, embedder = pretrained, "the RAVDESS-pretrained student (fc1)"
  logging.info("graph embeddings from %s", embedder)
  labels = source.read_labels(rec["emodb"])
  k = len(labels)
  allx = data.load_arrays(records.list_shards(rec["emodb"]), labels)
  if quick:
    allx = allx.subset(np.arange(len(allx)) % 2 == 0)
  emb = dict(zip(allx.ids, embed.compute_embeddings(src, allx, "fc1", "speaker")))

  dcfg = self_distill.DistillConfig(F.ce_weight, F.kd_weight, F.feature_weight,
                                    F.temperature)
  probe = models.build_cnn(k, exits=True, with_features=True)
  n_exits = len(models.exit_names(probe))
  macs = models.exit_macs(probe)
  plain_macs = models.count_macs(models.build_cnn(k))

  def cfg(seed):
    return training.TrainConfig(epochs=epochs, learning_rate=F.learning_rate,
                                patience=10, seed=seed, verbose=0)

  def sd(x, y, val, seed, init=None, graph_reg=None):
    _, m, h = self_distill.train_exit_model(
        x, y, val.features, val.labels, k, models.STUDENT, cfg(seed), dcfg,
        init_from=init, graph_reg=graph_reg)
    return m, h

  def exits_report(m, test):
    probs = m.predict(test.features, verbose=0)
    return probs, [evaluation.report(test.labels, p, labels)["uar"] for p in probs]

  runs, low, tau_probs, tau_labels = [], [], [], []
  for fold in folds:
    split = splits.get_split("emodb", fold)
    part = {p: allx.by_speakers(getattr(split, p)) for p in ("train", "val", "test")}
    tr, va, te = part["train"], part["val"], part["test"]
    # graph + packing for (d)
    gcfg = graph.GraphConfig(max_nbrs=F.max_nbrs)
    gcfg.similarity_threshold = graph.auto_threshold(
        np.stack([emb[i] for i in tr.ids]), 6.0)
    gdir = os.path.join(F.work_dir, "graphs")
    gpath = graph.build_graph(emb, tr.ids, os.path.join(gdir, f"emodb_fold{fold}.tsv"), gcfg)
    ppath = graph.pack(records.list_shards(rec["emodb"]), tr.ids, gpath,
                       os.path.join(gdir, f"emodb_fold{fold}_packed.tfrecord"), gcfg)
    packed = data.packed_arrays([ppath], labels, F.max_nbrs)
    for seed in seeds:
      row = {"fold": fold, "seed": seed}
      m, h = nsl_train.train_classifier(tr, va, k, models.STUDENT, cfg(seed),
                                        init_from=pretrained)
      row["finetune"] = evaluation.report(te.labels, m.predict(te.features, verbose=0),
                                          labels)["uar"]
      m, h = sd(tr.features, tr.labels, va, seed)
      row["scratch_sd"] = exits_report(m, te)[1]
      m, h = sd(tr.features, tr.labels, va, seed, init=pretrained)
      probs, row["finetune_sd"] = exits_report(m, te)
      row["loss_first"] = {f"ce_{i}": h[f"ce_{i}"][0] for i in range(1, n_exits + 1)}
      row["loss_last"] = {f"ce_{i}": h[f"ce_{i}"][-1] for i in range(1, n_exits + 1)}
      if seed == seeds[0]:
        tau_probs.append(probs)
        tau_labels.append(te.labels)
      reg = nsl_train.GraphRegParams(max_neighbors=F.max_nbrs, multiplier=F.multiplier)
      m, _ = sd(packed, packed["label"], va, seed, init=pretrained, graph_reg=reg)
      row["finetune_sd_graph"] = exits_report(m, te)[1]
      logging.info("fold %d seed %d: %s", fold, seed, row)
      runs.append(row)
      for share in ([float(s) for s in F.label_shares]
                    if seed < F.low_label_seeds else []):
        mask = stratified_share(tr.labels, share, seed)
        sub = tr.subset(mask)
        m, _ = nsl_train.train_classifier(sub, va, k, models.STUDENT, cfg(seed),
                                          init_from=pretrained)
        ft = evaluation.report(te.labels, m.predict(te.features, verbose=0), labels)["uar"]
        m, _ = sd(sub.features, sub.labels, va, seed, init=pretrained)
        sd_uar = exits_report(m, te)[1][-1]
        low.append({"fold": fold, "seed": seed, "share": share, "finetune": ft,
                    "finetune_sd": sd_uar, "n_train": int(mask.sum())})
        logging.info("low-label %s", low[-1])

  # Aggregates
  def agg(values):
    return evaluation.mean_std(values)

  exits_sd = {f"exit_{i + 1}": agg([r["finetune_sd"][i] for r in runs])
              for i in range(n_exits)}
  exits_scratch = {f"exit_{i + 1}": agg([r["scratch_sd"][i] for r in runs])
                   for i in range(n_exits)}
  exits_graph = {f"exit_{i + 1}": agg([r["finetune_sd_graph"][i] for r in runs])
                 for i in range(n_exits)}
  ft = agg([r["finetune"] for r in runs])
  shares = sorted({l["share"] for l in low}) + [1.0]
  by_share = {}
  for s in shares:
    if s == 1.0:
      by_share[s] = {"finetune": ft, "finetune_sd": exits_sd[f"exit_{n_exits}"]}
    else:
      rows = [l for l in low if l["share"] == s]
      by_share[s] = {"finetune": agg([r["finetune"] for r in rows]),
                     "finetune_sd": agg([r["finetune_sd"] for r in rows])}
  probs_all = [np.concatenate([p[i] for p in tau_probs]) for i in range(n_exits)]
  y_all = np.concatenate(tau_labels)
  curve = {pol: early_exit.tau_curve(probs_all, y_all, macs, TAUS, k, pol)
           for pol in early_exit.POLICIES}
  wall = time.time() - t0
  name = "self_distillation_quick" if quick else "self_distillation"
  os.makedirs(F.results_dir, exist_ok=True)
  png = os.path.join(F.results_dir, f"{name}.png")
  _plot(curve, exits_sd, macs, png)
  summary = {
      "uar_exit_1": exits_sd["exit_1"]["mean"],
      "uar_full": exits_sd[f"exit_{n_exits}"]["mean"],
      "compute_exit_1_ratio": macs[0] / macs[-1],
      "uar_finetune": ft["mean"],
      "uar_finetune_sd": exits_sd[f"exit_{n_exits}"]["mean"],
      "uar_scratch_sd": exits_scratch[f"exit_{n_exits}"]["mean"],
      "uar_finetune_sd_graph": exits_graph[f"exit_{n_exits}"]["mean"],
      "uar_finetune_10pct": by_share.get(0.1, {}).get("finetune", {}).get("mean", float("nan")),
      "uar_finetune_sd_10pct": by_share.get(0.1, {}).get("finetune_sd", {}).get("mean", float("nan")),
      "pretrained_ravdess_test_uar": pre_metrics["test"]["uar"],
      "wall_s": wall,
  }
  ms = lambda d: f"{d['mean']:.1f} ± {d['std']:.1f}"
  md = (f"Student CNN with {n_exits} exits, pretrained on RAVDESS (test-actor UAR "
        f"{pre_metrics['test']['uar']:.1f} %), fine-tuned on EmoDB folds {folds}, "
        f"seeds {seeds}; UAR % on test speakers, mean ± std over folds × seeds.\n\n"
        + markdown_table(["exit", "MACs", "MACs / full", "fine-tune + SD (c)",
                          "SD from scratch (b)", "(c) + graph (d)"],
                         [[f"exit_{i + 1}", macs[i], macs[i] / macs[-1],
                           ms(exits_sd[f"exit_{i + 1}"]), ms(exits_scratch[f"exit_{i + 1}"]),
                           ms(exits_graph[f"exit_{i + 1}"])] for i in range(n_exits)])
        + f"\n(a) fine-tune, no exits: {ms(ft)} (plain model {plain_macs} MACs).\n\n"
        + "Low-label regime (share of training labels):\n\n"
        + markdown_table(["share", "fine-tune (a)", "fine-tune + SD (c)"],
                         [[s, ms(v["finetune"]), ms(v["finetune_sd"])]
                          for s, v in by_share.items()])
        + "\nAdaptive inference (c), seed 0, all test folds pooled; cost = MACs "
          "of the blocks and heads run:\n\n"
        + markdown_table(["policy", "tau", "UAR", "exit shares", "MACs / full"],
                         [[pol, c["tau"], c["uar"],
                           " / ".join(f"{s:.2f}" for s in c["exit_share"]),
                           c["cost_ratio"]] for pol in curve for c in curve[pol]])
        + f"\n![UAR vs compute]({os.path.basename(png)})\n\n"
          f"Settings: T={F.temperature}, weights ce/kd/feat = {F.ce_weight}/"
          f"{F.kd_weight}/{F.feature_weight}, {epochs} epochs, lr {F.learning_rate}; "
          f"graph of (d) from embeddings of {embedder}. "
          f"Total wall time {wall / 60:.1f} min on this machine.\n")
  print(write_results(name, summary, {
      "exit_macs": macs, "exits_finetune_sd": exits_sd,
      "exits_scratch_sd": exits_scratch, "exits_finetune_sd_graph": exits_graph,
      "finetune": ft, "label_shares": {str(s): v for s, v in by_share.items()},
      "tau_curve": curve, "runs": runs, "low_label_runs": low,
      "graph_embedder": embedder},
      md, out_dir=F.results_dir))


def _plot(curve, exits, macs, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for pol, pts in curve.items():
    ax.plot([p["cost_ratio"] for p in pts], [p["uar"] for p in pts], "o-",
            label=f"adaptive ({pol})")
    for p in pts[::2]:
      ax.annotate(f"τ={p['tau']}", (p["cost_ratio"], p["uar"]), fontsize=7)
  ax.plot([m / macs[-1] for m in macs], [exits[f"exit_{i + 1}"]["mean"]
                                         for i in range(len(macs))],
          "s--", color="gray", label="fixed exit (mean over folds)")
  ax.set_xlabel("mean compute (MACs / full model)")
  ax.set_ylabel("UAR (%)")
  ax.set_title("EmoDB: accuracy vs compute with early exits")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path + ".tmp.png", dpi=120)
  os.replace(path + ".tmp.png", path)
  plt.close(fig)


if __name__ == "__main__":
  app.run(main)
