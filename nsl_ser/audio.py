"""Audio I/O: decode any format libsndfile reads, mix to mono, resample.

Decoding is by content (soundfile/libsndfile sniff the header), never by the
file extension. Resampling uses soxr (VHQ). tensorflow-io is not used: it is
abandoned upstream and its ops do not load on TF >= 2.18.
"""
from __future__ import annotations

import errno
import io
import os
import stat
from typing import Union

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
MIN_SECONDS = 0.25
# Peak below this (|x| <= 1 scale) counts as silence: 1 LSB of 16-bit audio.
SILENCE_PEAK = 1.0 / 32768.0

PathOrBytes = Union[str, os.PathLike, bytes]


class AudioError(ValueError):
  """A file that cannot be used as audio; names the file and the reason."""

  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path = str(path)
    self.reason = reason


def file_kind(path: str) -> Optional[str]:
  """None for a regular file (or a link to one), else what it is:
  'missing', 'a symlink loop', 'a folder', 'a FIFO', 'a device', 'a socket'."""
  try:
    st = os.stat(path)
  except FileNotFoundError:
    return "a broken symlink" if os.path.islink(path) else "missing"
  except OSError as e:
    if e.errno == errno.ELOOP:
      return "a symlink loop"
    return f"unreadable ({e.strerror})"
  if stat.S_ISREG(st.st_mode):
    return None
  if stat.S_ISDIR(st.st_mode):
    return "a folder"
  if stat.S_ISFIFO(st.st_mode):
    return "a FIFO"
  if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
    return "a device"
  if stat.S_ISSOCK(st.st_mode):
    return "a socket"
  return "not a regular file"


def to_mono(samples: np.ndarray) -> np.ndarray:
  """Averages channels: (n,) or (n, channels) -> (n,)."""
  if samples.ndim == 1:
    return samples
  return samples.mean(axis=1)


def resample(samples: np.ndarray, sr_in: int, sr_out: int = SAMPLE_RATE) -> np.ndarray:
  """Resamples with soxr (very high quality); no-op if rates match."""
  if sr_in == sr_out:
    return samples
  return soxr.resample(samples, sr_in, sr_out, quality="VHQ")


def check_waveform(samples: np.ndarray, sr: int, name: str,
                   min_seconds: float = MIN_SECONDS) -> None:
  """Raises AudioError for empty, non-finite, too-short or silent audio."""
  if samples.size == 0:
    raise AudioError(name, "empty audio (zero samples)")
  if not np.all(np.isfinite(samples)):
    raise AudioError(name, "audio contains NaN or Inf samples")
  seconds = samples.shape[0] / float(sr)
  if seconds < min_seconds:
    raise AudioError(name, f"too short: {seconds:.3f} s < {min_seconds} s")
  if float(np.max(np.abs(samples))) < SILENCE_PEAK:
    raise AudioError(name, "all-silent audio")


def load_audio(path: PathOrBytes, sample_rate: int = SAMPLE_RATE,
               min_seconds: float = MIN_SECONDS, name: str | None = None) -> np.ndarray:
  """Reads a file (or bytes) as float32 mono at ``sample_rate``.

  Raises:
    AudioError: unreadable/corrupt/non-audio data, empty, NaN/Inf, silent or
      shorter than ``min_seconds``.
  """
  if name is None:
    name = "<bytes>" if isinstance(path, bytes) else os.fspath(path)
  source = io.BytesIO(path) if isinstance(path, bytes) else path
  kind = None if isinstance(path, bytes) else file_kind(path)
  if kind is not None:  # a FIFO would block, a device never end
    raise AudioError(name, "file not found" if kind == "missing" else f"is {kind}")
  try:
    samples, sr = sf.read(source, dtype="float32", always_2d=False)
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise AudioError(name, f"not readable as audio ({e})") from None
  samples = np.asarray(samples, dtype=np.float32)
  if samples.ndim == 2 and samples.shape[1] == 0:
    raise AudioError(name, "empty audio (zero channels)")
  samples = to_mono(samples)
  # Check before resampling so NaN/empty input never reaches soxr.
  check_waveform(samples, sr, name, min_seconds)
  samples = resample(samples.astype(np.float32), sr, sample_rate).astype(np.float32)
  return samples


def to_int16(samples: np.ndarray) -> np.ndarray:
  """Float [-1, 1] -> int16 with clipping."""
  return np.clip(np.round(samples * 32767.0), -32768, 32767).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
  """int16 -> float32 in [-1, 1)."""
  return samples.astype(np.float32) / 32768.0
