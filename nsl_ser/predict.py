"""Emotion prediction on audio files with early exits.

Clips up to the model's window are classified once (fixed to the window as
in training). Longer files are cut into overlapping windows (``hop_seconds``
apart, the last one flush with the end) and reported as a timeline; the
file's emotion is the mean of the windows' probabilities. Each window runs
the exits in order and stops at the first whose confidence reaches ``tau``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser import audio, corpora, early_exit
from nsl_ser.features import FrontEndConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_MODEL = os.path.join(REPO_ROOT, "tflite_models", "default",
                             "model_int8.tflite")


@dataclasses.dataclass
class Window:
  start: float
  end: float
  emotion: str
  confidence: float
  exit: str
  ms: float
  probs: List[float]


@dataclasses.dataclass
class FileResult:
  path: str
  emotion: str
  confidence: float
  exit: str
  ms: float
  windows: List[Window]


class Predictor:
  """Runs exits of a model on one window of raw audio."""
  labels: List[str]
  exits: List[str]
  front_end: FrontEndConfig

  def run_exit(self, name: str, window: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def start(self, window: np.ndarray) -> None:
    """Called once per window before its exits run (caches shared work)."""


class TFLitePredictor(Predictor):
  """A phone model (audio input, one signature per exit) run with LiteRT."""

  def __init__(self, path: str):
    from nsl_ser import litert
    self.model = litert.Model.from_file(path)
    side_path = litert.find_sidecar(path)
    side = json.load(open(side_path)) if side_path else {}
    labels_txt = os.path.join(os.path.dirname(path), "labels.txt")
    if side.get("labels"):
      self.labels = list(side["labels"])
    elif os.path.exists(labels_txt):
      self.labels = open(labels_txt).read().split()
    else:
      raise litert.ModelError(path, "no labels (model.json or labels.txt)")
    self.front_end = FrontEndConfig.from_dict(side.get("front_end", {}))
    self.exits = sorted(self.model.signatures,
                        key=lambda s: int(s.split("_")[-1]) if s[-1].isdigit() else 0)
    self._input = self.model.inputs(self.exits[0])[0].name

  def run_exit(self, name: str, window: np.ndarray) -> np.ndarray:
    out = self.model.run(name, **{self._input: window[None].astype(np.float32)})
    return np.asarray(out[name] if name in out else next(iter(out.values())))[0]


class KerasPredictor(Predictor):
  """A Keras model on features (with or without exits)."""

  def __init__(self, path: str, labels: Sequence[str],
               front_end: FrontEndConfig = FrontEndConfig()):
    from nsl_ser import models
    self.model = models.load_model(path)
    self.labels = list(labels)
    self.front_end = front_end
    self.exits = models.exit_names(self.model) or list(self.model.output_names)
    self._cache: Dict[str, np.ndarray] = {}

  def start(self, window: np.ndarray) -> None:
    from nsl_ser.features import log_mel_numpy
    outs = self.model(log_mel_numpy(window, self.front_end)[None], training=False)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    self._cache = {n: np.asarray(o)[0] for n, o in zip(self.model.output_names, outs)}

  def run_exit(self, name: str, window: np.ndarray) -> np.ndarray:
    return self._cache[name]


def load_predictor(path: str, labels: Optional[Sequence[str]] = None) -> Predictor:
  if path.endswith(".tflite"):
    return TFLitePredictor(path)
  if labels is None:
    labels_txt = os.path.join(os.path.dirname(path), "labels.txt")
    if not os.path.exists(labels_txt):
      raise FileNotFoundError(f"{path}: no labels.txt beside the Keras model")
    labels = open(labels_txt).read().split()
  return KerasPredictor(path, labels)


def window_starts(n: int, window: int, hop: int) -> List[int]:
  """Window starts covering n samples; the last window ends at n."""
  if n <= window:
    return [0]
  starts = list(range(0, n - window + 1, hop))
  if starts[-1] + window < n:
    starts.append(n - window)
  return starts


def classify_window(p: Predictor, window: np.ndarray, tau: float,
                    policy: str) -> Tuple[np.ndarray, str, float]:
  """Runs exits in order until one is confident enough; (probs, exit, ms)."""
  t0 = time.perf_counter()
  p.start(window)
  probs = None
  for name in p.exits:
    probs = p.run_exit(name, window)
    if early_exit.confidence(probs[None], policy)[0] >= tau:
      break
  return probs, name, (time.perf_counter() - t0) * 1e3


def predict_waveform(p: Predictor, samples: np.ndarray, tau: float = 0.8,
                     policy: str = "max_prob", hop_seconds: float = 1.5
                     ) -> List[Window]:
  fe = p.front_end
  win, hop = fe.clip_samples, int(round(hop_seconds * fe.sample_rate))
  out = []
  for s in window_starts(len(samples), win, hop):
    chunk = samples[s:s + win]
    if len(chunk) < win:  # short clip: the training policy (centre, pad)
      pad = win - len(chunk)
      chunk = np.pad(chunk, (pad // 2, pad - pad // 2))
    probs, name, ms = classify_window(p, chunk, tau, policy)
    i = int(np.argmax(probs))
    out.append(Window(s / fe.sample_rate, min(s + win, len(samples)) / fe.sample_rate,
                      p.labels[i], float(probs[i]), name, ms,
                      [float(v) for v in probs]))
  return out


def predict_file(p: Predictor, path: str, **kw) -> FileResult:
  """Raises audio.AudioError for files that are not usable audio."""
  samples = audio.load_audio(path, p.front_end.sample_rate)
  ws = predict_waveform(p, samples, **kw)
  mean = np.mean([w.probs for w in ws], axis=0)
  i = int(np.argmax(mean))
  exits = {w.exit for w in ws}
  return FileResult(path, p.labels[i], float(mean[i]),
                    ws[0].exit if len(exits) == 1 else "mixed",
                    float(sum(w.ms for w in ws)), ws)


def expand_paths(paths: Sequence[str]) -> List[str]:
  """Files as given; folders searched recursively for audio extensions."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      out.extend(corpora.find_audio_files(p))
    else:
      out.append(p)
  return out


def predict_paths(p: Predictor, paths: Sequence[str], **kw
                  ) -> Tuple[List[FileResult], List[Tuple[str, str]]]:
  """(results, skipped[(file, reason)]); bad files never stop the run."""
  results, skipped = [], []
  for path in expand_paths(paths):
    try:
      results.append(predict_file(p, path, **kw))
    except audio.AudioError as e:
      skipped.append((path, e.reason))
  return results, skipped


def segments(windows: Sequence[Window]) -> List[Dict]:
  """Merges consecutive windows with the same emotion into segments."""
  out: List[Dict] = []
  for w in windows:
    if out and out[-1]["emotion"] == w.emotion:
      out[-1]["end"] = w.end
      out[-1]["confidences"].append(w.confidence)
    else:
      out.append({"start": w.start, "end": w.end, "emotion": w.emotion,
                  "confidences": [w.confidence]})
  for s in out:
    s["confidence"] = float(np.mean(s.pop("confidences")))
  return out
