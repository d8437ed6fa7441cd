"""Audio I/O on real clips: formats by content, mono mix, resampling, bad input."""
import os

import numpy as np
import pytest
import soundfile as sf

from nsl_ser import audio


@pytest.fixture(scope="module")
def clip(emodb_files):
  x, sr = sf.read(emodb_files[0], dtype="float32")
  assert sr == 16000
  return x


@pytest.mark.parametrize("fmt,subtype", [("WAV", "PCM_16"), ("FLAC", "PCM_16"),
                                         ("AIFF", "PCM_16"), ("OGG", "VORBIS")])
def test_reads_formats_by_content_not_extension(tmp_path, clip, fmt, subtype):
  path = str(tmp_path / "misnamed.wav")  # every format under a .wav name
  sf.write(path, clip, 16000, format=fmt, subtype=subtype)
  y = audio.load_audio(path)
  assert y.dtype == np.float32 and abs(len(y) - len(clip)) <= 1
  tol = 0.05 if fmt == "OGG" else 1e-3
  assert np.sqrt(np.mean((y[:len(clip)] - clip[:len(y)]) ** 2)) < tol


def test_stereo_48k_is_mixed_and_resampled(tmp_path, clip):
  import soxr
  up = soxr.resample(clip, 16000, 48000)
  stereo = np.stack([up, 0.5 * up], axis=1)
  path = str(tmp_path / "stereo48k.wav")
  sf.write(path, stereo, 48000, subtype="PCM_24")
  y = audio.load_audio(path)
  assert abs(len(y) - len(clip)) <= 2
  n = min(len(y), len(clip))
  # mono mix = 0.75 x original; resampling round trip keeps the waveform
  assert np.corrcoef(y[:n], 0.75 * clip[:n])[0, 1] > 0.999


def _write_bad(tmp_path, kind, clip):
  p = str(tmp_path / f"{kind}.wav")
  if kind == "corrupt":
    with open(p, "wb") as f:
      f.write(b"RIFF\x00\x10\x00\x00WAVEfmt " + os.urandom(400))
  elif kind == "text":
    with open(p, "w") as f:
      f.write("this is not audio\n" * 20)
  elif kind == "zero_bytes":
    open(p, "wb").close()
  elif kind == "empty":
    sf.write(p, np.zeros(0, np.float32), 16000)
  elif kind == "silent":
    sf.write(p, np.zeros(16000, np.float32), 16000)
  elif kind == "nan":
    x = clip[:16000].copy()
    x[100] = np.nan
    sf.write(p, x, 16000, subtype="FLOAT")
  elif kind == "inf":
    x = clip[:16000].copy()
    x[5] = np.inf
    sf.write(p, x, 16000, subtype="FLOAT")
  elif kind == "short":
    sf.write(p, clip[:1600], 16000)
  return p


BAD = {"corrupt": "not readable", "text": "not readable",
       "zero_bytes": "not readable", "empty": "empty", "silent": "silent",
       "nan": "NaN or Inf", "inf": "NaN or Inf", "short": "too short"}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_raises_one_error_type_naming_the_file(tmp_path, clip, kind):
  p = _write_bad(tmp_path, kind, clip)
  with pytest.raises(audio.AudioError) as e:
    audio.load_audio(p)
  assert e.value.path == p and p in str(e.value)
  assert BAD[kind] in e.value.reason


def test_missing_file(tmp_path):
  with pytest.raises(audio.AudioError, match="not found"):
    audio.load_audio(str(tmp_path / "nope.wav"))


def test_int16_round_trip(clip):
  assert np.max(np.abs(audio.from_int16(audio.to_int16(clip)) - clip)) < 1e-4
