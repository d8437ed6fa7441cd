"""nsl-ser embed: a trained model's layer over target utterances -> TFRecords."""
from __future__ import annotations

import os

from absl import flags

from nsl_ser import data, embed, models, records, source

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "work/source/model.keras", "Trained Keras model.")
flags.DEFINE_string("records_dir", "work/records/emodb", "Prepared target corpus.")
flags.DEFINE_string("out_dir", "work/embeddings/emodb", "Embedding records.")
flags.DEFINE_string("layer", "fc1",
                    "Layer to read (default fc1, the projection before the "
                    "classifier).")
flags.DEFINE_enum("normalize", "speaker", list(embed.NORMALIZE),
                  "Centre per speaker / corpus before L2 normalisation.")


def main(argv) -> None:
  del argv
  model = models.load_model(FLAGS.model)
  labels = source.read_labels(FLAGS.records_dir)
  arrays = data.load_arrays(records.list_shards(FLAGS.records_dir), labels)
  emb = embed.compute_embeddings(model, arrays, FLAGS.layer, FLAGS.normalize)
  path = embed.write_embeddings(FLAGS.out_dir, arrays.ids, emb, {
      "model": os.path.abspath(FLAGS.model), "layer": FLAGS.layer,
      "normalize": FLAGS.normalize, "records_dir": FLAGS.records_dir})
  print(f"{len(arrays)} embeddings of dimension {emb.shape[1]} -> {path}")
