"""Prosodic and voice-quality cues in pure numpy: F0, voicing, loudness,
HNR, jitter, shimmer, spectral balance, and their utterance functionals.

The log-Mel front end carries no pitch, voicing or voice quality; the
eGeMAPS set (Eyben et al. 2016) that carries them generalises better across
languages (issue 26, item 5). This module computes an eGeMAPS-minimal set
with numpy only (the runtime has no librosa or scipy), at 16 kHz (callers
resample, e.g. with :func:`nsl_ser.audio.resample`).

Per frame (40 ms frames every 10 ms by default; frame ``i`` is
``x[i * hop : i * hop + frame_len]``):

* :func:`yin_frames`: YIN (de Cheveigne & Kawahara 2002) on each frame:
  the difference function of a fixed integration window of
  ``w = frame_len - tau_max - 1`` samples (equation 6 of the paper),
  ``d(tau) = e(0) + e(tau) - 2 r(tau)``, with ``r`` an FFT
  cross-correlation and ``e`` sliding energies; the cumulative mean
  normalised difference (CMND); the smallest lag in
  ``[sr / fmax, sr / fmin]`` that is a local minimum of the CMND below
  ``threshold``, else the global minimum; the period refined by parabolic
  interpolation of the raw difference function (the paper's step 4). Also
  the periodicity ``1 - min CMND`` (clipped to [0, 1]) and the normalised
  correlation at the period, ``rho = 1 - d(T) / (e(0) + e(T))`` (``d(T)``
  the interpolating parabola's minimum, ``e(T)`` interpolated linearly),
  whose ``10 log10(rho / (1 - rho))`` is the HNR proxy. ``nsl_ser/c/prosody.c``
  computes the same per frame in C. Frames are processed in blocks of
  :data:`BLOCK` (the temporaries stay in cache: twice as fast).
* :func:`track_f0`: the voiced decision: periodicity above
  ``1 - voicing_threshold`` and the frame's RMS within ``gate_db`` of the
  loudest frame (and above ``floor_db`` dBFS); f0 is 0 where unvoiced.
* :func:`frame_features`: the pitch track plus loudness (the sum over 24
  Mel bands, 20-8000 Hz, of band power ** 0.3: a Stevens/Zwicker-style
  compression of an auditory spectrum, as openSMILE's loudness; arbitrary
  units), RMS in dBFS, the spectral slopes 0-500 and 500-1500 Hz (the
  least-squares slope of the Hann-windowed log power spectrum in dB per
  kHz over the bins of each band), the alpha ratio (dB of the summed power
  1-5 kHz over that of 50-1000 Hz: negative for most speech) and the
  Hammarberg index (dB of the strongest bin 0-2 kHz over the strongest
  2-5 kHz), and each frame's peak-to-peak amplitude over one period at its
  centre (for shimmer).

Per utterance, :func:`prosody_functionals` returns the
``len(PROSODY_NAMES)`` numbers named in :data:`PROSODY_NAMES`; see its
docstring for their definitions and for what stands in for statistics of
frames an utterance does not have (always finite, never NaN).
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Tuple

import numpy as np

SAMPLE_RATE = 16000
FRAME_LEN = 640   # 40 ms
HOP = 160         # 10 ms
FMIN = 60.0
FMAX = 500.0
THRESHOLD = 0.1           # YIN's absolute threshold (the paper's value)
VOICING_THRESHOLD = 0.4   # voiced if min CMND < this (periodicity > 0.6)
GATE_DB = 40.0            # voiced frames within this of the loudest frame
FLOOR_DB = -90.0          # ... and above this RMS in dBFS
RHO_CLIP = 1e-3           # rho clipped to [RHO_CLIP, 1 - RHO_CLIP]: HNR +-30 dB
NUM_MEL = 24
LOUDNESS_POWER = 0.3
ST_REF_HZ = 27.5          # semitone reference (eGeMAPS)
MIN_VOICED_RUN = 3        # shorter voiced runs are unvoiced for functionals
MAX_PERIOD_FACTOR = 1.3   # Praat's: pairs with a larger ratio skip jitter
MAX_AMPLITUDE_FACTOR = 1.6  # ... and shimmer
_TINY = 1e-20

PROSODY_NAMES: Tuple[str, ...] = (
  # F0 in semitones re 27.5 Hz over voiced frames
  "f0_mean_st", "f0_std_st", "f0_p20_st", "f0_p50_st", "f0_p80_st",
  "f0_range_20_80_st", "f0_rise_st_per_s", "f0_fall_st_per_s",
  # voicing and rhythm
  "voiced_ratio", "periodicity_mean", "voiced_segments_per_s",
  "voiced_segment_mean_s", "voiced_segment_std_s", "unvoiced_segment_mean_s",
  # loudness over active frames
  "loudness_mean", "loudness_cv", "loudness_p20", "loudness_p50",
  "loudness_p80", "loudness_range_20_80", "loudness_rise_per_s",
  "loudness_fall_per_s",
  # voice quality over voiced frames
  "hnr_mean_db", "hnr_std_db", "jitter_local", "shimmer_local_db",
  # spectral balance: voiced frames, then unvoiced active frames
  "slope_0_500_v", "slope_500_1500_v", "alpha_ratio_v", "hammarberg_v",
  "slope_0_500_uv", "slope_500_1500_uv", "alpha_ratio_uv", "hammarberg_uv",
)
NUM_PROSODY = len(PROSODY_NAMES)


def _check_rate(sr: int) -> None:
  assert sr == SAMPLE_RATE, f"prosody works at {SAMPLE_RATE} Hz, got {sr}: resample first"


def frame_signal(x: np.ndarray, frame_len: int = FRAME_LEN,
                 hop: int = HOP) -> np.ndarray:
  """``(n_frames, frame_len)`` frames ``x[i * hop : i * hop + frame_len]``,
  ``n_frames = 1 + (len(x) - frame_len) // hop`` (a read-only view; the tail
  shorter than a hop is dropped). A signal shorter than one frame is
  zero-padded to one frame."""
  x = np.asarray(x)
  if x.ndim != 1:
    raise ValueError(f"expected a mono 1-D signal, got shape {x.shape}")
  if len(x) < frame_len:
    x = np.pad(x, (0, frame_len - len(x)))
  return np.lib.stride_tricks.sliding_window_view(x, frame_len)[::hop]


def lag_range(sr: int = SAMPLE_RATE, fmin: float = FMIN,
              fmax: float = FMAX) -> Tuple[int, int]:
  """The YIN lags searched, ``(floor(sr / fmax), ceil(sr / fmin))``."""
  return int(np.floor(sr / fmax)), int(np.ceil(sr / fmin))


class YinFrames(NamedTuple):
  """Per-frame YIN outputs (no voicing decision)."""
  period: np.ndarray       # refined period in samples (float)
  periodicity: np.ndarray  # 1 - min CMND over the lag range, in [0, 1]
  rho: np.ndarray          # normalised correlation at the period, clipped


BLOCK = 64  # frames per vectorised block: keeps the temporaries in cache


def yin_frames(frames: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = FMIN,
               fmax: float = FMAX, threshold: float = THRESHOLD) -> YinFrames:
  """YIN on each row of ``frames`` (see the module docstring); float64."""
  _check_rate(sr)
  frames = np.asarray(frames, dtype=np.float64)
  tau_min, tau_max = lag_range(sr, fmin, fmax)
  if frames.shape[1] - tau_max - 1 < tau_max // 2 or tau_min < 2:
    raise ValueError(f"frame_len={frames.shape[1]} too short for fmin={fmin}")
  parts = [_yin_block(frames[i:i + BLOCK], tau_min, tau_max, threshold)
           for i in range(0, len(frames), BLOCK)]
  return YinFrames(*(np.concatenate(p) for p in zip(*parts)))


def _yin_block(frames: np.ndarray, tau_min: int, tau_max: int,
               threshold: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  n, frame_len = frames.shape
  w = frame_len - tau_max - 1
  lags = tau_max + 2  # d at 0..tau_max+1, so every searched lag has neighbours
  # r(tau) = sum_{j<w} x_j x_{j+tau}: j + tau <= frame_len - 1, so a circular
  # correlation of frame_len points has no wrap-around in the lags used
  spec = np.fft.rfft(frames, frame_len)
  head = np.fft.rfft(frames[:, :w], frame_len)
  r = np.fft.irfft(spec * np.conj(head), frame_len)[:, :lags]
  # e(tau) = sum_{j<w} x_{j+tau}^2 from the running energy of each frame
  cs = np.cumsum(frames * frames, axis=1)
  e_tau = cs[:, w - 1:w - 1 + lags].copy()
  e_tau[:, 1:] -= cs[:, :lags - 1]
  e0 = e_tau[:, :1]
  d = e0 + e_tau - 2.0 * r
  np.maximum(d, 0.0, out=d)
  d[:, 0] = 0.0
  # CMND d'(tau) = d(tau) * tau / sum_{j=1..tau} d(j); 1 where undefined
  csum = np.cumsum(d, axis=1)
  ok = csum > 1e-12 * (e0 + _TINY)
  cmnd = np.where(ok, d * np.arange(lags) / np.where(ok, csum, 1.0), 1.0)
  cmnd[:, 0] = 1.0
  search = cmnd[:, tau_min:tau_max + 1]
  trough = ((search < threshold) & (search < cmnd[:, tau_min - 1:tau_max])
            & (search <= cmnd[:, tau_min + 1:tau_max + 2]))
  gmin = np.argmin(search, axis=1)
  k = np.where(trough.any(axis=1), np.argmax(trough, axis=1), gmin) + tau_min
  rows = np.arange(n)
  # parabolic interpolation of the raw difference function around lag k
  a, b, c = d[rows, k - 1], d[rows, k], d[rows, k + 1]
  den = a - 2.0 * b + c
  shift = np.where(den > 0, 0.5 * (a - c) / np.where(den > 0, den, 1.0), 0.0)
  shift = np.clip(shift, -1.0, 1.0)
  period = k + shift
  periodicity = np.clip(1.0 - search[rows, gmin], 0.0, 1.0)
  # rho at the refined period: the parabola's value there, over the energy
  # interpolated linearly between the lags around it
  d_min = np.maximum(b - 0.25 * (a - c) * shift, 0.0)
  k2 = k + np.where(shift < 0, -1, 1)
  energy = (e0[:, 0] + e_tau[rows, k] * (1.0 - np.abs(shift))
            + e_tau[rows, k2] * np.abs(shift))
  rho = np.where(energy > _TINY, 1.0 - d_min / np.maximum(energy, _TINY), 0.0)
  return period, periodicity, np.clip(rho, RHO_CLIP, 1.0 - RHO_CLIP)


def rms_db(frames: np.ndarray) -> np.ndarray:
  """Each frame's RMS in dB re full scale (1.0); -200 dB for digital zero."""
  frames = np.asarray(frames, dtype=np.float64)
  return 10.0 * np.log10(np.mean(frames * frames, axis=1) + _TINY)


def hnr_db(rho: np.ndarray) -> np.ndarray:
  """The HNR proxy ``10 log10(rho / (1 - rho))`` of a normalised
  correlation in (0, 1)."""
  rho = np.clip(rho, RHO_CLIP, 1.0 - RHO_CLIP)
  return 10.0 * np.log10(rho / (1.0 - rho))


class PitchTrack(NamedTuple):
  """:func:`track_f0`'s per-frame outputs."""
  f0: np.ndarray           # Hz, 0 where unvoiced
  periodicity: np.ndarray  # 1 - min CMND in [0, 1] (a voicing probability)
  voiced: np.ndarray       # bool
  period: np.ndarray       # samples (every frame, voiced or not)
  hnr_db: np.ndarray       # HNR proxy, dB (every frame)
  rms_db: np.ndarray       # dBFS
  active: np.ndarray       # bool: passes the energy gate


def track_f0(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = FMIN,
             fmax: float = FMAX, frame_len: int = FRAME_LEN, hop: int = HOP,
             threshold: float = THRESHOLD,
             voicing_threshold: float = VOICING_THRESHOLD,
             gate_db: float = GATE_DB, floor_db: float = FLOOR_DB,
             frames: Optional[np.ndarray] = None) -> PitchTrack:
  """F0 per frame by YIN: voiced where the periodicity exceeds
  ``1 - voicing_threshold`` and the frame is active (RMS within ``gate_db``
  of the loudest frame and above ``floor_db`` dBFS); f0 is 0 elsewhere.
  ``frames``: ``frame_signal(x, frame_len, hop)`` if already computed."""
  _check_rate(sr)
  if frames is None:
    frames = frame_signal(np.asarray(x, dtype=np.float64), frame_len, hop)
  y = yin_frames(frames, sr, fmin, fmax, threshold)
  level = rms_db(frames)
  active = (level >= level.max() - gate_db) & (level > floor_db)
  voiced = active & (y.periodicity > 1.0 - voicing_threshold)
  f0 = np.where(voiced, sr / y.period, 0.0)
  return PitchTrack(f0, y.periodicity, voiced, y.period, hnr_db(y.rho),
                    level, active)


def mel_filters(sr: int = SAMPLE_RATE, nfft: int = FRAME_LEN, num_bands: int = NUM_MEL,
                lower_hz: float = 20.0, upper_hz: float = 8000.0) -> np.ndarray:
  """``(nfft // 2 + 1, num_bands)`` triangular HTK-Mel filters (peak 1)."""
  def mel(f):
    return 1127.0 * np.log1p(np.asarray(f) / 700.0)
  edges = 700.0 * np.expm1(np.linspace(mel(lower_hz), mel(upper_hz),
                                       num_bands + 2) / 1127.0)
  f = np.arange(nfft // 2 + 1) * sr / nfft
  lo, mid, hi = edges[:-2], edges[1:-1], edges[2:]
  up = (f[:, None] - lo) / (mid - lo)
  down = (hi - f[:, None]) / (hi - mid)
  return np.maximum(0.0, np.minimum(up, down))


def _sparse_columns(m: np.ndarray):
  """Each column of ``m`` as (first nonzero row, its nonzero run)."""
  out = []
  for col in m.T:
    nz = np.flatnonzero(col)
    lo, hi = (nz[0], nz[-1] + 1) if nz.size else (0, 0)
    out.append((lo, hi, col[lo:hi]))
  return out


class _Spectral:
  """Constants of the spectral features for one frame length (cached)."""
  _cache: dict = {}

  def __init__(self, sr: int, frame_len: int):
    f = np.arange(frame_len // 2 + 1) * sr / frame_len
    self.window = np.hanning(frame_len + 1)[:-1]  # periodic Hann
    self.scale = 1.0 / np.sum(self.window ** 2)
    self.mel = _sparse_columns(mel_filters(sr, frame_len))
    self.slopes = []
    for lo, hi in ((0.0, 500.0), (500.0, 1500.0)):
      sel = np.flatnonzero((f >= lo) & (f <= hi))
      fc = f[sel] / 1000.0 - np.mean(f[sel] / 1000.0)
      self.slopes.append((sel[0], sel[-1] + 1, fc / np.sum(fc * fc)))
    self.bands = {}
    for lo, hi in ((50, 1000), (1000, 5000), (0, 2000), (2000, 5000)):
      sel = np.flatnonzero((f >= lo) & (f < hi))
      self.bands[lo, hi] = slice(sel[0], sel[-1] + 1)

  @classmethod
  def of(cls, sr: int, frame_len: int) -> "_Spectral":
    if (sr, frame_len) not in cls._cache:
      cls._cache[sr, frame_len] = cls(sr, frame_len)
    return cls._cache[sr, frame_len]


def spectral_frames(frames: np.ndarray, sr: int = SAMPLE_RATE) -> Tuple[np.ndarray, ...]:
  """Loudness, slope 0-500, slope 500-1500 (dB / kHz), alpha ratio and
  Hammarberg index (dB) of each frame (see the module docstring)."""
  c = _Spectral.of(sr, frames.shape[1])
  parts = []
  for i in range(0, len(frames), BLOCK):
    spec = np.fft.rfft(frames[i:i + BLOCK] * c.window)
    power = (spec.real ** 2 + spec.imag ** 2) * c.scale
    bands = np.stack([power[:, lo:hi] @ wts if hi > lo else np.zeros(len(power))
                      for lo, hi, wts in c.mel], axis=1)
    loudness = np.sum(bands ** LOUDNESS_POWER, axis=1)
    slopes = [10.0 * np.log10(power[:, lo:hi] + 1e-12) @ wts
              for lo, hi, wts in c.slopes]
    eps = 1e-12
    b = c.bands
    alpha = 10.0 * np.log10((power[:, b[1000, 5000]].sum(1) + eps)
                            / (power[:, b[50, 1000]].sum(1) + eps))
    hammarberg = 10.0 * np.log10((power[:, b[0, 2000]].max(1) + eps)
                                 / (power[:, b[2000, 5000]].max(1) + eps))
    parts.append((loudness, slopes[0], slopes[1], alpha, hammarberg))
  return tuple(np.concatenate(p) for p in zip(*parts))


class FrameFeatures(NamedTuple):
  """:func:`frame_features`' per-frame outputs."""
  pitch: PitchTrack
  loudness: np.ndarray
  slope_0_500: np.ndarray      # dB / kHz
  slope_500_1500: np.ndarray   # dB / kHz
  alpha_ratio: np.ndarray      # dB
  hammarberg: np.ndarray       # dB
  amplitude: np.ndarray        # peak-to-peak over one period at the centre


def frame_features(x: np.ndarray, sr: int = SAMPLE_RATE, fmin: float = FMIN,
                   fmax: float = FMAX, frame_len: int = FRAME_LEN,
                   hop: int = HOP) -> FrameFeatures:
  """Pitch track, loudness, spectral balance and amplitude per frame (see
  the module docstring)."""
  _check_rate(sr)
  frames = frame_signal(np.asarray(x, dtype=np.float64), frame_len, hop)
  pitch = track_f0(x, sr, fmin, fmax, frame_len, hop, frames=frames)
  spectral = spectral_frames(frames, sr)
  # peak-to-peak amplitude over one period centred on the frame's centre
  # (voiced frames only: 0 elsewhere)
  _, tau_max = lag_range(sr, fmin, fmax)
  amplitude = np.zeros(len(frames))
  v = np.flatnonzero(pitch.voiced)
  if v.size:
    t = np.clip(np.rint(pitch.period[v]).astype(int), 1, tau_max)
    j = np.arange(tau_max + 1)
    idx = np.minimum((frame_len // 2 - t // 2)[:, None] + j, frame_len - 1)
    seg = frames[v[:, None], idx]
    inside = j < t[:, None]
    amplitude[v] = (np.where(inside, seg, -np.inf).max(1)
                    - np.where(inside, seg, np.inf).min(1))
  return FrameFeatures(pitch, *spectral, amplitude)


def _runs(mask: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Start, length and value of each run of equal values in a bool mask."""
  m = np.asarray(mask, dtype=bool)
  if m.size == 0:
    e = np.zeros(0, dtype=int)
    return e, e, np.zeros(0, dtype=bool)
  change = np.flatnonzero(m[1:] != m[:-1]) + 1
  starts = np.concatenate([[0], change])
  lengths = np.diff(np.concatenate([starts, [m.size]]))
  return starts, lengths, m[starts]


def clean_voicing(voiced: np.ndarray, min_run: int = MIN_VOICED_RUN) -> np.ndarray:
  """``voiced`` without the voiced runs shorter than ``min_run`` frames."""
  out = np.asarray(voiced, dtype=bool).copy()
  starts, lengths, values = _runs(out)
  for s, n in zip(starts[values & (lengths < min_run)],
                  lengths[values & (lengths < min_run)]):
    out[s:s + n] = False
  return out


def _mean(v: np.ndarray) -> float:
  return float(np.mean(v)) if v.size else 0.0


def _std(v: np.ndarray) -> float:
  return float(np.std(v)) if v.size > 1 else 0.0


def _slopes(v: np.ndarray, pair: np.ndarray, hop_s: float) -> Tuple[float, float]:
  """Mean rising and mean falling (as a positive number) frame-to-frame
  slope per second over the frame pairs ``pair`` (both frames valid)."""
  dv = np.diff(v)[pair] / hop_s
  return _mean(dv[dv > 0]), _mean(-dv[dv < 0])


def _pct(v: np.ndarray) -> Tuple[float, float, float]:
  if not v.size:
    return 0.0, 0.0, 0.0
  p = np.percentile(v, (20.0, 50.0, 80.0))
  return float(p[0]), float(p[1]), float(p[2])


def _local_perturbation(v: np.ndarray, voiced: np.ndarray, factor: float,
                        log_db: bool) -> float:
  """Jitter (relative) or shimmer (dB) over consecutive voiced frames whose
  ratio is within ``factor`` (Praat's rule against octave jumps)."""
  pair = voiced[1:] & voiced[:-1]
  a, b = v[:-1][pair], v[1:][pair]
  ok = (a > 0) & (b > 0)
  a, b = a[ok], b[ok]
  ratio = np.maximum(a, b) / np.maximum(np.minimum(a, b), _TINY)
  a, b = a[ratio <= factor], b[ratio <= factor]
  if not a.size:
    return 0.0
  if log_db:
    return float(np.mean(np.abs(20.0 * np.log10(b / a))))
  return float(np.mean(np.abs(b - a)) / np.mean(v[voiced]))


def functionals_of_frames(ff: FrameFeatures, num_samples: int,
                          sr: int = SAMPLE_RATE, hop: int = HOP) -> np.ndarray:
  """:data:`PROSODY_NAMES` from :func:`frame_features` (see
  :func:`prosody_functionals`)."""
  p = ff.pitch
  hop_s = hop / sr
  voiced = clean_voicing(p.voiced)
  active = p.active
  unvoiced = active & ~voiced
  duration = max(num_samples / sr, hop_s)
  out = {}
  # F0
  st = 12.0 * np.log2(np.maximum(p.f0, 1.0) / ST_REF_HZ)
  sv = st[voiced]
  out["f0_mean_st"], out["f0_std_st"] = _mean(sv), _std(sv)
  p20, p50, p80 = _pct(sv)
  out["f0_p20_st"], out["f0_p50_st"], out["f0_p80_st"] = p20, p50, p80
  out["f0_range_20_80_st"] = p80 - p20
  vpair = voiced[1:] & voiced[:-1]
  out["f0_rise_st_per_s"], out["f0_fall_st_per_s"] = _slopes(st, vpair, hop_s)
  # voicing and rhythm
  out["voiced_ratio"] = float(voiced.sum() / max(active.sum(), 1))
  out["periodicity_mean"] = _mean(p.periodicity[active])
  starts, lengths, values = _runs(voiced)
  vlen = lengths[values] * hop_s
  out["voiced_segments_per_s"] = float(vlen.size / duration)
  out["voiced_segment_mean_s"], out["voiced_segment_std_s"] = _mean(vlen), _std(vlen)
  inner = ~values
  if values.size:
    inner[0] = inner[-1] = False  # only pauses between voiced segments
  out["unvoiced_segment_mean_s"] = _mean(lengths[inner] * hop_s)
  # loudness over active frames
  la = ff.loudness[active]
  m = _mean(la)
  out["loudness_mean"] = m
  out["loudness_cv"] = _std(la) / m if m > 0 else 0.0
  p20, p50, p80 = _pct(la)
  out["loudness_p20"], out["loudness_p50"], out["loudness_p80"] = p20, p50, p80
  out["loudness_range_20_80"] = p80 - p20
  apair = active[1:] & active[:-1]
  out["loudness_rise_per_s"], out["loudness_fall_per_s"] = _slopes(
    ff.loudness, apair, hop_s)
  # voice quality
  out["hnr_mean_db"], out["hnr_std_db"] = _mean(p.hnr_db[voiced]), _std(p.hnr_db[voiced])
  out["jitter_local"] = _local_perturbation(p.period, voiced, MAX_PERIOD_FACTOR, False)
  out["shimmer_local_db"] = _local_perturbation(ff.amplitude, voiced,
                                                MAX_AMPLITUDE_FACTOR, True)
  # spectral balance
  for suffix, sel in (("v", voiced), ("uv", unvoiced)):
    out[f"slope_0_500_{suffix}"] = _mean(ff.slope_0_500[sel])
    out[f"slope_500_1500_{suffix}"] = _mean(ff.slope_500_1500[sel])
    out[f"alpha_ratio_{suffix}"] = _mean(ff.alpha_ratio[sel])
    out[f"hammarberg_{suffix}"] = _mean(ff.hammarberg[sel])
  v = np.array([out[k] for k in PROSODY_NAMES], dtype=np.float64)
  return np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)


def prosody_functionals(x: np.ndarray, sr: int = SAMPLE_RATE,
                        peak_normalize: bool = True) -> np.ndarray:
  """The ``NUM_PROSODY`` float32 functionals :data:`PROSODY_NAMES` of an
  utterance ``x`` at 16 kHz (asserted).

  The clip's mean is removed and, with ``peak_normalize``, its peak scaled
  to 1 (as the log-Mel front end does), so that level does not move the
  loudness statistics. Voiced frames are :func:`track_f0`'s, without voiced
  runs shorter than :data:`MIN_VOICED_RUN` frames; active frames pass its
  energy gate. Definitions:

  * ``f0_*``: F0 in semitones re 27.5 Hz over voiced frames: mean, std,
    20/50/80th percentiles, 20-80 range; rise / fall: the mean positive /
    negative (as a magnitude) frame-to-frame change, st / s, over
    consecutive voiced frames.
  * ``voiced_ratio``: voiced / active frames; ``periodicity_mean`` over
    active frames; voiced segments (runs) per second of the clip, their
    mean and std length (s); the mean length (s) of the unvoiced runs
    between two voiced runs.
  * ``loudness_*`` over active frames: mean, std / mean, percentiles,
    20-80 range, rise / fall per second as for F0 over consecutive active
    frames.
  * ``hnr_*``: the HNR proxy (dB) over voiced frames; ``jitter_local``:
    mean |T_i - T_{i-1}| / mean T over consecutive voiced frames (the YIN
    period of each frame: a frame-level proxy that includes intonation
    over 10 ms); ``shimmer_local_db``: mean |20 log10(A_i / A_{i-1})|
    over consecutive voiced frames, A the peak-to-peak amplitude over one
    period at the frame's centre; pairs whose ratio exceeds 1.3 (periods)
    or 1.6 (amplitudes) are skipped, as Praat does.
  * spectral slopes (dB / kHz), alpha ratio and Hammarberg index (dB):
    means over voiced (``_v``) and unvoiced active (``_uv``) frames.

  Statistics of frames an utterance does not have (no voiced frame, one
  voiced segment, no pause, silence) are 0; every value is finite.
  """
  _check_rate(sr)
  x = np.asarray(x, dtype=np.float64).reshape(-1)
  x = np.nan_to_num(x)
  if x.size:
    x = x - x.mean()
  peak = float(np.max(np.abs(x))) if x.size else 0.0
  if peak_normalize and peak > 1e-9:
    x = x / peak
  return functionals_of_frames(frame_features(x, sr), x.size, sr)
