"""`nsl-ser stream`: a real clip piped in as raw PCM or a WAV stream gives
one JSON line per window, each the buffered predictor's answer on that
window's audio; resampled input keeps the window times; running
calibration learns from the speech windows; a bad stream is one line."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from nsl_ser import audio
from nsl_ser.runtime import predictor, stream

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def speech(emodb_files):
  """Three clips of one speaker back to back (about 7 s at 16 kHz)."""
  return np.concatenate([audio.load_audio(f) for f in emodb_files[:3]])


def run_stream(data: bytes, *args):
  r = subprocess.run([sys.executable, "-m", "nsl_ser.cli", "stream", *args],
                     input=data, cwd=ROOT, capture_output=True, timeout=300)
  return r.returncode, [json.loads(l) for l in r.stdout.decode().splitlines()], \
      r.stderr.decode()


def pcm(x: np.ndarray) -> bytes:
  return audio.to_int16(x).astype("<i2").tobytes()


def test_piped_pcm_gives_each_windows_buffered_answer(speech):
  rc, lines, err = run_stream(pcm(speech))
  assert rc == 0 and err == "", err
  n = len(speech) / 16000
  starts = [w["start"] for w in lines]
  assert starts[:-1] == [1.5 * k for k in range(len(lines) - 1)]
  assert all(w["end"] - w["start"] == 3.0 for w in lines[:-1])
  assert lines[-1]["end"] == pytest.approx(n, abs=1e-3)
  p = predictor.load_predictor(predictor.DEFAULT_MODEL)
  x = audio.from_int16(audio.to_int16(speech))  # what the stream decoded
  for w in lines[:-1]:
    seg = x[int(round(w["start"] * 16000)):int(round(w["end"] * 16000))]
    want = predictor.predict_waveform(p, seg)[0]
    assert (w["emotion"], w["exit"]) == (want.emotion, want.exit)
    assert w["confidence"] == pytest.approx(want.confidence, abs=1e-4)
    assert 0 <= w["latency_ms"] < 1000
  buf = io.BytesIO()
  sf.write(buf, audio.to_int16(speech), 16000, format="WAV", subtype="PCM_16")
  rc, wav_lines, err = run_stream(buf.getvalue(), "--format=wav")
  assert rc == 0, err
  strip = lambda ls: [{k: v for k, v in w.items() if k != "latency_ms"} for w in ls]
  assert strip(wav_lines) == strip(lines)


def test_resampled_input_keeps_the_window_times(speech):
  import soxr
  x48 = soxr.resample(speech, 16000, 48000)
  rc, lines, err = run_stream(pcm(x48), "--rate=48000", "--vad=false")
  assert rc == 0, err
  assert [w["start"] for w in lines[:-1]] == [1.5 * k for k in range(len(lines) - 1)]
  assert {w["emotion"] for w in lines} <= set(
      predictor.load_predictor(predictor.DEFAULT_MODEL).labels)


def test_running_calibration_learns_from_speech_windows(speech, tmp_path):
  """Each speech window adds to the speaker's statistics before it is
  classified: the first window equals `predict` calibrated on that window
  alone (`calibrate` of it as a file); later ones rest on more speech."""
  from nsl_ser.runtime import calibration
  p = predictor.load_predictor(predictor.DEFAULT_MODEL)
  live = stream.LiveClassifier(p, running=True)
  out = []
  seconds = []
  for i in range(0, len(speech), 160):
    for w in live.push(speech[i:i + 160]):
      out.append(w)
      seconds.append(live.speech_seconds)
  assert len(out) >= 2 and all(w.emotion != predictor.NO_SPEECH for w in out)
  assert seconds == sorted(seconds) and seconds[-1] > seconds[0] > 0.5
  first = tmp_path / "first.wav"
  sf.write(str(first), speech[:48000], 16000, subtype="FLOAT")
  spk, _, _ = calibration.speaker_stats([str(first)])
  cal = predictor.load_predictor(predictor.DEFAULT_MODEL, speaker=spk)
  want = predictor.predict_waveform(cal, speech[:48000], use_vad=False)[0]
  np.testing.assert_allclose(out[0].probs, want.probs, atol=1e-5)
  plain = predictor.predict_waveform(
      predictor.load_predictor(predictor.DEFAULT_MODEL), speech[:48000])[0]
  assert np.abs(np.subtract(out[0].probs, plain.probs)).max() > 1e-3


def test_a_bad_stream_is_one_line():
  rc, lines, err = run_stream(b"RIFX not a wav", "--format=wav")
  assert rc == 2 and lines == []
  assert err.strip().splitlines() == [
      "nsl-ser stream: stdin: not a WAV stream (no RIFF/WAVE header)"]
  rc, _, err = run_stream(b"", "--input=/nonexistent.wav")
  assert rc == 2 and err.strip() == "nsl-ser stream: /nonexistent.wav: file not found"
