"""``prepare`` over the real corpora and over bad input."""
import os
import subprocess
import sys

import numpy as np
import soundfile as sf

from nsl_ser import records, splits
from nsl_ser.compat import tf
from nsl_ser.prepare import PrepareConfig, prepare, read_csv
from test_audio import BAD, _write_bad


def _count(records_dir, corpus):
  files = records.list_shards(os.path.join(records_dir, corpus))
  return [records.parse_utterance(s) for s in tf.data.TFRecordDataset(files)]


def test_full_corpora_counts(records_dir):
  rav = _count(records_dir, "ravdess")
  emo = _count(records_dir, "emodb")
  assert len(rav) == 1440 and len(emo) == 535
  ids = [e["id"].numpy() for e in rav + emo]
  assert len(set(ids)) == len(ids)
  emo_counts = {}
  for e in emo:
    emo_counts[e["label_name"].numpy().decode()] = emo_counts.get(
        e["label_name"].numpy().decode(), 0) + 1
  assert emo_counts == {"angry": 127, "boredom": 81, "disgust": 46,
                        "fearful": 69, "happy": 71, "sad": 62, "neutral": 79}
  speakers = {e["speaker"].numpy().decode() for e in rav}
  assert len(speakers) == 24
  split = splits.get_split("ravdess")
  assert sum(e["speaker"].numpy().decode() in split.train for e in rav) == 14 * 60
  # the int16 waveform decodes to the file's samples
  e = emo[0]
  w = records.decode_waveform(e["waveform"]).numpy()
  assert w.shape[0] == e["num_samples"].numpy()
  row = read_csv(os.path.join(records_dir, "emodb", "manifest.csv"))[0]
  ref, _ = sf.read(row["path"], dtype="float32")
  assert row["id"] == e["id"].numpy().decode()
  assert np.max(np.abs(ref - w)) < 1e-4
  labels = open(os.path.join(records_dir, "emodb", "labels.txt")).read().split()
  assert labels[e["label"].numpy()] == e["label_name"].numpy().decode()


def test_bad_inputs_are_skipped_and_reported(tmp_path, emodb_files):
  src = tmp_path / "emodb"
  src.mkdir()
  good = emodb_files[:5]
  for f in good:
    os.symlink(f, src / os.path.basename(f))
  clip, _ = sf.read(good[0], dtype="float32")
  names = {}
  for i, kind in enumerate(sorted(BAD)):
    p = _write_bad(tmp_path, kind, clip)
    name = f"03b0{i}Wz.wav"  # valid EmoDB names, so only the audio is bad
    os.rename(p, src / name)
    names[str(src / name)] = BAD[kind]
  (src / "notes.wav").write_text("a name that is not EmoDB")
  out = str(tmp_path / "out")
  s = prepare(PrepareConfig("emodb", str(tmp_path), out, num_shards=2,
                            progress=False))
  assert s["files_read"] == 5 and s["skipped"] == len(BAD) + 1
  rows = {r["file"]: r["reason"] for r in read_csv(os.path.join(out, "skipped.csv"))}
  for path, reason in names.items():
    assert reason in rows[path]
  assert "does not match EmoDB" in rows[str(src / "notes.wav")]
  written = {r["id"] for r in read_csv(os.path.join(out, "manifest.csv"))}
  assert written == {"emodb-" + os.path.basename(f)[:-4] for f in good}
  assert len(_count(str(tmp_path), "out")) == 5
  assert not [f for f in os.listdir(out) if f.endswith(".tmp")]


def test_rerun_is_a_no_op_unless_overwrite(tmp_path, emodb_files):
  src = tmp_path / "emodb"
  src.mkdir()
  for f in emodb_files[:3]:
    os.symlink(f, src / os.path.basename(f))
  out = str(tmp_path / "out")
  cfg = PrepareConfig("emodb", str(tmp_path), out, num_shards=1, progress=False)
  first = prepare(cfg)
  mtime = os.path.getmtime(os.path.join(out, "summary.json"))
  os.symlink(emodb_files[3], src / os.path.basename(emodb_files[3]))
  again = prepare(cfg)
  assert again.get("reused") and again["files_read"] == first["files_read"] == 3
  assert os.path.getmtime(os.path.join(out, "summary.json")) == mtime
  cfg.overwrite = True
  assert prepare(cfg)["files_read"] == 4


def test_cli_exit_codes(tmp_path, emodb_files):
  src = tmp_path / "emodb"
  src.mkdir()
  (src / "03a01Wa.wav").write_text("not audio")
  cmd = [sys.executable, "-m", "nsl_ser.cli", "prepare", "--corpus=emodb",
         f"--data_dir={tmp_path}", f"--out_dir={tmp_path / 'out'}"]
  bad = subprocess.run(cmd, capture_output=True, text=True)
  assert bad.returncode != 0 and "nothing usable" in bad.stderr
  os.symlink(emodb_files[0], src / os.path.basename(emodb_files[0]))
  ok = subprocess.run(cmd + ["--overwrite"], capture_output=True, text=True)
  assert ok.returncode == 0, ok.stderr
  assert '"files_read": 1' in ok.stdout and "skipped" in ok.stderr


def test_nemo_slice_from_ogg_opus(tmp_path, data_dir):
  """A slice of nEMO in its own layout (samples/*.opus + data.tsv):
  decoded from Ogg Opus at 24 kHz, resampled to 16 kHz, one speaker's
  clips of each emotion, ids and labels from the names."""
  import shutil
  src = os.path.join(data_dir, "nemo")
  root = tmp_path / "nemo"
  (root / "samples").mkdir(parents=True)
  shutil.copy(os.path.join(src, "data.tsv"), root / "data.tsv")
  names = [f"TP0_{e}_{n}.opus" for e in ("anger", "fear", "neutral")
           for n in (1, 2)]
  for n in names:
    shutil.copy(os.path.join(src, "samples", n), root / "samples" / n)
  out = tmp_path / "records"
  s = prepare(PrepareConfig("nemo", str(tmp_path), str(out), progress=False,
                            workers=1))
  assert s["files_read"] == 6 and s["skipped"] == 0 and s["speakers"] == ["TP0"]
  rows = {r["id"]: r for r in read_csv(out / "manifest.csv")}
  assert rows["nemo-TP0_fear_2"]["label_name"] == "fearful"
  assert rows["nemo-TP0_anger_1"]["gender"] == "m"
  ex = [records.parse_utterance(x) for x in tf.data.TFRecordDataset(
      records.list_shards(str(out)))]
  e = next(x for x in ex if x["id"].numpy() == b"nemo-TP0_neutral_1")
  w = records.decode_waveform(e["waveform"]).numpy()
  ref, sr = sf.read(os.path.join(src, "samples", "TP0_neutral_1.opus"),
                    dtype="float32")
  assert sr == 24000
  assert abs(w.shape[0] - ref.shape[0] * 2 / 3) <= 1


def test_nemo_split_is_speaker_independent():
  s = splits.get_split("nemo")
  assert not (s.train & s.val or s.train & s.test or s.val & s.test)
  assert len(s.train | s.val | s.test) == 9
