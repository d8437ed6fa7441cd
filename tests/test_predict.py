"""`nsl-ser predict` with the committed default model on real audio."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from nsl_ser import audio, predict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def default_model():
  assert os.path.exists(predict.DEFAULT_MODEL), "tflite_models/default is missing"
  return predict.load_predictor(predict.DEFAULT_MODEL)


def test_window_starts():
  assert predict.window_starts(100, 300, 150) == [0]
  assert predict.window_starts(300, 300, 150) == [0]
  assert predict.window_starts(700, 300, 150) == [0, 150, 300, 400]
  assert predict.window_starts(750, 300, 150) == [0, 150, 300, 450]


def test_default_model_has_exits_labels_and_licence(default_model):
  assert default_model.exits[0] == "exit_1" and len(default_model.exits) >= 2
  assert "angry" in default_model.labels
  side = json.load(open(os.path.join(os.path.dirname(predict.DEFAULT_MODEL),
                                     "model.json")))
  assert "CC BY-NC-SA" in side["licence"]
  # int8 network + front end (190 KiB int8 DFT basis, 76 KiB float Mel matrix)
  assert os.path.getsize(predict.DEFAULT_MODEL) < 500_000


def test_tau_controls_the_exit(default_model, emodb_files):
  x = audio.load_audio(emodb_files[0])
  first = predict.predict_waveform(default_model, x, tau=0.0)
  full = predict.predict_waveform(default_model, x, tau=1.01)
  assert [w.exit for w in first] == ["exit_1"]
  assert [w.exit for w in full] == [default_model.exits[-1]]


def _confident_clips(p, files, emotion, n):
  out = []
  for f in files:
    if os.path.basename(f)[5] != emotion[1]:
      continue
    x = audio.load_audio(f)
    w = predict.predict_waveform(p, x, tau=1.01)[0]
    if w.emotion == emotion[0] and w.confidence > 0.6 and len(x) > 24000:
      out.append(x)
    if sum(len(c) for c in out) >= n:
      break
  return out


def test_timeline_of_a_60s_file_matches_its_segments(default_model, emodb_files,
                                                     tmp_path):
  """Six 10 s segments of one emotion each (clips the model gets right);
  windows that lie inside a segment must carry that segment's emotion."""
  plan = [("angry", "W"), ("sad", "T"), ("neutral", "N"), ("angry", "W"),
          ("sad", "T"), ("neutral", "N")]
  seg_len = 10 * 16000
  pieces, bounds, t = [], [], 0
  used = {}
  for emo in plan:
    clips = used.setdefault(emo, _confident_clips(default_model, emodb_files,
                                                  emo, 2 * seg_len))
    seg = np.concatenate(clips)
    seg = seg[:seg_len] if len(clips) and len(seg) >= seg_len else np.resize(seg, seg_len)
    pieces.append(seg)
    bounds.append((t / 16000, (t + seg_len) / 16000, emo[0]))
    t += seg_len
  path = str(tmp_path / "sixty.wav")
  sf.write(path, np.concatenate(pieces), 16000)
  r = predict.predict_file(default_model, path, tau=1.01, hop_seconds=1.0)
  assert abs(r.windows[-1].end - 60.0) < 1e-6
  inside = [(w, e) for w in r.windows for s, end, e in bounds
            if w.start >= s and w.end <= end]
  assert len(inside) >= 30
  hits = sum(w.emotion == e for w, e in inside)
  assert hits / len(inside) >= 0.8, [(w.start, w.emotion, e) for w, e in inside]
  segs = predict.segments(r.windows)
  assert segs[0]["start"] == 0.0 and segs[-1]["end"] == 60.0


def test_folder_with_bad_files(tmp_path, emodb_files):
  folder = tmp_path / "in"
  folder.mkdir()
  with open(folder / "corrupt.wav", "wb") as f:
    f.write(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(300))
  (folder / "notes.wav").write_text("not audio at all\n" * 10)
  x, _ = sf.read(emodb_files[3], dtype="float32")
  up = soxr.resample(x, 16000, 48000)
  sf.write(folder / "stereo48k.wav", np.stack([up, up * 0.8], axis=1), 48000)
  out = tmp_path / "out.json"
  r = subprocess.run([sys.executable, "-m", "nsl_ser.cli", "predict",
                      f"--output={out}", str(folder)], cwd=ROOT,
                     capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  res = json.load(open(out))
  assert [os.path.basename(x["path"]) for x in res["results"]] == ["stereo48k.wav"]
  skipped = {os.path.basename(s["file"]): s["reason"] for s in res["skipped"]}
  assert set(skipped) == {"corrupt.wav", "notes.wav"}
  assert all("not readable" in v for v in skipped.values())
  assert "stereo48k.wav" in r.stdout and "skipped" in r.stderr
  assert res["results"][0]["emotion"] in json.load(open(os.path.join(
      os.path.dirname(predict.DEFAULT_MODEL), "model.json")))["labels"]
