"""The functionals head: utterance statistics of the log-Mel features + a
linear classifier, fused with the CNN's exits (pure numpy + scikit-learn).

Why: on EmoDB a linear model on these 423 numbers of a whole utterance is
better than the CNN student on its 3 s windows
(experiments/results/functionals.md), and the two make different
mistakes: every window's exits fused with the head of its utterance beat
the CNN at every exit, and the head too when speakers are calibrated
(speaker-independent they tie with it; experiments/results/accuracy.md,
row ``average+speed+functionals``).

* :func:`functionals`: per band over the speech frames of an utterance
  (:func:`nsl_ser.normalization.speech_frames`): mean, std,
  10th / 50th / 90th percentiles, mean, std, mean |.| of the
  frame-to-frame difference, and the linear and quadratic regression
  coefficients over the utterance's time (normalised to [0, 1]: its
  rise or fall, its arch); the std of the first :data:`NUM_CEPSTRA`
  cepstral coefficients (DCT-II of each frame); the std and 90-10 range
  of the mean log-Mel contour and the speech duration (s). The temporal
  and cepstral blocks were chosen by validation UAR over both regimes
  (+4.8 / +2.7 UAR for the head on the test speakers,
  experiments/results/functionals.md).
* :class:`LinearHead`: multinomial logistic regression on functionals
  standardised with the training statistics (``reference``), trained on
  the utterances and on their speed-perturbed copies (the recipe's speeds,
  as the CNN; :func:`of_speeds`; +1.6 / +0.9 UAR for the head,
  experiments/results/functionals.md). In the
  speaker-calibrated regime a speaker's functionals are first mapped onto
  the reference with that speaker's own functionals statistics
  (:func:`nsl_ser.normalization.calibrate` with :data:`FLOOR`, the same
  affine contract as the log-Mel calibration; one :class:`~nsl_ser.normalization.BandStats` of
  2 x 423 floats a speaker, updated clip by clip).
* :func:`fuse`: product of experts, ``p_k * q / sum(p_k * q)``, for every
  exit k of the CNN.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from nsl_ser import normalization
from nsl_ser.normalization import BandStats

PERCENTILES = (10.0, 50.0, 90.0)
# Inverse regularisation strengths tried on the validation speakers.
CS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
EPS = 1e-9
# Variance floor of the standardisation: plain z-scores (as scikit-learn's
# StandardScaler and the openSMILE + SVM baselines), not the log-Mel
# calibration's 1e-3, which would shrink the small-variance functionals
# (the frame-difference means).
FLOOR = 1e-12
# The head describes an utterance, not a window: it is fitted on whole
# corpus clips (+4.4 / +3.5 UAR over 3 s windows alone, experiments/results/
# functionals.md), and a file up to UTTERANCE_S seconds is one utterance
# (EmoDB's longest clip is 9 s); longer recordings are cut into equal
# chunks no longer than that (:func:`utterance_bounds`).
UTTERANCE_S = 10.0


# Cepstral coefficients whose spread over the utterance is a functional.
NUM_CEPSTRA = 20


def num_functionals(bands: int) -> int:
  return bands * (5 + 3 + 2) + NUM_CEPSTRA + 3


def layout(bands: int) -> dict:
  """{group: column indices} of the functionals vector."""
  b, n = bands, num_functionals(bands)
  return {"statistics": np.arange(0, 5 * b),
          "differences": np.arange(5 * b, 8 * b),
          "temporal": np.arange(8 * b, 10 * b),
          "cepstral": np.arange(10 * b, 10 * b + NUM_CEPSTRA),
          "contour": np.arange(n - 3, n)}


def level_free(x: np.ndarray, bands: int) -> np.ndarray:
  """Functionals ``x`` [N, num_functionals(bands)] without what a constant
  per-band gain (a microphone, a room, a codec's equaliser) moves: the
  band means are dropped and the percentiles taken relative to them. The
  other groups are unchanged by such a gain already (spreads, differences,
  regression slopes, cepstral spreads, contour spread, duration)."""
  x = np.asarray(x)
  b = bands
  mean = x[:, :b]
  pct = x[:, 2 * b:5 * b] - np.tile(mean, (1, 3))
  return np.concatenate([x[:, b:2 * b], pct, x[:, 5 * b:]], axis=1)


def dct_matrix(bands: int, num: int = NUM_CEPSTRA) -> np.ndarray:
  """[num, bands] orthonormal DCT-II (scipy.fft.dct(norm="ortho"))."""
  k, b = np.arange(num)[:, None], np.arange(bands)[None, :]
  m = np.sqrt(2.0 / bands) * np.cos(np.pi * k * (2 * b + 1) / (2 * bands))
  m[0] /= np.sqrt(2.0)
  return m


def regression(s: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """Per column of [n, bands]: the least-squares coefficients of the
  centred time t = i / (n - 1) - mean and of t^2 - mean(t^2) (orthogonal
  to t; zeros for a single frame)."""
  n = len(s)
  t = np.arange(n) / max(n - 1, 1)
  t -= t.mean()
  q = t * t
  q -= q.mean()
  c = s - s.mean(0)
  return (t @ c / max(t @ t, EPS), q @ c / max(q @ q, EPS))


def functionals(clip: np.ndarray, hop_s: float) -> np.ndarray:
  """The functionals of one whole [frames, bands] log-Mel clip (float64)."""
  s = np.asarray(normalization.speech_frames(clip), np.float64)
  d = np.diff(s, axis=0) if len(s) > 1 else np.zeros((1, s.shape[1]))
  e = s.mean(axis=1)
  return np.concatenate([
      s.mean(0), s.std(0), *np.percentile(s, PERCENTILES, axis=0),
      d.mean(0), d.std(0), np.abs(d).mean(0), *regression(s),
      (s @ dct_matrix(s.shape[1]).T).std(0),
      [e.std(), np.percentile(e, 90) - np.percentile(e, 10), len(s) * hop_s]])


def utterance_bounds(num_frames: int, hop_s: float,
                     max_s: float = UTTERANCE_S) -> List[Tuple[int, int]]:
  """[(first frame, end frame)] of the utterances of a recording
  ``num_frames`` long: the whole of it up to ``max_s`` seconds, otherwise
  the fewest equal chunks no longer than that."""
  n = max(1, int(np.ceil(num_frames * hop_s / max_s - 1e-9)))
  edges = np.linspace(0, num_frames, n + 1).round().astype(int)
  return list(zip(edges[:-1].tolist(), edges[1:].tolist()))


def of_utterances(clip: np.ndarray, hop_s: float,
                  max_s: float = UTTERANCE_S
                  ) -> Tuple[List[Tuple[int, int]], np.ndarray]:
  """(bounds, [n, num_functionals]) of a recording's utterances
  (:func:`utterance_bounds`)."""
  bounds = utterance_bounds(clip.shape[0], hop_s, max_s)
  return bounds, np.stack([functionals(clip[a:b], hop_s) for a, b in bounds])


def first_utterance_probs(head: "LinearHead", clips: Sequence[np.ndarray]
                          ) -> np.ndarray:
  """[N, classes]: ``head`` on the first utterance (:func:`of_utterances`)
  of each whole recording, what ``predict`` fuses with its first window."""
  return head.probs(np.stack([of_utterances(c, head.hop_s)[1][0]
                              for c in clips]))


def of_clips(clips: Sequence[np.ndarray], hop_s: float) -> np.ndarray:
  """[N, num_functionals] for whole clips."""
  return np.stack([functionals(c, hop_s) for c in clips])


def of_speeds(utts, hop_s: float) -> List[np.ndarray]:
  """[N, num_functionals] of whole utterances at each of their speeds
  (:class:`nsl_ser.augment.Utterances`; the first is the original, the
  others are the speed-perturbed copies the head also trains on)."""
  return [of_clips(utts.clips(j), hop_s) for j in range(len(utts.speeds))]


def speaker_stats(x: np.ndarray, speakers: Sequence[str]) -> dict:
  """{speaker: BandStats of that speaker's functionals (one row a clip)}."""
  speakers = np.asarray(speakers).astype(str)
  return {s: BandStats.of(x[speakers == s]) for s in np.unique(speakers)}


def calibrate_by_speaker(x: np.ndarray, speakers: Sequence[str],
                         stats: Mapping[str, BandStats], reference: BandStats
                         ) -> np.ndarray:
  """Each speaker's functionals mapped onto ``reference`` with its own
  statistics (the speaker-calibrated regime)."""
  return normalization.calibrate_by_speaker(x, speakers, stats, reference, FLOOR)


def in_regime(x: np.ndarray, speakers: Sequence[str], regime: str,
              reference: BandStats) -> np.ndarray:
  """``x`` as the head of ``regime`` sees it: raw (``global``), or each
  speaker calibrated onto ``reference`` with its own statistics."""
  if regime != "speaker":
    return x
  return calibrate_by_speaker(x, speakers, speaker_stats(x, speakers), reference)


@dataclasses.dataclass
class LinearHead:
  """Softmax regression on standardised functionals."""
  coef: np.ndarray       # [classes, num_functionals]
  intercept: np.ndarray  # [classes]
  reference: BandStats   # training functionals: standardisation
  hop_s: float
  C: float

  def log_probs(self, x: np.ndarray) -> np.ndarray:
    """Log-probabilities [N, classes] of functionals ``x`` (already
    calibrated for their speaker in the speaker regime)."""
    z = (np.asarray(x, np.float64) - self.reference.mean) / np.sqrt(
        np.maximum(self.reference.var, FLOOR))
    logits = z @ self.coef.T + self.intercept
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))

  def probs(self, x: np.ndarray) -> np.ndarray:
    return np.exp(self.log_probs(x))

  def to_dict(self) -> dict:
    return {"coef": self.coef.tolist(), "intercept": self.intercept.tolist(),
            "reference": self.reference.to_dict(), "hop_s": self.hop_s,
            "C": self.C, "functionals": "nsl_ser.functionals.functionals",
            "percentiles": list(PERCENTILES)}

  @classmethod
  def from_dict(cls, d: Mapping) -> "LinearHead":
    coef = np.asarray(d["coef"], np.float64)
    intercept = np.asarray(d["intercept"], np.float64)
    ref = BandStats.from_dict(d["reference"])
    if coef.shape != (len(intercept), len(ref.mean)):
      raise ValueError(f"functionals head: coef {coef.shape} does not match "
                       f"{len(intercept)} classes x {len(ref.mean)} functionals")
    return cls(coef, intercept, ref, float(d["hop_s"]), float(d["C"]))


def _fit(z: np.ndarray, y: np.ndarray, C: float):
  from sklearn.linear_model import LogisticRegression
  return LogisticRegression(C=C, class_weight="balanced", max_iter=5000).fit(z, y)


def fit_head(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
             y_val: np.ndarray, num_classes: int, hop_s: float,
             reference: Optional[BandStats] = None,
             cs: Sequence[float] = CS, refit_on_val: bool = True,
             train_copies: Sequence[np.ndarray] = (),
             val_copies: Sequence[np.ndarray] = ()) -> LinearHead:
  """C chosen by validation UAR, then refit on train + validation (the
  protocol of the openSMILE + SVM baselines). ``reference``: the
  standardisation statistics (default: the training rows'). Every class
  must occur in the training rows. ``train_copies`` / ``val_copies``:
  functionals of the same clips perturbed (rows aligned with ``x_train``
  / ``x_val``), extra training rows with the same labels; C is still
  chosen on the original validation clips."""
  from nsl_ser.evaluation import uar
  missing = sorted(set(range(num_classes)) - set(np.unique(y_train).tolist()))
  if missing:
    raise ValueError(f"functionals head: classes {missing} have no training clip")
  ref = reference or BandStats.of(x_train)
  std = lambda x: (x - ref.mean) / np.sqrt(np.maximum(ref.var, FLOOR))
  zt, zv = std(x_train), std(x_val)
  zts = np.concatenate([zt] + [std(c) for c in train_copies])
  yts = np.tile(y_train, 1 + len(train_copies))
  best = max(cs, key=lambda c: uar(y_val, _fit(zts, yts, c).predict(zv),
                                   num_classes))
  zvs = np.concatenate([zv] + [std(c) for c in val_copies])
  yvs = np.tile(y_val, 1 + len(val_copies))
  z, y = ((np.concatenate([zts, zvs]), np.concatenate([yts, yvs]))
          if refit_on_val else (zts, yts))
  m = _fit(z, y, best)
  return LinearHead(m.coef_.astype(np.float64), m.intercept_.astype(np.float64),
                    ref, hop_s, float(best))


def fit_on_speakers(x: np.ndarray, labels: np.ndarray, speakers: Sequence[str],
                    train: Iterable[str], val: Iterable[str], regime: str,
                    num_classes: int, hop_s: float,
                    copies: Sequence[np.ndarray] = ()):
  """The head of a speaker split, trained like the CNN of that regime:
  ``x`` [N, num_functionals] of every utterance (every speaker, for the
  calibration statistics), standardised with the training speakers'
  statistics; in the ``speaker`` regime every speaker's functionals are
  first mapped onto them with its own (:func:`calibrate_by_speaker`).
  ``copies``: the same utterances speed-perturbed (:func:`of_speeds`),
  extra training rows as the CNN's speed lever (each copy of a speaker
  calibrated with its own statistics, as a speaker of its own).
  Returns (head, {"independent": x, "calibrated": every speaker
  calibrated}): score test rows raw or calibrated."""
  speakers = np.asarray(speakers).astype(str)
  tr = np.isin(speakers, [str(s) for s in train])
  va = np.isin(speakers, [str(s) for s in val])
  ref = BandStats.of(x[tr])
  cal = in_regime(x, speakers, "speaker", ref)
  xt = cal if regime == "speaker" else x
  cs = [in_regime(c, speakers, regime, ref) for c in copies]
  head = fit_head(xt[tr], labels[tr], xt[va], labels[va], num_classes, hop_s, ref,
                  train_copies=[c[tr] for c in cs], val_copies=[c[va] for c in cs])
  return head, {"independent": x, "calibrated": cal}


def cross_fitted_probs(x: np.ndarray, labels: np.ndarray,
                       speakers: Sequence[str], train: Iterable[str],
                       val: Iterable[str], regime: str, num_classes: int,
                       hop_s: float, copies: Sequence[np.ndarray] = ()
                       ) -> np.ndarray:
  """[N, classes]: the head's probabilities for every utterance of a
  training speaker from a head that never saw that speaker (fitted on the
  other training speakers, :func:`fit_on_speakers`); rows of other
  speakers are zero. Soft labels a student can learn from (a head's
  answers on its own training rows are over-confident)."""
  speakers = np.asarray(speakers).astype(str)
  train = sorted(str(s) for s in train)
  out = np.zeros((len(x), num_classes))
  for s in train:
    head, forms = fit_on_speakers(x, labels, speakers, set(train) - {s}, val,
                                  regime, num_classes, hop_s, copies)
    mine = speakers == s
    form = forms["calibrated" if regime == "speaker" else "independent"]
    out[mine] = head.probs(form[mine])
  return out


def fuse(exit_probs: Sequence[np.ndarray] | np.ndarray,
         head_probs: np.ndarray) -> List[np.ndarray] | np.ndarray:
  """Product of experts of each exit's probabilities with the head's,
  renormalised (a list for a list)."""
  def one(p):
    lp = np.log(np.asarray(p, np.float64) + EPS) + np.log(head_probs + EPS)
    lp -= lp.max(axis=-1, keepdims=True)
    q = np.exp(lp)
    return (q / q.sum(axis=-1, keepdims=True)).astype(np.float32)
  if isinstance(exit_probs, (list, tuple)):
    return [one(p) for p in exit_probs]
  return one(exit_probs)
