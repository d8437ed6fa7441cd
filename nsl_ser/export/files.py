"""Atomic writes, and the record (bytes, sha256, notes) of every exported file."""
from __future__ import annotations

import os

from nsl_ser.runtime import litert


def write_atomic(path: str, data: bytes) -> str:
  """Writes ``path`` through a temporary name, so it is never half written."""
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  with open(path + ".tmp", "wb") as f:
    f.write(data)
  os.replace(path + ".tmp", path)
  return path


class Writer:
  """Writes files under ``out_dir`` and records bytes + sha256 for each
  (the sidecar's ``files``)."""

  def __init__(self, out_dir: str):
    self.out_dir, self.files = out_dir, {}

  def add(self, rel: str, data: bytes, **info) -> str:
    path = write_atomic(os.path.join(self.out_dir, rel), data)
    self.files[rel] = {"bytes": len(data), "sha256": litert.sha256(data), **info}
    return path
