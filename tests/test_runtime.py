"""The runtime runs deployed models without TensorFlow: `nsl-ser predict`
and `calibrate` in a process in which importing the training stack fails,
with the same answers as in-process; start-up is quiet; the numpy front end
computes the training layer's features."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from nsl_ser import audio, front_end
from nsl_ser.runtime import calibration, predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAINING = ("tensorflow", "tf_keras", "keras", "neural_structured_learning",
            "tensorflow_model_optimization", "tflite_micro", "librosa",
            "sklearn", "scipy", "tqdm", "matplotlib")
# runs `nsl-ser ARGS...` with every training package unimportable
BLOCKED = ("import sys\n"
           f"for m in {TRAINING!r}:\n  sys.modules[m] = None\n"
           "sys.argv = ['nsl-ser'] + sys.argv[1:]\n"
           "from nsl_ser.cli import main\nmain()\n")


def run_blocked(*args, env=None):
  return subprocess.run([sys.executable, "-c", BLOCKED, *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def clips(emodb_files):
  return emodb_files[:4]


def test_predict_and_calibrate_without_tensorflow(clips, tmp_path):
  out = tmp_path / "r.json"
  r = run_blocked("predict", f"--output={out}", "--calibrate=self", *clips)
  assert r.returncode == 0, r.stderr
  got = {x["file"]: x
         for x in json.load(open(out))["results"]}
  assert len(got) == len(clips)
  # the same answers in this process (which has TensorFlow loaded)
  spk, _, _ = calibration.speaker_stats(clips)
  p = predictor.load_predictor(predictor.DEFAULT_MODEL, speaker=spk)
  for path in clips:
    want = predictor.predict_file(p, path)
    g = got[path]
    assert g["emotion"] == want.emotion
    np.testing.assert_allclose(g["windows"][0]["probs"], want.windows[0].probs,
                               atol=1e-6)
  spk_json = tmp_path / "speaker.json"
  r = run_blocked("calibrate", f"--out={spk_json}", *clips)
  assert r.returncode == 0, r.stderr
  assert calibration.load(str(spk_json)).count == spk.count


def test_training_command_without_the_training_extra_says_what_to_install():
  r = run_blocked("prepare", "--corpus=emodb", "--data_dir=x", "--out_dir=y")
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and re.fullmatch(
      r'nsl-ser prepare: needs the training extra \(no module (\w+)\): '
      r'pip install "nsl-ser\[train\]"', lines[0]), lines
  assert re.search(r"module (\w+)", lines[0]).group(1) in TRAINING


def test_start_up_is_quiet_unless_verbosity_asks(clips):
  r = run_blocked("predict", clips[0])
  assert r.returncode == 0 and r.stderr == "", r.stderr
  r = subprocess.run([sys.executable, "-m", "nsl_ser.cli", "train-source",
                      "--help"], cwd=ROOT, capture_output=True, text=True,
                     timeout=300)
  assert r.returncode == 0 and r.stderr == "", r.stderr  # TensorFlow loaded
  r = run_blocked("predict", "--verbosity=1", clips[0])
  assert r.returncode == 0 and "XNNPACK" in r.stderr


def test_numpy_front_end_computes_the_training_features(clips):
  from nsl_ser import features
  cfg = front_end.FrontEndConfig()
  np.testing.assert_allclose(front_end.mel_matrix(cfg),
                             features.mel_matrix(cfg).numpy(), atol=2e-5)
  for path in clips[:2]:
    x = audio.load_audio(path, cfg.sample_rate)
    want = features.LogMel(cfg)(x[None].astype(np.float32))[0].numpy()
    got = front_end.log_mel(x, cfg)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-3)
    assert np.abs(got - want).mean() < 1e-4
    np.testing.assert_allclose(front_end.clip_log_mel(x, cfg),
                               features.log_mel_numpy(x, cfg), atol=2e-3)
  # lengths: a waveform shorter than a frame has no frames; fix_length
  assert front_end.log_mel(np.zeros(100), cfg).shape == (0, cfg.num_mel_bins)
  np.testing.assert_array_equal(front_end.fix_length(np.arange(5.0), 3), [1, 2, 3])
  np.testing.assert_array_equal(front_end.fix_length(np.arange(2.0), 5),
                                [0, 0, 1, 0, 0])
