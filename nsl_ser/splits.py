"""Fixed speaker-independent splits.

They are read from, in order: the ``splits_dir`` argument, the
``NSL_SER_SPLITS`` environment variable, ``../shared/splits`` beside the
repository (the project's fixed splits), and the copies shipped with the
package. RAVDESS and nEMO have one train/val/test split by speaker. EmoDB has five folds of two
speakers; for fold k the test speakers are fold k, validation is fold
(k+1) mod 5 and training is the other three.
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import FrozenSet, Optional

PACKAGED_SPLITS_DIR = os.path.join(os.path.dirname(__file__), "splits")
SHARED_SPLITS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), os.pardir, "shared", "splits")
SPLITS_ENV = "NSL_SER_SPLITS"


@dataclasses.dataclass(frozen=True)
class Split:
  train: FrozenSet[str]
  val: FrozenSet[str]
  test: FrozenSet[str]

  def partition_of(self, speaker: str) -> Optional[str]:
    for name in ("train", "val", "test"):
      if speaker in getattr(self, name):
        return name
    return None


def split_path(corpus: str, splits_dir: Optional[str] = None) -> str:
  """The first ``<corpus>.json`` in the search order of the module doc."""
  dirs = [splits_dir] if splits_dir else [
      d for d in (os.environ.get(SPLITS_ENV), SHARED_SPLITS_DIR,
                  PACKAGED_SPLITS_DIR) if d]
  for d in dirs:
    path = os.path.join(d, f"{corpus}.json")
    if os.path.exists(path):
      return path
  raise FileNotFoundError(f"{corpus}.json: no split file for corpus "
                          f"{corpus!r} in {', '.join(dirs)}")


def load_split_file(corpus: str, splits_dir: Optional[str] = None) -> dict:
  path = split_path(corpus, splits_dir)
  with open(path) as f:
    return json.load(f)


def num_folds(corpus: str, splits_dir: Optional[str] = None) -> int:
  d = load_split_file(corpus, splits_dir)
  return len(d["folds"]) if "folds" in d else 1


def get_split(corpus: str, fold: int = 0,
              splits_dir: Optional[str] = None) -> Split:
  """The speaker partition of ``corpus`` (``fold`` for k-fold corpora)."""
  d = load_split_file(corpus, splits_dir)
  if "folds" in d:
    folds = d["folds"]
    if not 0 <= fold < len(folds):
      raise ValueError(f"{corpus}: fold {fold} not in 0..{len(folds) - 1}")
    test = folds[fold]
    val = folds[(fold + 1) % len(folds)]
    train = [s for i, f in enumerate(folds)
             if i not in (fold, (fold + 1) % len(folds)) for s in f]
    return Split(frozenset(train), frozenset(val), frozenset(test))
  if fold != 0:
    raise ValueError(f"{corpus} has one fixed split; fold must be 0")
  return Split(frozenset(d["train"]), frozenset(d["val"]), frozenset(d["test"]))
