"""The committed golden fixture (tests/golden): the numpy front end, the C
front end and the runtime with the default model give what they gave when
it was made. No corpus, no training."""
import os
import sys

import numpy as np
import pytest

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


def _close(got, want, atol):
  assert set(got) <= set(want)
  for k, v in got.items():
    np.testing.assert_allclose(v, want[k], atol=atol, err_msg=k)


def test_numpy_front_end(want, model):
  _close(make_golden.numpy_front_end(model, CLIPS), want, 1e-5)


def test_c_front_end(want, model, tmp_path):
  from nsl_ser.export import micro_front_end
  if micro_front_end.compiler() is None:
    pytest.fail("no C compiler (set CC)")
  got = make_golden.c_front_end(
      model, CLIPS, make_golden.build_c_front_end(str(tmp_path / "fe.so")))
  _close(got, want, 1e-5)
  for i in range(len(CLIPS)):  # and within the documented 1.4e-3 of numpy
    assert np.abs(got[f"c_features_{i}"] - want[f"log_mel_{i}"]).max() < 1.4e-3


def test_runtime_exits_and_head(want, model):
  got = make_golden.runtime_outputs(model, CLIPS)
  _close({k: v for k, v in got.items() if k.startswith("head")}, want, 1e-5)
  _close({k: v for k, v in got.items() if k.startswith("exits")}, want, 1e-4)
  for i, path in enumerate(CLIPS):
    np.testing.assert_array_equal(got[f"exits_{i}"].argmax(1),
                                  want[f"exits_{i}"].argmax(1))
    # predict on the file agrees with the fixture's full model
    w, = predictor.predict_file(model, path, tau=1.01).windows
    assert w.emotion == model.labels[int(want[f"exits_{i}"][-1].argmax())]
