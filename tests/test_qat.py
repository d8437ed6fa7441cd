"""Quantisation-aware training on real EmoDB clips (nsl_ser.export.qat).

A briefly trained early-exit student (as in test_export.py) is made
quantisation-aware, fine-tuned for two epochs on a slice of the fold-0
training speakers, converted to full int8 and run with LiteRT on the fold-0
test speakers.
"""
import numpy as np
import pytest

from nsl_ser import data, evaluation, export, models, records, splits
from nsl_ser.export import qat
from nsl_ser.runtime import litert
from nsl_ser.compat import keras

EXITS = [f"exit_{k}" for k in range(1, 5)]


@pytest.fixture(scope="module")
def emodb(records_dir):
  rec = f"{records_dir}/emodb"
  labels = open(f"{rec}/labels.txt").read().split()
  split = splits.get_split("emodb", 0)
  arrays = data.load_arrays(records.list_shards(rec), labels)
  return {"labels": labels, "train": arrays.by_speakers(split.train),
          "val": arrays.by_speakers(split.val),
          "test": arrays.by_speakers(split.test)}


@pytest.fixture(scope="module")
def student(emodb, train_exit_student):
  """A student with exits trained for a few epochs on fold-0 training."""
  return train_exit_student(len(emodb["labels"]), emodb["train"], epochs=10)


@pytest.fixture(scope="module")
def calibration(emodb):
  tr = emodb["train"]
  return tr.features[export.calibration_subset(len(tr), 64)]


@pytest.fixture(scope="module")
def tuned(student, emodb, calibration):
  """QAT copy, fine-tuned 2 epochs on 160 training clips; its int8 model."""
  before = [w.copy() for w in student.get_weights()]
  q = qat.quantize_aware(student, calibration)
  bn = {l.name: [w.copy() for w in l.get_weights()] for l in q.layers
        if isinstance(getattr(l, "layer", l), keras.layers.BatchNormalization)}
  tr, va = emodb["train"], emodb["val"]
  idx = export.calibration_subset(len(tr), 160, seed=1)
  cfg = qat.QATConfig(epochs=2, learning_rate=1e-4, verbose=0)
  hist = qat.fine_tune(q, student, tr.features[idx], tr.labels[idx],
                       va.features, va.labels, cfg)
  tflite = qat.convert_qat_int8(q, calibration)
  return {"model": q, "hist": hist, "tflite": tflite, "bn_before": bn,
          "float_before": before}


def test_qat_model_keeps_names_and_has_fake_quant(student, calibration, emodb):
  q = qat.quantize_aware(student, calibration)
  assert q.output_names == EXITS
  assert export.output_names(q) == EXITS == models.exit_names(q)
  fq = set(qat.fake_quant_layers(q))
  assert qat.fake_quant_layers(student) == []
  for k in range(1, 5):  # Conv2D -> BN -> ReLU: kernel and ReLU, not BN
    assert {f"block{k}_conv", f"block{k}_relu", f"exit_{k}"} <= fq
    assert f"block{k}_bn" not in fq
  assert {"norm", "fc1", "exit_1_fc", "exit_1_pool", "gap"} <= fq
  ranges = qat.range_variables(q)
  assert ("exit_4", "pre_activation") in ranges  # logits before the softmax
  assert ranges[("block2_conv", "kernel")][0].shape == (24,)  # per channel
  # weights start from the float model; outputs stay close to it
  for name in ("block3_conv", "fc1", "exit_4"):
    np.testing.assert_array_equal(q.get_layer(name).trainable_weights[0].numpy(),
                                  student.get_layer(name).get_weights()[0])
  # fake-quantized activations = float ones to within the quantisation step
  names = ["norm", "block2_relu", "fc1"]
  what = ["output", "output", "post_activation"]
  step = [(float(ranges[(n, w)][1].numpy()) - float(ranges[(n, w)][0].numpy()))
          / 255 for n, w in zip(names, what)]

  def acts(m, x):
    return keras.Model(m.input, [m.get_layer(n).output for n in names]
                       ).predict(x, verbose=0)

  diff = [np.abs(a - b) for a, b in zip(acts(student, calibration),
                                        acts(q, calibration))]
  assert diff[0].max() <= 0.5 * step[0] * 1.001  # inside the calibrated range
  for d, s in zip(diff, step):
    assert 0 < d.mean() < 0.5 * s
  x = emodb["test"].features
  fl, qa = qat.predict_exits(student, x), qat.predict_exits(q, x)
  for a, b in zip(fl, qa):  # max measured over fixture seeds 0-4: 0.119
    assert np.mean(a.argmax(1) == b.argmax(1)) >= 0.95
    assert 0 < np.abs(a - b).max() < 0.15
  # the rest of the toolkit treats it like the float model
  sub = export.exit_submodel(q, "exit_2")
  np.testing.assert_allclose(sub.predict(x[:8], verbose=0), qa[1][:8], atol=1e-6)


def test_ranges_calibrated_from_float_activations(student, calibration):
  q = qat.quantize_aware(student)
  assert not qat.ranges_calibrated(q)
  with pytest.raises(ValueError, match="not calibrated"):
    qat.convert_qat_int8(q, calibration[:4])
  got = qat.calibrate_ranges(q, student, calibration)
  assert qat.ranges_calibrated(q)
  acts = keras.Model(student.input, [student.get_layer(n).output for n in
                                     ("block1_relu", "norm", "fc1")]
                     ).predict(calibration, verbose=0)
  assert got["block1_relu/output"][0] == 0.0
  np.testing.assert_allclose(got["block1_relu/output"][1], acts[0].max(), rtol=1e-5)
  np.testing.assert_allclose(got["norm/output"], [acts[1].min(), acts[1].max()],
                             rtol=1e-5)
  np.testing.assert_allclose(got["fc1/post_activation"][1], acts[2].max(),
                             rtol=1e-5)
  lo, hi = got["exit_4/pre_activation"]
  assert lo < 0 < hi
  kernel = student.get_layer("block1_conv").get_weights()[0]
  kmin, kmax = (v.numpy() for v in qat.range_variables(q)[("block1_conv", "kernel")])
  np.testing.assert_allclose(kmax, np.abs(kernel).max(axis=(0, 1, 2)), rtol=1e-6)
  np.testing.assert_allclose(kmin, -kmax)


def test_fine_tune_keeps_best_epoch_and_leaves_float_model(tuned, student, emodb):
  h, q = tuned["hist"], tuned["model"]
  assert len(h["val_uar"]) == 2 and len(h["kd"]) == 2
  assert 0 <= h["best_epoch"] <= 2
  best = max([h["val_uar_initial"]] + h["val_uar"])
  assert h["val_uar_best"] == pytest.approx(best)
  if h["best_epoch"]:
    assert h["val_uar"][h["best_epoch"] - 1] == pytest.approx(best)
  else:
    assert h["val_uar_initial"] == pytest.approx(best)
  va = emodb["val"]  # the returned weights are the selected ones
  pred = qat.predict_exits(q, va.features)[-1].argmax(-1)
  assert 100 * evaluation.uar(va.labels, pred, 7) == pytest.approx(best)
  for name, ws in tuned["bn_before"].items():  # BatchNorm stayed frozen
    for a, b in zip(ws, q.get_layer(name).get_weights()):
      np.testing.assert_array_equal(a, b)
  assert all(l.trainable for l in q.layers)
  for a, b in zip(tuned["float_before"], student.get_weights()):
    np.testing.assert_array_equal(a, b)


def test_qat_tflite_is_full_int8_with_exit_signature(tuned):
  data_ = tuned["tflite"]
  assert qat.float_tensors(data_) == [] and qat.float_ops(data_) == []
  m = litert.Model(data_)
  (inp,) = m.inputs()
  assert (inp.name, inp.shape, inp.dtype) == ("features", (1, 298, 40), "int8")
  assert sorted(t.name for t in m.outputs()) == EXITS
  assert all(t.dtype == "int8" for t in m.outputs())
  ops = litert.op_names(data_)[0]
  assert ops.count("CONV_2D") == 4 and ops.count("SOFTMAX") == 4
  assert ops.count("MUL") == 1  # only in norm: BatchNorm folded into the convs
  assert "DEQUANTIZE" not in ops


def test_qat_tflite_runs_and_agrees_with_keras(tuned, emodb):
  te = emodb["test"]
  out = qat.run_features(tuned["tflite"], te.features)
  ref = dict(zip(EXITS, qat.predict_exits(tuned["model"], te.features)))
  assert set(out) == set(EXITS)
  for e in EXITS:
    assert out[e].shape == (len(te), 7)
    assert np.abs(out[e].sum(1) - 1).max() < 0.03
    agree = np.mean(out[e].argmax(1) == ref[e].argmax(1))
    assert agree >= 0.9, (e, agree)
  assert len(set(out["exit_4"].argmax(1))) >= 3  # not degenerate


def test_choose_ships_qat_only_when_it_beats_ptq():
  def res(ptq, qat_):
    return {"exits": ["exit_1", "exit_2"],
            "uar": {"ptq": {"exit_1": 90.0, "exit_2": ptq},
                    "qat": {"exit_1": 10.0, "exit_2": qat_}}}
  assert qat.choose(res(53.0, 60.0)) == "qat"
  assert qat.choose(res(60.0, 60.0)) == "ptq"
  assert qat.choose(res(60.0, 59.9)) == "ptq"


def test_saved_qat_model_loads(tuned, emodb, tmp_path):
  q = tuned["model"]
  q.save(str(tmp_path / "qat.keras"))
  back = qat.load_qat_model(str(tmp_path / "qat.keras"))
  assert back.output_names == EXITS
  assert qat.fake_quant_layers(back) == qat.fake_quant_layers(q)
  x = emodb["test"].features[:8]
  for a, b in zip(qat.predict_exits(q, x), qat.predict_exits(back, x)):
    np.testing.assert_array_equal(a, b)


def test_qat_export_runs_on_every_target(tuned, student, emodb, records_dir,
                                         tmp_path):
  """export_all with the QAT copy: phone int8 (audio in), MCU stages chained
  across QAT ranges (TFLite Micro = LiteRT reference kernels), Edge TPU
  model; the float phone model still comes from the float student."""
  from nsl_ser.export import edgetpu, micro
  rec = f"{records_dir}/emodb"
  split = splits.get_split("emodb", 0)
  train_audio, _, _ = export.load_audio(rec, emodb["labels"], sorted(split.train))
  test_audio, y, _ = export.load_audio(rec, emodb["labels"], sorted(split.test))
  cal = train_audio[export.calibration_subset(len(train_audio), 64)]
  out = str(tmp_path / "qat_export")
  side = export.export_all(student, out, emodb["labels"], cal,
                           qat_model=tuned["model"])
  assert side["quantization"] == {"method": "qat", "mode": "qat"}
  assert side["exit_macs"]["exit_1"] > 0 and side["params"] == student.count_params()
  # float phone = float student; int8 phone = QAT model (class agreement)
  pf = litert.Model.from_file(f"{out}/model_float.tflite")
  pq = litert.Model.from_file(f"{out}/model_int8.tflite")
  ref = export.exits_model(student).predict(export.features_of(test_audio[:4]),
                                            verbose=0)
  got = litert.phone_exits(pf, test_audio[:4])["exit_4"]
  assert np.abs(got - ref[-1]).max() < 1e-4
  qk = qat.predict_exits(tuned["model"], export.features_of(test_audio))
  q = litert.phone_exits(pq, test_audio)["exit_4"]
  assert np.mean(q.argmax(1) == qk[-1].argmax(1)) >= 0.9
  # MCU stages: one int8 buffer passes each boundary; TFLM = reference
  paths = [f"{out}/micro/stage_{k}_int8.tflite" for k in range(1, 5)]
  tflm = [micro.MicroModel.from_file(p) for p in paths]
  refk = [litert.Model.from_file(p, reference_kernels=True) for p in paths]
  assert all(b["equal"] for b in side["micro"]["boundaries"])
  qp = tflm[0].inputs[0].qparams
  for clip in export.features_of(test_audio[:3]):
    a = micro.run_chain(tflm, qp.quantize(clip[None]))
    b = micro.run_chain(refk, qp.quantize(clip[None]))
    for n in a:
      np.testing.assert_array_equal(a[n], b[n])
  tpu = open(f"{out}/edgetpu/model_int8.tflite", "rb").read()
  assert edgetpu.check(tpu) == []


def test_int8_source_modes(student, emodb, records_dir, calibration):
  """The exporter's int8 step: PTQ keeps the float model; an unknown mode
  is an error; auto fine-tunes QAT and keeps it only where it wins on the
  validation speakers."""
  from nsl_ser.export import quantize
  data = quantize.QATData(f"{records_dir}/emodb", "emodb", 0)
  m, rep = quantize.int8_source(student, "ptq", calibration, emodb["labels"], data)
  assert m is student and rep == {"method": "ptq", "mode": "ptq"}
  with pytest.raises(ValueError, match="quantization must be one of"):
    quantize.int8_source(student, "fp16", calibration, emodb["labels"], data)
  with pytest.raises(ValueError, match="needs QATData"):
    quantize.int8_source(student, "auto", calibration, emodb["labels"])
  cfg = qat.QATConfig(epochs=1, verbose=0)
  m, rep = quantize.int8_source(student, "auto", calibration, emodb["labels"],
                                data, cfg)
  assert rep["compared_on"] == "emodb fold 0 validation speakers"
  assert rep["chosen"] in ("ptq", "qat") and (m is not student) == (rep["chosen"] == "qat")
  assert rep["method"] == rep["chosen"]
  deepest = rep["uar"]["ptq"]["exit_4"], rep["uar"]["qat"]["exit_4"]
  assert (rep["chosen"] == "qat") == (deepest[1] > deepest[0])
