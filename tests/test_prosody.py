"""Prosodic and voice-quality cues (nsl_ser.prosody) on synthetic voices of
known F0, jitter, shimmer and HNR, and on real EmoDB / RAVDESS clips (with
librosa's YIN as the reference)."""
import ctypes
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest
import soundfile as sf

from nsl_ser import prosody

SR = prosody.SAMPLE_RATE
RAVDESS_CLIP = "ravdess/Actor_01/03-01-01-01-01-01-01.flac"


def voice(periods, seconds=2.0, amplitudes=None, harmonics=20) -> np.ndarray:
  """A band-limited sawtooth-like voice whose i-th glottal cycle lasts
  ``periods[i]`` samples (fractional) with amplitude ``amplitudes[i]``."""
  n = int(seconds * SR)
  bounds = np.cumsum(np.concatenate([[0.0], periods]))
  assert bounds[-1] >= n, "not enough cycles"
  cycle = np.searchsorted(bounds, np.arange(n), side="right") - 1
  phase = 2 * np.pi * (np.arange(n) - bounds[cycle]) / np.asarray(periods)[cycle]
  k = np.arange(1, harmonics + 1)
  x = np.sin(np.outer(phase, k)) @ (1.0 / k)
  if amplitudes is not None:
    x *= np.asarray(amplitudes)[cycle]
  return 0.3 * x


def steady(f0: float, seconds=2.0) -> np.ndarray:
  return voice(np.full(int(seconds * f0) + 2, SR / f0), seconds)


def named(v: np.ndarray) -> dict:
  return dict(zip(prosody.PROSODY_NAMES, v))


def read(data_dir: str, rel: str) -> np.ndarray:
  x, sr = sf.read(os.path.join(data_dir, rel), dtype="float32")
  assert sr == SR
  return x


def test_frame_signal():
  x = np.arange(1000.0)
  f = prosody.frame_signal(x, 640, 160)
  assert f.shape == (1 + (1000 - 640) // 160, 640)
  np.testing.assert_array_equal(f[2], x[320:960])
  short = prosody.frame_signal(np.ones(100), 640, 160)
  assert short.shape == (1, 640) and short.sum() == 100


@pytest.mark.parametrize("f0", [120.0, 220.0])
@pytest.mark.parametrize("kind", ["sine", "pulses"])
def test_yin_on_steady_tones(f0, kind):
  t = np.arange(2 * SR) / SR
  x = 0.5 * np.sin(2 * np.pi * f0 * t) if kind == "sine" else steady(f0)
  track = prosody.track_f0(x)
  assert track.voiced.all()
  np.testing.assert_allclose(track.f0, f0, rtol=0.01)
  assert np.median(np.abs(track.f0 / f0 - 1)) < 1e-3
  assert (track.periodicity > 0.99).all()


def test_yin_follows_a_glide():
  t = np.arange(2 * SR) / SR
  f = 100.0 * 3.0 ** (t / 2.0)  # 100 -> 300 Hz, exponential
  x = 0.5 * np.sin(2 * np.pi * np.cumsum(f) / SR)
  track = prosody.track_f0(x)
  assert track.voiced.all()
  # a frame's estimate belongs to the middle of the samples it compares:
  # its start + (w + T) / 2, w = frame_len - tau_max - 1
  _, tau_max = prosody.lag_range()
  w = prosody.FRAME_LEN - tau_max - 1
  centre = np.arange(len(track.f0)) * prosody.HOP + (w + track.period) / 2
  np.testing.assert_allclose(track.f0, 100.0 * 3.0 ** (centre / SR / 2.0),
                             rtol=0.01)


def test_f0_range_and_rate():
  low = prosody.track_f0(steady(62.0))
  assert low.voiced.all()
  np.testing.assert_allclose(low.f0, 62.0, rtol=0.01)
  high = prosody.track_f0(steady(480.0))
  np.testing.assert_allclose(high.f0, 480.0, rtol=0.01)
  with pytest.raises(AssertionError):
    prosody.prosody_functionals(np.zeros(22050), 22050)


def test_yin_matches_librosa_on_real_clips(data_dir):
  librosa = pytest.importorskip("librosa")
  for rel in ("emodb/wav/03a01Fa.wav", "emodb/wav/08a01Na.wav", RAVDESS_CLIP):
    x = read(data_dir, rel)
    track = prosody.track_f0(x)
    ref = librosa.yin(x, fmin=prosody.FMIN, fmax=prosody.FMAX, sr=SR,
                      frame_length=prosody.FRAME_LEN, hop_length=prosody.HOP,
                      center=False)
    assert ref.shape == track.f0.shape
    # librosa.yin has no voicing decision: compare on the frames ours calls
    # voiced where librosa's period is inside the search range (not a
    # boundary minimum of an aperiodic frame)
    both = track.voiced & (ref > prosody.FMIN * 1.02) & (ref < prosody.FMAX * 0.98)
    assert both.sum() > 0.8 * track.voiced.sum() and both.sum() > 30
    rel_diff = np.abs(track.f0[both] / ref[both] - 1)
    assert np.median(rel_diff) < 0.02, rel
    assert np.mean(rel_diff < 0.05) > 0.9, rel


def test_male_voice_is_lower_than_female(data_dir):
  def mean_st(names):
    return np.mean([named(prosody.prosody_functionals(
      read(data_dir, f"emodb/wav/{name}.wav")))["f0_mean_st"] for name in names])
  male = mean_st(("03a01Nc", "03a02Nc"))    # EmoDB speaker 03, neutral
  female = mean_st(("08a01Na", "08a02Na"))  # speaker 08, neutral
  # semitones re 27.5 Hz: 24 st = 110 Hz, 36 st = 220 Hz
  assert 20 < male < 33 and 30 < female < 42
  assert female - male > 4.0, (male, female)


def test_jitter_zero_for_a_perfect_train_and_grows_with_period_jitter():
  rng = np.random.default_rng(0)
  t0 = SR / 130.0
  jitters = []
  for sigma in (0.0, 0.01, 0.02, 0.04):
    periods = t0 * (1 + sigma * rng.standard_normal(400))
    jitters.append(named(prosody.prosody_functionals(voice(periods)))["jitter_local"])
  assert jitters[0] < 1e-4
  assert np.all(np.diff(jitters) > 0), jitters
  assert jitters[-1] > 5e-3


def test_shimmer_grows_with_amplitude_perturbation():
  rng = np.random.default_rng(1)
  periods = np.full(400, SR / 130.0)
  shimmers = []
  for sigma in (0.0, 0.05, 0.1, 0.2):
    amps = np.exp(sigma * rng.standard_normal(400))
    shimmers.append(named(prosody.prosody_functionals(
      voice(periods, amplitudes=amps)))["shimmer_local_db"])
  assert shimmers[0] < 0.1
  assert np.all(np.diff(shimmers) > 0), shimmers


def test_hnr_falls_with_noise_and_tracks_the_snr():
  rng = np.random.default_rng(2)
  x = steady(130.0)
  noise = rng.standard_normal(len(x))
  noise *= np.sqrt(np.mean(x ** 2) / np.mean(noise ** 2))
  hnr = []
  for snr in (40.0, 20.0, 10.0, 5.0):
    f = named(prosody.prosody_functionals(x + noise * 10 ** (-snr / 20)))
    assert f["voiced_ratio"] > 0.95
    hnr.append(f["hnr_mean_db"])
  assert np.all(np.diff(hnr) < 0), hnr
  # the proxy of a harmonic signal in white noise is close to its SNR
  np.testing.assert_allclose(hnr[1:], (20.0, 10.0, 5.0), atol=1.5)


def test_hnr_of_a_real_clip_falls_with_noise(data_dir):
  x = read(data_dir, "emodb/wav/03a01Fa.wav").astype(np.float64)
  noise = np.random.default_rng(3).standard_normal(len(x)) * np.std(x)
  clean = prosody.track_f0(x)
  medians = []
  for gain in (0.1, 0.3):
    noisy = prosody.track_f0(x + gain * noise)
    both = clean.voiced & noisy.voiced
    assert both.sum() > 0.7 * clean.voiced.sum()
    medians.append((np.median(clean.hnr_db[both]), np.median(noisy.hnr_db[both])))
  assert medians[0][1] < medians[0][0] and medians[1][1] < medians[1][0] - 3
  assert medians[1][1] < medians[0][1], medians


def test_functionals_are_finite_for_any_input(data_dir):
  rng = np.random.default_rng(4)
  speech = read(data_dir, "emodb/wav/03a01Fa.wav")
  cases = {
    "silence": np.zeros(2 * SR),
    "empty": np.zeros(0),
    "one sample": np.ones(1),
    "noise 0.3 s": 0.1 * rng.standard_normal(int(0.3 * SR)),
    "loud noise": rng.uniform(-1, 1, 3 * SR),
    "dc": np.full(SR, 0.5),
    "dc + speech": speech + 0.3,
    "clipped": np.clip(20.0 * speech, -1.0, 1.0),
    "tiny": 1e-7 * speech,
    "nan": np.where(np.arange(len(speech)) % 100 == 0, np.nan, speech),
  }
  for name, x in cases.items():
    v = prosody.prosody_functionals(x)
    assert v.shape == (prosody.NUM_PROSODY,) and v.dtype == np.float32, name
    assert np.isfinite(v).all(), name
  assert not prosody.prosody_functionals(np.zeros(2 * SR)).any()
  noise = named(prosody.prosody_functionals(rng.standard_normal(3 * SR)))
  assert noise["voiced_ratio"] < 0.05
  clipped = named(prosody.prosody_functionals(cases["clipped"]))
  assert clipped["voiced_ratio"] > 0.2 and clipped["f0_mean_st"] > 20
  # level does not matter (peak normalisation), nor a DC offset
  np.testing.assert_allclose(prosody.prosody_functionals(0.1 * speech),
                             prosody.prosody_functionals(speech), rtol=1e-4,
                             atol=1e-4)


def test_functionals_of_a_real_clip(data_dir):
  x = read(data_dir, RAVDESS_CLIP)[:3 * SR]
  assert len(prosody.PROSODY_NAMES) == len(set(prosody.PROSODY_NAMES)) == 34
  v = prosody.prosody_functionals(x)  # warm up
  start = time.process_time()  # CPU time: the machine may be shared
  for _ in range(5):
    v = prosody.prosody_functionals(x)
  seconds = (time.process_time() - start) / 5
  print(f"prosody_functionals: {3.0 / seconds:.0f}x real time on a 3 s clip")
  f = named(v)
  assert 0.2 < f["voiced_ratio"] < 0.9
  assert 20 < f["f0_mean_st"] < 33  # a male actor: 88-175 Hz
  assert 0 < f["f0_std_st"] < 6 and f["f0_p20_st"] <= f["f0_p50_st"] <= f["f0_p80_st"]
  assert 0 < f["hnr_mean_db"] < 30 and 0 < f["jitter_local"] < 0.05
  assert 0 < f["shimmer_local_db"] < 3
  assert f["alpha_ratio_v"] < 0 < f["hammarberg_v"]
  assert f["voiced_segments_per_s"] > 1 and f["voiced_segment_mean_s"] > 0.03


# --- the C version (nsl_ser/c/prosody.c) -----------------------------------

C_DIR = os.path.join(os.path.dirname(prosody.__file__), "c")


class CFrame(ctypes.Structure):
  _fields_ = [(name, ctypes.c_float) for name in
              ("period", "f0", "periodicity", "rho", "hnr_db", "rms_db")]


def header_constants() -> dict:
  with open(os.path.join(C_DIR, "prosody.h")) as f:
    text = f.read()
  return {k: float(v.rstrip("f")) for k, v in
          re.findall(r"#define NSL_PR_(\w+) (-?[0-9.e-]+f?)\b", text)}


@pytest.fixture(scope="module")
def c_prosody(tmp_path_factory):
  # the flags of nsl_ser.export.micro_front_end.compile_library (not imported here:
  # that module imports TensorFlow, seconds this file does not need)
  cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
  if cc is None:
    pytest.skip("no C compiler")
  out = str(tmp_path_factory.mktemp("prosody_c") / "libprosody.so")
  cmd = [cc, "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra",
         "-Werror", "-pedantic", "-shared", "-fPIC", "-o", out,
         os.path.join(C_DIR, "prosody.c"), "-lm"]
  r = subprocess.run(cmd, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr
  lib = ctypes.CDLL(out)
  fp = ctypes.POINTER(ctypes.c_float)
  lib.nsl_pr_analyze.argtypes = [fp, fp, ctypes.POINTER(CFrame)]
  lib.nsl_pr_analyze.restype = None
  lib.nsl_pr_voiced.argtypes = [ctypes.POINTER(CFrame), ctypes.c_float]
  lib.nsl_pr_voiced.restype = ctypes.c_int
  return lib


def c_frames(lib, x: np.ndarray):
  """Every frame of float32 ``x`` through the C library: (n, 6) values and
  the voiced decisions against the loudest frame."""
  frames = np.ascontiguousarray(prosody.frame_signal(x.astype(np.float32)))
  c = header_constants()
  scratch = np.zeros(int(2 * (c["TAU_MAX"] + 2)), np.float32)
  fp = ctypes.POINTER(ctypes.c_float)
  out, results = CFrame(), []
  for frame in frames:
    lib.nsl_pr_analyze(frame.ctypes.data_as(fp), scratch.ctypes.data_as(fp),
                       ctypes.byref(out))
    results.append(CFrame.from_buffer_copy(out))
  ref_db = max(r.rms_db for r in results)
  voiced = np.array([lib.nsl_pr_voiced(ctypes.byref(r), ref_db) for r in results],
                    dtype=bool)
  values = np.array([[getattr(r, k) for k, _ in CFrame._fields_] for r in results])
  return frames, values, voiced


def test_c_header_matches_python_defaults():
  c = header_constants()
  assert (c["SAMPLE_RATE"], c["FRAME_LEN"], c["HOP"]) == (
    prosody.SAMPLE_RATE, prosody.FRAME_LEN, prosody.HOP)
  assert (c["TAU_MIN"], c["TAU_MAX"]) == prosody.lag_range()
  assert c["THRESHOLD"] == prosody.THRESHOLD
  assert c["VOICING_THRESHOLD"] == prosody.VOICING_THRESHOLD
  assert (c["GATE_DB"], c["FLOOR_DB"]) == (prosody.GATE_DB, prosody.FLOOR_DB)
  assert c["RHO_CLIP"] == prosody.RHO_CLIP


@pytest.mark.parametrize("rel", [RAVDESS_CLIP, "emodb/wav/08a01Na.wav"])
def test_c_frames_equal_numpy_on_a_real_clip(c_prosody, data_dir, rel):
  x = read(data_dir, rel)
  frames, c, c_voiced = c_frames(c_prosody, x)
  y = prosody.yin_frames(frames)
  track = prosody.track_f0(x.astype(np.float64))
  # the period (so f0) wherever the frame passes the energy floor: below
  # it (digital near-silence, one LSB) the CMND is flat and its argmin is a
  # tie that float32 and float64 break differently; such frames are never
  # voiced (RAVDESS clips are half such silence)
  audible = track.rms_db > prosody.FLOOR_DB
  assert audible.sum() > 100 and audible[track.voiced].all()
  np.testing.assert_allclose(c[audible, 0], y.period[audible], rtol=1e-3)
  np.testing.assert_allclose(c[audible, 1], prosody.SAMPLE_RATE / y.period[audible],
                             rtol=1e-3)
  np.testing.assert_allclose(c[:, 2], y.periodicity, rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(c[audible, 3], y.rho[audible], rtol=1e-3, atol=1e-6)
  np.testing.assert_allclose(c[audible, 4], track.hnr_db[audible], atol=1e-2)
  np.testing.assert_allclose(c[:, 5], track.rms_db, atol=1e-3)
  np.testing.assert_array_equal(c_voiced, track.voiced)
  np.testing.assert_allclose(c[track.voiced, 1], track.f0[track.voiced], rtol=1e-3)
