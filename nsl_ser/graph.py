"""``build-graph``: similarity graph over training utterances, then neighbour
packing, both with ``nsl.tools``; plus the graph's statistics.

Only training ids enter the graph, so nothing leaks from validation or test
speakers into training.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Dict, Iterable, Mapping, Sequence

import numpy as np

from nsl_ser import records
from nsl_ser.compat import nsl, tf


@dataclasses.dataclass
class GraphConfig:
  """Graph building (nsl.configs.GraphBuilderConfig) and packing settings."""
  similarity_threshold: float = 0.5
  lsh_splits: int = 2
  lsh_rounds: int = 4
  random_seed: int = 12345
  max_nbrs: int = 3
  add_undirected_edges: bool = True

  def builder_config(self) -> "nsl.configs.GraphBuilderConfig":
    return nsl.configs.GraphBuilderConfig(
        similarity_threshold=self.similarity_threshold,
        lsh_splits=self.lsh_splits, lsh_rounds=self.lsh_rounds,
        random_seed=self.random_seed)


def auto_threshold(emb: np.ndarray, target_degree: float) -> float:
  """Cosine threshold giving about ``target_degree`` neighbours per node
  (for unit-norm ``emb``): neither an empty graph nor a clique."""
  sim = emb @ emb.T
  np.fill_diagonal(sim, -np.inf)
  n = emb.shape[0]
  k = int(np.clip(round(target_degree * n / 2), 1, n * (n - 1) // 2))
  upper = sim[np.triu_indices(n, 1)]
  return float(np.sort(upper)[-k])


def build_graph(embeddings: Mapping[str, np.ndarray], train_ids: Iterable[str],
                graph_path: str, cfg: GraphConfig) -> str:
  """Writes the graph TSV (via a temporary name) over ``train_ids`` only."""
  train_ids = sorted(set(train_ids))
  missing = [i for i in train_ids if i not in embeddings]
  if missing:
    raise KeyError(f"{len(missing)} training ids have no embedding, "
                   f"e.g. {missing[:3]}")
  os.makedirs(os.path.dirname(os.path.abspath(graph_path)), exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    emb_file = os.path.join(tmp, "train_embeddings.tfrecord")
    with tf.io.TFRecordWriter(emb_file) as w:
      for i in train_ids:
        w.write(records.embedding_example(i, embeddings[i]).SerializeToString())
    nsl.tools.build_graph_from_config([emb_file], graph_path + ".tmp",
                                      cfg.builder_config())
  os.replace(graph_path + ".tmp", graph_path)
  return graph_path


def read_graph(graph_path: str) -> Dict[str, Dict[str, float]]:
  """source -> {target: weight}, with nsl's own reader (patched in compat)."""
  from neural_structured_learning.tools import graph_utils
  return graph_utils.read_tsv_graph(graph_path)


def graph_stats(graph_path: str, node_ids: Iterable[str],
                labels: Mapping[str, str]) -> Dict[str, float]:
  """Nodes, undirected edges, isolated nodes, mean degree, label homophily
  (share of edges joining two utterances of the same emotion)."""
  g = read_graph(graph_path)
  nodes = set(node_ids)
  edges = {tuple(sorted((s, t))) for s, nb in g.items() for t in nb if s != t}
  degree = {n: 0 for n in nodes}
  for a, b in edges:
    degree[a] = degree.get(a, 0) + 1
    degree[b] = degree.get(b, 0) + 1
  same = sum(labels[a] == labels[b] for a, b in edges)
  deg = np.array(list(degree.values()), float)
  return {"nodes": len(nodes), "edges": len(edges),
          "isolated": int(np.sum(deg == 0)),
          "mean_degree": float(deg.mean()) if deg.size else 0.0,
          "homophily": float(same / len(edges)) if edges else float("nan"),
          "degrees": deg.astype(int).tolist()}


def pack(utterance_files: Sequence[str], train_ids: Iterable[str],
         graph_path: str, out_path: str, cfg: GraphConfig) -> str:
  """``nsl.tools.pack_nbrs`` over the training utterances: each example gets
  ``NL_nbr_<i>_*`` copies of up to ``max_nbrs`` neighbours' features."""
  keep = set(train_ids)
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  with tempfile.TemporaryDirectory() as tmp:
    labeled = os.path.join(tmp, "train.tfrecord")
    n = 0
    with tf.io.TFRecordWriter(labeled) as w:
      for raw in tf.data.TFRecordDataset(list(utterance_files)):
        ex = tf.train.Example.FromString(raw.numpy())
        if records.feature_value(ex, "id") in keep:
          w.write(raw.numpy())
          n += 1
    if n != len(keep):
      raise ValueError(f"found {n} of {len(keep)} training ids in the records")
    nsl.tools.pack_nbrs(labeled, "", graph_path, out_path + ".tmp",
                        add_undirected_edges=cfg.add_undirected_edges,
                        max_nbrs=cfg.max_nbrs)
  os.replace(out_path + ".tmp", out_path)
  return out_path


def neighbour_index(packed_path: str, ids: Sequence[str], max_nbrs: int
                    ) -> "tuple[np.ndarray, np.ndarray]":
  """Reads ``pack_nbrs`` output back as row indices into ``ids``: returns
  (neighbours [N, max_nbrs], -1 where a node has fewer; weights [N,
  max_nbrs]), so a training loop that augments each clip can fetch the
  neighbours' clips itself (NSL copies their features, fixed once)."""
  from nsl_ser import data
  row = {str(i): n for n, i in enumerate(ids)}
  nbrs = np.full((len(ids), max_nbrs), -1, np.int64)
  weights = np.zeros((len(ids), max_nbrs), np.float32)
  for ex in records.read_examples([packed_path]):
    me = row.get(records.feature_value(ex, "id"))
    if me is None:
      continue
    feats = ex.features.feature
    for j in range(max_nbrs):
      key = data.nbr_feature_key(j, "id")
      if key not in feats or not feats[key].bytes_list.value:
        break
      nbrs[me, j] = row[feats[key].bytes_list.value[0].decode()]
      weights[me, j] = feats[data.nbr_weight_key(j)].float_list.value[0]
  return nbrs, weights
