"""The log-Mel front end in numpy: what the runtime computes without
TensorFlow (the functionals head's utterance features, a speaker's
calibration statistics).

:class:`FrontEndConfig` is the device contract every model's sidecar
records. :func:`log_mel` computes :class:`nsl_ser.features.LogMel`'s
features (peak normalisation, periodic Hann window, ``fft_length``-point
power spectrum, HTK Mel bank as ``tf.signal`` builds it, natural log with
a floor) in float64 numpy: within 1e-4 log units of the TensorFlow layer
(tests/test_runtime.py), not bit for bit (another FFT).
"""
from __future__ import annotations

import dataclasses
import functools
import json
from typing import Any, Dict, List, Optional

import numpy as np

PEAK_FLOOR = 1.0 / 32768.0  # 1 LSB of 16-bit audio: silence is not amplified


@dataclasses.dataclass(frozen=True)
class FrontEndConfig:
  """Log-Mel front-end parameters (the defaults are the device contract)."""
  sample_rate: int = 16000
  clip_seconds: float = 3.0
  window_ms: float = 25.0
  hop_ms: float = 10.0
  fft_length: int = 512
  num_mel_bins: int = 40
  lower_hz: float = 20.0
  upper_hz: float = 7600.0
  log_floor: float = 1e-6
  # Scale each input (clip or window) to peak 1 before the spectrum, so
  # that recording level does not move the features against the fixed log
  # floor (RAVDESS peaks near -35 dBFS, EmoDB near -8 dBFS; see
  # experiments/results/generalization.md).
  peak_normalize: bool = True

  @property
  def clip_samples(self) -> int:
    return int(round(self.sample_rate * self.clip_seconds))

  @property
  def frame_length(self) -> int:
    return int(round(self.sample_rate * self.window_ms / 1000.0))

  @property
  def frame_step(self) -> int:
    return int(round(self.sample_rate * self.hop_ms / 1000.0))

  @property
  def num_frames(self) -> int:
    return 1 + (self.clip_samples - self.frame_length) // self.frame_step

  @property
  def feature_shape(self):
    return (self.num_frames, self.num_mel_bins)

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> "FrontEndConfig":
    """Unknown keys are ignored; a dict without ``peak_normalize`` comes
    from a model made before it existed (False)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{"peak_normalize": False,
                  **{k: v for k, v in d.items() if k in names}})

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), sort_keys=True)


def window_starts(n: int, window: int, hop: int) -> List[int]:
  """Window starts covering n samples; the last window ends at n."""
  if n <= window:
    return [0]
  starts = list(range(0, n - window + 1, hop))
  if starts[-1] + window < n:
    starts.append(n - window)
  return starts


def fix_length(waveform: np.ndarray, length: int) -> np.ndarray:
  """Centre-crops or evenly zero-pads the last axis to ``length`` samples
  (:func:`nsl_ser.features.fix_length`)."""
  n = waveform.shape[-1]
  start = max((n - length) // 2, 0)
  out = waveform[..., start:start + length]
  missing = length - out.shape[-1]
  pad = [(0, 0)] * (out.ndim - 1) + [(missing // 2, missing - missing // 2)]
  return np.pad(out, pad) if missing else out


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
  return 1127.0 * np.log1p(f / 700.0)


@functools.lru_cache(maxsize=8)
def mel_matrix(config: FrontEndConfig) -> np.ndarray:
  """[fft_length // 2 + 1, num_mel_bins] HTK-Mel weights, as
  ``tf.signal.linear_to_mel_weight_matrix`` builds them (float32 math)."""
  f32 = np.float32
  bins = config.fft_length // 2 + 1
  linear = np.linspace(0.0, config.sample_rate / 2.0, bins, dtype=f32)[1:]
  spec_mel = _hz_to_mel(linear)[:, None].astype(f32)
  edges = np.linspace(_hz_to_mel(f32(config.lower_hz)),
                      _hz_to_mel(f32(config.upper_hz)),
                      config.num_mel_bins + 2, dtype=f32)
  lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
  lower_slopes = (spec_mel - lower) / (centre - lower)
  upper_slopes = (upper - spec_mel) / (upper - centre)
  w = np.maximum(f32(0), np.minimum(lower_slopes, upper_slopes)).astype(f32)
  return np.pad(w, [(1, 0), (0, 0)])


@functools.lru_cache(maxsize=8)
def hann_window(length: int) -> np.ndarray:
  """The periodic Hann window of ``tf.signal.hann_window``."""
  n = np.arange(length)
  return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)


def frames(waveform: np.ndarray, config: FrontEndConfig) -> np.ndarray:
  """[frames, frame_length] of a 1-D waveform (no padding: a waveform
  shorter than one frame has none)."""
  length, step = config.frame_length, config.frame_step
  if len(waveform) < length:
    return np.zeros((0, length), waveform.dtype)
  return np.lib.stride_tricks.sliding_window_view(waveform, length)[::step]


def mel_power(frames_: np.ndarray, config: FrontEndConfig) -> np.ndarray:
  """Mel power [frames, mel_bins] of (already gain-scaled) frames."""
  spec = np.fft.rfft(frames_ * hann_window(config.frame_length),
                     config.fft_length)
  power = spec.real ** 2 + spec.imag ** 2
  return power @ mel_matrix(config).astype(np.float64)


def log_mel(waveform: np.ndarray,
            config: FrontEndConfig = FrontEndConfig(),
            peak: Optional[float] = None) -> np.ndarray:
  """[frames, mel_bins] float32 log-Mel of a 1-D waveform of any length
  (:class:`nsl_ser.features.LogMel` on it, up to float rounding).
  ``peak``: normalise by this peak instead of the waveform's own (a piece
  of a longer recording, normalised as the whole of it)."""
  x = np.asarray(waveform, np.float64)
  if config.peak_normalize and len(x):
    if peak is None:
      peak = float(np.max(np.abs(x)))
    x = x / max(peak, PEAK_FLOOR)
  mel = mel_power(frames(x, config), config)
  return np.log(mel + config.log_floor).astype(np.float32)


def clip_log_mel(waveform: np.ndarray,
                 config: FrontEndConfig = FrontEndConfig()) -> np.ndarray:
  """One fixed-length clip's features (:func:`fix_length`, then
  :func:`log_mel`): the feature-input models' device contract."""
  return log_mel(fix_length(np.asarray(waveform, np.float32),
                            config.clip_samples), config)
