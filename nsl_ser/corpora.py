"""Corpus readers: labels and speakers from public file-naming conventions.

Each reader turns a file path into an :class:`Utterance` or raises
:class:`NameParseError`; nothing is guessed. Labels map onto one shared
emotion vocabulary, :data:`EMOTIONS`, so that corpora can be combined or
restricted to the classes two of them share.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

EMOTIONS: Tuple[str, ...] = ("neutral", "calm", "happy", "sad", "angry",
                             "fearful", "disgust", "surprised", "boredom")

AUDIO_EXTENSIONS = (".wav", ".flac", ".aiff", ".aif", ".aifc", ".ogg", ".oga",
                    ".opus", ".mp3")


class NameParseError(ValueError):
  """A file name that does not follow the corpus' naming convention."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


@dataclasses.dataclass(frozen=True)
class Utterance:
  """One labelled recording."""
  id: str
  path: str
  corpus: str
  speaker: str
  emotion: str
  gender: Optional[str] = None  # "m", "f" or None when the name does not say
  extra: Tuple[Tuple[str, str], ...] = ()


@dataclasses.dataclass(frozen=True)
class Corpus:
  """A corpus: its name, folder under a data root, and file-name parser."""
  name: str
  emotions: Tuple[str, ...]  # in EMOTIONS order
  parse: Callable[[str], Utterance]
  subdir: str
  description: str = ""

  def label_index(self, emotion: str) -> int:
    return self.emotions.index(emotion)


def _stem(path: str) -> str:
  return os.path.splitext(os.path.basename(path))[0]


def _ordered(emotions: Iterable[str]) -> Tuple[str, ...]:
  s = set(emotions)
  return tuple(e for e in EMOTIONS if e in s)


# ----------------------------------------------------------------- RAVDESS
_RAVDESS_EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad",
                     "05": "angry", "06": "fearful", "07": "disgust",
                     "08": "surprised"}
_RAVDESS_RE = re.compile(
    r"^(?P<modality>0[123])-(?P<channel>0[12])-(?P<emotion>0[1-8])-"
    r"(?P<intensity>0[12])-(?P<statement>0[12])-(?P<repetition>0[12])-"
    r"(?P<actor>\d{2})$")


def parse_ravdess(path: str) -> Utterance:
  """``MM-VV-EE-II-SS-RR-AA``: modality, vocal channel (01 speech, 02 song),
  emotion, intensity, statement, repetition, actor (odd = male)."""
  m = _RAVDESS_RE.match(_stem(path))
  if not m:
    raise NameParseError(path, "name does not match RAVDESS "
                         "'MM-VV-EE-II-SS-RR-AA' (e.g. 03-01-05-01-02-01-12)")
  actor = int(m["actor"])
  if not 1 <= actor <= 24:
    raise NameParseError(path, f"RAVDESS actor {m['actor']} not in 01..24")
  if m["channel"] == "02" and m["emotion"] in ("07", "08"):
    raise NameParseError(path, "RAVDESS song has no disgust/surprised takes")
  if m["emotion"] == "01" and m["intensity"] == "02":
    raise NameParseError(path, "RAVDESS neutral has no strong intensity")
  return Utterance(
      id="ravdess-" + _stem(path), path=path, corpus="ravdess",
      speaker=m["actor"], emotion=_RAVDESS_EMOTIONS[m["emotion"]],
      gender="m" if actor % 2 else "f",
      extra=(("vocal_channel", "speech" if m["channel"] == "01" else "song"),
             ("intensity", "normal" if m["intensity"] == "01" else "strong"),
             ("statement", m["statement"]), ("repetition", m["repetition"])))


# ------------------------------------------------------------------ EmoDB
_EMODB_EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fearful",
                   "F": "happy", "T": "sad", "N": "neutral"}
EMODB_SPEAKERS = {"03": ("m", 31), "08": ("f", 34), "09": ("f", 21),
                  "10": ("m", 32), "11": ("m", 26), "12": ("m", 30),
                  "13": ("f", 32), "14": ("f", 35), "15": ("m", 25),
                  "16": ("f", 31)}
_EMODB_RE = re.compile(r"^(?P<speaker>\d{2})(?P<text>[ab]\d{2})"
                       r"(?P<emotion>[WLEAFTN])(?P<version>[a-z])$")


def parse_emodb(path: str) -> Utterance:
  """``SSTTTEV``: speaker, text code, German emotion letter, version."""
  m = _EMODB_RE.match(_stem(path))
  if not m:
    raise NameParseError(path, "name does not match EmoDB 'SSTTTEV' "
                         "(e.g. 03a01Wa)")
  if m["speaker"] not in EMODB_SPEAKERS:
    raise NameParseError(path, f"EmoDB speaker {m['speaker']} unknown")
  return Utterance(
      id="emodb-" + _stem(path), path=path, corpus="emodb",
      speaker=m["speaker"], emotion=_EMODB_EMOTIONS[m["emotion"]],
      gender=EMODB_SPEAKERS[m["speaker"]][0],
      extra=(("text", m["text"]), ("version", m["version"])))


# ------------------------------------------------------------------- nEMO
_NEMO_EMOTIONS = {"anger": "angry", "fear": "fearful", "happiness": "happy",
                  "sadness": "sad", "surprised": "surprised",
                  "neutral": "neutral"}
# From the corpus' data.tsv (its gender column), used when data.tsv is absent.
NEMO_SPEAKERS = {"EB0": "f", "IC0": "f", "KD0": "f", "MK0": "f", "KS0": "m",
                 "MP0": "m", "SM0": "m", "TP0": "m", "WR0": "m"}
NEMO_METADATA = "data.tsv"
_NEMO_RE = re.compile(r"^(?P<speaker>[A-Z]{2}\d)_(?P<emotion>[a-z]+)_"
                      r"(?P<number>\d+)$")


@functools.lru_cache(maxsize=8)
def nemo_metadata(folder: str) -> Optional[Dict[str, Dict[str, str]]]:
  """``folder/data.tsv`` (the corpus' own metadata) as {file stem: row},
  speaker ids stripped of their padding; None if there is no such file."""
  path = os.path.join(folder, NEMO_METADATA)
  if not os.path.isfile(path):
    return None
  with open(path, newline="", encoding="utf-8") as f:
    rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    return {_stem(r["file_id"]): {k: (v or "").strip() for k, v in r.items()}
            for r in rows}


def _nemo_row(path: str) -> Optional[Dict[str, str]]:
  """The file's data.tsv row (data.tsv beside the file or one folder up,
  as in the corpus' ``samples/`` layout), {} when the table does not list
  it, None when there is no table."""
  here = os.path.dirname(os.path.abspath(path))
  for folder in (here, os.path.dirname(here)):
    meta = nemo_metadata(folder)
    if meta is not None:
      return meta.get(_stem(path), {})
  return None


def parse_nemo(path: str) -> Utterance:
  """``SPK_emotion_N``: speaker (EB0 ...), English emotion, sentence number.
  Where the corpus' ``data.tsv`` is found, the file must be listed with the
  same speaker and emotion, and its gender column is used."""
  m = _NEMO_RE.match(_stem(path))
  if not m or m["emotion"] not in _NEMO_EMOTIONS:
    raise NameParseError(path, "name does not match nEMO 'SPK_emotion_N' "
                         "(e.g. EB0_anger_12; emotions: "
                         f"{', '.join(_NEMO_EMOTIONS)})")
  row = _nemo_row(path)
  if row is not None:
    if not row:
      raise NameParseError(path, f"not listed in nEMO's {NEMO_METADATA}")
    if (row.get("speaker_id"), row.get("emotion")) != (m["speaker"], m["emotion"]):
      raise NameParseError(path, f"{NEMO_METADATA} says speaker "
                           f"{row.get('speaker_id')!r}, emotion "
                           f"{row.get('emotion')!r}: the name disagrees")
    gender = {"female": "f", "male": "m"}.get(row.get("gender", ""))
  else:
    gender = NEMO_SPEAKERS.get(m["speaker"])
  if gender is None and m["speaker"] not in NEMO_SPEAKERS:
    raise NameParseError(path, f"nEMO speaker {m['speaker']} unknown")
  return Utterance(
      id="nemo-" + _stem(path), path=path, corpus="nemo", speaker=m["speaker"],
      emotion=_NEMO_EMOTIONS[m["emotion"]], gender=gender,
      extra=(("sentence", m["number"]),))


# ------------------------------------------------------------------- TESS
_TESS_EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fearful",
                  "happy": "happy", "neutral": "neutral", "ps": "surprised",
                  "sad": "sad"}
_TESS_RE = re.compile(r"^(?P<speaker>OAF|YAF)_(?P<word>[A-Za-z]+)_"
                      r"(?P<emotion>[A-Za-z]+)$", re.IGNORECASE)


def parse_tess(path: str) -> Utterance:
  """``OAF_back_angry``: speaker (OAF old / YAF young female), word, emotion
  (angry, disgust, fear, happy, neutral, ps = pleasant surprise, sad)."""
  m = _TESS_RE.match(_stem(path))
  if not m or m["emotion"].lower() not in _TESS_EMOTIONS:
    raise NameParseError(path, "name does not match TESS "
                         "'{OAF|YAF}_word_emotion' (e.g. OAF_back_angry)")
  return Utterance(
      id="tess-" + _stem(path), path=path, corpus="tess",
      speaker=m["speaker"].upper(),
      emotion=_TESS_EMOTIONS[m["emotion"].lower()], gender="f",
      extra=(("word", m["word"].lower()),))


# ---------------------------------------------------------------- CREMA-D
_CREMAD_EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful",
                    "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
_CREMAD_SENTENCES = {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH",
                     "DFA", "ITS", "TSI", "WSI"}
_CREMAD_RE = re.compile(r"^(?P<actor>1\d{3})_(?P<sentence>[A-Z]{3})_"
                        r"(?P<emotion>[A-Z]{3})_(?P<level>LO|MD|HI|XX|X)$")


def parse_cremad(path: str) -> Utterance:
  """``1001_DFA_ANG_XX``: actor 1001-1091, sentence, emotion, level. Gender is
  in the corpus' VideoDemographics.csv, not the name, so it stays None."""
  m = _CREMAD_RE.match(_stem(path))
  if (not m or m["emotion"] not in _CREMAD_EMOTIONS
      or m["sentence"] not in _CREMAD_SENTENCES
      or not 1001 <= int(m["actor"]) <= 1091):
    raise NameParseError(path, "name does not match CREMA-D "
                         "'AAAA_SSS_EEE_LL' (e.g. 1001_DFA_ANG_XX)")
  return Utterance(
      id="cremad-" + _stem(path), path=path, corpus="cremad",
      speaker=m["actor"], emotion=_CREMAD_EMOTIONS[m["emotion"]],
      extra=(("sentence", m["sentence"]), ("level", m["level"])))


# ------------------------------------------------------------------ SAVEE
_SAVEE_EMOTIONS = {"a": "angry", "d": "disgust", "f": "fearful", "h": "happy",
                   "n": "neutral", "sa": "sad", "su": "surprised"}
_SAVEE_SPEAKERS = ("DC", "JE", "JK", "KL")
_SAVEE_RE = re.compile(r"^(?:(?P<speaker>DC|JE|JK|KL)_)?"
                       r"(?P<emotion>sa|su|a|d|f|h|n)(?P<number>\d{2})$")


def parse_savee(path: str) -> Utterance:
  """``DC_a01`` or ``DC/a01``: speaker (4 male), emotion prefix, number."""
  m = _SAVEE_RE.match(_stem(path))
  speaker = m["speaker"] if m else None
  if m and speaker is None:
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    speaker = parent if parent in _SAVEE_SPEAKERS else None
  if not m or speaker is None:
    raise NameParseError(path, "name does not match SAVEE 'SS_eNN' or "
                         "'SS/eNN' (e.g. DC_a01, JE/sa12)")
  stem = f"{speaker}_{m['emotion']}{m['number']}"
  return Utterance(
      id="savee-" + stem, path=path, corpus="savee", speaker=speaker,
      emotion=_SAVEE_EMOTIONS[m["emotion"]], gender="m",
      extra=(("number", m["number"]),))


CORPORA: Dict[str, Corpus] = {
    c.name: c for c in (
        Corpus("ravdess", _ordered(_RAVDESS_EMOTIONS.values()), parse_ravdess,
               "ravdess", "RAVDESS speech + song, 24 actors, 8 emotions"),
        Corpus("emodb", _ordered(_EMODB_EMOTIONS.values()), parse_emodb,
               "emodb", "Berlin EmoDB, 10 speakers, 7 emotions"),
        Corpus("nemo", _ordered(_NEMO_EMOTIONS.values()), parse_nemo, "nemo",
               "nEMO (Polish), 9 actors, 6 emotions, Ogg Opus"),
        Corpus("tess", _ordered(_TESS_EMOTIONS.values()), parse_tess, "tess",
               "Toronto emotional speech set, 2 speakers, 7 emotions"),
        Corpus("cremad", _ordered(_CREMAD_EMOTIONS.values()), parse_cremad,
               "cremad", "CREMA-D, 91 actors, 6 emotions"),
        Corpus("savee", _ordered(_SAVEE_EMOTIONS.values()), parse_savee,
               "savee", "SAVEE, 4 male speakers, 7 emotions"),
    )
}


def get_corpus(name: str) -> Corpus:
  try:
    return CORPORA[name.lower()]
  except KeyError:
    raise ValueError(f"unknown corpus {name!r}; known: "
                     f"{', '.join(sorted(CORPORA))}") from None


def shared_emotions(*names: str) -> Tuple[str, ...]:
  """Emotions every named corpus has, in EMOTIONS order."""
  common = set(EMOTIONS)
  for n in names:
    common &= set(get_corpus(n).emotions)
  return _ordered(common)


def corpus_root(corpus: Corpus, data_dir: str) -> str:
  """``data_dir/<subdir>`` if it exists (a data root), else ``data_dir``."""
  candidate = os.path.join(data_dir, corpus.subdir)
  return candidate if os.path.isdir(candidate) else data_dir


def find_audio_files(root: str) -> List[str]:
  """All files below ``root`` with an audio extension, sorted."""
  if not os.path.isdir(root):
    raise FileNotFoundError(f"{root}: corpus folder not found")
  out = []
  for d, _, files in os.walk(root):
    for f in files:
      if f.lower().endswith(AUDIO_EXTENSIONS):
        out.append(os.path.join(d, f))
  return sorted(out)


def scan(corpus: Corpus, data_dir: str,
         emotions: Optional[Sequence[str]] = None
         ) -> Tuple[List[Utterance], List[Tuple[str, str]]]:
  """Parses every audio file name under the corpus root.

  Returns (utterances, skipped) where skipped holds (path, reason) for names
  that do not parse, duplicate ids, and (if ``emotions`` is given) labels
  outside that set.
  """
  utts: List[Utterance] = []
  skipped: List[Tuple[str, str]] = []
  seen: Dict[str, str] = {}
  for path in find_audio_files(corpus_root(corpus, data_dir)):
    try:
      u = corpus.parse(path)
    except NameParseError as e:
      skipped.append((path, e.reason))
      continue
    if u.id in seen:
      skipped.append((path, f"duplicate id {u.id} (also {seen[u.id]})"))
      continue
    if emotions is not None and u.emotion not in emotions:
      skipped.append((path, f"emotion {u.emotion} not in selected classes"))
      continue
    seen[u.id] = path
    utts.append(u)
  return utts, skipped
