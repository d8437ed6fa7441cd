"""Metrics for imbalanced emotion classes (pure numpy)."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """[true, predicted] counts."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
  return cm


def per_class_recall(cm: np.ndarray) -> np.ndarray:
  """Recall of each class present in ``cm``; NaN for absent classes."""
  support = cm.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(support > 0, np.diag(cm) / support, np.nan)


def uar(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
  """Unweighted average recall over the classes present in ``y_true``."""
  return float(np.nanmean(per_class_recall(
      confusion_matrix(y_true, y_pred, num_classes))))


def wa(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """Weighted accuracy (plain accuracy)."""
  return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def report(y_true: np.ndarray, probs: np.ndarray,
           labels: Sequence[str]) -> Dict[str, object]:
  """UAR, WA (in %), per-class recall and confusion matrix."""
  y_pred = np.argmax(probs, axis=-1)
  cm = confusion_matrix(y_true, y_pred, len(labels))
  rec = per_class_recall(cm)
  return {"uar": 100 * float(np.nanmean(rec)), "wa": 100 * wa(y_true, y_pred),
          "n": int(len(y_true)), "labels": list(labels),
          "per_class_recall": {l: (None if np.isnan(r) else 100 * float(r))
                               for l, r in zip(labels, rec)},
          "confusion_matrix": cm.tolist()}


def mean_std(values: Sequence[float]) -> Dict[str, float]:
  v = np.asarray(values, float)
  return {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "n": int(v.size)}
