"""The tf.signal log-Mel front end against librosa on real clips."""
import librosa
import numpy as np
import pytest

from nsl_ser.audio import load_audio
from nsl_ser.compat import keras, tf
from nsl_ser.features import (FrontEndConfig, LogMel, dft_basis, fix_length,
                               log_mel_numpy, mel_bin_range, mel_matrix)

# Max |difference| of natural-log Mel energies vs librosa (0.05 nats ~ 0.2 dB).
TOLERANCE = 0.05


@pytest.mark.parametrize("bands,dft", [(40, "fft"), (64, "fft"),
                                       (40, "matmul"), (64, "matmul")])
def test_log_mel_matches_librosa(emodb_files, bands, dft):
  cfg = FrontEndConfig(num_mel_bins=bands)
  assert cfg.feature_shape == (298, bands)
  for f in emodb_files[::100]:
    x = fix_length(tf.constant(load_audio(f)), cfg.clip_samples).numpy()
    ours = LogMel(cfg, dft=dft)(x[None])[0].numpy()
    x = x / np.max(np.abs(x))  # the front end's peak normalisation
    # librosa centres a 400-sample window in each 512-sample frame; shifting
    # the signal by (512 - 400) / 2 aligns its frames with tf.signal's.
    pad = (cfg.fft_length - cfg.frame_length) // 2
    spec = np.abs(librosa.stft(np.pad(x, (pad, pad)), n_fft=512,
                               win_length=400, hop_length=160, window="hann",
                               center=False)) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=512, n_mels=bands, fmin=20,
                              fmax=7600, htk=True, norm=None)
    ref = np.log(mel @ spec + cfg.log_floor).T
    assert ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) < TOLERANCE


def test_peak_normalisation_makes_features_level_invariant(emodb_files):
  """A clip 30 dB quieter gives the same features (RAVDESS is recorded
  about 27 dB below EmoDB); digital silence stays at the log floor."""
  x = fix_length(tf.constant(load_audio(emodb_files[0])), 48000).numpy()
  loud = log_mel_numpy(x)
  quiet = log_mel_numpy(x * 10 ** (-30 / 20))
  np.testing.assert_allclose(quiet, loud, atol=1e-3)
  raw = FrontEndConfig(peak_normalize=False)
  assert np.max(np.abs(log_mel_numpy(x * 10 ** (-30 / 20), raw)
                       - log_mel_numpy(x, raw))) > 5
  silent = log_mel_numpy(np.zeros(48000, np.float32))
  np.testing.assert_allclose(silent, np.log(FrontEndConfig().log_floor), atol=1e-4)


def test_fix_length_policy():
  x = tf.range(10, dtype=tf.float32)
  np.testing.assert_array_equal(fix_length(x, 4), [3, 4, 5, 6])  # centre crop
  np.testing.assert_array_equal(fix_length(x[:3], 7), [0, 0, 0, 1, 2, 0, 0])
  assert fix_length(tf.zeros([2, 5]), 8).shape == (2, 8)


def test_layer_serialises_in_a_keras_model(tmp_path, emodb_files):
  cfg = FrontEndConfig()
  model = keras.Sequential([keras.Input((cfg.clip_samples,)), LogMel(cfg)])
  path = str(tmp_path / "m.keras")
  model.save(path)
  again = keras.models.load_model(path, custom_objects={"LogMel": LogMel})
  x = fix_length(tf.constant(load_audio(emodb_files[1])), cfg.clip_samples)
  np.testing.assert_allclose(again(x[None])[0], log_mel_numpy(x.numpy()), atol=1e-5)


def test_matmul_dft_uses_only_the_mel_bins():
  cfg = FrontEndConfig()
  lo, hi = mel_bin_range(cfg)
  mel = mel_matrix(cfg).numpy()
  assert 0 < lo < hi < cfg.fft_length // 2 + 1  # 20 Hz .. 7600 Hz drop bins
  assert not mel[:lo].any() and not mel[hi:].any() and mel[lo].any()
  half = cfg.frame_length - cfg.frame_length // 2
  assert [b.shape for b in dft_basis(cfg)] == [(half, hi - lo)] * 2
  with pytest.raises(ValueError, match="dft must be one of"):
    LogMel(cfg, dft="dct")


@pytest.mark.parametrize("window_ms", [25.0, 24.0625])  # 400 and 385 samples
def test_folded_dft_equals_the_fft(emodb_files, window_ms):
  """The matmul front end folds each frame on the Hann window's symmetry
  (periodic for even lengths, symmetric for odd ones, as TensorFlow builds
  it) and gives the FFT's features; the C front end's window table is the
  same window."""
  from nsl_ser.export import micro_front_end
  cfg = FrontEndConfig(window_ms=window_ms)
  x = np.stack([fix_length(tf.constant(load_audio(f)), cfg.clip_samples).numpy()
                for f in emodb_files[::120]])
  fft = LogMel(cfg, dft="fft")(x).numpy()
  np.testing.assert_allclose(LogMel(cfg, dft="matmul")(x).numpy(), fft, atol=1e-3)
  np.testing.assert_allclose(micro_front_end.tables(cfg)["window"],
                             tf.signal.hann_window(cfg.frame_length).numpy(),
                             atol=1e-6)
