"""``nsl-ser run``: corpora -> deployable model in one command.

Stages: prepare -> train source -> embed -> build graph -> train student
(exits + self-distillation + graph, the recipe of nsl_ser.recipe) -> export
-> evaluate -> report. Each finished stage is recorded in ``<work_dir>/run_manifest.json``
with a key over its parameters and its inputs' keys, and the checksums of
what it wrote. A rerun skips a stage whose key is unchanged and whose
outputs are intact; a stage killed midway is simply run again (its outputs
are written atomically, and training resumes from Keras' BackupAndRestore).
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import time
from typing import Callable, Dict, List

from tqdm import tqdm

from nsl_ser.atomic import atomic_write_text

MANIFEST = "run_manifest.json"


@dataclasses.dataclass
class RunConfig:
  source: str = "ravdess"
  target: str = "emodb"
  data_dir: str = "../shared/data"
  work_dir: str = "work"
  fold: int = 0
  quick: bool = False
  source_epochs: int = 40
  student_epochs: int = 40
  max_nbrs: int = 3
  multiplier: float = 0.1
  target_degree: float = 6.0
  # Regime (nsl_ser.normalization). The exported phone models take audio and
  # normalise inside, so the pipeline trains speaker-independent models;
  # "speaker" is measured by experiments/accuracy.py.
  normalization: str = "global"
  tau: float = 0.8
  quantization: str = "ptq"  # int8 export: ptq | qat | auto (nsl_ser.export.qat)
  strategy: str = "default"
  seed: int = 0

  def path(self, *parts: str) -> str:
    return os.path.join(self.work_dir, *parts)


def file_sha256(path: str) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      h.update(chunk)
  return h.hexdigest()


def checksums(paths: List[str]) -> Dict[str, str]:
  """sha256 of every file under the given files/folders."""
  out = {}
  for p in paths:
    if os.path.isdir(p):
      for d, _, files in os.walk(p):
        for f in sorted(files):
          if not f.endswith(".tmp") and "backup" not in d:
            full = os.path.join(d, f)
            out[full] = file_sha256(full)
    elif os.path.exists(p):
      out[p] = file_sha256(p)
  return out


@dataclasses.dataclass
class Stage:
  name: str
  run: Callable[[RunConfig], Dict]       # returns a small JSON-able summary
  params: Callable[[RunConfig], Dict]    # what the stage depends on
  outputs: Callable[[RunConfig], List[str]]


def _key(stage: Stage, cfg: RunConfig, upstream: str) -> str:
  blob = json.dumps({"stage": stage.name, "params": stage.params(cfg),
                     "upstream": upstream}, sort_keys=True)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Manifest:
  def __init__(self, work_dir: str):
    self.path = os.path.join(work_dir, MANIFEST)
    self.data = json.load(open(self.path)) if os.path.exists(self.path) else {"stages": {}}

  def done(self, name: str, key: str) -> bool:
    e = self.data["stages"].get(name)
    if not e or e["key"] != key:
      return False
    return all(os.path.exists(p) and file_sha256(p) == h
               for p, h in e["outputs"].items())

  def record(self, name: str, key: str, outputs: Dict[str, str], summary: Dict,
             params: Dict, wall_s: float) -> None:
    self.data["stages"][name] = {
        "key": key, "params": params, "outputs": outputs, "summary": summary,
        "wall_s": wall_s,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds")}
    atomic_write_text(self.path, json.dumps(self.data, indent=2, default=str))


def run_pipeline(cfg: RunConfig, stages: List[Stage],
                 log: Callable[[str], None] = print) -> Dict:
  """Runs (or skips) ``stages`` in order (``nsl_ser.stages.STAGES``: the
  ``nsl-ser run`` pipeline); returns the manifest data."""
  os.makedirs(cfg.work_dir, exist_ok=True)
  manifest = Manifest(cfg.work_dir)
  upstream = ""
  t0 = time.time()
  bar = tqdm(stages, desc="nsl-ser run", unit="stage")
  for st in bar:
    key = _key(st, cfg, upstream)
    bar.set_postfix_str(st.name)
    if manifest.done(st.name, key):
      log(f"[{st.name}] up to date, skipped")
    else:
      log(f"[{st.name}] running")
      start = time.time()
      summary = st.run(cfg)
      manifest.record(st.name, key, checksums(st.outputs(cfg)), summary,
                      st.params(cfg), time.time() - start)
      log(f"[{st.name}] done in {time.time() - start:.0f} s")
    # downstream keys depend on what this stage actually produced
    upstream = hashlib.sha256((key + json.dumps(
        manifest.data["stages"][st.name]["outputs"], sort_keys=True)
                               ).encode()).hexdigest()[:16]
  manifest.data["wall_s_last_run"] = time.time() - t0
  atomic_write_text(manifest.path, json.dumps(manifest.data, indent=2, default=str))
  return manifest.data
