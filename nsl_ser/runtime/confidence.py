"""Whether a model's confidence means what it says (pure numpy).

* :func:`reliability`: accuracy against confidence in equal-width bins,
  :func:`ece`: the expected calibration error (Guo et al., 2017), the
  bin-weighted mean gap between the two.
* :func:`fit_temperature` / :func:`apply_temperature`: temperature scaling,
  ``softmax(log p / T)``, one scalar fitted on held-out speakers by minimum
  negative log-likelihood; it never changes the argmax, only how confident
  the model says it is (and so where ``--tau`` stops).
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

EPS = 1e-7


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
  """``softmax(log(probs) / T)`` along the last axis."""
  z = np.log(np.clip(np.asarray(probs, np.float64), EPS, 1.0)) / float(temperature)
  z -= z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
  p = np.clip(np.asarray(probs, np.float64)[np.arange(len(labels)), labels], EPS, 1)
  return float(-np.mean(np.log(p)))


def fit_temperature(probs: np.ndarray, labels: np.ndarray,
                    grid: np.ndarray = np.exp(np.linspace(np.log(0.05),
                                                          np.log(20.0), 241))
                    ) -> float:
  """The T of the grid (log-spaced, 0.05 .. 20) with the lowest NLL."""
  labels = np.asarray(labels, int)
  losses = [nll(apply_temperature(probs, t), labels) for t in grid]
  return float(grid[int(np.argmin(losses))])


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = 10
                ) -> List[Dict[str, float]]:
  """Per confidence bin [lo, hi): count, mean confidence, accuracy."""
  probs = np.asarray(probs)
  conf = probs.max(axis=-1)
  correct = probs.argmax(axis=-1) == np.asarray(labels)
  edges = np.linspace(0.0, 1.0, bins + 1)
  idx = np.clip(np.digitize(conf, edges[1:-1], right=False), 0, bins - 1)
  out = []
  for b in range(bins):
    m = idx == b
    out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]),
                "count": int(m.sum()),
                "confidence": float(conf[m].mean()) if m.any() else float("nan"),
                "accuracy": float(correct[m].mean()) if m.any() else float("nan")})
  return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
  """Expected calibration error in % (0: confidence = accuracy)."""
  rel = reliability(probs, labels, bins)
  n = sum(r["count"] for r in rel)
  return 100.0 * sum(r["count"] / n * abs(r["accuracy"] - r["confidence"])
                     for r in rel if r["count"])
