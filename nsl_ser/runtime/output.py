"""Where `predict` writes its results, checked before any work.

:func:`check_output` refuses (one line naming the file and the reason) an
output whose extension is not ``.csv``, ``.json`` or ``.jsonl`` (any
case), whose folder is missing or not writable, that is a folder, FIFO or
device, or that is one of the inputs. :class:`ResultWriter` writes each file's
results as they come to a unique ``.partial`` file (fsync per file) and
renames it over the output at the end, with no NaN in JSON.
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import tempfile
from typing import Iterable, List, Optional, Sequence

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


class ResultWriter:
  """Writes results as they are made, so that a run killed midway keeps
  what it finished: CSV rows and JSON Lines go to a unique
  ``<output>.<random>.partial`` beside the output, flushed and fsynced
  after every file; :meth:`close` renames it over the output (JSON, one
  document, is written whole there). Until then the output path is never
  half written; after a crash the ``.partial`` file holds every finished
  file's rows (:meth:`abandon` says where).

  CSV: the table's rows (:data:`nsl_ser.runtime.predictor.ROW_HEADER`), a
  SKIPPED row per skipped file (reason in the exit column). JSON:
  ``{results, skipped}``. JSON Lines: one object per file result or
  skipped file. No NaN anywhere (null)."""

  def __init__(self, path: str, fmt: str, header: Sequence[str]):
    self.path, self.fmt = path, fmt
    folder = os.path.dirname(os.path.abspath(path))
    fd, self.partial = tempfile.mkstemp(
        prefix=f"{os.path.basename(path)}.", suffix=".partial", dir=folder)
    self._f = os.fdopen(fd, "w", newline="")
    self._csv = csv.writer(self._f) if fmt == "csv" else None
    self._records: List[dict] = []
    self._skipped: List[dict] = []
    self.files = 0
    if self._csv is not None:
      self._csv.writerow(header)
      self._sync()

  def _sync(self) -> None:
    self._f.flush()
    os.fsync(self._f.fileno())

  def add(self, rows: Iterable[Sequence], record: dict) -> None:
    """One file's table rows and its JSON record."""
    if self.fmt == "csv":
      self._csv.writerows(rows)
    elif self.fmt == "jsonl":
      self._f.write(json.dumps(finite(record), allow_nan=False) + "\n")
    else:
      self._records.append(finite(record))
    self.files += 1
    if self.fmt != "json":
      self._sync()

  def skip(self, file: str, reason: str) -> None:
    """A file that was skipped, and why."""
    if self.fmt == "csv":
      self._csv.writerow([file, "", "", "SKIPPED", "", reason, ""])
    elif self.fmt == "jsonl":
      self._f.write(json.dumps({"file": file, "skipped": True,
                                "reason": reason}) + "\n")
    else:
      self._skipped.append({"file": file, "reason": reason})
    if self.fmt != "json":
      self._sync()

  def close(self) -> None:
    """Completes the output: the ``.partial`` file becomes ``path``."""
    if self.fmt == "json":
      json.dump({"results": self._records, "skipped": self._skipped},
                self._f, indent=2, allow_nan=False)
    self._sync()
    self._f.close()
    os.chmod(self.partial, 0o644)
    os.replace(self.partial, self.path)

  def abandon(self, keep: bool = True) -> Optional[str]:
    """Stops without completing ``path``: the ``.partial`` file with the
    finished files' rows stays (returned), or goes if it holds none (or
    not ``keep``)."""
    self._f.close()
    if not keep or self.files == 0 or self.fmt == "json":
      with contextlib.suppress(OSError):
        os.unlink(self.partial)
      return None
    return self.partial
