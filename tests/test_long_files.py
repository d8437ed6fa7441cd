"""Long files in blocks (flat memory), results written as they come, and
WAVs cut short: `nsl-ser predict` with the committed default model."""
import json
import os
import signal
import struct
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from nsl_ser import audio
from nsl_ser.runtime import output, predictor, vad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def default_model():
  return predictor.load_predictor(predictor.DEFAULT_MODEL)


@pytest.fixture(scope="module")
def long_wav(emodb_files, tmp_path_factory):
  """~29 s at 22.05 kHz (resampled on the way in): 10 EmoDB clips with
  1.3 s or 4.5 s of silence between some of them, so the VAD, the head's utterances
  (10 s) and the windows all cross block edges."""
  parts = []
  for i, f in enumerate(emodb_files[:10]):
    parts.append(audio.load_audio(f, 22050))
    if i % 3 == 0:
      parts.append(np.zeros(int((4.5 if i == 3 else 1.3) * 22050), np.float32))
  path = str(tmp_path_factory.mktemp("long") / "long.wav")
  sf.write(path, np.concatenate(parts), 22050)
  return path


def _same_windows(a, b):
  assert [(w.start, w.end, w.emotion, w.exit) for w in a] == [
      (w.start, w.end, w.emotion, w.exit) for w in b]
  for u, v in zip(a, b):
    np.testing.assert_allclose(u.probs, v.probs, atol=1e-5)


def test_blocks_put_together_are_the_decoded_file(long_wav):
  whole = audio.load_audio(long_wav)
  parts = list(audio.blocks(long_wav, block_seconds=0.77))
  assert len(parts) >= 25
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_frame_levels_do_not_depend_on_block_edges(long_wav):
  x = audio.load_audio(long_wav)
  acc = vad.FrameEnergy(16000)
  for i in range(0, len(x), 1234):
    acc.push(x[i:i + 1234])
  np.testing.assert_array_equal(acc.finish(), vad.frame_energy_db(x, 16000))


def test_long_file_in_two_passes_equals_the_whole_file(default_model, long_wav):
  """Read as a long file (two passes of 10 s blocks) or whole: the same
  windows, VAD, head and exits; and from blocks of any size."""
  whole = predictor.predict_file(default_model, long_wav, long_seconds=1e9)
  blocked = predictor.predict_file(default_model, long_wav, long_seconds=0)
  assert len(whole.windows) >= 15
  assert any(w.emotion == predictor.NO_SPEECH for w in whole.windows)
  assert len({w.emotion for w in whole.windows}) >= 3
  _same_windows(whole.windows, blocked.windows)
  assert whole.emotion == blocked.emotion
  x = audio.load_audio(long_wav)
  scan = predictor.scan_blocks([x[i:i + 5000] for i in range(0, len(x), 5000)],
                               16000, vad.MIN_SPEECH_SECONDS)
  assert scan.samples == len(x) and scan.peak == float(np.max(np.abs(x)))
  small = predictor.predict_blocks(
      default_model, (x[i:i + 3333] for i in range(0, len(x), 3333)),
      scan.samples, scan.peak, scan.spans)
  _same_windows(whole.windows, small)


def _cut(src, dst, keep_bytes):
  with open(src, "rb") as f:
    data = f.read()
  with open(dst, "wb") as f:
    f.write(data[:keep_bytes])


def test_truncated_wav_is_skipped_with_its_lengths(emodb_files, tmp_path):
  cut = str(tmp_path / "cut.wav")
  _cut(emodb_files[0], cut, 44 + 16000)  # 0.5 s of 16-bit 16 kHz mono
  why = audio.wav_truncation(cut)
  assert why.startswith("truncated: its header declares")
  assert "the file holds 0.50 s" in why
  with pytest.raises(audio.AudioError, match="truncated"):
    audio.load_audio(cut)
  with pytest.raises(audio.AudioError, match="truncated"):
    next(audio.blocks(cut))
  assert audio.wav_truncation(emodb_files[0]) is None
  # a streamed WAV leaves the length open: not truncated
  streamed = str(tmp_path / "streamed.wav")
  with open(emodb_files[0], "rb") as f:
    data = bytearray(f.read())
  at = data.index(b"data") + 4
  data[at:at + 4] = struct.pack("<I", 0xFFFFFFFF)
  open(streamed, "wb").write(bytes(data))
  assert audio.wav_truncation(streamed) is None
  assert audio.wav_truncation(__file__) is None  # not a WAV at all


def test_writer_keeps_finished_files_until_close(tmp_path):
  out = str(tmp_path / "r.jsonl")
  w = output.ResultWriter(out, "jsonl", predictor.ROW_HEADER)
  w.add([], {"file": "a.wav", "emotion": "sad", "confidence": float("nan")})
  w.skip("b.wav", "empty audio (zero samples)")
  assert not os.path.exists(out)
  lines = open(w.partial).read().splitlines()
  assert [json.loads(x)["file"] for x in lines] == ["a.wav", "b.wav"]
  assert json.loads(lines[0])["confidence"] is None
  w.close()
  assert not os.path.exists(w.partial)
  assert open(out).read().splitlines() == lines


def test_interrupted_run_keeps_what_it_finished(emodb_files, tmp_path):
  """SIGINT after the first row: exit 130, no output file, and a .partial
  beside it whose every line is a finished file's result."""
  out = tmp_path / "r.jsonl"
  proc = subprocess.Popen(
      [sys.executable, "-m", "nsl_ser.cli", "predict", f"--output={out}",
       *emodb_files[:300]], cwd=ROOT, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
      # a shell's background jobs inherit SIGINT ignored (and Python keeps
      # it so): give the child the default, as a terminal would
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  assert proc.stdout.readline().startswith("file")
  first = proc.stdout.readline()
  assert first.startswith(emodb_files[0])
  proc.send_signal(signal.SIGINT)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  assert not out.exists()
  partial, = tmp_path.glob("r.jsonl.*.partial")
  assert str(partial) in err
  rows = [json.loads(x) for x in partial.read_text().splitlines()]
  assert 1 <= len(rows) < 300
  assert rows[0]["file"] == emodb_files[0]
  assert all(r["emotion"] for r in rows)
