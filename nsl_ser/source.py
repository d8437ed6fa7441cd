"""``train-source``: the source (teacher) CNN on the source corpus' split."""
from __future__ import annotations

import json
import os
from typing import Dict, Optional, Tuple

from nsl_ser import data, evaluation, models, nsl_train, records, splits, training
from nsl_ser.compat import keras
from nsl_ser.features import FrontEndConfig
from nsl_ser.prepare import atomic_write_text

MODEL_FILE = "model.keras"
METRICS_FILE = "metrics.json"


def read_labels(records_dir: str) -> list:
  with open(os.path.join(records_dir, "labels.txt")) as f:
    return f.read().split()


def load_partitions(records_dir: str, corpus: str, fold: int = 0,
                    labels: Optional[list] = None,
                    front_end: FrontEndConfig = FrontEndConfig()
                    ) -> Tuple[Dict[str, data.Arrays], list]:
  """{train, val, test} arrays of a prepared corpus under its fixed split."""
  labels = labels or read_labels(records_dir)
  files = records.list_shards(records_dir)
  split = splits.get_split(corpus, fold)
  everything = data.load_arrays(files, labels, front_end=front_end)
  return {p: everything.by_speakers(getattr(split, p))
          for p in ("train", "val", "test")}, labels


def train_source(records_dir: str, corpus: str, out_dir: str,
                 cnn: models.CNNConfig = models.SOURCE,
                 cfg: training.TrainConfig = training.TrainConfig(),
                 front_end: FrontEndConfig = FrontEndConfig()
                 ) -> Tuple[keras.Model, dict]:
  """Trains, selects on val UAR, tests; writes model.keras + metrics.json."""
  parts, labels = load_partitions(records_dir, corpus, front_end=front_end)
  model, hist = nsl_train.train_classifier(
      parts["train"], parts["val"], len(labels), cnn, cfg,
      out_dir=os.path.join(out_dir, "train"), front_end=front_end)
  metrics = {
      p: evaluation.report(parts[p].labels,
                           model.predict(parts[p].features, verbose=0), labels)
      for p in ("val", "test")}
  metrics.update(corpus=corpus, labels=labels, params=model.count_params(),
                 macs=models.count_macs(model), epochs_run=len(hist["loss"]),
                 wall_s=hist["wall_s"], cnn=cnn.to_dict(),
                 front_end=front_end.to_dict())
  os.makedirs(out_dir, exist_ok=True)
  model.save(os.path.join(out_dir, MODEL_FILE + ".tmp.keras"))
  os.replace(os.path.join(out_dir, MODEL_FILE + ".tmp.keras"),
             os.path.join(out_dir, MODEL_FILE))
  atomic_write_text(os.path.join(out_dir, "labels.txt"),
                    "".join(l + "\n" for l in labels))
  atomic_write_text(os.path.join(out_dir, METRICS_FILE),
                    json.dumps(metrics, indent=2))
  return model, metrics
