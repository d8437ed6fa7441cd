"""``prepare``: a corpus folder -> sharded utterance TFRecords + reports.

Writes into ``out_dir``: ``<corpus>-NNNNN-of-NNNNN.tfrecord`` shards (schema in
:mod:`nsl_ser.records`), ``manifest.csv`` (one row per written example),
``skipped.csv`` (file, reason), ``labels.txt`` and ``summary.json``. Every
file is written under a temporary name and renamed when complete;
``summary.json`` comes last and marks the output as finished.
"""
from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import os
import shutil
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nsl_ser import audio, corpora, records
from nsl_ser.atomic import atomic_write, atomic_write_text

SUMMARY = "summary.json"
MANIFEST_FIELDS = ("id", "path", "corpus", "speaker", "gender", "label",
                   "label_name", "seconds", "shard")


@dataclasses.dataclass
class PrepareConfig:
  corpus: str
  data_dir: str
  out_dir: str
  num_shards: int = 4
  emotions: Optional[Sequence[str]] = None  # restrict to these classes
  min_seconds: float = audio.MIN_SECONDS
  workers: int = max(1, os.cpu_count() or 1)
  overwrite: bool = False
  progress: bool = True


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
  with atomic_write(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(header)
    w.writerows(rows)


def read_csv(path: str) -> List[dict]:
  with open(path, newline="") as f:
    return list(csv.DictReader(f))


def is_done(out_dir: str) -> bool:
  return os.path.exists(os.path.join(out_dir, SUMMARY))


def load_summary(out_dir: str) -> dict:
  with open(os.path.join(out_dir, SUMMARY)) as f:
    return json.load(f)


def _decode(u: corpora.Utterance, min_seconds: float
            ) -> Tuple[corpora.Utterance, Optional[np.ndarray], Optional[str]]:
  try:
    return u, audio.to_int16(audio.load_audio(u.path, min_seconds=min_seconds)), None
  except audio.AudioError as e:
    return u, None, e.reason


def prepare(cfg: PrepareConfig) -> dict:
  """Runs the stage; returns the summary (also written to summary.json).

  A finished ``out_dir`` is left alone unless ``cfg.overwrite``.
  """
  if is_done(cfg.out_dir) and not cfg.overwrite:
    summary = load_summary(cfg.out_dir)
    summary["reused"] = True
    return summary
  if os.path.isdir(cfg.out_dir):
    shutil.rmtree(cfg.out_dir)
  os.makedirs(cfg.out_dir)
  corpus = corpora.get_corpus(cfg.corpus)
  emotions = tuple(cfg.emotions) if cfg.emotions else corpus.emotions
  unknown = set(emotions) - set(corpus.emotions)
  if unknown:
    raise ValueError(f"{corpus.name} has no class(es) {sorted(unknown)}")
  start = time.time()
  utts, skipped = corpora.scan(corpus, cfg.data_dir, emotions)
  manifest: List[list] = []
  seconds_total = 0.0
  with records.AtomicShardWriter(cfg.out_dir, corpus.name,
                                 cfg.num_shards) as writer, \
      concurrent.futures.ThreadPoolExecutor(cfg.workers) as pool:
    results = pool.map(lambda u: _decode(u, cfg.min_seconds), utts)
    for u, pcm, reason in tqdm(results, total=len(utts), unit="file",
                               desc=f"prepare {corpus.name}",
                               disable=not cfg.progress):
      if pcm is None:
        skipped.append((u.path, reason))
        continue
      label = emotions.index(u.emotion)
      shard = writer.write(records.utterance_example(
          u.id, u.corpus, u.speaker, u.gender or "", label, u.emotion, pcm))
      seconds = pcm.shape[0] / audio.SAMPLE_RATE
      seconds_total += seconds
      manifest.append([u.id, u.path, u.corpus, u.speaker, u.gender or "",
                       label, u.emotion, f"{seconds:.3f}", shard])
  wall = time.time() - start
  write_csv(os.path.join(cfg.out_dir, "manifest.csv"), MANIFEST_FIELDS, manifest)
  write_csv(os.path.join(cfg.out_dir, "skipped.csv"), ("file", "reason"),
            sorted(skipped))
  atomic_write_text(os.path.join(cfg.out_dir, "labels.txt"),
                    "".join(e + "\n" for e in emotions))
  summary = {
      "corpus": corpus.name, "data_dir": os.path.abspath(cfg.data_dir),
      "files_found": len(utts) + len(skipped), "files_read": len(manifest),
      "skipped": len(skipped), "labels": list(emotions),
      "speakers": sorted({r[3] for r in manifest}),
      "audio_hours": seconds_total / 3600.0, "wall_s": wall,
      "realtime_factor": seconds_total / wall if wall > 0 else 0.0,
      "num_shards": cfg.num_shards, "shards": [os.path.basename(p)
                                               for p in writer.paths],
  }
  atomic_write_text(os.path.join(cfg.out_dir, SUMMARY),
                    json.dumps(summary, indent=2))
  return summary
