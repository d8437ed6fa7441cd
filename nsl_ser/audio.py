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
import struct
from typing import Iterator, Optional, Union

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16000
MIN_SECONDS = 0.25
# Peak below this (|x| <= 1 scale) counts as silence: 1 LSB of 16-bit audio.
SILENCE_PEAK = 1.0 / 32768.0
# Long files are decoded and resampled this many seconds at a time.
BLOCK_SECONDS = 10.0

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


def wav_truncation(path: str) -> Optional[str]:
  """Why a RIFF/RIFX WAVE file is cut short (its data chunk declares more
  bytes than the file holds), or None: other formats, whole files, and
  streamed WAVs whose header leaves the length open (0 or 0xFFFFFFFF).
  libsndfile reads such a file up to where it ends, without a word."""
  with open(path, "rb") as f:
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:] != b"WAVE":
      return None
    order = "<" if head[:4] == b"RIFF" else ">"
    size, pos, byte_rate = os.fstat(f.fileno()).st_size, 12, 0
    while pos + 8 <= size:
      f.seek(pos)
      cid, n = struct.unpack(order + "4sI", f.read(8))
      if cid == b"fmt " and n >= 16:
        byte_rate = struct.unpack(order + "HHII", f.read(12))[3]
      if cid == b"data":
        have = size - pos - 8
        if n in (0, 0xFFFFFFFF) or n <= have:
          return None
        if byte_rate:
          return (f"truncated: its header declares {n / byte_rate:.2f} s of "
                  f"audio, the file holds {have / byte_rate:.2f} s")
        return f"truncated: its header declares {n} bytes of audio, the file holds {have}"
      pos += 8 + n + (n & 1)
  return None


def _check_path(path: str, name: str) -> None:
  """AudioError for what is not a whole regular file."""
  kind = file_kind(path)
  if kind is not None:  # a FIFO would block, a device never end
    raise AudioError(name, "file not found" if kind == "missing" else f"is {kind}")
  cut = wav_truncation(path)
  if cut is not None:
    raise AudioError(name, cut)


def duration(path: str, name: Optional[str] = None) -> float:
  """Seconds of audio in a file, from its header (AudioError if it is not
  a usable audio file)."""
  name = name or os.fspath(path)
  _check_path(path, name)
  try:
    info = sf.info(path)
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise AudioError(name, f"not readable as audio ({e})") from None
  return info.frames / float(info.samplerate) if info.samplerate > 0 else 0.0


def blocks(path: str, sample_rate: int = SAMPLE_RATE,
           block_seconds: float = BLOCK_SECONDS,
           name: Optional[str] = None) -> Iterator[np.ndarray]:
  """A file as float32 mono blocks at ``sample_rate``, decoded
  ``block_seconds`` at a time and resampled with soxr's streaming
  resampler: memory does not grow with the file, and the blocks put
  together equal :func:`load_audio` (without its length and silence
  checks). Raises AudioError as :func:`load_audio` does, NaN or Inf in a
  block included."""
  name = name or os.fspath(path)
  _check_path(path, name)
  try:
    with sf.SoundFile(path) as f:
      if f.channels == 0:
        raise AudioError(name, "empty audio (zero channels)")
      rs = (None if f.samplerate == sample_rate else soxr.ResampleStream(
          f.samplerate, sample_rate, 1, dtype="float32", quality="VHQ"))
      size = max(1, int(block_seconds * f.samplerate))
      while True:
        b = to_mono(f.read(size, dtype="float32", always_2d=True))
        last = len(b) < size
        if not np.all(np.isfinite(b)):
          raise AudioError(name, "audio contains NaN or Inf samples")
        out = b if rs is None else rs.resample_chunk(b, last=last)
        if len(out):
          yield np.asarray(out, np.float32)
        if last:
          return
  except AudioError:
    raise
  except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
    raise AudioError(name, f"not readable as audio ({e})") from None


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
  if not isinstance(path, bytes):
    _check_path(path, name)
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
