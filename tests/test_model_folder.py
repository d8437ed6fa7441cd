"""A model folder, calibration file or output that does not check out is
refused before any audio is read: one line naming the file and the reason,
exit code 2, no traceback, nothing written, no input overwritten."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from nsl_ser import audio
from nsl_ser.runtime import calibration, model_folder, output, predictor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = os.path.dirname(predictor.DEFAULT_MODEL)


def cli(*args):
  return subprocess.run([sys.executable, "-m", "nsl_ser.cli", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300)


@pytest.fixture
def folder(tmp_path):
  d = tmp_path / "model"
  d.mkdir()
  for f in ("model_int8.tflite", "model.json", "labels.txt"):
    shutil.copy(os.path.join(DEFAULT, f), d / f)
  return d


@pytest.fixture(scope="module")
def clip(emodb_files):
  return emodb_files[0]


def side(folder):
  return json.load(open(folder / "model.json"))


def write_side(folder, d):
  (folder / "model.json").write_text(json.dumps(d))


def refused(r, name, reason):
  """Exit 2, one line naming ``name`` and ``reason``, no traceback."""
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2, r.stderr
  assert len(lines) == 1 and name in lines[0] and reason in lines[0], lines
  assert r.stdout == ""


def predict(folder, *args):
  return cli("predict", f"--model={folder / 'model_int8.tflite'}", *args)


def test_the_copied_folder_predicts(folder, clip):
  r = predict(folder, clip)
  assert r.returncode == 0 and r.stderr == "", r.stderr
  assert os.path.basename(clip) in r.stdout


def test_missing_sidecar_is_refused_unless_bare_is_asked(folder, clip):
  os.remove(folder / "model.json")
  refused(predict(folder, clip), "model_int8.tflite", "no model.json beside it")
  r = predict(folder, "--allow_bare_model", clip)
  assert r.returncode == 0, r.stderr
  assert "bare model, without functionals head, temperatures" in r.stderr


def test_a_sidecar_above_the_model_is_not_used(folder, clip):
  sub = folder / "sub"
  sub.mkdir()
  shutil.copy(folder / "model_int8.tflite", sub / "model_int8.tflite")
  r = cli("predict", f"--model={sub / 'model_int8.tflite'}", clip)
  refused(r, "sub/model_int8.tflite", "no model.json beside it")


@pytest.mark.parametrize("edit,reason", [
    (lambda d: d["temperature"]["per_exit"].update(exit_1=float("nan")),
     "temperature.per_exit.exit_1 has NaN"),
    (lambda d: d["temperature"]["per_exit"].update(exit_2=0),
     "temperature.per_exit.exit_2 must be > 0"),
    (lambda d: d["normalization"]["reference"]["mean"].__setitem__(3, float("nan")),
     "normalization.reference.mean has NaN"),
    (lambda d: d["functionals_head"]["reference"]["var"].__setitem__(0, 0.0),
     "functionals_head.reference.var must be > 0"),
    (lambda d: d["functionals_head"]["coef"][0].__setitem__(0, float("inf")),
     "functionals_head.coef has NaN or infinite"),
    (lambda d: d.update(labels=d["labels"][:-1]), "labels.txt"),
    (lambda d: d["files"]["model_int8.tflite"].pop("sha256"), "has no sha256"),
    (lambda d: d["front_end"].update(clip_seconds=2.0), "front end 32000 samples"),
    (lambda d: d["front_end"].update(sample_rate=0), "front_end.sample_rate must be"),
    (lambda d: d["files"].pop("model_int8.tflite"), "does not list model_int8.tflite"),
])
def test_a_sidecar_that_does_not_check_out_is_refused(folder, clip, edit, reason):
  d = side(folder)
  edit(d)
  write_side(folder, d)
  r = predict(folder, clip)
  assert r.returncode == 2 and reason in r.stderr, r.stderr
  assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_label_count_must_equal_the_outputs(folder, clip):
  d = side(folder)
  d["labels"] = d["labels"][:-1]
  write_side(folder, d)
  os.remove(folder / "labels.txt")
  refused(predict(folder, clip), "model_int8.tflite", "outputs 5 classes, the labels are 4")
  (folder / "labels.txt").write_text("a\nb\n")
  d["labels"] = json.load(open(os.path.join(DEFAULT, "model.json")))["labels"]
  write_side(folder, d)
  refused(predict(folder, clip), "labels.txt", "says 2 labels")


def test_labels_linked_outside_the_folder_are_refused(folder, clip):
  os.remove(folder / "labels.txt")
  os.symlink("/etc/passwd", folder / "labels.txt")
  refused(predict(folder, clip), "labels.txt", "links outside the model folder")


def test_garbage_json_and_a_truncated_model_are_named(folder, clip):
  (folder / "model.json").write_text("{not json")
  refused(predict(folder, clip), "model.json", "not valid JSON")
  (folder / "model.json").write_text("[1, 2]")
  refused(predict(folder, clip), "model.json", "not a JSON object")
  shutil.copy(os.path.join(DEFAULT, "model.json"), folder / "model.json")
  data = (folder / "model_int8.tflite").read_bytes()
  (folder / "model_int8.tflite").write_bytes(data[:len(data) // 2])
  r = predict(folder, clip)
  assert r.returncode == 2 and "model_int8.tflite" in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
  (folder / "model_int8.tflite").write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
  refused(predict(folder, clip), "model_int8.tflite", "sha256 differs")


@pytest.mark.parametrize("edit,reason", [
    (lambda d: d.update(mean=d["mean"][:-1]), "mean has shape [39], expected [40]"),
    (lambda d: d.pop("var"), "needs count, mean and var"),
    (lambda d: d["var"].__setitem__(0, float("nan")), "var has NaN"),
    (lambda d: d.update(count=0), "count must be a number >= 1"),
])
def test_a_calibration_file_that_does_not_check_out_is_refused(
    tmp_path, emodb_files, clip, edit, reason):
  good = tmp_path / "speaker.json"
  assert cli("calibrate", f"--out={good}", *emodb_files[:3]).returncode == 0
  d = json.load(open(good))
  edit(d)
  bad = tmp_path / "bad.json"
  bad.write_text(json.dumps(d))
  r = cli("predict", f"--calibration={bad}", clip)
  refused(r, "bad.json", reason)
  bad.write_text("[]")
  refused(cli("predict", f"--calibration={bad}", clip), "bad.json", "not a JSON object")


def test_outputs_are_checked_before_any_work(tmp_path, clip):
  wav = tmp_path / "a.wav"
  shutil.copy(clip, wav)
  before = wav.read_bytes()
  refused(cli("predict", f"--output={wav}", str(wav)), "a.wav", "unknown output format")
  link = tmp_path / "a.csv"
  os.symlink(wav, link)
  refused(cli("predict", f"--output={link}", str(wav)), "a.csv", "is one of the inputs")
  assert wav.read_bytes() == before
  refused(cli("predict", f"--output={tmp_path / 'no' / 'r.csv'}", str(wav)),
          "r.csv", "does not exist")
  refused(cli("predict", f"--output={tmp_path}", str(wav)), str(tmp_path),
          "unknown output format")
  r = cli("predict", f"--output={tmp_path / 'R.JSON'}", str(wav))
  assert r.returncode == 0, r.stderr
  d = json.load(open(tmp_path / "R.JSON"))
  assert d["results"][0]["file"] == str(wav) and "path" not in d["results"][0]
  r = cli("predict", f"--output={tmp_path / 'r.jsonl'}", str(wav), "/nonexistent.wav")
  rows = [json.loads(l) for l in open(tmp_path / "r.jsonl")]
  assert [x["file"] for x in rows] == [str(wav), "/nonexistent.wav"]
  assert rows[1]["skipped"] and rows[1]["reason"] == "file not found"
  assert sorted(os.listdir(tmp_path)) == ["R.JSON", "a.csv", "a.wav", "r.jsonl"]


def test_fifos_devices_and_loops_are_named(tmp_path, clip):
  fifo, loop = tmp_path / "f.wav", tmp_path / "loop.wav"
  os.mkfifo(fifo)
  os.symlink(loop, loop)
  r = cli("predict", clip, str(fifo), str(loop), "/dev/null")
  assert r.returncode == 0
  assert f"skipped {fifo}: is a FIFO" in r.stderr
  assert f"skipped {loop}: is a symlink loop" in r.stderr
  assert "skipped /dev/null: is a device" in r.stderr


def test_writes_are_atomic_with_unique_temporary_files(tmp_path):
  """Four processes writing one output 100 times each: every write lands,
  every read sees a whole file, no temporary file is left."""
  target = tmp_path / "out.json"
  code = ("import json, sys\nfrom nsl_ser.runtime import output\n"
          "for i in range(100):\n"
          "  w = output.ResultWriter(sys.argv[1], 'json', [])\n"
          "  w.add([], {'file': 'x', 'i': i, 'pad': 'y' * 5000})\n"
          "  w.close()\n")
  procs = [subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=ROOT)
           for _ in range(4)]
  reads = 0
  while any(p.poll() is None for p in procs):
    if target.exists():
      json.load(open(target))  # never a partial file
      reads += 1
  assert all(p.wait() == 0 for p in procs)
  assert os.listdir(tmp_path) == ["out.json"]
  d = json.load(open(target))
  assert d["results"][0]["i"] == 99


def test_loader_checks_in_process():
  f = model_folder.load(predictor.DEFAULT_MODEL)
  assert f.labels == open(os.path.join(DEFAULT, "labels.txt")).read().split()
  assert all(t > 0 for t in f.temperature.values()) and not f.lacks
  with pytest.raises(model_folder.ModelFolderError, match="not a .tflite"):
    predictor.load_predictor(os.path.join(DEFAULT, "model.json"))
  assert output.output_format("x.JsonL") == "jsonl"
  assert output.finite({"a": [float("nan"), 1.0]}) == {"a": [None, 1.0]}
