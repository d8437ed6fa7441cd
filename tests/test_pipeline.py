"""`nsl-ser run --quick` end to end: killed mid-run, resumed, report written."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_cmd(work, data_dir):
  return [sys.executable, "-m", "nsl_ser.cli", "run", "--quick",
          f"--work_dir={work}", f"--data_dir={data_dir}"]


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory, data_dir):
  work = str(tmp_path_factory.mktemp("run"))
  manifest = os.path.join(work, "run_manifest.json")
  proc = subprocess.Popen(_run_cmd(work, data_dir), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)
  deadline = time.time() + 600
  done_before = {}
  while time.time() < deadline and proc.poll() is None:
    if os.path.exists(manifest):
      try:
        done_before = json.load(open(manifest))["stages"]
      except json.JSONDecodeError:
        done_before = {}
      if "embed" in done_before:
        break
    time.sleep(0.5)
  assert proc.poll() is None, "the run finished before it could be killed"
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  done_before = json.load(open(manifest))["stages"]
  assert "report" not in done_before
  again = subprocess.run(_run_cmd(work, data_dir), cwd=ROOT, capture_output=True,
                         text=True)
  assert again.returncode == 0, again.stderr[-3000:]
  return work, done_before, again.stdout + again.stderr


def test_resume_skips_finished_stages(resumed_run):
  work, before, log = resumed_run
  after = json.load(open(os.path.join(work, "run_manifest.json")))["stages"]
  for name, entry in before.items():
    assert f"[{name}] up to date, skipped" in log
    assert after[name]["finished"] == entry["finished"]
  missing = [s for s in after if s not in before]
  assert missing and all(f"[{s}] done" in log for s in missing)
  assert list(after) == ["prepare", "train_source", "embed", "build_graph",
                         "train_student", "export",
                         "evaluate", "report"]


def test_outputs_and_report(resumed_run, data_dir):
  work, _, _ = resumed_run
  report = open(os.path.join(work, "report", "report.md")).read()
  pngs = [l.split("(")[1].rstrip(")\n") for l in report.splitlines()
          if l.startswith("![")]
  assert len(pngs) >= 6
  for p in pngs:
    with open(os.path.join(work, "report", p), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  side = json.load(open(os.path.join(work, "tflite", "model.json")))
  assert side["exits"] == ["exit_1", "exit_2", "exit_3", "exit_4"]
  ev = json.load(open(os.path.join(work, "evaluation.json")))
  assert set(ev["per_exit"]) == set(side["exits"])
  # the τ curve and the report's plot use measured latencies (audio in)
  lat = ev["latency_ms"]
  assert set(side["exits"]) | {"full"} <= set(lat) and lat["threads"] == 1
  assert all(lat[e] > 0 for e in side["exits"] + ["full"])
  for c in ev["tau_curve"]:
    shares = dict(zip(side["exits"], c["exit_share"]))
    assert c["mean_ms"] == pytest.approx(sum(s * lat[e] for e, s in shares.items()))
  assert "accuracy against measured latency" in report
  # the functionals head travels in the sidecar; evaluate and predict fuse it
  assert ev["fused"] and set(ev["per_exit_cnn"]) == set(side["exits"])
  assert lat["functionals_head"] > 0 and "functionals head adds" in report
  assert "functionals head" in side["functionals_head"]["fusion"]
  from nsl_ser import functionals
  from nsl_ser.runtime import predictor
  from nsl_ser.features import LogMel
  p = predictor.load_predictor(os.path.join(work, "tflite", "model_int8.tflite"))
  assert p.head is not None
  clip = np.asarray(soundfile.read(sorted(glob.glob(os.path.join(
      data_dir, "emodb", "wav", "*.wav")))[0])[0], np.float32)
  # the head describes the whole utterance (the file), the CNN each window
  p.begin_file(clip)
  whole = LogMel(p.front_end)(clip[None])[0].numpy()
  np.testing.assert_allclose(p.head_at(0.0), p.head.probs(
      functionals.functionals(whole, p.head.hop_s)[None])[0], rtol=1e-6)
  w = np.zeros(p.front_end.clip_samples, np.float32)
  w[:min(len(clip), len(w))] = clip[:len(w)]
  p.head_probs = p.head_at(0.0)
  p.start(w)
  for e in p.exits:
    np.testing.assert_allclose(p.exit_probs(e, w), functionals.fuse(
        p.run_exit(e, w), p.head_probs), rtol=1e-5)
  # a recording longer than UTTERANCE_S: each window gets its chunk's head
  long = np.concatenate([np.asarray(soundfile.read(f)[0], np.float32)
                         for f in sorted(glob.glob(os.path.join(
                             data_dir, "emodb", "wav", "*.wav")))[:12]])
  p.begin_file(long)
  bounds, fx = functionals.of_utterances(
      LogMel(p.front_end)(long[None])[0].numpy(), p.head.hop_s)
  assert len(bounds) > 1
  for k, (a, b) in enumerate(bounds):
    np.testing.assert_allclose(p.head_at(0.5 * (a + b) * p.head.hop_s),
                               p.head.probs(fx[k:k + 1])[0], rtol=1e-6)
  p.begin_file(clip)
  # the exported C head (micro/front_end/functionals.*) gives the same
  from nsl_ser.export import micro_functionals
  src = os.path.join(work, "tflite", "micro", "front_end")
  assert "micro/front_end/functionals.c" in side["files"]
  lib = micro_functionals.CFunctionals(micro_functionals.build_library(
      src, os.path.join(work, "libfx.so")), p.head.coef.shape[1], len(p.labels))
  np.testing.assert_allclose(lib.probs(lib.functionals(whole)), p.head_probs,
                             atol=1e-4)
  assert f"one-call full model {lat['full']:.2f} ms" in report
  m = json.load(open(os.path.join(work, "run_manifest.json")))
  for entry in m["stages"].values():
    assert entry["outputs"] and all(len(h) == 64 for h in entry["outputs"].values())


def test_unchanged_rerun_does_nothing_and_changed_flag_reruns(resumed_run, data_dir):
  work, _, _ = resumed_run
  r = subprocess.run(_run_cmd(work, data_dir), cwd=ROOT, capture_output=True, text=True)
  assert r.returncode == 0
  assert "done in" not in r.stdout and r.stdout.count("up to date, skipped") == 8
  r = subprocess.run(_run_cmd(work, data_dir) + ["--multiplier=0.2"], cwd=ROOT,
                     capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  assert "[build_graph] up to date, skipped" in r.stdout
  assert "[train_student] done" in r.stdout and "[export] done" in r.stdout


STRATEGY_SCRIPT = r"""
import sys
from nsl_ser.compat import tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import numpy as np
from nsl_ser import data, models, nsl_train, records, self_distill, training
labels = open(sys.argv[1] + "/labels.txt").read().split()
arr = data.load_arrays(records.list_shards(sys.argv[1]), labels, {"03", "08", "09"})
tr, va = arr.by_speakers({"03", "08"}), arr.by_speakers({"09"})
s = training.get_strategy(sys.argv[2])
cfg = training.TrainConfig(epochs=2, verbose=0)
m, h = nsl_train.train_classifier(tr, va, 7, models.STUDENT, cfg, strategy=s)
e, _, h2 = self_distill.train_exit_model(tr.features, tr.labels, va.features,
                                         va.labels, 7, cfg=cfg, strategy=s)
print("REPLICAS", s.num_replicas_in_sync, len(h["loss"]), len(h2["loss"]))
"""


@pytest.mark.parametrize("strategy,replicas", [("default", 1), ("mirrored", 2)])
def test_distribution_strategies(records_dir, strategy, replicas):
  r = subprocess.run([sys.executable, "-c", STRATEGY_SCRIPT,
                      f"{records_dir}/emodb", strategy], cwd=ROOT,
                     capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"REPLICAS {replicas} 2 2" in r.stdout
