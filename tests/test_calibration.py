"""Speaker calibration: statistics from unlabelled clips, `nsl-ser
calibrate`, and `nsl-ser predict --calibrate` with the default model."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from nsl_ser import front_end, normalization
from nsl_ser.runtime import calibration, predictor
from nsl_ser.front_end import FrontEndConfig

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def speaker_dir(emodb_files, tmp_path_factory):
  """Twelve clips of EmoDB speaker 03 and one unreadable file."""
  d = tmp_path_factory.mktemp("speaker03")
  for f in [f for f in emodb_files if os.path.basename(f).startswith("03")][:12]:
    shutil.copy(f, d)
  (d / "broken.wav").write_bytes(b"RIFF not really")
  return str(d)


def _cli(*args, cwd=None):
  return subprocess.run([sys.executable, "-m", "nsl_ser.cli", *args],
                        capture_output=True, text=True, cwd=cwd or ROOT,
                        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_file_statistics_equal_the_batch_statistics(speaker_dir):
  """What `calibrate` accumulates clip by clip equals the batch
  statistics of the same clips' speech frames; the broken file is skipped
  with its reason; the JSON round trip keeps the numbers."""
  fe = FrontEndConfig()
  files = predictor.expand_paths([speaker_dir])
  stats, used, skipped = calibration.speaker_stats(files, fe)
  assert len(used) == 12 and [os.path.basename(f) for f, _ in skipped] == ["broken.wav"]
  from nsl_ser import audio
  clips = [front_end.log_mel(audio.load_audio(f), fe) for f in used]
  batch = normalization.stats_of(clips)
  assert stats.count == batch.count
  np.testing.assert_allclose(stats.mean, batch.mean, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(stats.var, batch.var, rtol=1e-5, atol=1e-6)
  path = os.path.join(speaker_dir, "..", "s.json")
  calibration.save(path, stats, fe, used, skipped)
  back = calibration.load(path, fe)
  np.testing.assert_allclose(back.mean, stats.mean)
  np.testing.assert_allclose(back.var, stats.var, rtol=1e-9)
  with pytest.raises(calibration.CalibrationError, match="another front end"):
    calibration.load(path, FrontEndConfig(num_mel_bins=64))


def test_no_usable_clip_is_a_clear_error(tmp_path):
  (tmp_path / "a.wav").write_bytes(b"nonsense")
  sf.write(str(tmp_path / "silent.wav"), np.zeros(16000, np.float32), 16000)
  with pytest.raises(calibration.CalibrationError, match="no usable clip"):
    calibration.speaker_stats(predictor.expand_paths([str(tmp_path)]))
  r = _cli("calibrate", str(tmp_path), f"--out={tmp_path / 's.json'}")
  assert r.returncode == 1 and "no usable clip" in r.stderr
  assert "Traceback" not in r.stderr and not (tmp_path / "s.json").exists()
  r = _cli("predict", "--calibrate=self", str(tmp_path))
  assert r.returncode == 1 and "no usable clip" in r.stderr
  assert "Traceback" not in r.stderr


def test_calibration_sits_between_front_end_and_stages(emodb_files):
  """The default (staged) phone model: calibrated with the reference
  statistics themselves it computes exactly the uncalibrated model; with a
  speaker's own statistics the stages see x * scale + shift of the front
  end's features; tau=0 runs stage 1 only."""
  from nsl_ser import audio
  side = json.load(open(os.path.join(os.path.dirname(predictor.DEFAULT_MODEL),
                                     "model.json")))
  ref = normalization.BandStats.from_dict(side["normalization"]["reference"])
  plain = predictor.load_predictor(predictor.DEFAULT_MODEL)
  same = predictor.load_predictor(predictor.DEFAULT_MODEL, speaker=ref)
  assert plain.staged and same.exits == plain.exits and same.labels == plain.labels
  files = [f for f in emodb_files if os.path.basename(f).startswith("03")][:8]
  spk, _, _ = calibration.speaker_stats(files)
  cal = predictor.load_predictor(predictor.DEFAULT_MODEL, speaker=spk)
  # a calibrated model always runs the stage chain; so does plain here (at
  # tau > 1 it would answer from its one-call signature: test_predict)
  plain.run_full = lambda window: None
  for f in files[:4]:
    x = audio.load_audio(f)
    a = predictor.predict_waveform(plain, x, tau=1.01, use_vad=False)[0]
    b = predictor.predict_waveform(same, x, tau=1.01, use_vad=False)[0]
    np.testing.assert_allclose(a.probs, b.probs, atol=1e-6)
  window = np.pad(x, (0, max(0, 48000 - len(x))))[:48000]
  cal.start(window)
  raw = plain.model.run("front_end", audio=window[None])["features"]
  scale, shift = normalization.affine(calibration.shrunk(spk, ref), ref)
  np.testing.assert_allclose(cal._x, raw * scale + shift, atol=1e-5)
  first = predictor.predict_waveform(cal, x, tau=0.0, use_vad=False)[0]
  assert first.exit == "exit_1" and len(cal._done) == 1


def test_calibrate_self_and_saved_statistics_agree(speaker_dir, tmp_path):
  """`predict --calibrate=self DIR` and `calibrate DIR` + `predict
  --calibration=speaker.json DIR` give the same results; the broken file is
  skipped, every other file is predicted."""
  r = _cli("predict", "--calibrate=self", speaker_dir,
           f"--output={tmp_path / 'self.json'}")
  assert r.returncode == 0, r.stderr[-2000:]
  assert "calibrated on 12 file(s)" in r.stderr
  r = _cli("calibrate", speaker_dir, f"--out={tmp_path / 'spk.json'}")
  assert r.returncode == 0, r.stderr[-2000:]
  r = _cli("predict", f"--calibration={tmp_path / 'spk.json'}", speaker_dir,
           f"--output={tmp_path / 'saved.json'}")
  assert r.returncode == 0, r.stderr[-2000:]
  a = json.load(open(tmp_path / "self.json"))
  b = json.load(open(tmp_path / "saved.json"))
  assert len(a["results"]) == 12 and [s["file"] for s in a["skipped"]] == [
      os.path.join(speaker_dir, "broken.wav")]
  assert [(x["file"], x["emotion"]) for x in a["results"]] == [
      (x["file"], x["emotion"]) for x in b["results"]]
  labels = json.load(open(os.path.join(os.path.dirname(predictor.DEFAULT_MODEL),
                                       "model.json")))["labels"]
  assert {x["emotion"] for x in a["results"]} <= set(labels)
