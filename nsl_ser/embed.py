"""``embed``: a trained model's layer over target utterances -> embedding
TFRecords (``id``, ``embedding``: L2-normalised float list).

Across corpora raw embeddings are dominated by who speaks and how it was
recorded (see ../shared/notes/baselines.md), so by default each speaker's mean
embedding is subtracted first (``normalize='speaker'``: unsupervised, uses no
labels), then every vector is scaled to unit length.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np

from nsl_ser import data, models, records
from nsl_ser.compat import keras
from nsl_ser.atomic import atomic_write_text

NORMALIZE = ("speaker", "corpus", "none")


def normalize_embeddings(emb: np.ndarray, speakers: np.ndarray,
                         mode: str = "speaker") -> np.ndarray:
  """Centres per speaker / per corpus (or not), then L2-normalises rows."""
  if mode not in NORMALIZE:
    raise ValueError(f"normalize must be one of {NORMALIZE}, not {mode!r}")
  emb = emb.astype(np.float64).copy()
  if mode == "speaker":
    for s in np.unique(speakers):
      emb[speakers == s] -= emb[speakers == s].mean(axis=0)
  elif mode == "corpus":
    emb -= emb.mean(axis=0)
  norms = np.linalg.norm(emb, axis=1, keepdims=True)
  return (emb / np.maximum(norms, 1e-12)).astype(np.float32)


def compute_embeddings(model: keras.Model, arrays: data.Arrays,
                       layer: str = "fc1", normalize: str = "speaker",
                       batch_size: int = 64) -> np.ndarray:
  sub = models.embedding_model(model, layer)
  raw = sub.predict(arrays.features, batch_size=batch_size, verbose=0)
  return normalize_embeddings(raw.reshape(len(arrays), -1), arrays.speakers,
                              normalize)


def write_embeddings(out_dir: str, ids: Sequence[str], emb: np.ndarray,
                     meta: dict) -> str:
  """Writes ``embeddings-00000-of-00001.tfrecord`` + ``summary.json``."""
  os.makedirs(out_dir, exist_ok=True)
  with records.AtomicShardWriter(out_dir, "embeddings", 1) as w:
    for uid, e in zip(ids, emb):
      w.write(records.embedding_example(str(uid), e))
  atomic_write_text(os.path.join(out_dir, "summary.json"), json.dumps(
      {**meta, "count": int(len(ids)), "dim": int(emb.shape[1])}, indent=2))
  return w.paths[0]
