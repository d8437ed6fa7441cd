"""The committed golden fixture (tests/golden): the numpy front end, the C
front end and the runtime with the default model give what they gave when
it was made. No corpus, no training."""
import os
import sys

import numpy as np
import pytest

from nsl_ser import audio
from nsl_ser.front_end import clip_log_mel, fix_length
from nsl_ser.runtime import predictor

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
sys.path.insert(0, GOLDEN)
import make_golden  # noqa: E402

CLIPS = make_golden.clip_paths()


@pytest.fixture(scope="module")
def want():
  with np.load(os.path.join(GOLDEN, "expected.npz")) as z:
    return {k: z[k] for k in z}


@pytest.fixture(scope="module")
def model():
  return predictor.load_predictor(predictor.DEFAULT_MODEL)


def test_fixture_is_small_and_complete(want):
  assert sum(os.path.getsize(os.path.join(GOLDEN, f))
             for f in os.listdir(GOLDEN)) < 250_000
  assert len(CLIPS) == 2 and all(os.path.exists(c) for c in CLIPS)
  assert set(want) == {f"{k}_{i}" for i in range(len(CLIPS))
                       for k in ("log_mel", "c_features", "head", "exits")}


def test_numpy_front_end(want, model):
  for i, path in enumerate(CLIPS):
    x = audio.load_audio(path, model.front_end.sample_rate)
    np.testing.assert_allclose(clip_log_mel(x, model.front_end),
                               want[f"log_mel_{i}"], atol=1e-5)


def test_c_front_end(want, model, tmp_path):
  from nsl_ser.export import micro_front_end
  if micro_front_end.compiler() is None:
    pytest.fail("no C compiler (set CC)")
  src = os.path.join(os.path.dirname(predictor.DEFAULT_MODEL), "micro", "front_end")
  c = micro_front_end.CFrontEnd(micro_front_end.build_library(
      src, str(tmp_path / "fe.so")), model.front_end)
  for i, path in enumerate(CLIPS):
    x = fix_length(audio.load_audio(path), model.front_end.clip_samples)
    got = c.features(x)
    np.testing.assert_allclose(got, want[f"c_features_{i}"], atol=1e-5)
    # and within the documented 1.4e-3 of the numpy front end
    assert np.abs(got - want[f"log_mel_{i}"]).max() < 1.4e-3


def test_runtime_exits_and_head(want, model):
  for i, path in enumerate(CLIPS):
    x = audio.load_audio(path, model.front_end.sample_rate)
    window = fix_length(x, model.front_end.clip_samples)
    model.begin_file(x)
    model.head_probs = model.head_at(0.0)
    np.testing.assert_allclose(model.head_probs, want[f"head_{i}"], atol=1e-5)
    model.start(window)
    got = np.stack([model.exit_probs(e, window) for e in model.exits])
    model.head_probs = None
    np.testing.assert_allclose(got, want[f"exits_{i}"], atol=1e-4)
    np.testing.assert_array_equal(got.argmax(1), want[f"exits_{i}"].argmax(1))
    # predict on the file agrees with the fixture's full model
    w, = predictor.predict_file(model, path, tau=1.01).windows
    assert w.emotion == model.labels[int(want[f"exits_{i}"][-1].argmax())]
