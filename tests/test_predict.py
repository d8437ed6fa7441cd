"""`nsl-ser predict` with the committed default model on real audio."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from nsl_ser import audio
from nsl_ser.runtime import predictor, vad

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def default_model():
  assert os.path.exists(predictor.DEFAULT_MODEL), "tflite_models/default is missing"
  return predictor.load_predictor(predictor.DEFAULT_MODEL)


def test_window_starts():
  assert predictor.window_starts(100, 300, 150) == [0]
  assert predictor.window_starts(300, 300, 150) == [0]
  assert predictor.window_starts(700, 300, 150) == [0, 150, 300, 400]
  assert predictor.window_starts(750, 300, 150) == [0, 150, 300, 450]


def test_default_model_has_exits_labels_and_licence(default_model):
  assert default_model.exits[0] == "exit_1" and len(default_model.exits) >= 2
  assert "angry" in default_model.labels
  side = json.load(open(os.path.join(os.path.dirname(predictor.DEFAULT_MODEL),
                                     "model.json")))
  assert "CC BY-NC-SA" in side["licence"]
  # int8 network + front end (190 KiB int8 DFT basis, 76 KiB float Mel matrix)
  assert os.path.getsize(predictor.DEFAULT_MODEL) < 500_000


def test_default_model_streams_live_audio(default_model, emodb_files):
  """The committed model's streaming front end, fed 10 ms at a time as a
  microphone would, gives its front_end's features and predict's answer."""
  from nsl_ser.runtime import litert
  fe = default_model.front_end
  w = np.zeros(fe.clip_samples, np.float32)
  x = audio.load_audio(emodb_files[3])[:fe.clip_samples]
  w[:len(x)] = x
  stream = default_model.stream()
  for i in range(0, len(w) - fe.frame_step, fe.frame_step):
    stream.push(w[i:i + fe.frame_step])
  assert stream.features() is None
  probs, name, _ = predictor.classify_streamed(
      default_model, stream, w[len(w) - fe.frame_step:], 0.8, "max_prob")
  np.testing.assert_array_equal(
      stream.features(), litert.StagedRunner(default_model.model).features(w[None]))
  want, want_name, _ = predictor.classify_window(default_model, w, 0.8, "max_prob")
  assert name == want_name
  np.testing.assert_array_equal(probs, want)


def test_tau_controls_the_exit(default_model, emodb_files):
  x = audio.load_audio(emodb_files[0])
  first = predictor.predict_waveform(default_model, x, tau=0.0)
  full = predictor.predict_waveform(default_model, x, tau=1.01)
  assert [w.exit for w in first] == ["exit_1"]
  assert [w.exit for w in full] == [default_model.exits[-1]]


def test_tau_above_one_runs_the_one_call_model(emodb_files):
  """tau > 1 never stops early, so a staged model answers with its one-call
  ``full`` signature: the stage chain's numbers within int8 rounding,
  without calling the front end or the stages."""
  p = predictor.load_predictor(predictor.DEFAULT_MODEL)
  last = p.exits[-1]
  for f in emodb_files[:40:8]:
    x = audio.load_audio(f)
    w = np.zeros(p.front_end.clip_samples, np.float32)
    w[:min(len(x), len(w))] = x[:len(w)]
    p.begin_file(x)
    p.head_probs = p.head_at(0.0)
    p.start(w)
    chain = p.exit_probs(last, w)
    p.start = p.run_exit = None  # the one-call path needs neither
    probs, name, _ = predictor.classify_window(p, w, 1.01, "max_prob")
    del p.start, p.run_exit
    assert name == last
    # two int8 graphs: measured up to 0.016 apart fused (0.039, 10 output
    # LSB, before the fusion) over 80 EmoDB files
    np.testing.assert_allclose(probs, chain, atol=0.06)


def _confident_clips(p, files, emotion, n):
  out = []
  for f in files:
    if os.path.basename(f)[5] != emotion[1]:
      continue
    x = audio.load_audio(f)
    w = predictor.predict_waveform(p, x, tau=1.01)[0]
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
  r = predictor.predict_file(default_model, path, tau=1.01, hop_seconds=1.0)
  assert abs(r.windows[-1].end - 60.0) < 1e-6
  inside = [(w, e) for w in r.windows for s, end, e in bounds
            if w.start >= s and w.end <= end]
  assert len(inside) >= 30
  hits = sum(w.emotion == e for w, e in inside)
  assert hits / len(inside) >= 0.8, [(w.start, w.emotion, e) for w, e in inside]
  segs = predictor.segments(r.windows)
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
  assert [os.path.basename(x["file"]) for x in res["results"]] == ["stereo48k.wav"]
  skipped = {os.path.basename(s["file"]): s["reason"] for s in res["skipped"]}
  assert set(skipped) == {"corrupt.wav", "notes.wav"}
  assert all("not readable" in v for v in skipped.values())
  assert "stereo48k.wav" in r.stdout and "skipped" in r.stderr
  assert res["results"][0]["emotion"] in json.load(open(os.path.join(
      os.path.dirname(predictor.DEFAULT_MODEL), "model.json")))["labels"]


# --- voice activity detection --------------------------------------------

SR = 16000


def _tone(seconds, amp=0.3, hz=220.0):
  t = np.arange(int(seconds * SR)) / SR
  return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def _noise(seconds, std, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(0.0, std, int(seconds * SR)).astype(np.float32)


def test_frame_energy_db_levels_and_frames():
  cfg = vad.VADConfig()
  e = vad.frame_energy_db(np.ones(SR, np.float32), SR, cfg)
  assert len(e) == 1 + (SR - 480) // 160 and np.allclose(e, 0.0, atol=1e-6)
  assert np.allclose(vad.frame_energy_db(_tone(1.0, amp=0.1), SR)[5:-5],
                     20 * np.log10(0.1 / np.sqrt(2)), atol=0.2)
  assert vad.frame_energy_db(np.zeros(100, np.float32), SR).shape == (1,)
  assert vad.speech_mask(_tone(1.0), SR).all()


def test_speech_spans_merge_gaps_and_drop_clicks():
  x = np.concatenate([np.zeros(SR), _tone(1.0), np.zeros(SR // 10),  # gap 0.1
                      _tone(0.5), _noise(1.0, 1e-4),  # -80 dBFS: not speech
                      _tone(0.1), np.zeros(SR)])      # a click: dropped
  spans = vad.speech_spans(x, SR)
  assert len(spans) == 1, spans
  (s, e), = spans
  assert abs(s - 1.0) < 0.04 and abs(e - 2.6) < 0.04
  assert abs(vad.speech_seconds_in(spans, 0.0, 1.5) - 0.5) < 0.04
  assert vad.speech_seconds_in(spans, 3.0, 5.0) == 0.0
  # a gap longer than the hangover splits; min_speech drops short runs
  y = np.concatenate([_tone(1.0), np.zeros(SR // 2), _tone(0.4)])
  assert len(vad.speech_spans(y, SR)) == 2
  assert len(vad.speech_spans(y, SR, vad.VADConfig(min_speech_seconds=0.5))) == 1


def test_vad_threshold_follows_the_noise_and_the_floor():
  # noise 30 dB under the tone: above peak - 40 dB, yet not speech
  x = np.concatenate([_noise(2.0, 0.3 * 10 ** (-30 / 20)), _tone(1.0),
                      _noise(2.0, 0.3 * 10 ** (-30 / 20), seed=1)])
  (s, e), = vad.speech_spans(x, SR)
  assert abs(s - 2.0) < 0.04 and abs(e - 3.0) < 0.04
  # quiet room noise alone (-60 dBFS) never becomes speech
  assert vad.speech_spans(_noise(5.0, 1e-3), SR) == []
  assert vad.speech_spans(np.zeros(SR, np.float32), SR) == []


class _Counting(predictor.Predictor):
  """Wraps a predictor and counts the windows it classifies."""

  def __init__(self, p):
    self.p, self.calls = p, 0
    self.labels, self.exits, self.front_end = p.labels, p.exits, p.front_end

  def start(self, window):
    self.calls += 1
    self.p.start(window)

  def run_exit(self, name, window):
    return self.p.run_exit(name, window)


def _speech(files, seconds):
  """EmoDB clips of one speaker, concatenated to at least ``seconds``."""
  out = []
  for f in files:
    if os.path.basename(f)[:2] == os.path.basename(files[0])[:2]:
      out.append(audio.load_audio(f))
    if sum(map(len, out)) >= seconds * SR:
      return np.concatenate(out)
  raise AssertionError("not enough speech")


@pytest.mark.parametrize("noise_dbfs", [-100, -45])
def test_silence_around_speech_is_no_speech(default_model, emodb_files,
                                            tmp_path, noise_dbfs):
  """3 s of near-silence (or room noise at -45 dBFS, where a peak-relative
  threshold alone fails) + real speech + 3 s of it again."""
  speech = _speech(emodb_files, 4.5)
  std = 10 ** (noise_dbfs / 20)
  x = np.concatenate([_noise(3.0, std), speech, _noise(3.0, std, seed=1)])
  path = str(tmp_path / "long.wav")
  sf.write(path, x, SR, subtype="FLOAT")
  t0, t1, total = 3.0, 3.0 + len(speech) / SR, len(x) / SR
  p = _Counting(default_model)
  r = predictor.predict_file(p, path, hop_seconds=1.0)
  overlap = [max(0.0, min(w.end, t1) - max(w.start, t0)) for w in r.windows]
  silent = [w for w, o in zip(r.windows, overlap) if o == 0.0]
  speechy = [w for w, o in zip(r.windows, overlap) if o >= 1.0]
  assert len(silent) == 2 and len(speechy) >= 5
  assert all(w.emotion == predictor.NO_SPEECH and w.exit == "-" and w.probs == []
             and w.ms == 0.0 and w.confidence == 1.0 for w in silent)
  assert all(w.emotion in default_model.labels for w in speechy)
  classified = [w for w in r.windows if w.emotion != predictor.NO_SPEECH]
  assert p.calls == len(classified)  # the model never saw silent windows
  mean = np.mean([w.probs for w in classified], axis=0)
  assert r.emotion == default_model.labels[int(np.argmax(mean))]
  assert abs(r.confidence - float(np.max(mean))) < 1e-6
  segs = predictor.segments(r.windows)
  assert segs[0]["emotion"] == segs[-1]["emotion"] == predictor.NO_SPEECH
  assert segs[0]["start"] == 0.0 and abs(segs[-1]["end"] - total) < 1e-6
  assert len(segs) < len(r.windows)
  assert all(a["emotion"] != b["emotion"] for a, b in zip(segs, segs[1:]))
  # without VAD every window is classified, as before
  off = predictor.predict_file(default_model, path, hop_seconds=1.0, use_vad=False)
  assert all(w.emotion != predictor.NO_SPEECH for w in off.windows)


def test_short_clips_with_speech_are_unchanged_by_vad(default_model, emodb_files):
  clips = [audio.load_audio(f) for f in emodb_files[:40]]
  clips = sorted(clips, key=len)[:3] + clips[:3]  # shortest is ~1.5 s
  for x in clips:
    on = predictor.predict_waveform(default_model, x)
    off = predictor.predict_waveform(default_model, x, use_vad=False)
    assert len(on) == 1
    assert [(w.emotion, w.confidence, w.exit, w.probs) for w in on] == \
        [(w.emotion, w.confidence, w.exit, w.probs) for w in off]


def test_quiet_short_clip_and_all_quiet_file_are_no_speech(default_model):
  w, = predictor.predict_waveform(default_model, _noise(2.0, 1e-3))
  assert w.emotion == predictor.NO_SPEECH
  r = predictor.summarise(default_model, "x.wav",
                        predictor.predict_waveform(default_model, _noise(8.0, 1e-3)))
  assert r.emotion == predictor.NO_SPEECH and r.exit == "-" and r.ms == 0.0
  assert r.confidence == 1.0 and len(r.windows) > 1


def test_silent_files_stay_skipped(default_model, emodb_files, tmp_path):
  sf.write(tmp_path / "zeros.wav", np.zeros(5 * SR, np.float32), SR)
  sf.write(tmp_path / "hiss.wav", _noise(5.0, 1e-6), SR, subtype="FLOAT")
  sf.write(tmp_path / "speech.wav", audio.load_audio(emodb_files[0]), SR)
  results, skipped = predictor.predict_paths(default_model, [str(tmp_path)])
  assert [os.path.basename(r.path) for r in results] == ["speech.wav"]
  assert sorted((os.path.basename(f), why) for f, why in skipped) == [
      ("hiss.wav", "all-silent audio"), ("zeros.wav", "all-silent audio")]


def test_cli_rows_always_name_their_file(emodb_files, tmp_path):
  folder = tmp_path / "in"
  folder.mkdir()
  speech = _speech(emodb_files, 4.5)
  sf.write(folder / "long.wav", np.concatenate(
      [np.zeros(3 * SR), speech, np.zeros(3 * SR)]).astype(np.float32), SR)
  sf.write(folder / "short.wav", audio.load_audio(emodb_files[1]), SR)
  sf.write(folder / "silent.wav", np.zeros(SR, np.float32), SR)
  out = tmp_path / "x.csv"
  r = subprocess.run([sys.executable, "-m", "nsl_ser.cli", "predict",
                      f"--output={out}", "--hop_seconds=1.0", str(folder)],
                     cwd=ROOT, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  rows = list(csv.DictReader(open(out)))
  names = [os.path.basename(row["file"]) for row in rows]
  assert all(row["file"] for row in rows)
  by_file = {n: [row for row, m in zip(rows, names) if m == n] for n in set(names)}
  assert set(by_file) == {"long.wav", "short.wav", "silent.wav"}
  # long: one summary row (start/end empty) first, then its timeline
  long_rows = by_file["long.wav"]
  assert names.index("long.wav") + len(long_rows) == \
      len(names) - names[::-1].index("long.wav")  # contiguous
  assert long_rows[0]["start"] == "" and long_rows[0]["end"] == ""
  assert all(row["start"] != "" for row in long_rows[1:]) and len(long_rows) > 5
  assert long_rows[1]["emotion"] == long_rows[-1]["emotion"] == predictor.NO_SPEECH
  assert long_rows[0]["emotion"] != predictor.NO_SPEECH
  (short,) = by_file["short.wav"]
  assert short["start"] == "" and short["emotion"] != predictor.NO_SPEECH
  (silent,) = by_file["silent.wav"]
  assert silent["emotion"] == "SKIPPED" and silent["exit"] == "all-silent audio"
  table = r.stdout.strip().splitlines()  # the printed table: same rows
  assert table[0].startswith("file") and len(table) == 1 + len(rows) - 1
  assert all(line.startswith(str(folder)) for line in table[1:])


def test_json_windows_and_segments_name_their_file(default_model, emodb_files,
                                                   tmp_path):
  path = str(tmp_path / "long.wav")
  sf.write(path, np.concatenate([np.zeros(3 * SR), _speech(emodb_files, 4.5)]
                                ).astype(np.float32), SR)
  r = predictor.predict_file(default_model, path)
  d = json.loads(json.dumps(predictor.result_record(r), allow_nan=False))
  assert d["file"] == path and d["windows"] and d["segments"]
  assert all(x["file"] == path for x in d["windows"] + d["segments"])
  assert d["windows"][0]["emotion"] == predictor.NO_SPEECH
  assert all(row[0] == path for row in predictor.table_rows([r]))
