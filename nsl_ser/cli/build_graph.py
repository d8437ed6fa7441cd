"""nsl-ser build-graph: graph over training utterances + packed neighbours."""
from __future__ import annotations

import json
import os

import numpy as np
from absl import flags

from nsl_ser import graph, records, splits
from nsl_ser.prepare import atomic_write_text, read_csv

FLAGS = flags.FLAGS
flags.DEFINE_string("embeddings", "work/embeddings/emodb", "nsl-ser embed output.")
flags.DEFINE_string("records_dir", "work/records/emodb", "Prepared target corpus.")
flags.DEFINE_string("corpus", "emodb", "Target corpus (selects the split).")
flags.DEFINE_integer("fold", 0, "Split fold: the graph joins its training ids.")
flags.DEFINE_string("graph_dir", "graphs", "Where the graph TSV and stats go.")
flags.DEFINE_string("packed", None, "Packed output (default "
                    "<graph_dir>/<corpus>_fold<k>_packed.tfrecord).")
flags.DEFINE_float("similarity_threshold", None, "Cosine threshold; default: "
                   "chosen for --target_degree neighbours per node.")
flags.DEFINE_float("target_degree", 6.0, "Mean degree for the auto threshold.")
flags.DEFINE_integer("lsh_splits", 2, "LSH splits (nsl GraphBuilderConfig).")
flags.DEFINE_integer("lsh_rounds", 4, "LSH rounds.")
flags.DEFINE_integer("random_seed", 12345, "LSH seed.")
flags.DEFINE_integer("max_nbrs", 3, "Neighbours packed per example.")
flags.DEFINE_bool("add_undirected_edges", True, "Use edges both ways.")


def main(argv) -> None:
  del argv
  emb = records.read_embeddings(FLAGS.embeddings)
  manifest = read_csv(os.path.join(FLAGS.records_dir, "manifest.csv"))
  split = splits.get_split(FLAGS.corpus, FLAGS.fold)
  train_ids = sorted(r["id"] for r in manifest if r["speaker"] in split.train)
  cfg = graph.GraphConfig(lsh_splits=FLAGS.lsh_splits,
                          lsh_rounds=FLAGS.lsh_rounds,
                          random_seed=FLAGS.random_seed,
                          max_nbrs=FLAGS.max_nbrs,
                          add_undirected_edges=FLAGS.add_undirected_edges)
  cfg.similarity_threshold = (
      FLAGS.similarity_threshold if FLAGS.similarity_threshold is not None
      else graph.auto_threshold(np.stack([emb[i] for i in train_ids]),
                                FLAGS.target_degree))
  name = f"{FLAGS.corpus}_fold{FLAGS.fold}"
  gpath = graph.build_graph(emb, train_ids,
                            os.path.join(FLAGS.graph_dir, f"{name}.tsv"), cfg)
  stats = graph.graph_stats(gpath, train_ids,
                            {r["id"]: r["label_name"] for r in manifest})
  stats.update(threshold=cfg.similarity_threshold, fold=FLAGS.fold)
  atomic_write_text(os.path.join(FLAGS.graph_dir, f"{name}.stats.json"),
                    json.dumps(stats, indent=2))
  packed = FLAGS.packed or os.path.join(FLAGS.graph_dir, f"{name}_packed.tfrecord")
  graph.pack(records.list_shards(FLAGS.records_dir), train_ids, gpath, packed, cfg)
  print(json.dumps({k: v for k, v in stats.items() if k != "degrees"}, indent=2))
  print(f"graph {gpath}; packed {packed}")
