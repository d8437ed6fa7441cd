"""Renders the results tables of README.md and docs/ from experiments/results/*.json.

Every generated block sits between ``<!-- results:begin NAME -->`` and
``<!-- results:end NAME -->`` (NAME optional, default ``readme``). A table
cell names the numbers it quotes as ``{source:path|format}``: ``source`` is a
result file's stem (``accuracy`` → ``experiments/results/accuracy.json``),
``path`` a dotted key path into it (list indices allowed: ``runs.2.int8_uar``)
and ``format`` a Python format spec (``.1f``, ``,``) or ``yes`` (truthy → yes)
or ``r1000`` (rounded to thousands, with commas).

    python experiments/render_docs.py          # rewrite the blocks in place
    python experiments/render_docs.py --check  # exit 1 if a block is stale

``tests/test_docs.py`` asserts every committed block equals a fresh render, so
after new experiments: re-run the experiment, then this script, and commit.
"""
from __future__ import annotations

import glob
import json
import os
import re
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "experiments", "results")

Row = Tuple[str, str, str, str]  # (result file stem, label, measured, goal → verdict)

# The README's "Results at a glance": at most 10 rows, at most 25 words a cell.
README_ROWS: List[Row] = [
    ("accuracy", "EmoDB, 7 classes, 5 folds × 3 seeds",
     "int8 MCU stages fused with the functionals head: "
     "**{accuracy:int8.global.exit_4.mean|.1f} ± {accuracy:int8.global.exit_4.std|.1f}** "
     "independent, **{accuracy:int8.speaker.exit_4.mean|.1f} ± "
     "{accuracy:int8.speaker.exit_4.std|.1f}** calibrated",
     "≥ 76.6 / ≥ 82.7 (ComParE + SVM): calibrated met, independent not met"),
    ("accuracy", "CNN, head, old recipe (same folds)",
     "CNN alone {accuracy:summary.uar_average_speed_independent|.1f} / "
     "{accuracy:summary.uar_average_speed_calibrated|.1f}; functionals head alone "
     "{accuracy:summary.uar_functionals_head_independent|.1f} / "
     "{accuracy:summary.uar_functionals_head_calibrated|.1f}; previous recipe "
     "{accuracy:summary.uar_baseline_independent|.1f} / "
     "{accuracy:summary.uar_baseline_calibrated|.1f}",
     "keep what helps: averaging + speed + head is the default"),
    ("accuracy", "early exits (fused, float)",
     "exit 1 {accuracy:summary.uar_exit_1_independent|.1f} vs full "
     "{accuracy:summary.uar_exit_last_independent|.1f} independent; "
     "{accuracy:summary.uar_exit_1_calibrated|.1f} vs "
     "{accuracy:summary.uar_exit_last_calibrated|.1f} calibrated",
     "exit 1 ≥ 90 % of full: met"),
    ("accuracy", "NSL transfer (seed 0, 5 folds)",
     "graph student {accuracy:summary.uar_graph_seed0|.1f} / "
     "{accuracy:summary.uar_graph_seed0_calibrated|.1f}, speech-only "
     "{accuracy:summary.uar_speech_only_seed0|.1f} / "
     "{accuracy:summary.uar_speech_only_seed0_calibrated|.1f}, fine-tuned source "
     "{accuracy:summary.uar_finetune_seed0|.1f} / "
     "{accuracy:summary.uar_finetune_seed0_calibrated|.1f}; homophily "
     "{accuracy:summary.graph_homophily|.2f}",
     "graph ≥ speech-only + 3: not met"),
    ("functionals", "classic bar on our features",
     "423 log-Mel functionals + linear SVM: whole utterances "
     "{functionals:summary.uar_independent|.1f} / "
     "{functionals:summary.uar_calibrated|.1f}, 3 s crops "
     "{functionals:summary.uar_independent_crop|.1f} / "
     "{functionals:summary.uar_calibrated_crop|.1f}",
     "ComParE + SVM: 76.6 / 82.7"),
    ("generalization", "leave one corpus out, 5 classes, 3 seeds",
     "held-out RAVDESS {generalization:summary.loco_ravdess_independent|.1f} / "
     "{generalization:summary.loco_ravdess_calibrated|.1f}, EmoDB "
     "{generalization:summary.loco_emodb_independent|.1f} / "
     "{generalization:summary.loco_emodb_calibrated|.1f}, nEMO "
     "{generalization:summary.loco_nemo_independent|.1f} / "
     "{generalization:summary.loco_nemo_calibrated|.1f}",
     "≥ openSMILE + SVM each ({generalization:summary.baseline_loco_ravdess_independent|.1f}"
     " / {generalization:summary.baseline_loco_emodb_independent|.1f} / "
     "{generalization:summary.baseline_loco_nemo_independent|.1f} independent): "
     "RAVDESS, EmoDB met, nEMO not; mean ≥ SVM + 3: met"),
    ("run", "`nsl-ser run`, seeds 0 / 1 / 2",
     "fold-0 fused int8 {run:runs.0.int8_uar|.1f} / {run:runs.2.int8_uar|.1f} / "
     "{run:runs.3.int8_uar|.1f}; source CNN {run:runs.0.source_test_uar|.1f} / "
     "{run:runs.2.source_test_uar|.1f} / {run:runs.3.source_test_uar|.1f}; "
     "seed 0 repeated identical: {run:summary.repeat_identical|yes}",
     "within 4 points, same seed identical: met"),
    ("export", "microcontroller (TFLite Micro + C)",
     "flash {export:summary.mcu_flash_bytes|,} B, arena "
     "{export:summary.mcu_arena_bytes|,} B; audio → C front end → stages "
     "{export:summary.uar_mcu_end_to_end|.1f}; τ 0.8 "
     "{export:summary.latency_mcu_adaptive_audio_ms|.2f} ms vs full "
     "{export:summary.latency_mcu_full_audio_ms|.2f} ms",
     "arena ≤ 64 KB, within 1.5 of float: met"),
    ("export", "phone (LiteRT, 1 thread)",
     "staged int8 {export:summary.phone_int8_bytes|,} B; streamed exit 1 "
     "{export:summary.latency_phone_stream_exit_1_ms|.3f} ms vs full "
     "{export:summary.latency_phone_stream_full_ms|.3f} ms; buffered front end "
     "{export:summary.latency_front_end_ms|.2f} ms",
     "≤ 150 KB: met; exit 1 ≤ 1/3 of full: not met"),
    ("qat", "PTQ vs QAT (CNN alone)",
     "exit 4: float {qat:summary.uar_float_exit_4|.1f}, PTQ "
     "{qat:summary.uar_ptq_exit_4|.1f}, QAT {qat:summary.uar_qat_exit_4|.1f}; "
     "exit 3: {qat:summary.uar_float_exit_3|.1f} / {qat:summary.uar_ptq_exit_3|.1f} / "
     "{qat:summary.uar_qat_exit_3|.1f}",
     "PTQ is the default; `--quantization=auto` ships QAT when it wins"),
]

# docs/results.md: the same rows and the ones the README leaves out.
DOCS_ROWS: List[Row] = README_ROWS + [
    ("generalization", "openSMILE + SVM, same split",
     "RAVDESS {generalization:summary.baseline_loco_ravdess_independent|.1f} / "
     "{generalization:summary.baseline_loco_ravdess_calibrated|.1f}, EmoDB "
     "{generalization:summary.baseline_loco_emodb_independent|.1f} / "
     "{generalization:summary.baseline_loco_emodb_calibrated|.1f}, nEMO "
     "{generalization:summary.baseline_loco_nemo_independent|.1f} / "
     "{generalization:summary.baseline_loco_nemo_calibrated|.1f}; means "
     "{generalization:summary.loco_mean_independent|.1f} (ours) vs "
     "{generalization:summary.baseline_loco_mean_independent|.1f}",
     "the better of eGeMAPS / ComParE (baselines.json)"),
    ("prepare", "`nsl-ser prepare`",
     "RAVDESS {prepare:summary.ravdess_files|,} + EmoDB {prepare:summary.emodb_files|,} "
     "files, {prepare:summary.ravdess_skipped|d} + {prepare:summary.emodb_skipped|d} "
     "skipped, ~{prepare:summary.realtime_factor|r1000}× real time",
     "≥ 200× real time: met"),
    ("generalization", "calibration error (held out)",
     "fused model's ECE {generalization:summary.default_model_ece_unscaled|.1f} %, "
     "{generalization:summary.default_model_ece_scaled|.1f} % after per-exit "
     "temperature scaling",
     "the default model applies the temperatures"),
    ("generalization", "calibration with few clips (held-out speakers)",
     "1 / 2 / 5 / 10 / 20 clips: {generalization:summary.calibration_clips_1_uar|.1f} / "
     "{generalization:summary.calibration_clips_2_uar|.1f} / "
     "{generalization:summary.calibration_clips_5_uar|.1f} / "
     "{generalization:summary.calibration_clips_10_uar|.1f} / "
     "{generalization:summary.calibration_clips_20_uar|.1f}; independent "
     "{generalization:summary.independent_uar_same_speakers|.1f}",
     "≥ independent from 5 clips: met (statistics shrunk toward the reference)"),
]

BLOCKS: Dict[str, List[Row]] = {"readme": README_ROWS, "docs": DOCS_ROWS}
HEADER = ("| result | measured (UAR %: independent / calibrated, unless marked) | goal → verdict |\n"
          "|---|---|---|\n")
BEGIN = re.compile(r"<!-- results:begin(?: (\w+))? -->\n")
FIELD = re.compile(r"\{(\w+):([\w.+/\-]+)\|([^}]*)\}")


def load_results(results_dir: str = RESULTS_DIR) -> Dict[str, Any]:
  """{stem: parsed json} of every result file (NaN allowed, as written)."""
  out = {}
  for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
    with open(path, encoding="utf-8") as f:
      out[os.path.splitext(os.path.basename(path))[0]] = json.load(f)
  return out


def lookup(results: Dict[str, Any], source: str, path: str) -> Any:
  """The value at dotted ``path`` in result file ``source``; KeyError names both."""
  node = results[source]
  for part in path.split("."):
    try:
      node = node[int(part)] if isinstance(node, list) else node[part]
    except (KeyError, IndexError, ValueError) as e:
      raise KeyError(f"{source}.json has no {path!r} ({part!r})") from e
  return node


def format_value(value: Any, spec: str) -> str:
  """``value`` printed with ``spec`` (a format spec, ``yes`` or ``r1000``)."""
  if spec == "yes":
    return "yes" if value else "no"
  if spec == "r1000":
    return f"{round(float(value), -3):,.0f}"
  if isinstance(value, float) and value != value:
    raise ValueError("a quoted result is NaN")
  return format(value, spec)


def fill(template: str, results: Dict[str, Any]) -> str:
  """``template`` with every ``{source:path|format}`` replaced by its value."""
  return FIELD.sub(lambda m: format_value(lookup(results, m[1], m[2]), m[3]),
                   template)


def render_table(rows: Sequence[Row], page_dir: str, results: Dict[str, Any],
                 root: str = ROOT) -> str:
  """The markdown table, each row linking its result file relative to ``page_dir``."""
  lines = [HEADER]
  for source, label, measured, goal in rows:
    md = os.path.join(root, "experiments", "results", source + ".md")
    link = os.path.relpath(md, page_dir).replace(os.sep, "/")
    lines.append(f"| [{label}]({link}) | {fill(measured, results)} | "
                 f"{fill(goal, results)} |\n")
  return "".join(lines)


def render_page(text: str, page_path: str, results: Dict[str, Any],
                root: str = ROOT) -> str:
  """``text`` with each results block re-rendered (other text unchanged)."""
  out, pos = [], 0
  page_dir = os.path.dirname(os.path.abspath(page_path))
  for m in BEGIN.finditer(text):
    if m.start() < pos:
      continue
    name = m[1] or "readme"
    end_tag = f"<!-- results:end{' ' + m[1] if m[1] else ''} -->"
    end = text.find(end_tag, m.end())
    if end < 0:
      raise ValueError(f"{page_path}: {m[0].strip()} has no {end_tag}")
    out += [text[pos:m.end()],
            "<!-- generated by experiments/render_docs.py from "
            "experiments/results/*.json: edit there, not here -->\n",
            render_table(BLOCKS[name], page_dir, results, root)]
    pos = end
  out.append(text[pos:])
  return "".join(out)


def pages(root: str = ROOT) -> List[str]:
  """README.md and every docs/*.md."""
  return [os.path.join(root, "README.md")] + sorted(
      glob.glob(os.path.join(root, "docs", "*.md")))


def atomic_write(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temp file and os.replace."""
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
    f.flush()
    os.fsync(f.fileno())
  os.replace(tmp, path)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Rewrites stale blocks (or, with --check, lists them and returns 1)."""
  argv = list(sys.argv[1:] if argv is None else argv)
  check = "--check" in argv
  results = load_results()
  stale = []
  for path in pages():
    with open(path, encoding="utf-8") as f:
      text = f.read()
    new = render_page(text, path, results)
    if new != text:
      stale.append(os.path.relpath(path, ROOT))
      if not check:
        atomic_write(path, new)
  verb = "stale" if check else "rewritten"
  print("\n".join(f"{verb}: {p}" for p in stale) or "all results blocks current")
  return 1 if check and stale else 0


if __name__ == "__main__":
  sys.exit(main())
