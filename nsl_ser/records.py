"""The TFRecord schema, in one place, and readers/writers for it.

Utterance records (``nsl-ser prepare``), one ``tf.train.Example`` each:

=============  =======  ====================================================
feature        type     meaning
=============  =======  ====================================================
id             bytes    unique, stable id: ``<corpus>-<file stem>``
corpus         bytes    corpus name (``ravdess``, ``emodb``, ...)
speaker        bytes    speaker id as the corpus names it (``"03"``)
gender         bytes    ``m``, ``f`` or empty when unknown
label          int64    index into the corpus' label list (manifest/labels)
label_name     bytes    emotion in the shared vocabulary (``angry``)
waveform       bytes    mono PCM, int16 little-endian, 16 kHz, full length
num_samples    int64    number of int16 samples in ``waveform``
sample_rate    int64    16000
=============  =======  ====================================================

Embedding records (``nsl-ser embed``): ``id`` (bytes) and ``embedding``
(float list, L2-normalised), the input of ``nsl.tools.build_graph``.
"""
from __future__ import annotations

import glob
import os
from typing import Dict, Iterable, Iterator, List, Sequence

import numpy as np

from nsl_ser.compat import tf

UTTERANCE_FEATURES: Dict[str, tf.io.FixedLenFeature] = {
    "id": tf.io.FixedLenFeature([], tf.string),
    "corpus": tf.io.FixedLenFeature([], tf.string),
    "speaker": tf.io.FixedLenFeature([], tf.string),
    "gender": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "label_name": tf.io.FixedLenFeature([], tf.string),
    "waveform": tf.io.FixedLenFeature([], tf.string),
    "num_samples": tf.io.FixedLenFeature([], tf.int64),
    "sample_rate": tf.io.FixedLenFeature([], tf.int64, default_value=16000),
}


def _bytes(v: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))


def _int(v: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v)]))


def _floats(v: Sequence[float]) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))


def utterance_example(uid: str, corpus: str, speaker: str, gender: str,
                      label: int, label_name: str, pcm16: np.ndarray,
                      sample_rate: int = 16000) -> tf.train.Example:
  """Builds one utterance Example; ``pcm16`` is a 1-D int16 array."""
  pcm16 = np.asarray(pcm16)
  if pcm16.dtype != np.int16 or pcm16.ndim != 1:
    raise ValueError("waveform must be a 1-D int16 array")
  return tf.train.Example(features=tf.train.Features(feature={
      "id": _bytes(uid.encode()), "corpus": _bytes(corpus.encode()),
      "speaker": _bytes(speaker.encode()), "gender": _bytes(gender.encode()),
      "label": _int(label), "label_name": _bytes(label_name.encode()),
      "waveform": _bytes(pcm16.astype("<i2").tobytes()),
      "num_samples": _int(pcm16.shape[0]), "sample_rate": _int(sample_rate),
  }))


def embedding_example(uid: str, embedding: np.ndarray) -> tf.train.Example:
  return tf.train.Example(features=tf.train.Features(feature={
      "id": _bytes(uid.encode()), "embedding": _floats(embedding.tolist())}))


def decode_waveform(raw: tf.Tensor) -> tf.Tensor:
  """``waveform`` bytes -> float32 samples in [-1, 1)."""
  return tf.cast(tf.io.decode_raw(raw, tf.int16, little_endian=True),
                 tf.float32) / 32768.0


def parse_utterance(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Parses one serialized utterance Example (``waveform`` stays bytes)."""
  return tf.io.parse_single_example(serialized, UTTERANCE_FEATURES)


def list_shards(path_or_dir: str, pattern: str = "*.tfrecord") -> List[str]:
  """Shard files of a record set: a directory, a glob or a single file."""
  if os.path.isdir(path_or_dir):
    files = sorted(glob.glob(os.path.join(path_or_dir, pattern)))
  else:
    files = sorted(glob.glob(path_or_dir))
  if not files:
    raise FileNotFoundError(f"{path_or_dir}: no TFRecord files ({pattern})")
  return files


def shard_names(prefix: str, num_shards: int) -> List[str]:
  return [f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord"
          for i in range(num_shards)]


class AtomicShardWriter:
  """Writes examples round-robin to shards under ``*.tmp`` names.

  ``commit()`` renames every shard into place; on an exception inside the
  ``with`` block the temporaries are deleted, so no half-written shard ever
  carries a final name.
  """

  def __init__(self, out_dir: str, prefix: str, num_shards: int):
    self.paths = [os.path.join(out_dir, n)
                  for n in shard_names(prefix, num_shards)]
    self._writers: List[tf.io.TFRecordWriter] = []
    self.count = 0

  def __enter__(self) -> "AtomicShardWriter":
    self._writers = [tf.io.TFRecordWriter(p + ".tmp") for p in self.paths]
    return self

  def write(self, example: tf.train.Example) -> int:
    """Writes one example; returns the shard index it went to."""
    shard = self.count % len(self._writers)
    self._writers[shard].write(example.SerializeToString())
    self.count += 1
    return shard

  def __exit__(self, exc_type, exc, tb) -> None:
    for w in self._writers:
      w.close()
    for p in self.paths:
      if exc_type is None:
        os.replace(p + ".tmp", p)
      elif os.path.exists(p + ".tmp"):
        os.remove(p + ".tmp")


def read_examples(files: Iterable[str]) -> Iterator[tf.train.Example]:
  for f in files:
    for raw in tf.data.TFRecordDataset(f):
      yield tf.train.Example.FromString(raw.numpy())


def read_embeddings(path_or_dir: str) -> Dict[str, np.ndarray]:
  """Embedding records -> {id: vector}."""
  out = {}
  for ex in read_examples(list_shards(path_or_dir)):
    f = ex.features.feature
    out[f["id"].bytes_list.value[0].decode()] = np.array(
        f["embedding"].float_list.value, np.float32)
  return out


def feature_value(example: tf.train.Example, key: str):
  """First value of a feature, decoded for bytes."""
  f = example.features.feature[key]
  kind = f.WhichOneof("kind")
  v = getattr(f, kind).value[0]
  return v.decode() if isinstance(v, bytes) and key != "waveform" else v
