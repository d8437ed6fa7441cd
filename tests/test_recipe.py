"""The student recipe: reproducible training, weight averaging, speaker
statistics, random crops and mixup, on real EmoDB clips."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nsl_ser import augment, normalization, records, recipe, splits, training
from nsl_ser.features import FrontEndConfig


@pytest.fixture(scope="module")
def utts(records_dir):
  """Whole EmoDB utterances (two speeds) of fold 0's training speakers and
  the validation speakers, a third of each."""
  from nsl_ser import source
  rec = f"{records_dir}/emodb"
  labels = source.read_labels(rec)
  u = augment.load_utterances(records.list_shards(rec), labels, (1.0, 1.1),
                              progress=False)
  split = splits.get_split("emodb", 0)
  keep = np.isin(u.speakers, list(split.train) + list(split.val))
  keep &= np.arange(len(u)) % 3 == 0
  return u.subset(keep), labels


def test_band_stats_running_equals_batch(utts):
  """The device's clip-by-clip update equals the batch statistics over the
  same speech frames."""
  u, _ = utts
  clips = u.clips(0)[:25]
  run = normalization.BandStats.empty(clips[0].shape[1])
  for c in clips:
    run = run.add_clip(c)
  batch = normalization.stats_of(clips)
  frames = np.concatenate([normalization.speech_frames(c) for c in clips]
                          ).astype(np.float64)
  assert run.count == batch.count == frames.shape[0]
  np.testing.assert_allclose(run.mean, frames.mean(0), rtol=1e-9, atol=1e-9)
  np.testing.assert_allclose(run.var, frames.var(0), rtol=1e-7, atol=1e-9)
  np.testing.assert_allclose(batch.var, run.var, rtol=1e-9)


def test_speech_frames_drop_silence(utts):
  """Digital silence around a clip (as in RAVDESS) is not counted: the
  statistics of a clip padded with silence equal the clip's own."""
  u, _ = utts
  c = u.clips(0)[0]
  silence = np.full((150, c.shape[1]), np.log(1e-6), np.float32)
  padded = np.concatenate([silence, c, silence])
  kept = normalization.speech_frames(padded)
  assert kept.shape[0] == normalization.speech_frames(c).shape[0] < padded.shape[0]
  np.testing.assert_allclose(normalization.stats_of([padded]).mean,
                             normalization.stats_of([c]).mean)


def test_calibration_maps_each_speaker_onto_the_reference(utts):
  """Each speaker's calibrated speech frames have the reference's per-band
  mean and variance; an uncalibrated speaker (stats = reference) is unchanged;
  the affine form a device applies gives the same numbers; statistics
  survive the sidecar's JSON round trip."""
  u, _ = utts
  stats = normalization.speaker_stats(u.clips(0), u.speakers)
  ref = normalization.stats_of(u.clips(0))
  assert set(stats) == set(u.speakers)
  for s in list(stats)[:3]:
    clips = [c for c, sp in zip(u.clips(0), u.speakers) if sp == s]
    z = np.concatenate([normalization.calibrate(normalization.speech_frames(c),
                                                stats[s], ref) for c in clips])
    np.testing.assert_allclose(z.mean(0), ref.mean, atol=1e-3)
    np.testing.assert_allclose(z.var(0), ref.var, rtol=2e-3)
    scale, shift = normalization.affine(stats[s], ref)
    np.testing.assert_allclose(clips[0] * scale + shift,
                               normalization.calibrate(clips[0], stats[s], ref),
                               atol=1e-4)
  c = u.clips(0)[0]
  np.testing.assert_allclose(normalization.calibrate(c, ref, ref), c, atol=1e-5)
  back = normalization.BandStats.from_dict(ref.to_dict())
  np.testing.assert_allclose(back.var, ref.var)
  assert back.count == ref.count
  with pytest.raises(KeyError, match="no calibration statistics"):
    normalization.calibrate_by_speaker(np.zeros((1, 5, 40)), ["nobody"], stats, ref)


def test_speed_perturbation_changes_length(utts):
  u, _ = utts
  a, b = u.variants[0]
  # 1.1x faster: about 1/1.1 of the frames
  assert abs(b.shape[0] - a.shape[0] / 1.1) <= 2


def test_crop_centre_matches_front_end_and_random_crops_differ(utts):
  u, _ = utts
  fe = FrontEndConfig()
  long = max(u.clips(0), key=len)
  short = min(u.clips(0), key=len)
  assert long.shape[0] > fe.num_frames > short.shape[0]
  c = augment.crop(long, fe.num_frames, -13.8, None)
  start = (long.shape[0] - fe.num_frames) // 2
  np.testing.assert_array_equal(c, long[start:start + fe.num_frames])
  rng = np.random.default_rng(0)
  crops = [augment.crop(long, fe.num_frames, -13.8, rng) for _ in range(5)]
  assert len({x.tobytes() for x in crops}) > 1
  p = augment.crop(short, fe.num_frames, -13.8, rng)
  assert p.shape == (fe.num_frames, fe.num_mel_bins)
  assert (p == np.float32(-13.8)).all(axis=1).sum() == fe.num_frames - short.shape[0]


def test_batches_are_a_function_of_seed_epoch_and_index(utts):
  u, labels = utts
  cfg = augment.AugmentConfig(random_crop=True, mixup_alpha=0.2, speeds=(1.0, 1.1))
  make = lambda seed: augment.TrainBatches(u.variants, u.labels, len(labels),
                                           298, -13.8, 16, seed, cfg)
  a, b = make(3), make(3)
  xa, ya = a[2]
  _ = b[0]          # other calls first: the result must not depend on order
  xb, yb = b[2]
  np.testing.assert_array_equal(xa["features"], xb["features"])
  np.testing.assert_array_equal(ya, yb)
  assert ya.shape == (16, len(labels))            # mixup: soft labels
  np.testing.assert_allclose(ya.sum(1), 1, rtol=1e-6)
  assert (ya.max(1) >= 0.5).all()                 # the first clip leads
  a.on_epoch_end()
  assert not np.array_equal(a[2][0]["features"], xa["features"])
  assert not np.array_equal(make(4)[2][0]["features"], xa["features"])


def test_training_is_reproducible(utts):
  """Same data, recipe and seed: identical weights and predictions; another
  seed: different weights (so the check can fail)."""
  u, labels = utts
  split = splits.get_split("emodb", 0)
  train = u.by_speakers(split.train)
  val = u.by_speakers(split.val)
  fe = FrontEndConfig()
  val_x = np.stack([augment.crop(c, fe.num_frames, recipe.pad_value(fe), None)
                    for c in val.clips(0)])
  r = recipe.Recipe(
      regime="global",
      augment=augment.AugmentConfig(random_crop=True, mixup_alpha=0.2,
                                    speeds=(1.0, 1.1)),
      train=training.TrainConfig(epochs=3, average_epochs=2, verbose=0))

  def weights(seed):
    rr = dataclasses.replace(r, train=dataclasses.replace(r.train, seed=seed))
    m, h = recipe.train_student(train, val_x, val.labels, len(labels), rr, fe)
    return m.get_weights(), m.predict(val_x, verbose=0)[-1], h

  w1, p1, h1 = weights(0)
  w2, p2, _ = weights(0)
  w3, _, _ = weights(1)
  assert len(h1["loss"]) == 3
  for a, b in zip(w1, w2):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(p1, p2)
  assert any(not np.array_equal(a, b) for a, b in zip(w1, w3))


def test_weight_average_keeps_the_mean_of_the_last_epochs():
  from nsl_ser.compat import keras
  training.set_seed(0)
  m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  cb = training.WeightAverage(epochs=4, last=2)
  cb.set_model(m)
  seen = []
  for epoch in range(4):
    m.set_weights([w + epoch + 1.0 for w in m.get_weights()])
    seen.append(m.get_weights())
    cb.on_epoch_end(epoch)
  cb.on_train_end()
  for k, w in enumerate(m.get_weights()):
    np.testing.assert_allclose(w, (seen[2][k] + seen[3][k]) / 2, rtol=1e-6)


def test_learning_rate_schedules():
  cfg = training.TrainConfig(epochs=10, learning_rate=1e-3)
  assert training.learning_rate(cfg, 0) == pytest.approx(1e-3)
  assert training.learning_rate(cfg, 5) == pytest.approx(5e-4)
  step = dataclasses.replace(cfg, schedule="step")
  assert training.learning_rate(step, 5) == pytest.approx(9e-4)
  with pytest.raises(ValueError, match="selection"):
    training.make_callbacks(dataclasses.replace(cfg, selection="best"), None, None)


def test_step_budget_shortens_training_on_large_pools():
  """The recipe's 10,000-step cap leaves a two-corpus pool's 40 epochs
  alone and gives a pool three times larger a third of them, the
  averaged epochs scaled alike."""
  cfg = recipe.Recipe().train
  assert training.within_step_budget(cfg, 200) == cfg
  big = training.within_step_budget(cfg, 640)
  assert (big.epochs, big.average_epochs) == (15, 4)
  assert big.epochs * 640 <= cfg.max_steps
  tiny = training.within_step_budget(dataclasses.replace(cfg, max_steps=10), 640)
  assert (tiny.epochs, tiny.average_epochs) == (1, 1)
  off = dataclasses.replace(cfg, max_steps=0)
  assert training.within_step_budget(off, 10 ** 6) == off


def test_shrink_pulls_few_rows_toward_the_reference():
  """Shrinkage is the pooled moments of the speaker's rows and ``prior``
  reference rows: one row stays near the reference (no zero variance),
  many rows keep the speaker's own statistics."""
  rng = np.random.default_rng(0)
  ref = normalization.BandStats.of(rng.normal(0.0, 1.0, (5000, 3)))
  one = normalization.BandStats.of(np.full((1, 3), 4.0))
  s = normalization.shrink(one, ref, 9)
  np.testing.assert_allclose(s.mean, 0.1 * 4.0 + 0.9 * ref.mean)
  assert s.count == 10 and np.all(s.var > 0.9 * ref.var.min())
  rows = rng.normal(2.0, 0.5, (2000, 3))
  many = normalization.shrink(normalization.BandStats.of(rows), ref, 9)
  np.testing.assert_allclose(many.mean, rows.mean(0), atol=0.02)
  np.testing.assert_allclose(many.var, rows.var(0), rtol=0.15)  # ref: 1.0
  # the same as adding the prior's rows to the data
  block = np.concatenate([rows[:3], np.tile(ref.mean, (9, 1))])
  exact = normalization.BandStats.of(block)
  got = normalization.shrink(normalization.BandStats.of(rows[:3]),
                             normalization.BandStats(ref.count, ref.mean,
                                                     np.zeros(3)), 9)
  np.testing.assert_allclose(got.mean, exact.mean)
  np.testing.assert_allclose(got.m2, exact.m2)
  assert normalization.shrink(one, ref, 0) is one


def test_teacher_targets_become_the_batches_labels(utts):
  """Soft labels ``(1 - w) one-hot + w teacher`` replace the integer
  labels in every batch (and in mixup's blends); w 0 leaves the labels."""
  utts, labels = utts
  k = len(labels)
  rng = np.random.default_rng(0)
  teacher = rng.dirichlet(np.ones(k), len(utts))
  t = recipe.teacher_targets(utts.labels, teacher, k, 0.25)
  np.testing.assert_allclose(t.sum(1), 1.0, rtol=1e-6)
  np.testing.assert_allclose(t[np.arange(len(t)), utts.labels],
                             0.75 + 0.25 * teacher[np.arange(len(t)), utts.labels],
                             rtol=1e-6)
  cfg = augment.AugmentConfig(random_crop=False, mixup_alpha=0.0, speeds=(1.0,))
  b = augment.TrainBatches(utts.variants, utts.labels, k, 100, -10.0, 8, 0, cfg,
                           targets=t)
  inputs, y = b[0]
  np.testing.assert_allclose(y, t[b._order[:8]])
  mix = augment.TrainBatches(utts.variants, utts.labels, k, 100, -10.0, 8, 0,
                             dataclasses.replace(cfg, mixup_alpha=0.2), targets=t)
  _, ym = mix[0]
  np.testing.assert_allclose(ym.sum(1), 1.0, rtol=1e-6)
  plain = augment.TrainBatches(utts.variants, utts.labels, k, 100, -10.0, 8, 0, cfg)
  assert plain[0][1].ndim == 1
