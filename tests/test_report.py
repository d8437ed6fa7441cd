"""The report's exit figures read at a glance: no text drawn over other text."""
from __future__ import annotations

import itertools
from typing import List

import pytest

from nsl_ser import report

EXITS = {f"exit_{k}": {"uar": u, "wa": u - 2} for k, u in
         zip(range(1, 5), (76.0, 77.2, 80.0, 78.9))}
CNN = {f"exit_{k}": {"uar": u} for k, u in zip(range(1, 5), (65.1, 62.3, 73.2, 76.9))}
# several τ at (almost) the same UAR and cost: the case whose labels collided
CURVE = [{"tau": t, "uar": u, "mean_ms": m, "cost_ratio": c}
         for t, u, m, c in [(0.5, 77.0, 1.69, 0.07), (0.6, 79.8, 1.69, 0.11),
                            (0.7, 79.8, 1.70, 0.21), (0.8, 78.9, 1.71, 0.28),
                            (0.9, 78.9, 1.72, 0.40), (0.95, 78.9, 1.73, 0.49),
                            (0.99, 78.9, 1.75, 0.68)]]


@pytest.fixture
def drawn(monkeypatch, tmp_path) -> List:
  """The figures the plot functions draw, kept open instead of saved."""
  figs = []

  def keep(fig, path):
    fig.tight_layout()
    fig.canvas.draw()
    figs.append(fig)
    return str(path)
  monkeypatch.setattr(report, "_save", keep)
  yield figs
  report._plt().close("all")


def _texts(ax) -> List:
  """The texts ``ax`` draws: titles, axis labels, ticks in view, notes, legend."""
  out = [ax.title, ax._left_title, ax._right_title, ax.xaxis.label,
         ax.yaxis.label] + list(ax.texts)
  for axis in (ax.xaxis, ax.yaxis):
    lo, hi = sorted(axis.get_view_interval())
    out += [t.label1 for t in axis.get_major_ticks()
            if lo - 1e-9 <= t.get_loc() <= hi + 1e-9 and t.label1.get_visible()]
  if ax.get_legend():
    out += ax.get_legend().get_texts()
  return out


def _overlaps(fig) -> List[str]:
  """Pairs of non-empty texts of ``fig`` whose drawn boxes intersect."""
  r = fig.canvas.get_renderer()
  boxes = [(t.get_text(), t.get_window_extent(r)) for ax in fig.axes
           for t in _texts(ax) if t.get_text().strip()]
  return [f"{a!r} / {b!r}" for (a, x), (b, y) in itertools.combinations(boxes, 2)
          if x.overlaps(y)]


@pytest.mark.parametrize("full_ms", [1.73, None])
def test_tau_figure_has_no_overlapping_text(drawn, full_ms):
  report.plot_tau(CURVE, [1.68, 1.72, 1.74, 1.78] if full_ms else
                  [0.33e6, 2.3e6, 4.3e6, 5.8e6], "tau.png", full_ms)
  assert _overlaps(drawn[0]) == []
  title = drawn[0].axes[0].get_title()
  assert "τ 0.6" in title  # the first τ with the highest UAR


def test_exit_figure_has_no_overlapping_text(drawn):
  report.plot_exits(EXITS, "exits.png", CNN, 75.5)
  assert _overlaps(drawn[0]) == []
  lo, hi = drawn[0].axes[0].get_ylim()
  assert 55 < lo < 62.3 and 80 < hi < 85  # the axis spans the data, not 0–100
