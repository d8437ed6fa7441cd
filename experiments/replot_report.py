"""Re-draws the committed report's exit figures from its own tables.

``nsl-ser report`` needs the run's work folder (evaluation.json, confusion
matrices, embeddings); the committed report in experiments/results/report/
came from a folder that no longer exists. Its markdown still holds every
number the exit figures plot (per-exit UAR, the CNN alone, the head alone,
per-exit latency and the τ curve, printed to 2 decimals), so this redraws
exits.png and tau.png with ``nsl_ser.report``'s plotting functions:

    python experiments/replot_report.py [experiments/results/report]
"""
from __future__ import annotations

import os
import re
import sys
from typing import Dict, List, Tuple

from nsl_ser import report

DEFAULT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "results", "report")


def _tables(text: str) -> List[List[List[str]]]:
  """Every markdown table of ``text`` as rows of stripped cells (header first)."""
  tables, cur = [], []
  for line in text.splitlines() + [""]:
    if line.startswith("|"):
      cells = [c.strip() for c in line.strip().strip("|").split("|")]
      if not all(set(c) <= set("-:") for c in cells):
        cur.append(cells)
    elif cur:
      tables.append(cur)
      cur = []
  return tables


def parse(text: str) -> Tuple[Dict, Dict, float, List[Dict], List[float], float]:
  """(per_exit, per_exit_cnn, head_uar, tau_curve, exit_ms, full_ms) of a report."""
  tables = _tables(text)
  ex = next(t for t in tables if t[0][:2] == ["exit", "UAR %"])
  tau = next(t for t in tables if t[0][0] == "τ")
  per_exit = {r[0]: {"uar": float(r[1]), "wa": float(r[2])} for r in ex[1:]}
  per_cnn = {r[0]: {"uar": float(r[3])} for r in ex[1:]}
  head = float(re.search(r"head alone \(UAR ([\d.]+) %\)", text)[1])
  full_ms = float(re.search(r"one-call full model ([\d.]+) ms", text)[1])
  exit_ms = [float(re.search(rf"{e} ([\d.]+) ms", text)[1]) for e in per_exit]
  curve = [{"tau": float(r[0]), "uar": float(r[1]), "mean_ms": float(r[3]),
            "cost_ratio": float(r[5])} for r in tau[1:]]
  return per_exit, per_cnn, head, curve, exit_ms, full_ms


def main(out_dir: str = DEFAULT_DIR) -> None:
  """Redraws ``out_dir``/exits.png and tau.png from ``out_dir``/report.md."""
  with open(os.path.join(out_dir, "report.md"), encoding="utf-8") as f:
    per_exit, per_cnn, head, curve, exit_ms, full_ms = parse(f.read())
  report.plot_exits(per_exit, os.path.join(out_dir, "exits.png"), per_cnn, head)
  report.plot_tau(curve, exit_ms, os.path.join(out_dir, "tau.png"), full_ms)


if __name__ == "__main__":
  main(*sys.argv[1:2])
