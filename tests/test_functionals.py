"""The functionals head (nsl_ser.functionals) on real EmoDB clips."""
import numpy as np
import pytest

from nsl_ser import (augment, calibration, evaluation, functionals,
                     normalization, records, source, splits)
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
  assert f.shape == (functionals.num_functionals(FE.num_mel_bins),) == (323,)
  assert np.isfinite(f).all()
  bands = FE.num_mel_bins
  speech = normalization.speech_frames(clip)
  np.testing.assert_allclose(f[:bands], speech.mean(0), rtol=1e-5)
  np.testing.assert_allclose(f[-1], len(speech) * HOP_S)
  # the padding of a short window (log of the floor) is not speech: the
  # functionals of a padded clip are the clip's own
  pad = np.full((60, bands), np.log(FE.log_floor), np.float32)
  padded = np.concatenate([pad, clip, pad])
  np.testing.assert_allclose(functionals.functionals(padded, HOP_S), f, rtol=1e-6)


def test_head_beats_chance_and_round_trips(emodb):
  """Fold 0: C on the validation speakers, refit on train + validation;
  the test speakers' UAR is far above chance (1/7), in both regimes."""
  u, x = emodb["utts"], emodb["x"]
  k = len(emodb["labels"])
  sp = splits.get_split("emodb", 0)
  tr, va, te = (np.isin(u.speakers, list(getattr(sp, p)))
                for p in ("train", "val", "test"))
  ref = normalization.BandStats.of(x[tr])
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
  path = str(tmp_path / "spk.json")
  calibration.save(path, stats, FE, used, skipped)
  back = calibration.load(path, FE)
  np.testing.assert_allclose(back.functionals.mean, stats.functionals.mean)
  np.testing.assert_allclose(back.functionals.var, stats.functionals.var, rtol=1e-9)
  np.testing.assert_allclose(back.mean, stats.mean)
