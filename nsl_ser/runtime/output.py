"""Where `predict` writes its results, checked before any work.

:func:`check_output` refuses (one line naming the file and the reason) an
output whose extension is not ``.csv``, ``.json`` or ``.jsonl`` (any
case), whose folder is missing or not writable, that is a folder, FIFO or
device, or that is one of the inputs. :func:`write` writes through
:func:`nsl_ser.atomic.atomic_write` (a unique temporary file, fsync,
rename), with no NaN in JSON.
"""
from __future__ import annotations

import csv
import json
import math
import os
from typing import Iterable, List, Optional, Sequence, Tuple

from nsl_ser.atomic import atomic_write
from nsl_ser.audio import file_kind

FORMATS = {".csv": "csv", ".json": "json", ".jsonl": "jsonl"}


class OutputError(ValueError):
  def __init__(self, path: str, reason: str):
    super().__init__(f"{path}: {reason}")
    self.path, self.reason = path, reason


def output_format(path: str) -> str:
  """'csv', 'json' or 'jsonl' from the extension (any case)."""
  ext = os.path.splitext(path)[1].lower()
  if ext not in FORMATS:
    raise OutputError(path, f"unknown output format {ext or '(none)'!r}: "
                      "use .csv, .json or .jsonl")
  return FORMATS[ext]


def _same_file(a: str, b: str) -> bool:
  try:
    return os.path.samefile(a, b)
  except OSError:
    return os.path.realpath(a) == os.path.realpath(b)


def check_output(path: str, inputs: Sequence[str]) -> str:
  """The output's format; raises OutputError before any work is done."""
  fmt = output_format(path)
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(folder):
    raise OutputError(path, f"folder {folder} does not exist")
  if not os.access(folder, os.W_OK | os.X_OK):
    raise OutputError(path, f"folder {folder} is not writable")
  if os.path.lexists(path):
    kind = file_kind(path)
    if kind is not None and kind != "missing":
      raise OutputError(path, f"is {kind}, not a file to write")
    for p in inputs:
      if os.path.isfile(p) and _same_file(p, path):
        raise OutputError(path, "is one of the inputs (it would be overwritten)")
  return fmt


def finite(x):
  """NaN and infinities as None (JSON null), recursively."""
  if isinstance(x, float) and not math.isfinite(x):
    return None
  if isinstance(x, dict):
    return {k: finite(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [finite(v) for v in x]
  return x


def write(path: str, fmt: str, header: Sequence[str], rows: Iterable[Sequence],
          records: List[dict], skipped: Sequence[Tuple[str, str]]) -> None:
  """CSV: the table's rows, then one SKIPPED row per skipped file (reason in
  the exit column). JSON: {results, skipped}. JSON Lines: one object per
  file result, then one per skipped file."""
  skip = [{"file": f, "skipped": True, "reason": why} for f, why in skipped]
  with atomic_write(path, "w", newline="") as f:
    if fmt == "csv":
      w = csv.writer(f)
      w.writerow(header)
      w.writerows(rows)
      w.writerows([[s["file"], "", "", "SKIPPED", "", s["reason"], ""]
                   for s in skip])
    elif fmt == "json":
      json.dump(finite({"results": records,
                        "skipped": [{"file": s["file"], "reason": s["reason"]}
                                    for s in skip]}), f, indent=2,
                allow_nan=False)
    else:
      for r in list(records) + skip:
        f.write(json.dumps(finite(r), allow_nan=False) + "\n")
