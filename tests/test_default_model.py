"""`nsl-ser train-default`: corpora pooled on their shared emotions, one
deployable model with a card, installed and usable by predict."""
import json
import os

import numpy as np
import pytest

from nsl_ser import default_model, pooled
from nsl_ser.runtime import predictor


def test_shared_labels_and_speaker_keys():
  assert pooled.shared_labels([
      ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust",
       "surprised"],
      ["neutral", "happy", "sad", "angry", "fearful", "disgust", "boredom"]]) == [
          "neutral", "happy", "sad", "angry", "fearful", "disgust"]
  with pytest.raises(ValueError, match="fewer than two"):
    pooled.shared_labels([["angry", "sad"], ["angry", "boredom"]])
  assert pooled.keys("emodb", ["03"]) != pooled.keys("ravdess", ["03"])


def test_found_corpora(data_dir, tmp_path):
  assert default_model.found_corpora(data_dir) == ["ravdess", "emodb", "nemo"]
  with pytest.raises(FileNotFoundError, match="no corpus folder"):
    default_model.found_corpora(str(tmp_path))


@pytest.fixture(scope="module")
def installed(data_dir, tmp_path_factory):
  """A quick default model (a sixth of the clips, 2 epochs), installed."""
  work = tmp_path_factory.mktemp("default")
  cfg = default_model.DefaultConfig(data_dir=data_dir, work_dir=str(work / "w"),
                                    quick=True)
  from nsl_ser import pipeline
  pipeline.run_pipeline(cfg, default_model.STAGES, log=lambda s: None)
  dest = str(work / "installed")
  default_model.install(cfg.path("tflite"), dest)
  return cfg, dest


def test_installed_model_has_card_stages_and_contract(installed):
  cfg, dest = installed
  side = json.load(open(os.path.join(dest, "model.json")))
  # the emotions all three corpora have (nEMO has no disgust, EmoDB no
  # surprise)
  assert side["labels"] == ["neutral", "happy", "sad", "angry", "fearful"]
  assert sorted(os.listdir(dest)) == ["LICENCE.md", "README.md", "labels.txt",
                                      "micro", "model.json", "model_int8.tflite"]
  assert set(side["files"]) == {
      "model_int8.tflite", "labels.txt",
      *(f"micro/stage_{k}_int8.tflite" for k in range(1, 5)),
      *(f"micro/front_end/{f}" for f in (
          "front_end.h", "front_end.c", "front_end_tables.c", "functionals.h",
          "functionals.c", "functionals_tables.c"))}
  ref = side["normalization"]["reference"]
  assert len(ref["mean"]) == 40 and min(ref["var"]) > 0
  assert side["normalization"]["regime"] == "speaker"
  card = open(os.path.join(dest, "README.md")).read()
  for words in ("## Training data", "## Measured", "## Normalisation contract",
                "## Intended use", "## Licence", "CC BY-NC-SA", "| ravdess |",
                "| emodb |", "| nemo |", "Polish", "**Functionals head**", "fused with the functionals head"):
    assert words in card
  metrics = json.load(open(cfg.path("student", "metrics.json")))
  assert set(metrics["speakers"]) == {"ravdess", "emodb", "nemo"}
  # the recipe's functionals head, C chosen on each corpus' fold-0
  # validation speakers, then refit on every speaker
  from nsl_ser import functionals, splits
  head = functionals.LinearHead.from_dict(side["functionals_head"])
  assert head.coef.shape == (5, functionals.num_functionals(40))
  assert "fusion" in side["functionals_head"]
  val = metrics["functionals_head_validation"]
  assert set(pooled.keys("emodb", splits.get_split("emodb", 0).val)) <= set(val)
  for c, n in metrics["speakers"].items():  # some, never all, of each corpus
    assert 1 <= sum(v.startswith(c + ":") for v in val) < n
  # the sidecar's per-exit temperatures, generated into the C head too
  import re
  t = side["temperature"]["per_exit"]
  tables = open(os.path.join(dest, "micro/front_end/functionals_tables.c")).read()
  body = re.search(r"nsl_fx_temperature\[4\] = \{([^}]*)\}", tables).group(1)
  np.testing.assert_allclose([float(v.strip().rstrip("f")) for v in body.split(",")],
                             [t[f"exit_{k}"] for k in range(1, 5)], rtol=1e-6)


def test_installed_model_predicts_plain_and_calibrated(installed, emodb_files):
  _, dest = installed
  path = os.path.join(dest, "model_int8.tflite")
  files = [f for f in emodb_files if os.path.basename(f).startswith("08")][:6]
  p = predictor.load_predictor(path)
  assert p.head is not None  # predict fuses the exits with the head
  plain, skipped = predictor.predict_paths(p, files, tau=1.01)
  assert not skipped and len(plain) == 6
  from nsl_ser.runtime import calibration
  spk, used, _ = calibration.speaker_stats(files)
  cal, _ = predictor.predict_paths(predictor.load_predictor(path, speaker=spk),
                                 files, tau=1.01)
  labels = json.load(open(os.path.join(dest, "model.json")))["labels"]
  for r in plain + cal:
    assert r.emotion in labels and 0 < r.confidence <= 1
  probs = np.array([r.windows[0].probs for r in cal])
  np.testing.assert_allclose(probs.sum(axis=1), 1, atol=0.02)


def test_shipped_c_sources_are_the_generators_and_build(tmp_path):
  """tflite_models/default/micro/front_end holds what the current
  generators write for the shipped model (front end with stage 1's input
  qparams; head with its weights and per-exit temperatures), recorded in
  model.json, and it builds (C99, -Werror)."""
  from nsl_ser import functionals
  from nsl_ser.export import micro, micro_front_end, micro_functionals
  from nsl_ser.runtime import litert
  from nsl_ser.features import FrontEndConfig
  root = os.path.dirname(predictor.DEFAULT_MODEL)
  side = json.load(open(os.path.join(root, "model.json")))
  fe = FrontEndConfig.from_dict(side["front_end"])
  qp = micro.stage_input_qparams(
      open(os.path.join(root, "micro/stage_1_int8.tflite"), "rb").read())
  per_exit = side["temperature"]["per_exit"]
  want = {**micro_front_end.sources(fe, qp.scale, qp.zero_point),
          **micro_functionals.sources(
              functionals.LinearHead.from_dict(side["functionals_head"]), fe,
              [per_exit[f"exit_{k}"] for k in range(1, len(per_exit) + 1)])}
  for name, text in want.items():
    path = os.path.join(root, "micro/front_end", name)
    assert open(path).read() == text, f"{path}: regenerate it"
    assert side["files"][f"micro/front_end/{name}"]["sha256"] == litert.sha256(
        text.encode())
  src = os.path.join(root, "micro/front_end")
  micro_front_end.build_library(src, str(tmp_path / "fe.so"))
  micro_functionals.build_library(src, str(tmp_path / "fx.so"))
