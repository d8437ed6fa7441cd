"""``nsl-ser report``: a markdown report with plots of a pipeline run."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser.prepare import atomic_write_text, read_csv
from nsl_ser.results import RESULTS_DIR, markdown_table


def _plt():
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path: str) -> str:
  fig.tight_layout()
  fig.savefig(path + ".tmp.png", dpi=110)
  os.replace(path + ".tmp.png", path)
  _plt().close(fig)
  return os.path.basename(path)


def plot_confusion(cm: Sequence[Sequence[int]], labels: Sequence[str], title: str,
                   path: str) -> str:
  plt = _plt()
  cm = np.asarray(cm, float)
  norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
  fig, ax = plt.subplots(figsize=(5.2, 4.6))
  ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
  ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
  ax.set_yticks(range(len(labels)), labels)
  for i in range(len(labels)):
    for j in range(len(labels)):
      ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
              color="white" if norm[i, j] > 0.5 else "black")
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title)
  return _save(fig, path)


def plot_recall(per_exit: Dict[str, Dict], path: str) -> str:
  plt = _plt()
  exits = list(per_exit)
  labels = per_exit[exits[0]]["labels"]
  fig, ax = plt.subplots(figsize=(7.6, 3.6))
  w = 0.8 / len(exits)
  for i, e in enumerate(exits):
    rec = [per_exit[e]["per_class_recall"][l] or 0 for l in labels]
    ax.bar(np.arange(len(labels)) + i * w, rec, w, label=e)
  ax.set_xticks(np.arange(len(labels)) + 0.4 - w / 2, labels, rotation=30)
  ax.set_ylabel("recall (%)")
  ax.set_title("Per-class recall of each exit (int8 phone model, test speakers)")
  ax.set_ylim(0, 105)
  ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
  return _save(fig, path)


def plot_graph(degrees: Sequence[int], node_homophily: Sequence[float],
               path: str) -> str:
  plt = _plt()
  fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
  a.hist(degrees, bins=range(0, max(degrees, default=0) + 2), color="C0")
  a.set_xlabel("degree")
  a.set_ylabel("nodes")
  a.set_title("Graph degree")
  b.hist(node_homophily, bins=np.linspace(0, 1, 11), color="C2")
  b.set_xlabel("share of a node's neighbours with its emotion")
  b.set_title("Node homophily")
  return _save(fig, path)


def plot_embeddings(emb: np.ndarray, labels: Sequence[str], path: str) -> str:
  """2-D PCA projection coloured by emotion."""
  plt = _plt()
  x = emb - emb.mean(axis=0)
  _, _, vt = np.linalg.svd(x, full_matrices=False)
  xy = x @ vt[:2].T
  fig, ax = plt.subplots(figsize=(6.3, 4.5))
  for i, l in enumerate(sorted(set(labels))):
    m = np.array(labels) == l
    ax.scatter(xy[m, 0], xy[m, 1], s=8, label=l, color=f"C{i}", alpha=0.7)
  ax.set_title("Source-model embeddings of target utterances (PCA)")
  ax.legend(fontsize=7, markerscale=2, loc="center left",
            bbox_to_anchor=(1.0, 0.5))
  return _save(fig, path)


def _padded(values: Sequence[float], pad: float = 0.15,
            floor: float = 0.0) -> Tuple[float, float]:
  """Axis limits around ``values`` (a ``pad`` share of their range each side)."""
  lo, hi = min(values), max(values)
  span = max(hi - lo, 1e-9 + 0.02 * abs(hi))
  return max(floor, lo - pad * span), hi + pad * span


def plot_exits(per_exit: Dict[str, Dict], path: str,
               per_exit_cnn: Optional[Dict[str, Dict]] = None,
               head_uar: Optional[float] = None) -> str:
  """One message: UAR at each exit (fused with the functionals head when
  ``per_exit_cnn`` is given, next to the CNN alone and the head alone)."""
  plt = _plt()
  exits = list(per_exit)
  x = np.arange(len(exits))
  fig, ax = plt.subplots(figsize=(6, 3.6))
  ys = [per_exit[e]["uar"] for e in exits]
  fused = per_exit_cnn is not None
  ax.plot(x, ys, "o-", color="C0", lw=2,
          label="CNN fused with the head" if fused else "CNN")
  every = list(ys)
  if fused:
    cnn = [per_exit_cnn[e]["uar"] for e in exits]
    ax.plot(x, cnn, "s--", color="C7", label="CNN alone")
    every += cnn
  if head_uar is not None:
    ax.axhline(head_uar, color="C2", ls=":", label="functionals head alone")
    every.append(head_uar)
  for xi, y in zip(x, ys):
    ax.annotate(f"{y:.1f}", (xi, y), textcoords="offset points", xytext=(0, 7),
                ha="center", fontsize=8, color="C0")
  ax.set_xticks(x, exits)
  ax.set_ylim(*_padded(every))
  ax.set_ylabel("UAR (%)")
  ax.set_title("UAR at each exit" + (": fusion lifts the shallow exits"
                                     if fused else ""))
  ax.legend(fontsize=8, loc="lower right")
  ax.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def plot_tau(curve: List[Dict], exit_cost: Sequence[float], path: str,
             full_ms: Optional[float] = None) -> str:
  """One message: what raising τ costs and buys. τ is the shared x axis (no
  point labels to collide); top UAR, bottom the mean cost a window (measured
  ms when ``full_ms`` is given, else MACs relative to the full model)."""
  plt = _plt()
  taus = [c["tau"] for c in curve]
  x = np.arange(len(taus))
  fig, (a, b) = plt.subplots(2, 1, figsize=(7.6, 4.6), sharex=True,
                             gridspec_kw={"height_ratios": [1, 1]})
  uar = [c["uar"] for c in curve]
  a.plot(x, uar, "o-", color="C0")
  a.set_ylim(*_padded(uar))
  a.set_ylabel("UAR (%)")
  a.grid(axis="y", alpha=0.3)
  timed = full_ms is not None
  if timed:
    cost = [c["mean_ms"] for c in curve]
    ref = [(full_ms, "one-call full model", "C3"),
           (exit_cost[0], "always exit 1", "C7")]
    b.set_ylabel("mean ms a window\n(1 thread, audio in)")
    unit = "the one-call model"
  else:
    cost = [c["cost_ratio"] for c in curve]
    ref = [(1.0, "full model", "C3"), (exit_cost[0] / exit_cost[-1],
                                       "always exit 1", "C7")]
    b.set_ylabel("MACs / full model")
    unit = "the full model"
  best = taus[int(np.argmax(uar))]
  rel = np.asarray(cost) / ref[0][0]
  a.set_title(f"UAR peaks at τ {best:g}; the cost a window stays "
              f"{rel.min():.2f}–{rel.max():.2f}× {unit}", fontsize=10)
  b.plot(x, cost, "o-", color="C1", label="adaptive (max prob ≥ τ)")
  for y, label, color in ref:
    b.axhline(y, color=color, ls=":", label=label)
  b.set_ylim(*_padded(cost + [y for y, _, _ in ref]))
  b.set_xticks(x, [f"{t:g}" for t in taus])
  b.set_xlabel("τ (stop at the first exit whose top probability reaches τ)")
  b.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
  b.grid(axis="y", alpha=0.3)
  return _save(fig, path)


def _node_homophily(graph_path: str, label_of: Dict[str, str]) -> List[float]:
  from nsl_ser.graph import read_graph
  g = read_graph(graph_path)
  out = []
  for s, nb in g.items():
    nb = [t for t in nb if t != s]
    if nb:
      out.append(float(np.mean([label_of[t] == label_of[s] for t in nb])))
  return out


def write_report(work_dir: str, out_dir: str,
                 results_dir: Optional[str] = RESULTS_DIR) -> str:
  """Writes ``out_dir/report.md`` and its PNGs from a pipeline work dir."""
  os.makedirs(out_dir, exist_ok=True)
  j = lambda *p: json.load(open(os.path.join(work_dir, *p)))
  parts = ["# nsl-ser report\n", f"Run folder: `{os.path.abspath(work_dir)}`.\n"]
  src = j("source", "metrics.json")
  ev = j("evaluation.json")
  side = j("tflite", "model.json")
  exits = list(ev["per_exit"])
  parts.append(f"\n## Source model ({src['corpus']}, test actors)\n\n"
               f"UAR {src['test']['uar']:.1f} %, WA {src['test']['wa']:.1f} %, "
               f"{src['params']:,} parameters.\n\n")
  parts.append("![source confusion]({})\n".format(plot_confusion(
      src["test"]["confusion_matrix"], src["labels"], "Source model (test actors)",
      os.path.join(out_dir, "source_confusion.png"))))
  deep = ev["per_exit"][exits[-1]]
  parts.append(f"\n## Student with early exits (int8 phone model, fold {ev['fold']} "
               f"test speakers, n={ev['n']})\n\n")
  if ev.get("fused"):
    parts.append("Every exit of the centre window fused with the functionals "
                 "head of the whole utterance (423 statistics of its log-Mel "
                 "speech frames + logistic regression, `nsl_ser.functionals`), "
                 "as `nsl-ser predict` does; the CNN "
                 f"alone and the head alone (UAR {ev['head_only']['uar']:.1f} %) "
                 "for comparison.\n\n")
    parts.append(markdown_table(
        ["exit", "UAR %", "WA %", "CNN alone: UAR %", "MACs", "MACs / full"],
        [[e, ev["per_exit"][e]["uar"], ev["per_exit"][e]["wa"],
          ev["per_exit_cnn"][e]["uar"], m, m / ev["exit_macs"][-1]]
         for e, m in zip(exits, ev["exit_macs"])]))
  else:
    parts.append(markdown_table(
        ["exit", "UAR %", "WA %", "MACs", "MACs / full"],
        [[e, ev["per_exit"][e]["uar"], ev["per_exit"][e]["wa"], m,
          m / ev["exit_macs"][-1]] for e, m in zip(exits, ev["exit_macs"])]))
  parts.append("\n![exits]({})\n".format(plot_exits(
      ev["per_exit"], os.path.join(out_dir, "exits.png"),
      ev.get("per_exit_cnn") if ev.get("fused") else None,
      ev["head_only"]["uar"] if ev.get("fused") else None)))
  parts.append("\n![student confusion]({})\n".format(plot_confusion(
      deep["confusion_matrix"], deep["labels"], f"Student {exits[-1]} (int8)",
      os.path.join(out_dir, "student_confusion.png"))))
  parts.append("\n![per-class recall]({})\n".format(
      plot_recall(ev["per_exit"], os.path.join(out_dir, "per_class_recall.png"))))
  lat = ev.get("latency_ms")
  if lat:
    full_ms = lat["full"]
    parts.append("\n## Early exits: accuracy against measured latency\n\n"
                 f"Staged int8 phone model, LiteRT, {lat['threads']} thread, "
                 f"audio in, median of one window: one-call full model "
                 f"{full_ms:.2f} ms; stopping at "
                 + ", ".join(f"{e} {lat[e]:.2f} ms" for e in exits)
                 + ". The adaptive policy's mean is over the test clips."
                 + (f" The functionals head adds {lat['functionals_head']:.2f} ms "
                    "an utterance (numpy, not in these times)."
                    if "functionals_head" in lat else "") + "\n\n")
    parts.append(markdown_table(
        ["τ", "UAR %", "exit shares", "mean ms", "ms / full", "MACs / full"],
        [[c["tau"], c["uar"], " / ".join(f"{s:.2f}" for s in c["exit_share"]),
          c["mean_ms"], c["mean_ms"] / full_ms, c["cost_ratio"]]
         for c in ev["tau_curve"]]))
    cost = [lat[e] for e in exits]
  else:
    full_ms = None
    parts.append("\n## Early exits: accuracy against compute\n\n")
    parts.append(markdown_table(
        ["τ", "UAR %", "exit shares", "MACs / full"],
        [[c["tau"], c["uar"], " / ".join(f"{s:.2f}" for s in c["exit_share"]),
          c["cost_ratio"]] for c in ev["tau_curve"]]))
    cost = ev["exit_macs"]
  parts.append("\n![τ against cost]({})\n".format(plot_tau(
      ev["tau_curve"], cost, os.path.join(out_dir, "tau.png"), full_ms)))
  # graph
  stats = j("graphs", "stats.json")
  from nsl_ser import records
  emb = records.read_embeddings(os.path.join(work_dir, "embeddings"))
  label_of = {}
  for d in os.listdir(os.path.join(work_dir, "records")):
    for r in read_csv(os.path.join(work_dir, "records", d, "manifest.csv")):
      label_of[r["id"]] = r["label_name"]
  ids = sorted(emb)
  parts.append(f"\n## Similarity graph (training speakers)\n\n"
               f"{stats['nodes']} nodes, {stats['edges']} edges, "
               f"{stats['isolated']} isolated, mean degree {stats['mean_degree']:.1f}, "
               f"label homophily {100 * stats['homophily']:.1f} % (threshold "
               f"{stats['threshold']:.3f}).\n\n")
  parts.append("![graph]({})\n".format(plot_graph(
      stats["degrees"], _node_homophily(os.path.join(work_dir, "graphs", "graph.tsv"),
                                        label_of),
      os.path.join(out_dir, "graph.png"))))
  parts.append("\n![embeddings]({})\n".format(plot_embeddings(
      np.stack([emb[i] for i in ids]), [label_of[i] for i in ids],
      os.path.join(out_dir, "embeddings.png"))))
  # sizes and latency
  parts.append("\n## Exported models\n\n")
  parts.append(markdown_table(
      ["file", "bytes", "target"],
      [[f, v["bytes"], v.get("target", "")] for f, v in side["files"].items()
       if "bytes" in v and f.endswith(".tflite")]))
  bench = os.path.join(results_dir or "", "export.json")
  if results_dir and os.path.exists(bench):
    b = json.load(open(bench))
    parts.append("\nFrom the export benchmark (`experiments/results/export.json`, "
                 "its own models):\n\n")
    parts.append(markdown_table(["measure", "value"],
                                [[k, v] for k, v in b["summary"].items()]))
  parts.append(f"\n{side.get('licence', '')}\n")
  path = os.path.join(out_dir, "report.md")
  atomic_write_text(path, "".join(parts))
  return path
