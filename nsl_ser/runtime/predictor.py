"""Emotion prediction on audio files with early exits.

Clips up to the model's window are classified once (fixed to the window as
in training). Longer files are cut into overlapping windows (``hop_seconds``
apart, the last one flush with the end) and reported as a timeline; the
file's emotion is the mean of the windows' probabilities. Files longer than
:data:`LONG_FILE_SECONDS` are read in blocks, twice (:func:`predict_file`),
so that memory does not grow with their length. Each window runs
the exits in order and stops at the first whose confidence reaches ``tau``.

Voice activity detection (nsl_ser.runtime.vad, energy based) finds the file's speech
spans first. A window holding less than min(``min_speech``, half the window)
seconds of speech is not classified: it is reported as ``NO_SPEECH`` with
confidence 1.0 (a VAD decision, not a probability; a number keeps CSV and
strict JSON valid, where NaN is not), exit "-", 0 ms and no probabilities.
The file's emotion averages the speech windows only; a file without any is
``NO_SPEECH``. Clips up to one window with speech are classified as without
VAD (for them ``min_speech`` is capped at half the clip's length).

A model with a functionals head (sidecar ``functionals_head``) fuses every
exit of a window with the head's probabilities for the utterance the
window's centre falls in: the whole file up to
:data:`nsl_ser.functionals.UTTERANCE_S` seconds, else equal chunks
(:func:`nsl_ser.functionals.utterance_bounds`), as the head was fitted.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from nsl_ser import audio, corpora, early_exit, functionals, normalization
from nsl_ser.runtime import confidence, vad
from nsl_ser.front_end import FrontEndConfig, log_mel, window_starts

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _default_model() -> str:
  """The committed default model: the checkout's, else the installed copy
  (setup.py data_files, <prefix>/share/nsl-ser/)."""
  rel = os.path.join("tflite_models", "default", "model_int8.tflite")
  for root in (REPO_ROOT, os.path.join(sys.prefix, "share", "nsl-ser")):
    if os.path.exists(os.path.join(root, rel)):
      return os.path.join(root, rel)
  return os.path.join(REPO_ROOT, rel)


DEFAULT_MODEL = _default_model()
NO_SPEECH = "no_speech"
NO_SPEECH_EXIT = "-"


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
  """Runs exits of a model on one window of raw audio. ``temperature``
  ({exit: T}, from the sidecar) rescales each exit's probabilities
  (:func:`nsl_ser.runtime.confidence.apply_temperature`) so that ``tau`` compares
  calibrated confidences."""
  labels: List[str]
  exits: List[str]
  front_end: FrontEndConfig
  temperature: Dict[str, float] = {}

  def run_exit(self, name: str, window: np.ndarray) -> np.ndarray:
    raise NotImplementedError

  def start(self, window: np.ndarray) -> None:
    """Called once per window before its exits run (caches shared work)."""

  def begin_file(self, samples: np.ndarray) -> None:
    """Called once per file before its windows (the utterance head)."""

  def head_at(self, seconds: float) -> Optional[np.ndarray]:
    """The functionals head's probabilities for the utterance around
    ``seconds`` of the current file (None: no head)."""
    return None

  head_probs: Optional[np.ndarray] = None  # this window's functionals head
  head: Optional[functionals.LinearHead] = None  # the sidecar's, if any

  def utterance_probs(self, feats: np.ndarray) -> Optional[np.ndarray]:
    """The functionals head's probabilities for one utterance's log-Mel
    [frames, bins] (None: no head)."""
    return None

  def run_full(self, window: np.ndarray) -> Optional[np.ndarray]:
    """The deepest exit's probabilities in one call when the model has
    such a signature (None: run the exits in order)."""
    return None

  def finish(self, name: str, probs: np.ndarray) -> np.ndarray:
    """Exit ``name``'s probabilities fused with the head, then its
    temperature."""
    if self.head_probs is not None:
      probs = functionals.fuse(probs, self.head_probs)
    t = self.temperature.get(name)
    return probs if t is None else confidence.apply_temperature(probs, t)

  def exit_probs(self, name: str, window: np.ndarray) -> np.ndarray:
    return self.finish(name, self.run_exit(name, window))


class TFLitePredictor(Predictor):
  """A phone model run with LiteRT. A staged model (``front_end``,
  ``stage_1`` ... ``stage_K``) computes the front end once per window and
  stage k only when exit k-1 was not confident; ``speaker`` statistics then
  calibrate the features between the two (:func:`normalization.affine`
  onto the sidecar's reference). Older models have one audio-in signature
  per exit."""

  def __init__(self, folder: "model_folder.ModelFolder",
               speaker: Optional[normalization.BandStats] = None,
               prior_clips: Optional[float] = None):
    """``speaker``, ``prior_clips``: :meth:`set_speaker`."""
    from nsl_ser.runtime import litert
    side = folder.sidecar
    self.folder = folder
    self.model = folder.model
    self.labels = list(folder.labels)
    self.front_end = folder.front_end
    self.temperature = dict(folder.temperature)
    self.staged = litert.is_staged(self.model)
    self.exits = litert.exit_signatures(self.model)
    if self.staged:
      self._chain = litert.StagedRunner(self.model)
    else:
      self._input = self.model.inputs(self.exits[0])[0].name
    # the functionals head (sidecar) is fused with every exit
    self.head = (functionals.LinearHead.from_dict(side["functionals_head"])
                 if side.get("functionals_head") and self.staged else None)
    self.calibration = self.head_calibration = None
    if speaker is not None:
      self.set_speaker(speaker, prior_clips)

  def set_speaker(self, speaker: normalization.BandStats,
                  prior_clips: Optional[float] = None) -> None:
    """Calibrates to ``speaker`` from now on (its statistics shrunk toward
    the sidecar's references by ``prior_clips`` clips' worth; None:
    :data:`calibration.PRIOR_CLIPS`): the features between the front end and
    stage 1, and the head's functionals."""
    from nsl_ser.runtime import calibration, litert
    path, side = self.folder.model_path, self.folder.sidecar
    if not self.staged:
      raise litert.ModelError(path, "speaker calibration needs a staged "
                              "phone model (front_end + stage signatures); "
                              "export it again")
    ref = side.get("normalization", {}).get("reference")
    if ref is None:
      raise litert.ModelError(self.folder.sidecar_path or path, "no reference "
                              "statistics (model.json normalization."
                              "reference) to calibrate onto")
    ref = normalization.BandStats.from_dict(ref)
    speaker = calibration.shrunk(
        speaker, ref, self.head.reference if self.head is not None else None,
        calibration.PRIOR_CLIPS if prior_clips is None else prior_clips)
    self.calibration = normalization.affine(speaker, ref)
    spk_f = getattr(speaker, "functionals", None)
    if spk_f is not None and self.head is not None and (
        len(spk_f.mean) != self.head.coef.shape[1]):
      raise litert.ModelError(path, f"the speaker's statistics have "
                              f"{len(spk_f.mean)} functionals, the head "
                              f"{self.head.coef.shape[1]}")
    self.head_calibration = (normalization.affine(spk_f, self.head.reference,
                                                  functionals.FLOOR)
                             if self.head is not None and spk_f is not None
                             else None)

  def begin_file(self, samples: np.ndarray) -> None:
    self._utterances = None
    if self.head is None:
      return
    w = samples.astype(np.float32)
    if len(w) < self.front_end.frame_length:
      w = np.pad(w, (0, self.front_end.frame_length - len(w)))
    self.begin_features(log_mel(w, self.front_end))

  def begin_features(self, feats: np.ndarray) -> None:
    """:meth:`begin_file` from the file's log-Mel [frames, bins]."""
    self._utterances = None
    if self.head is None:
      return
    bounds = functionals.utterance_bounds(len(feats), self.head.hop_s)
    self._utterances = (bounds, np.stack([self.utterance_probs(feats[a:b])
                                          for a, b in bounds]))

  def utterance_probs(self, feats: np.ndarray) -> Optional[np.ndarray]:
    if self.head is None:
      return None
    f = functionals.functionals(feats, self.head.hop_s)[None]
    if self.head_calibration is not None:
      scale, shift = self.head_calibration
      f = f * scale + shift
    return self.head.probs(f)[0]

  def head_at(self, seconds: float) -> Optional[np.ndarray]:
    if getattr(self, "_utterances", None) is None:
      return None
    bounds, probs = self._utterances
    frame = seconds / self.head.hop_s
    k = next((i for i, (_, b) in enumerate(bounds) if frame < b), len(bounds) - 1)
    return probs[k]

  def start(self, window: np.ndarray) -> None:
    if self.staged:
      self.start_features(self._chain.features(window[None].astype(np.float32)))

  def stream(self):
    """A :class:`nsl_ser.runtime.litert.PhoneStream` on this model, for live audio
    (:func:`classify_streamed`)."""
    from nsl_ser.runtime import litert
    return litert.PhoneStream(self.model, self.front_end.frame_step)

  def start_features(self, x: np.ndarray) -> None:
    """Starts a window from its front-end features [1, frames, bins]
    (``start`` computes them; a :class:`nsl_ser.runtime.litert.PhoneStream` has
    them when the window's last hop arrives)."""
    if self.calibration is not None:
      scale, shift = self.calibration
      x = (x * scale + shift).astype(np.float32)
    self._x, self._done = x, {}

  def run_full(self, window: np.ndarray) -> Optional[np.ndarray]:
    """A staged model's one-call ``full`` signature (not with a speaker
    calibration, which goes between the front end and stage 1)."""
    if not self.staged or self.calibration is not None:
      return None
    return self._chain.full(window[None].astype(np.float32))[0]

  def run_exit(self, name: str, window: np.ndarray) -> np.ndarray:
    if not self.staged:
      out = self.model.run(name, **{self._input: window[None].astype(np.float32)})
      return np.asarray(out[name] if name in out else next(iter(out.values())))[0]
    k = int(name.split("_")[1])
    while len(self._done) < k:  # stage j's activations feed stage j+1
      j = len(self._done) + 1
      p, self._x = self._chain.stage(j, self._x)
      self._done[f"exit_{j}"] = p[0]
    return self._done[name]


def load_predictor(path: str,
                   speaker: Optional[normalization.BandStats] = None,
                   allow_bare: bool = False,
                   prior_clips: Optional[float] = None) -> Predictor:
  """A predictor for a phone ``.tflite`` whose folder checks out
  (:func:`nsl_ser.runtime.model_folder.load`; raises ModelFolderError
  otherwise); ``speaker``: calibrated to that speaker. Keras models need
  TensorFlow: :func:`nsl_ser.keras_predictor.load_keras_predictor`."""
  from nsl_ser.runtime import model_folder
  if not path.endswith(".tflite"):
    raise model_folder.ModelFolderError(
        path, "not a .tflite model (a .keras model needs the training "
        "extra: pip install \"nsl-ser[train]\")")
  return TFLitePredictor(model_folder.load(path, allow_bare), speaker,
                         prior_clips)


def classify_window(p: Predictor, window: np.ndarray, tau: float,
                    policy: str) -> Tuple[np.ndarray, str, float]:
  """Runs exits in order until one is confident enough; (probs, exit, ms).
  tau > 1 never stops early: the model's one-call signature, if any."""
  t0 = time.perf_counter()
  if tau > 1:
    probs = p.run_full(window)
    if probs is not None:
      name = p.exits[-1]
      return p.finish(name, probs), name, (time.perf_counter() - t0) * 1e3
  p.start(window)
  return (*_exits_until(p, window, tau, policy),
          (time.perf_counter() - t0) * 1e3)


def _exits_until(p: Predictor, window: Optional[np.ndarray], tau: float,
                 policy: str) -> Tuple[np.ndarray, str]:
  """Exit 1, 2, ... of the started window until one reaches ``tau``."""
  probs = None
  for name in p.exits:
    probs = p.exit_probs(name, window)
    if early_exit.confidence(probs[None], policy)[0] >= tau:
      break
  return probs, name


def classify_streamed(p: "TFLitePredictor", stream, last: np.ndarray,
                      tau: float, policy: str) -> Tuple[np.ndarray, str, float]:
  """:func:`classify_window` for live audio: the window's earlier samples
  already went through ``stream`` (a :class:`nsl_ser.runtime.litert.PhoneStream`)
  as they arrived; pushes its ``last`` samples, then runs the exits until
  one reaches ``tau`` (all of them for tau > 1); (probs, exit, ms from the
  push)."""
  t0 = time.perf_counter()
  stream.push(last)
  x = stream.features()
  if x is None:
    raise ValueError(f"the stream holds {stream.samples} of the window's "
                     f"{stream.clip_samples} samples")
  p.start_features(x)
  return (*_exits_until(p, None, tau, policy),
          (time.perf_counter() - t0) * 1e3)


def no_speech_window(start: float, end: float) -> Window:
  return Window(start, end, NO_SPEECH, 1.0, NO_SPEECH_EXIT, 0.0, [])


def file_speech_spans(samples: np.ndarray, sr: int,
                      min_speech: float = vad.MIN_SPEECH_SECONDS
                      ) -> List[vad.Span]:
  """VAD spans; ``min_speech`` capped at half the file (short clips)."""
  cap = min(min_speech, 0.5 * len(samples) / sr)
  return vad.speech_spans(samples, sr, vad.VADConfig(min_speech_seconds=cap))


def has_speech(spans: Sequence[vad.Span], start: float, end: float,
               min_speech: float) -> bool:
  """At least min(min_speech, half the window) seconds of speech in it."""
  need = min(min_speech, 0.5 * (end - start))
  return vad.speech_seconds_in(spans, start, end) >= need


def predict_waveform(p: Predictor, samples: np.ndarray, tau: float = 0.8,
                     policy: str = "max_prob", hop_seconds: float = 1.5,
                     min_speech: float = vad.MIN_SPEECH_SECONDS,
                     use_vad: bool = True) -> List[Window]:
  """Windows of the file, classified or (``use_vad``) marked NO_SPEECH."""
  sr = p.front_end.sample_rate
  spans = file_speech_spans(samples, sr, min_speech) if use_vad else None
  peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
  return predict_blocks(p, [samples], len(samples), peak, spans, tau, policy,
                        hop_seconds, min_speech)


@dataclasses.dataclass
class Scan:
  """What the first pass over a long file learns: its length in samples,
  its peak and its speech spans."""
  samples: int
  peak: float
  spans: Optional[List[vad.Span]]


def scan_blocks(blocks: Iterable[np.ndarray], sr: int, min_speech: float,
                use_vad: bool = True) -> Scan:
  """:class:`Scan` of a file from its blocks (:func:`nsl_ser.audio.blocks`)
  without holding them: the VAD keeps one level per 10 ms frame."""
  n, peak = 0, 0.0
  levels = vad.FrameEnergy(sr)
  for b in blocks:
    n += len(b)
    peak = max(peak, float(np.max(np.abs(b))) if len(b) else 0.0)
    if use_vad:
      levels.push(b)
  spans = None
  if use_vad:
    cap = min(min_speech, 0.5 * n / sr)
    spans = vad.spans_of_levels(levels.finish(), n, sr,
                                vad.VADConfig(min_speech_seconds=cap))
  return Scan(n, peak, spans)


def _utterances(p: Predictor, n: int) -> List[Tuple[int, int, int]]:
  """[(first sample, end sample, end frame)] of the head's utterances of a
  recording ``n`` samples long (none without a head): the utterances of
  :func:`nsl_ser.functionals.utterance_bounds` over the whole file's
  log-Mel frames (a file shorter than one frame padded to one), and the
  samples those frames span."""
  if p.head is None:
    return []
  fe = p.front_end
  frames = 1 + (max(n, fe.frame_length) - fe.frame_length) // fe.frame_step
  return [(a * fe.frame_step, (b - 1) * fe.frame_step + fe.frame_length, b)
          for a, b in functionals.utterance_bounds(frames, p.head.hop_s)]


def predict_blocks(p: Predictor, blocks: Iterable[np.ndarray], n: int,
                   peak: float, spans: Optional[List[vad.Span]],
                   tau: float = 0.8, policy: str = "max_prob",
                   hop_seconds: float = 1.5,
                   min_speech: float = vad.MIN_SPEECH_SECONDS) -> List[Window]:
  """:func:`predict_waveform` on a file that arrives in ``blocks``, ``n``
  samples in all, whose ``peak`` and VAD ``spans`` are known
  (:func:`scan_blocks`). Holds only the samples of the windows and of the
  head's utterance still open (about 15 s), so memory does not grow with
  the file; the windows equal those of the whole file in one block."""
  fe = p.front_end
  sr = fe.sample_rate
  win, hop = fe.clip_samples, int(round(hop_seconds * sr))
  starts = window_starts(n, win, hop)
  utts = _utterances(p, n)
  heads: Dict[int, np.ndarray] = {}  # utterance: the head's probabilities
  buf, buf0, got, wi = np.zeros(0, np.float32), 0, 0, 0  # buf0: buf's start
  out: List[Window] = []

  def utterance_of(seconds: float) -> int:
    frame = seconds / p.head.hop_s
    return next((i for i, u in enumerate(utts) if frame < u[2]), len(utts) - 1)

  for block in _and_end(blocks):
    if block is not None:  # (a whole file in one block is not copied)
      block = np.asarray(block, np.float32)
      buf = np.concatenate([buf, block]) if len(buf) else block
      got += len(block)
    done = block is None or got >= n
    while len(heads) < len(utts) and (done or got >= utts[len(heads)][1]):
      a, b, _ = utts[len(heads)]
      seg = buf[a - buf0:b - buf0]
      if len(seg) < fe.frame_length:
        seg = np.pad(seg, (0, fe.frame_length - len(seg)))
      heads[len(heads)] = p.utterance_probs(log_mel(seg, fe, peak))
    while wi < len(starts):
      s = starts[wi]
      start, end = s / sr, min(s + win, n) / sr
      if not done and got < s + win:
        break
      if spans is not None and not has_speech(spans, start, end, min_speech):
        out.append(no_speech_window(start, end))
        wi += 1
        continue
      k = utterance_of(0.5 * (start + end)) if utts else None
      if k is not None and k not in heads:
        break
      p.head_probs = None if k is None else heads[k]
      chunk = buf[s - buf0:s - buf0 + win]
      if len(chunk) < win:  # short clip: the training policy (centre, pad)
        pad = win - len(chunk)
        chunk = np.pad(chunk, (pad // 2, pad - pad // 2))
      probs, name, ms = classify_window(p, chunk, tau, policy)
      i = int(np.argmax(probs))
      out.append(Window(start, end, p.labels[i], float(probs[i]), name, ms,
                        [float(v) for v in probs]))
      wi += 1
    keep = min(starts[wi] if wi < len(starts) else got,
               utts[len(heads)][0] if len(heads) < len(utts) else got)
    if keep > buf0:
      buf, buf0 = buf[keep - buf0:], keep
    if block is None:
      break
  p.head_probs = None
  return out


def _and_end(blocks: Iterable[np.ndarray]):
  """The blocks, then None."""
  yield from blocks
  yield None


def summarise(p: Predictor, path: str, ws: Sequence[Window]) -> FileResult:
  """File result: mean probabilities of the speech windows."""
  speech = [w for w in ws if w.emotion != NO_SPEECH]
  ms = float(sum(w.ms for w in ws))
  if not speech:
    return FileResult(path, NO_SPEECH, 1.0, NO_SPEECH_EXIT, ms, list(ws))
  mean = np.mean([w.probs for w in speech], axis=0)
  i = int(np.argmax(mean))
  exits = {w.exit for w in speech}
  return FileResult(path, p.labels[i], float(mean[i]),
                    speech[0].exit if len(exits) == 1 else "mixed", ms, list(ws))


# Files longer than this are read in two passes of blocks (flat memory).
LONG_FILE_SECONDS = 60.0


def predict_file(p: Predictor, path: str, long_seconds: float = LONG_FILE_SECONDS,
                 **kw) -> FileResult:
  """Raises audio.AudioError for files that are not usable audio. Files
  longer than ``long_seconds`` are decoded twice, block by block
  (:func:`nsl_ser.audio.blocks`): once for their length, peak and speech
  (:func:`scan_blocks`), once for the windows (:func:`predict_blocks`).

  ``kw``: tau, policy, hop_seconds, min_speech, use_vad (predict_waveform).
  """
  sr = p.front_end.sample_rate
  if audio.duration(path) <= long_seconds:
    return summarise(p, path, predict_waveform(
        p, audio.load_audio(path, sr), **kw))
  use_vad = kw.pop("use_vad", True)
  min_speech = kw.get("min_speech", vad.MIN_SPEECH_SECONDS)
  scan = scan_blocks(audio.blocks(path, sr), sr, min_speech, use_vad)
  if scan.peak < audio.SILENCE_PEAK:
    raise audio.AudioError(path, "all-silent audio")
  return summarise(p, path, predict_blocks(
      p, audio.blocks(path, sr), scan.samples, scan.peak, scan.spans, **kw))


def expand_paths(paths: Sequence[str]) -> List[str]:
  """Files as given; folders searched recursively for audio extensions."""
  out = []
  for p in paths:
    if os.path.isdir(p):
      out.extend(corpora.find_audio_files(p))
    else:
      out.append(p)
  return out


def each_prediction(p: Predictor, files: Sequence[str], **kw
                    ) -> Iterator[Tuple[str, Optional[FileResult], Optional[str]]]:
  """(file, result, None) or (file, None, why it was skipped) per file, as
  each is done; bad files never stop the run. ``kw`` as for predict_file."""
  for path in files:
    try:
      yield path, predict_file(p, path, **kw), None
    except audio.AudioError as e:
      yield path, None, e.reason


def predict_paths(p: Predictor, paths: Sequence[str], **kw
                  ) -> Tuple[List[FileResult], List[Tuple[str, str]]]:
  """(results, skipped[(file, reason)]) of files and folders
  (:func:`each_prediction`)."""
  results, skipped = [], []
  for path, r, why in each_prediction(p, expand_paths(paths), **kw):
    if r is None:
      skipped.append((path, why))
    else:
      results.append(r)
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


ROW_HEADER = ["file", "start", "end", "emotion", "confidence", "exit", "ms"]


def table_rows(results: Sequence[FileResult]):
  """Rows under ROW_HEADER: a summary row per file (start, end empty); files
  of several windows add one row per window. Every row names its file."""
  for r in results:
    yield from file_rows(r)


def file_rows(r: FileResult):
  """:func:`table_rows` of one file."""
  yield [r.path, "", "", r.emotion, f"{r.confidence:.2f}", r.exit, f"{r.ms:.1f}"]
  if len(r.windows) > 1:
    for w in r.windows:
      yield [r.path, f"{w.start:.1f}", f"{w.end:.1f}", w.emotion,
             f"{w.confidence:.2f}", w.exit, f"{w.ms:.1f}"]


def result_record(r: FileResult) -> Dict:
  """A JSON-ready dict of a file result with its segments; every window and
  segment also names the file."""
  d = dataclasses.asdict(r)
  d = {"file": d.pop("path"), **d}  # one key for the file everywhere
  d["windows"] = [dict(w, file=r.path) for w in d["windows"]]
  d["segments"] = [dict(s, file=r.path) for s in segments(r.windows)]
  return d
