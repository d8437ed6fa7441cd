"""The shared audio front end: fixed-length waveform -> log-Mel features.

One Keras layer, :class:`LogMel`, built from ``tf.signal`` so that training,
evaluation and the exported phone models compute exactly the same thing.

Length policy (:func:`fix_length`): clips longer than the window keep their
centre ``clip_seconds``; shorter clips are zero-padded evenly on both sides.
``nsl-ser predict`` instead cuts long files into overlapping windows.
"""
from __future__ import annotations

from typing import Any, Dict, Tuple

import numpy as np

from nsl_ser.compat import keras, tf
from nsl_ser.front_end import PEAK_FLOOR, FrontEndConfig  # noqa: F401 (re-exported)


def fix_length(waveform: tf.Tensor, length: int) -> tf.Tensor:
  """Centre-crops or evenly zero-pads the last axis to ``length`` samples."""
  waveform = tf.convert_to_tensor(waveform)
  n = tf.shape(waveform)[-1]
  start = tf.maximum((n - length) // 2, 0)
  cropped = waveform[..., start:start + length]
  missing = length - tf.shape(cropped)[-1]
  left = missing // 2
  paddings = tf.concat([tf.zeros([tf.rank(cropped) - 1, 2], tf.int32),
                        [[left, missing - left]]], axis=0)
  out = tf.pad(cropped, paddings)
  return tf.ensure_shape(out, waveform.shape[:-1].concatenate([length]))


def mel_matrix(config: FrontEndConfig) -> tf.Tensor:
  """[fft_length // 2 + 1, num_mel_bins] HTK-Mel weights (no area norm)."""
  return tf.signal.linear_to_mel_weight_matrix(
      num_mel_bins=config.num_mel_bins,
      num_spectrogram_bins=config.fft_length // 2 + 1,
      sample_rate=config.sample_rate,
      lower_edge_hertz=config.lower_hz,
      upper_edge_hertz=config.upper_hz)


def mel_bin_range(config: FrontEndConfig) -> Tuple[int, int]:
  """[first, last) spectrogram bins with a non-zero Mel weight."""
  used = np.flatnonzero(mel_matrix(config).numpy().any(axis=1))
  return int(used[0]), int(used[-1]) + 1


def fold_centre(length: int) -> int:
  """The sample ``tf.signal.hann_window(length)`` is symmetric about:
  w[c + m] = w[c - m] (periodic for even lengths, w[0] = 0, and symmetric
  for odd ones, as TensorFlow builds it)."""
  return (length - length % 2) // 2


def dft_basis(config: FrontEndConfig) -> Tuple[np.ndarray, np.ndarray]:
  """The real DFT of a Hann-windowed frame as two [length - c, bins]
  matrices (c = :func:`fold_centre`), for the bins of
  :func:`mel_bin_range` only, using the window's symmetry.

  With m = n - c, the frame's ``fft_length``-point DFT is
  exp(-i theta k c) * sum_m w x (cos - i sin)(theta m k); pairing m with -m
  gives Re = (a + b) @ cos_basis and Im = (a - b) @ sin_basis, where
  ``a = frame[c:]`` and ``b`` the samples c, c - 1, ... mirrored onto it
  (:func:`fold_frames`); the phase factor drops out of the power. Half the
  multiply-accumulates and weights of the plain [L, 2 bins] basis. The
  centre sample is in both a and b: its cos row is halved (its sin row is
  0)."""
  lo, hi = mel_bin_range(config)
  length, c = config.frame_length, fold_centre(config.frame_length)
  window = tf.signal.hann_window(length).numpy()[c:, None].astype(np.float64)
  angle = (2 * np.pi * np.arange(length - c)[:, None] * np.arange(lo, hi)[None, :]
           / config.fft_length)
  cos, sin = window * np.cos(angle), -window * np.sin(angle)
  cos[0] *= 0.5
  return cos.astype(np.float32), sin.astype(np.float32)


def fold_frames(frames: tf.Tensor, length: int) -> Tuple[tf.Tensor, tf.Tensor]:
  """(a + b, a - b) of :func:`dft_basis` for frames [..., length]."""
  c = fold_centre(length)
  a = frames[..., c:]
  b = tf.reverse(frames[..., 2 * c + 1 - length:c + 1], axis=[-1])
  return a + b, a - b


DFT_MODES = ("fft", "matmul")


def peak_abs(waveform: tf.Tensor) -> tf.Tensor:
  """Each row's peak |x| [batch, 1] of a [batch, samples] waveform."""
  return tf.reduce_max(tf.abs(waveform), axis=-1, keepdims=True)


def peak_normalize(waveform: tf.Tensor) -> tf.Tensor:
  """[batch, samples] scaled so that each row's peak |x| is 1 (rows whose
  peak is below :data:`PEAK_FLOOR` are scaled by 1 / PEAK_FLOOR)."""
  return waveform / tf.maximum(peak_abs(waveform), PEAK_FLOOR)


class LogMel(keras.layers.Layer):
  """[batch, samples] float waveform -> [batch, frames, mel_bins] log-Mel.

  Peak normalisation (``peak_normalize``), Hann window of ``window_ms``,
  hop ``hop_ms``, power spectrum of a ``fft_length``-point FFT, HTK Mel
  filter bank, natural log with a floor.

  ``dft="fft"`` uses ``tf.signal.stft`` (training, host features);
  ``dft="matmul"`` computes the same spectrum as two matrix products with
  :func:`dft_basis` (the frames folded on the window's symmetry; only the
  bins the Mel bank uses). In TFLite those are FULLY_CONNECTED ops, which
  XNNPACK runs several times faster than RFFT2D and which the int8 phone
  export can weight-quantise (see ``export.quantize_front_end``).

  :meth:`framewise` (the phone models' front end, with either DFT; what
  ``call`` runs for ``matmul``) takes the power of the raw frames and
  applies the peak normalisation to the Mel power (:meth:`log_of_power`),
  as the streaming front end must (:meth:`mel_power` frame by frame as the
  audio arrives): the same features up to float rounding, and the
  streamed features equal the whole window's bit for bit.
  """

  def __init__(self, config: FrontEndConfig = FrontEndConfig(),
               dft: str = "fft", **kwargs):
    super().__init__(**kwargs)
    if dft not in DFT_MODES:
      raise ValueError(f"dft must be one of {DFT_MODES}, got {dft!r}")
    self.config, self.dft = config, dft
    self._mel = mel_matrix(config)
    if dft == "matmul":
      lo, hi = mel_bin_range(config)
      self._cos, self._sin = (tf.constant(b) for b in dft_basis(config))
      self._mel = self._mel[lo:hi]

  def _frame_power(self, frames: tf.Tensor) -> tf.Tensor:
    """|X|^2 of frames [..., frame_length] (Hann window inside)."""
    c = self.config
    if self.dft == "fft":
      window = tf.signal.hann_window(c.frame_length)
      return tf.square(tf.abs(tf.signal.rfft(frames * window, [c.fft_length])))
    even, odd = fold_frames(frames, c.frame_length)
    return (tf.square(tf.tensordot(even, self._cos, axes=1))
            + tf.square(tf.tensordot(odd, self._sin, axes=1)))

  def mel_power(self, frames: tf.Tensor) -> tf.Tensor:
    """Mel power [..., mel_bins] of raw frames [..., frame_length], before
    the peak normalisation and the log (:meth:`log_of_power`): the
    streaming front end's per-frame step, run as each frame's audio
    arrives."""
    power = self._frame_power(frames)
    return tf.tensordot(power, self._mel, axes=1)

  def log_of_power(self, mel_power: tf.Tensor, peak: tf.Tensor) -> tf.Tensor:
    """Features [batch, frames, mel_bins] of a window from its frames' Mel
    power [batch, frames, mel_bins] (:meth:`mel_power`) and its peak |x|
    [batch, 1]: :meth:`call`'s peak normalisation (x / g) applied to the
    power instead (/ g^2), then the log. Equal to :meth:`call` on the
    window up to float rounding."""
    c = self.config
    if c.peak_normalize:
      gain = tf.maximum(peak, PEAK_FLOOR)
      mel_power = mel_power / tf.square(gain)[:, :, None]
    return tf.math.log(mel_power + c.log_floor)

  def window_power(self, waveform: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(:meth:`mel_power` of every raw frame, the window's :func:`peak_abs`)
    of a [batch, samples] window: :meth:`log_of_power`'s inputs, what the
    streaming front end gathers as the audio arrives."""
    c = self.config
    frames = tf.signal.frame(waveform, c.frame_length, c.frame_step)
    return self.mel_power(frames), peak_abs(waveform)

  def framewise(self, waveform: tf.Tensor) -> tf.Tensor:
    """:meth:`call`'s features computed as the streaming front end does:
    each raw frame's :meth:`mel_power`, then the window's peak gain and
    the log (:meth:`log_of_power`). What every phone model's front end
    runs, so that its streamed features are its buffered ones bit for
    bit; equal to :meth:`call` up to float rounding."""
    return self.log_of_power(*self.window_power(waveform))

  def call(self, waveform: tf.Tensor) -> tf.Tensor:
    c = self.config
    if self.dft == "matmul":  # the phone's
      return self.framewise(waveform)
    if c.peak_normalize:
      waveform = peak_normalize(waveform)
    frames = tf.signal.frame(waveform, c.frame_length, c.frame_step)
    mel = self.mel_power(frames)
    mel.set_shape(frames.shape[:-1].concatenate([c.num_mel_bins]))
    return tf.math.log(mel + c.log_floor)

  def compute_output_shape(self, input_shape):
    return tf.TensorShape([input_shape[0], self.config.num_frames,
                           self.config.num_mel_bins])

  def get_config(self):
    return {**super().get_config(), "config": self.config.to_dict(),
            "dft": self.dft}

  @classmethod
  def from_config(cls, config):
    fe = FrontEndConfig.from_dict(config.pop("config"))
    return cls(fe, **config)


def log_mel_numpy(waveform: np.ndarray,
                  config: FrontEndConfig = FrontEndConfig()) -> np.ndarray:
  """Host-side features for one clip: fix length, then :class:`LogMel`.

  This is the device contract for the feature-input (MCU / Edge TPU) models.
  """
  w = fix_length(tf.constant(waveform, tf.float32), config.clip_samples)
  return LogMel(config)(w[tf.newaxis])[0].numpy()
