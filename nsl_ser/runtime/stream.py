"""Live audio: the staged phone model fed hop by hop as samples arrive.

:class:`LiveClassifier` keeps one :class:`nsl_ser.runtime.litert.PhoneStream`
per open window (windows of the model's ``clip_samples``, a new one every
``hop`` samples, so ``ceil(window / hop)`` are open at once): each frame's
Mel power is computed when its last sample arrives, and when a window's
last sample arrives only ``log_mel`` and the stages remain
(:func:`nsl_ser.runtime.predictor.classify_streamed`). The features are
the buffered front end's bit for bit. Each window is checked by the VAD on
its own audio, fused with the functionals head of its own audio, and, with
``running=True``, the speaker calibration is re-estimated from every speech
window so far (shrunk toward the reference while it is short).
"""
from __future__ import annotations

import dataclasses
import time
from typing import List, Optional

import numpy as np

from nsl_ser import normalization
from nsl_ser.front_end import log_mel
from nsl_ser.runtime import litert, predictor


@dataclasses.dataclass
class LiveWindow:
  """One classified window of the stream (seconds from the stream's start)."""
  start: float
  end: float
  emotion: str
  confidence: float
  exit: str
  latency_ms: float  # from the window's last sample to the answer
  probs: List[float]


class LiveClassifier:
  """``push(samples)`` -> the windows that ended in them."""

  def __init__(self, p: "predictor.TFLitePredictor", hop_seconds: float = 1.5,
               tau: float = 0.8, policy: str = "max_prob",
               min_speech: float = predictor.vad.MIN_SPEECH_SECONDS,
               use_vad: bool = True, running: bool = False):
    if not p.staged or not litert.has_stream(p.model):
      raise litert.ModelError(p.folder.model_path, "live audio needs a staged "
                              "phone model with frame_power and log_mel "
                              "signatures; export it again")
    self.p, self.tau, self.policy = p, tau, policy
    self.min_speech, self.use_vad, self.running = min_speech, use_vad, running
    fe = p.front_end
    self.sr, self.window = fe.sample_rate, fe.clip_samples
    self.hop = max(1, int(round(hop_seconds * self.sr)))
    self._audio = np.zeros(0, np.float32)  # the last window's samples
    self._open: List[tuple] = []  # (start sample, PhoneStream)
    self._next_start = 0
    self.samples = 0
    self._covered = 0  # samples up to the last classified window's end
    self._bands = normalization.BandStats.empty(fe.num_mel_bins)
    self._functionals: Optional[normalization.BandStats] = None
    self._warm_up()

  def _warm_up(self) -> None:
    """One window of quiet noise through every step before the first
    sample (the interpreter's first invocations, the front end's caches),
    as an app does at start-up, so that the first window is as fast as the
    others. Leaves no state behind."""
    p = self.p
    z = (np.random.default_rng(0).standard_normal(self.window) * 1e-3
         ).astype(np.float32)
    st = p.stream()
    st.push(z[:-p.front_end.frame_step])
    predictor.file_speech_spans(z, self.sr, self.min_speech)
    p.begin_file(z)
    p.head_probs = p.head_at(0.5 * self.window / self.sr)
    predictor.classify_streamed(p, st, z[-p.front_end.frame_step:], 2.0,
                                self.policy)
    p.head_probs = None

  def _open_windows(self, upto: int) -> None:
    while self._next_start < upto:
      self._open.append((self._next_start, self.p.stream()))
      self._next_start += self.hop

  def push(self, samples: np.ndarray) -> List[LiveWindow]:
    """Feeds samples (float in [-1, 1], the model's rate); returns the
    windows whose last sample was among them, in order."""
    x = np.asarray(samples, np.float32).ravel()
    out: List[LiveWindow] = []
    pos = 0
    while pos < x.size:
      self._open_windows(self.samples + 1)
      # up to the next window end or window start, whichever comes first
      ends = [s + self.window for s, _ in self._open]
      stop = min(ends + [self._next_start]) - self.samples
      chunk = x[pos:pos + max(1, stop)]
      t_arrive = time.perf_counter()
      done = []
      for s, st in self._open:
        if self.samples + chunk.size >= s + self.window:
          done.append((s, st))
        else:
          st.push(chunk)
      self._audio = np.concatenate([self._audio, chunk])[-self.window:]
      self.samples += chunk.size
      pos += chunk.size
      for s, st in done:
        self._open.remove((s, st))
        out.append(self._finish(s, st, chunk, t_arrive))
    return out

  @property
  def speech_seconds(self) -> float:
    """Seconds of speech the running calibration rests on."""
    return float(self._bands.count) * self.p.front_end.hop_ms / 1000.0

  def _learn(self, feats: np.ndarray) -> None:
    """The running calibration: this speech window's frames ``feats`` (and
    the head's functionals of them) added to the speaker's statistics, which
    then calibrate the model (shrunk toward its reference while they are
    few)."""
    from nsl_ser import functionals
    p = self.p
    self._bands = self._bands.add_clip(feats)
    if p.head is not None:
      f = functionals.of_utterances(feats, p.head.hop_s)[1]
      self._functionals = (self._functionals or normalization.BandStats.empty(
          f.shape[1])).update(f)
    if self._bands.count:
      p.set_speaker(normalization.SpeakerStats(
          self._bands.count, self._bands.mean, self._bands.m2,
          self._functionals))

  def flush(self) -> List[LiveWindow]:
    """At the end of the stream: the audio after the last classified
    window (a stream shorter than one window included), as ``predict``
    classifies a short clip (centred, zero-padded)."""
    if self.samples <= self._covered:
      return []
    t0 = time.perf_counter()
    tail = self._audio[-min(self.samples - self._covered + (
        self.window - self.hop if self._covered else 0), self.window):]
    if tail.size < self.p.front_end.frame_length:
      return []
    w = predictor.predict_waveform(self.p, tail, self.tau, self.policy,
                                   hop_seconds=self.window / self.sr,
                                   min_speech=self.min_speech,
                                   use_vad=self.use_vad)[0]
    self._covered = self.samples
    return [LiveWindow((self.samples - tail.size) / self.sr,
                       self.samples / self.sr, w.emotion, w.confidence, w.exit,
                       (time.perf_counter() - t0) * 1e3, w.probs)]

  def _finish(self, start: int, st, last: np.ndarray, t0: float) -> LiveWindow:
    p, audio = self.p, self._audio
    self._covered = start + self.window
    begin, end = start / self.sr, (start + self.window) / self.sr
    if self.use_vad:
      spans = predictor.file_speech_spans(audio, self.sr, self.min_speech)
      if not predictor.has_speech(spans, 0.0, self.window / self.sr,
                                  self.min_speech):
        return LiveWindow(begin, end, predictor.NO_SPEECH, 1.0,
                          predictor.NO_SPEECH_EXIT,
                          (time.perf_counter() - t0) * 1e3, [])
    feats = log_mel(audio, p.front_end)  # the window is one utterance
    if self.running:
      self._learn(feats)
    p.begin_features(feats)
    p.head_probs = p.head_at(0.5 * self.window / self.sr)
    probs, name, _ = predictor.classify_streamed(p, st, last, self.tau,
                                                 self.policy)
    i = int(np.argmax(probs))
    return LiveWindow(begin, end, p.labels[i], float(probs[i]), name,
                      (time.perf_counter() - t0) * 1e3,
                      [float(v) for v in probs])
