"""Several prepared corpora pooled on one label set.

Cross-corpus experiments and the default model train on more than one
corpus. Labels are the emotions every pooled corpus has (in
:data:`nsl_ser.corpora.EMOTIONS` order; RAVDESS + EmoDB share six:
neutral, happy, sad, angry, fearful, disgust); utterances of other classes
are left out. Speakers become ``corpus:speaker`` so that RAVDESS actor 03
and EmoDB speaker 03 stay two people.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from nsl_ser import augment, corpora, data, records
from nsl_ser.features import FrontEndConfig


def shared_labels(label_lists: Iterable[Sequence[str]]) -> List[str]:
  """The labels every list has, in :data:`corpora.EMOTIONS` order."""
  sets = [set(l) for l in label_lists]
  if not sets:
    raise ValueError("no corpora to pool")
  common = set.intersection(*sets)
  out = [e for e in corpora.EMOTIONS if e in common]
  out += sorted(common - set(out))  # labels outside the shared vocabulary
  if len(out) < 2:
    raise ValueError(f"the corpora share fewer than two labels: {sorted(common)}")
  return out


def speaker_key(corpus: str, speaker: str) -> str:
  return f"{corpus}:{speaker}"


def keys(corpus: str, speakers: Iterable[str]) -> List[str]:
  return [speaker_key(corpus, s) for s in speakers]


@dataclasses.dataclass
class Pool:
  """Whole utterances and their centre crops from several corpora, on
  ``labels``; ``corpus[i]`` names utterance i's corpus (both in id order)."""
  labels: List[str]
  utts: augment.Utterances
  arrays: data.Arrays
  corpus: np.ndarray

  def speakers_of(self, corpus: str) -> List[str]:
    return sorted(set(self.utts.speakers[self.corpus == corpus]))


def load_pool(records_dirs: Mapping[str, str], labels: Sequence[str],
              speeds: Sequence[float] = (1.0,),
              front_end: FrontEndConfig = FrontEndConfig(),
              keep: Optional[Callable[[str], bool]] = None) -> Pool:
  """``records_dirs``: {corpus name: prepared TFRecords folder};
  ``keep``: only the utterances whose id it keeps (a quick subset)."""
  utts, arrays, corpus = [], [], []
  for name, rec in records_dirs.items():
    files = records.list_shards(rec)
    u = augment.load_utterances(files, labels, speeds, front_end, keep=keep)
    a = data.load_arrays(files, labels, front_end=front_end)
    if keep is not None:
      a = a.subset(np.isin(a.ids, u.ids))
    u.speakers = np.array(keys(name, u.speakers))
    a.speakers = np.array(keys(name, a.speakers))
    order = np.argsort(a.ids)
    a = a.subset(order)
    if not np.array_equal(a.ids, u.ids):
      raise ValueError(f"{rec}: utterances and centre crops disagree")
    utts.append(u)
    arrays.append(a)
    corpus.append(np.full(len(u), name))
  u = augment.Utterances([v for x in utts for v in x.variants],
                         np.concatenate([x.labels for x in utts]),
                         np.concatenate([x.ids for x in utts]),
                         np.concatenate([x.speakers for x in utts]),
                         tuple(speeds))
  a = data.Arrays(*(np.concatenate([getattr(x, f) for x in arrays])
                    for f in ("features", "labels", "ids", "speakers")))
  if len(set(u.ids)) != len(u.ids):
    raise ValueError("utterance ids collide across corpora")
  return Pool(list(labels), u, a, np.concatenate(corpus))


def counts(pool: Pool) -> Dict[str, Dict[str, int]]:
  """{corpus: {label: utterances}}."""
  out: Dict[str, Dict[str, int]] = {}
  for c in np.unique(pool.corpus):
    y = pool.utts.labels[pool.corpus == c]
    out[str(c)] = {l: int((y == i).sum()) for i, l in enumerate(pool.labels)}
  return out
