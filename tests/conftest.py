"""Shared fixtures: the real corpora in ../shared, prepared once per session."""
from __future__ import annotations

import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("NSL_SER_SHARED", os.path.join(ROOT, "..", "shared"))
DATA_DIR = os.path.join(SHARED, "data")
SPLITS_DIR = os.path.join(SHARED, "splits")

if not os.path.isdir(os.path.join(DATA_DIR, "emodb")):
  raise RuntimeError(f"{DATA_DIR}: the shared corpora are missing; tests "
                     "read RAVDESS and EmoDB from ../shared/data")


@pytest.fixture(scope="session")
def data_dir() -> str:
  return DATA_DIR


@pytest.fixture(scope="session")
def emodb_files() -> list:
  d = os.path.join(DATA_DIR, "emodb", "wav")
  return sorted(os.path.join(d, f) for f in os.listdir(d))


@pytest.fixture(scope="session")
def records_dir(tmp_path_factory) -> str:
  """Full prepare of both corpora (takes seconds), shared by the suite."""
  from nsl_ser.prepare import PrepareConfig, prepare
  out = str(tmp_path_factory.mktemp("records"))
  for corpus in ("ravdess", "emodb"):
    prepare(PrepareConfig(corpus, DATA_DIR, os.path.join(out, corpus),
                          progress=False))
  return out
