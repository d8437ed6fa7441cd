"""The one place nsl-ser imports TensorFlow, Keras, NSL and tfmot through.

* ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow loads: NSL and
  tensorflow-model-optimization only work on tf-keras (Keras 2).
* NSL 1.4.0 imports ``tensorflow.estimator``, which TF >= 2.16 no longer has
  (upstream issue #130). A stub module with ``ModeKeys`` is registered in
  ``sys.modules`` first; nsl-ser never uses the Estimator API.
* ``nsl.tools.pack_nbrs`` opens graphs with mode ``'rU'``, which Python 3.11
  rejects. ``graph_utils.read_tsv_graph`` is replaced by a copy using ``'r'``
  (fixed upstream, never released).

Everything else in the package does ``from nsl_ser.compat import tf, keras``
(and ``nsl`` / ``tfmot`` where needed) instead of importing them directly.
"""
from __future__ import annotations

import os
import sys
import time
import types

from nsl_ser.logs import VERBOSE_ENV, quiet_native_logs  # noqa: E402

os.environ["TF_USE_LEGACY_KERAS"] = "1"
# oneDNN / CUDA start-up lines: only with --verbosity (nsl_ser.logs)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL",
                      "0" if os.environ.get(VERBOSE_ENV) else "3")

with quiet_native_logs():
  import tensorflow as tf  # noqa: E402


def _install_estimator_stub() -> None:
  """Registers a minimal ``tensorflow.estimator`` so NSL 1.4.0 imports."""
  if "tensorflow.estimator" in sys.modules or hasattr(tf, "estimator"):
    return
  stub = types.ModuleType("tensorflow.estimator")

  class ModeKeys:  # mirrors tf.estimator.ModeKeys
    TRAIN = "train"
    EVAL = "eval"
    PREDICT = "infer"

  stub.ModeKeys = ModeKeys
  stub.__doc__ = "Stub installed by nsl_ser.compat (TF >= 2.16 has no estimator)."
  sys.modules["tensorflow.estimator"] = stub
  tf.estimator = stub


_install_estimator_stub()

with quiet_native_logs():
  import tf_keras as keras  # noqa: E402
  import neural_structured_learning as nsl  # noqa: E402
from neural_structured_learning.tools import graph_utils as _graph_utils  # noqa: E402


def _read_tsv_graph(filename: str) -> dict:
  """``graph_utils.read_tsv_graph`` with mode ``'r'`` instead of ``'rU'``."""
  start = time.time()
  graph: dict = {}
  edge_cnt = 0
  with open(filename, "r") as f:
    for tsv_line in f:
      edge = tsv_line.rstrip("\n").split("\t")
      if _graph_utils.add_edge(graph, edge):
        edge_cnt += 1
  _graph_utils.logging.info("Read %d edges from %s (%.2f s).", edge_cnt,
                            filename, time.time() - start)
  return graph


_graph_utils.read_tsv_graph = _read_tsv_graph

assert tf.keras.__name__.startswith("tf_keras"), (
    "tf.keras is not tf-keras: TensorFlow was imported before nsl_ser.compat "
    "without TF_USE_LEGACY_KERAS=1.")


def tfmot():
  """Imports tensorflow-model-optimization lazily (it is slow to import)."""
  import tensorflow_model_optimization as _tfmot
  return _tfmot


__all__ = ["tf", "keras", "nsl", "tfmot"]
