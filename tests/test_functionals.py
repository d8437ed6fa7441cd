"""The functionals head (nsl_ser.functionals) on real EmoDB clips."""
import numpy as np
import pytest

from nsl_ser import augment, evaluation, functionals, normalization, records, source, splits
from nsl_ser.runtime import calibration
from nsl_ser.features import FrontEndConfig

FE = FrontEndConfig()
HOP_S = FE.hop_ms / 1000.0


@pytest.fixture(scope="module")
def emodb(records_dir):
  rec = f"{records_dir}/emodb"
  labels = source.read_labels(rec)
  utts = augment.load_utterances(records.list_shards(rec), labels, (1.0,),
                                 progress=False)
  x = functionals.of_clips(utts.clips(0), HOP_S)
  return {"labels": labels, "utts": utts, "x": x}


def test_functionals_of_a_clip(emodb):
  clip = emodb["utts"].clips(0)[0]
  f = functionals.functionals(clip, HOP_S)
  assert f.shape == (functionals.num_functionals(FE.num_mel_bins),) == (423,)
  assert np.isfinite(f).all()
  bands = FE.num_mel_bins
  speech = normalization.speech_frames(clip)
  np.testing.assert_allclose(f[:bands], speech.mean(0), rtol=1e-5)
  np.testing.assert_allclose(f[-1], len(speech) * HOP_S)
  # the temporal block: numpy's least-squares polynomial fit over t in [0, 1]
  t = np.linspace(0.0, 1.0, len(speech))
  fit = np.polynomial.polynomial.polyfit(t, speech.astype(np.float64), 2)
  np.testing.assert_allclose(f[8 * bands:9 * bands], fit[1] + fit[2], atol=1e-6)
  np.testing.assert_allclose(f[9 * bands:10 * bands], fit[2], atol=1e-6)
  # the cepstral block: scipy's orthonormal DCT-II
  import scipy.fft
  cep = scipy.fft.dct(speech.astype(np.float64), type=2, norm="ortho", axis=1)
  np.testing.assert_allclose(
      f[10 * bands:10 * bands + functionals.NUM_CEPSTRA],
      cep[:, :functionals.NUM_CEPSTRA].std(0), rtol=1e-6)
  # the padding of a short window (log of the floor) is not speech: the
  # functionals of a padded clip are the clip's own
  pad = np.full((60, bands), np.log(FE.log_floor), np.float32)
  padded = np.concatenate([pad, clip, pad])
  np.testing.assert_allclose(functionals.functionals(padded, HOP_S), f, rtol=1e-6)


def test_utterances_are_the_file_or_equal_chunks(emodb):
  """The head describes utterances: a file up to UTTERANCE_S seconds is one,
  a longer one is cut into the fewest equal chunks no longer than that."""
  per_s = int(round(1 / HOP_S))
  assert functionals.utterance_bounds(3 * per_s, HOP_S) == [(0, 3 * per_s)]
  assert functionals.utterance_bounds(10 * per_s, HOP_S) == [(0, 10 * per_s)]
  b = functionals.utterance_bounds(25 * per_s, HOP_S)
  assert len(b) == 3 and b[0][0] == 0 and b[-1][1] == 25 * per_s
  assert all(e - s <= 10 * per_s for s, e in b)
  assert all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))
  clips = emodb["utts"].clips(0)
  long = np.concatenate(clips[:12])  # EmoDB clips are 1.5-9 s
  bounds, f = functionals.of_utterances(long, HOP_S)
  assert len(bounds) > 1 and f.shape == (len(bounds), 423)
  np.testing.assert_allclose(f[1], functionals.functionals(
      long[bounds[1][0]:bounds[1][1]], HOP_S))
  # predict's windows of a clip (augment.windows): 3 s, 1.5 s apart
  n, hop = FE.num_frames, int(round(1.5 / HOP_S))
  w = augment.windows(long, n, hop, 0.0)
  starts = [k * hop for k in range(len(w) - 1)] + [long.shape[0] - n]
  for s, x in zip(starts, w):
    np.testing.assert_array_equal(x, long[s:s + n])
  short = clips[0][:100]
  (only,) = augment.windows(short, n, hop, -1.0)
  np.testing.assert_array_equal(only, augment.crop(short, n, -1.0, None))


def fold0(emodb):
  """(utterances, functionals, classes, split, (train, val, test) masks,
  training statistics) of EmoDB fold 0."""
  u, x = emodb["utts"], emodb["x"]
  sp = splits.get_split("emodb", 0)
  masks = tuple(np.isin(u.speakers, list(getattr(sp, p)))
                for p in ("train", "val", "test"))
  return (u, x, len(emodb["labels"]), sp, masks,
          normalization.BandStats.of(x[masks[0]]))


def test_head_beats_chance_and_round_trips(emodb):
  """Fold 0: C on the validation speakers, refit on train + validation;
  the test speakers' UAR is far above chance (1/7), in both regimes."""
  u, x, k, sp, (tr, va, te), ref = fold0(emodb)
  head = functionals.fit_head(x[tr], u.labels[tr], x[va], u.labels[va], k,
                              HOP_S, ref)
  assert head.C in functionals.CS and head.coef.shape == (k, x.shape[1])
  uar = 100 * evaluation.uar(u.labels[te], head.probs(x[te]).argmax(1), k)
  assert uar > 50
  back = functionals.LinearHead.from_dict(head.to_dict())
  np.testing.assert_allclose(back.probs(x[te]), head.probs(x[te]), atol=1e-12)
  # speaker regime: each speaker mapped onto the reference with its own
  # statistics is that speaker's z-scores in the reference's units
  stats = functionals.speaker_stats(x, u.speakers)
  xc = functionals.calibrate_by_speaker(x, u.speakers, stats, ref)
  s = u.speakers == u.speakers[te][0]
  z = (xc[s] - ref.mean) / np.sqrt(ref.var)
  np.testing.assert_allclose(z, (x[s] - x[s].mean(0)) / x[s].std(0), atol=1e-3)
  head_c = functionals.fit_head(xc[tr], u.labels[tr], xc[va], u.labels[va], k,
                                HOP_S, ref)
  assert 100 * evaluation.uar(u.labels[te], head_c.probs(xc[te]).argmax(1), k) > 50
  with pytest.raises(ValueError, match="no training clip"):
    functionals.fit_head(x[tr][u.labels[tr] != 0], u.labels[tr][u.labels[tr] != 0],
                         x[va], u.labels[va], k, HOP_S)
  bad = head.to_dict()
  bad["coef"] = bad["coef"][:-1]
  with pytest.raises(ValueError, match="does not match"):
    functionals.LinearHead.from_dict(bad)


def test_head_trains_on_copies_as_extra_rows(emodb):
  """Copies are training rows with their clips' labels (an exact duplicate
  of every row is the same fit as twice the C), and in the speaker regime
  each copy is calibrated with its own statistics (a copy shifted per
  speaker gives the same head as the unshifted copy)."""
  u, x, k, sp, (tr, va, te), ref = fold0(emodb)
  fit = lambda c, copies: functionals.fit_head(
      x[tr], u.labels[tr], x[va], u.labels[va], k, HOP_S, ref, cs=[c],
      refit_on_val=False, train_copies=copies)
  doubled, twice_c = fit(0.01, [x[tr]]), fit(0.02, [])
  np.testing.assert_allclose(doubled.probs(x[te]), twice_c.probs(x[te]), atol=2e-3)
  assert np.abs(fit(0.01, []).probs(x[te]) - doubled.probs(x[te])).max() > 0.01
  m = x[:, :FE.num_mel_bins]  # the band means: quick fits
  rng = np.random.default_rng(0)
  shift = {s: rng.normal(0, 3, m.shape[1]) for s in np.unique(u.speakers)}
  shifted = m + np.stack([shift[s] for s in u.speakers])
  head = lambda regime, copy: functionals.fit_on_speakers(
      m, u.labels, u.speakers, sp.train, sp.val, regime, k, HOP_S, [copy])[0]
  a, b = head("speaker", m), head("speaker", shifted)
  np.testing.assert_allclose(a.coef, b.coef, atol=1e-6)
  assert a.C == b.C
  assert np.abs(head("global", m).coef - head("global", shifted).coef).max() > 1e-3


def test_fuse_is_a_normalised_product():
  rng = np.random.default_rng(0)
  p = rng.dirichlet(np.ones(7), size=5)
  q = rng.dirichlet(np.ones(7), size=5)
  f = functionals.fuse(p, q)
  np.testing.assert_allclose(f.sum(1), 1, atol=1e-6)
  np.testing.assert_allclose(f, p * q / (p * q).sum(1, keepdims=True), rtol=1e-4)
  np.testing.assert_allclose(functionals.fuse(p, np.full((5, 7), 1 / 7)), p, rtol=1e-4)
  assert isinstance(functionals.fuse([p, q], q), list)


def test_calibration_keeps_functionals_statistics(emodb_files, tmp_path):
  """`nsl-ser calibrate` also accumulates the functionals of each clip; the
  file round-trips them."""
  files = emodb_files[:6]
  stats, used, skipped = calibration.speaker_stats(files, FE)
  assert stats.functionals is not None and stats.functionals.count == len(used)
  # one row an utterance: the whole file (EmoDB clips are under 10 s)
  from nsl_ser import audio
  from nsl_ser import front_end  # the runtime's (numpy) front end
  whole = [front_end.log_mel(audio.load_audio(f, FE.sample_rate), FE)
           for f in used]
  np.testing.assert_allclose(stats.functionals.mean, functionals.of_clips(
      whole, HOP_S).mean(0), rtol=1e-6, atol=1e-9)
  path = str(tmp_path / "spk.json")
  calibration.save(path, stats, FE, used, skipped)
  back = calibration.load(path, FE)
  np.testing.assert_allclose(back.functionals.mean, stats.functionals.mean)
  np.testing.assert_allclose(back.functionals.var, stats.functionals.var, rtol=1e-9)
  np.testing.assert_allclose(back.mean, stats.mean)


def test_c_head_matches_numpy(emodb, tmp_path):
  """The C99 head (nsl_ser.export.micro_functionals), built with the system
  compiler, gives the numpy functionals, probabilities and fusion on real
  clips' features: 3 s windows, the longest whole clip, a window padded with
  the log floor and a single frame; the per-exit temperatures after the
  fusion as predict applies them."""
  from nsl_ser.runtime import confidence
  from nsl_ser.export import micro_functionals as mf
  u, x, k, _, (tr, va, _), ref = fold0(emodb)
  head = functionals.fit_head(x[tr], u.labels[tr], x[va], u.labels[va], k, HOP_S, ref)
  src = tmp_path / "fx"
  src.mkdir()
  temperatures = (1.0, 1.7, 2.2)
  for name, text in mf.sources(head, FE, temperatures).items():
    (src / name).write_text(text)
  lib = mf.CFunctionals(mf.build_library(str(src), str(tmp_path / "libfx.so")),
                        x.shape[1], k)
  clips = [c[:FE.num_frames] for c in u.clips(0)[::25]]
  pad = np.log(FE.log_floor)
  clips.append(np.concatenate([np.full((50, FE.num_mel_bins), pad, np.float32),
                               u.clips(0)[3][:200],
                               np.full((48, FE.num_mel_bins), pad, np.float32)]))
  clips += [max(u.clips(0), key=len), u.clips(0)[5][100:101]]  # 9 s; one frame
  worst_f = worst_p = 0.0
  for c in clips:
    f_np = functionals.functionals(c, HOP_S)
    f_c = lib.functionals(c)
    worst_f = max(worst_f, float(np.max(np.abs(f_c - f_np) / (1 + np.abs(f_np)))))
    p_np = head.probs(f_np[None])[0]
    p_c = lib.probs(f_c)
    worst_p = max(worst_p, float(np.abs(p_c - p_np).max()))
    e = np.full(k, 1.0 / k, np.float32)
    e[0] = 0.5
    e /= e.sum()
    fused = functionals.fuse(e, p_c)
    np.testing.assert_allclose(lib.fuse(p_c, e), fused, atol=1e-6)
    for i, t in enumerate(temperatures):
      np.testing.assert_allclose(lib.fuse_exit(p_c, e, i),
                                 confidence.apply_temperature(fused, t), atol=1e-6)
    np.testing.assert_allclose(lib.fuse_exit(p_c, e, 3), fused, atol=1e-6)  # none
  assert worst_f < 1e-5 and worst_p < 1e-4, (worst_f, worst_p)
  # a calibrated speaker: the head applies x * scale + shift first
  stats = functionals.speaker_stats(x, u.speakers)[str(u.speakers[0])]
  scale, shift = normalization.affine(stats, ref, functionals.FLOOR)
  lib.set_calibration(scale, shift)
  f = functionals.functionals(clips[0], HOP_S)
  np.testing.assert_allclose(lib.probs(f.astype(np.float32)),
                             head.probs((f * scale + shift)[None])[0], atol=1e-4)
  lib.set_calibration(None, None)
  np.testing.assert_allclose(lib.probs(f.astype(np.float32)),
                             head.probs(f[None])[0], atol=1e-4)


def test_cross_fitted_teacher_never_saw_the_speaker(emodb):
  """Each training speaker's soft labels come from a head fitted without
  that speaker: the speaker's rows change when the head is refitted
  without it, other speakers' rows are zero, and the cross-fitted labels
  are less confident than a head's answers on its own training rows."""
  u, x = emodb["utts"], emodb["x"]
  split = splits.get_split("emodb", 0)
  k = len(emodb["labels"])
  p = functionals.cross_fitted_probs(x, u.labels, u.speakers, split.train,
                                     split.val, "global", k, HOP_S)
  tr = np.isin(u.speakers, list(split.train))
  np.testing.assert_allclose(p[tr].sum(1), 1.0, rtol=1e-6)
  assert not p[~tr].any()
  head, forms = functionals.fit_on_speakers(x, u.labels, u.speakers,
                                            split.train, split.val, "global",
                                            k, HOP_S)
  own = head.probs(forms["independent"][tr])
  assert p[tr].max(1).mean() < own.max(1).mean()
  # held-out speakers are classified well above chance, not memorised
  assert evaluation.uar(u.labels[tr], p[tr].argmax(1), k) > 1.0 / k + 0.2


def test_level_free_functionals_ignore_a_per_band_gain(emodb):
  """A constant gain per band (another microphone or codec) moves the
  functionals but not their level-free form."""
  # the frames within 10 dB of the loudest, so that a gain of at most
  # 0.5 nat (2.2 dB) a band cannot change which frames count as speech
  clip = normalization.speech_frames(emodb["utts"].clips(0)[3], top_db=10.0)
  gain = np.linspace(-0.5, 0.5, clip.shape[1]).astype(np.float32)
  assert len(normalization.speech_frames(clip + gain)) == len(clip)
  a = functionals.functionals(clip, HOP_S)[None]
  b = functionals.functionals(clip + gain, HOP_S)[None]
  assert np.abs(a - b).max() > 0.4
  la = functionals.level_free(a, FE.num_mel_bins)
  lb = functionals.level_free(b, FE.num_mel_bins)
  assert la.shape == (1, functionals.num_functionals(FE.num_mel_bins)
                      - FE.num_mel_bins)
  np.testing.assert_allclose(la, lb, atol=1e-4)
