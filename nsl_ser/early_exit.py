"""Adaptive inference: stop at the first exit that is confident enough.

Pure numpy over the exits' probabilities (as produced by a Keras exit model
or by the TFLite signatures), so the same policy runs everywhere.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

POLICIES = ("max_prob", "entropy")


def confidence(probs: np.ndarray, policy: str = "max_prob") -> np.ndarray:
  """Per-row confidence in [0, 1]: the top probability, or 1 - normalised
  entropy."""
  if policy == "max_prob":
    return probs.max(axis=-1)
  if policy == "entropy":
    p = np.clip(probs, 1e-12, 1.0)
    h = -(p * np.log(p)).sum(axis=-1)
    return 1.0 - h / np.log(probs.shape[-1])
  raise ValueError(f"policy must be one of {POLICIES}, not {policy!r}")


def stop_exit(exit_probs: Sequence[np.ndarray], tau: float,
              policy: str = "max_prob") -> np.ndarray:
  """Index (0-based) of the first exit whose confidence >= tau; the last
  exit when none is. tau <= 0 always stops at exit 1; tau > 1 never stops
  early."""
  k = len(exit_probs)
  conf = np.stack([confidence(p, policy) for p in exit_probs], axis=1)
  ok = conf >= tau
  ok[:, -1] = True
  return np.argmax(ok, axis=1) if k else np.zeros(0, int)


def adaptive_predict(exit_probs: Sequence[np.ndarray], tau: float,
                     policy: str = "max_prob") -> Tuple[np.ndarray, np.ndarray]:
  """(predicted class, exit index used) per row."""
  idx = stop_exit(exit_probs, tau, policy)
  stacked = np.stack(exit_probs, axis=1)  # [N, K, C]
  chosen = stacked[np.arange(len(idx)), idx]
  return chosen.argmax(axis=-1), idx


def tau_curve(exit_probs: Sequence[np.ndarray], labels: np.ndarray,
              exit_cost: Sequence[float], taus: Sequence[float],
              num_classes: int, policy: str = "max_prob") -> List[Dict]:
  """For each tau: UAR (%), share stopping at each exit, mean cost (in the
  units of ``exit_cost``, the cumulative cost of stopping at each exit)."""
  from nsl_ser.evaluation import uar
  out = []
  cost = np.asarray(exit_cost, float)
  for tau in taus:
    pred, idx = adaptive_predict(exit_probs, tau, policy)
    share = np.bincount(idx, minlength=len(exit_probs)) / max(len(idx), 1)
    out.append({"tau": float(tau), "uar": 100 * uar(labels, pred, num_classes),
                "exit_share": share.tolist(),
                "mean_cost": float((share * cost).sum()),
                "cost_ratio": float((share * cost).sum() / cost[-1])})
  return out
