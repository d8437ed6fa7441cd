"""Files that are never half written: a unique temporary file in the
target's folder, fsynced, then renamed over the target (POSIX rename is
atomic, so a reader sees the old file or the new one, never a mix)."""
from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kw) -> Iterator[IO]:
  """``with atomic_write(path) as f: f.write(...)``: ``path`` appears
  complete when the block ends, and not at all when it raises (the
  temporary file is removed). Concurrent writers never share a
  temporary name."""
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.",
                             suffix=".tmp", dir=folder)
  try:
    with os.fdopen(fd, mode, **open_kw) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def atomic_write_text(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` with :func:`atomic_write`."""
  with atomic_write(path, "w", newline="") as f:
    f.write(text)
