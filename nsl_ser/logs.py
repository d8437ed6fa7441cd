"""Quiet start-up: native libraries (TensorFlow's oneDNN / CUDA lines,
LiteRT's XNNPACK delegate) print to file descriptor 2 while they load.
:func:`quiet_native_logs` sends fd 2 to /dev/null for the duration,
unless ``$NSL_SER_VERBOSE`` is set (``--verbosity`` >= 1 sets it)."""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

VERBOSE_ENV = "NSL_SER_VERBOSE"


@contextlib.contextmanager
def quiet_native_logs() -> Iterator[None]:
  """fd 2 to /dev/null inside the block (Python's sys.stderr is flushed
  first and keeps working through the same descriptor afterwards)."""
  if os.environ.get(VERBOSE_ENV):
    yield
    return
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):
    yield
    return
  null = os.open(os.devnull, os.O_WRONLY)
  try:
    os.dup2(null, 2)
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    os.close(null)
