"""The package's import graph has no cycles (every import counted, also
the ones inside functions), so each module can be read and tested on its
own: the exporter orchestrates, the modules it calls never call back."""
import ast
import os
from typing import Dict, List, Set

ROOT = os.path.join(os.path.dirname(__file__), "..", "nsl_ser")


def _modules() -> Dict[str, str]:
  out = {}
  for d, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(d, f)
        name = "nsl_ser." + os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
  return out


def imports_of(path: str, mods: Dict[str, str]) -> Set[str]:
  """The nsl_ser modules the source at ``path`` imports anywhere."""
  deps = set()
  with open(path) as f:
    tree = ast.parse(f.read())
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      for a in node.names:
        full = f"{node.module}.{a.name}"
        deps.add(full if full in mods else node.module)
    elif isinstance(node, ast.Import):
      deps.update(a.name for a in node.names)
  return {d for d in deps if d in mods}


def import_graph() -> Dict[str, Set[str]]:
  """{module: the nsl_ser modules it imports anywhere in its source}, a
  package's own parents left out (importing a submodule runs them)."""
  mods = _modules()
  return {name: {d for d in imports_of(path, mods) if d != name
                 and not name.startswith(d + ".")}
          for name, path in mods.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
  """Strongly connected components with more than one module (Tarjan)."""
  index: Dict[str, int] = {}
  low: Dict[str, int] = {}
  stack: List[str] = []
  found: List[List[str]] = []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    for w in sorted(graph[v]):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      comp = []
      while True:
        w = stack.pop()
        comp.append(w)
        if w == v:
          break
      if len(comp) > 1:
        found.append(sorted(comp))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def test_cycle_finder_finds_a_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
  graph = import_graph()
  assert "nsl_ser.export" in graph and "nsl_ser.export.micro" in graph["nsl_ser.export.mcu"]
  assert cycles(graph) == []


# the exporter's building blocks, in nsl_ser/export/ beside its steps
BLOCKS = ("nsl_ser.export.convert", "nsl_ser.export.micro",
          "nsl_ser.export.qat", "nsl_ser.export.edgetpu",
          "nsl_ser.export.micro_front_end", "nsl_ser.export.micro_functionals")
STEPS = ("nsl_ser.export.phone", "nsl_ser.export.mcu", "nsl_ser.export.tpu",
         "nsl_ser.export.quantize", "nsl_ser.export.inputs",
         "nsl_ser.export.contract", "nsl_ser.export.files")


def test_exporter_is_the_only_orchestrator():
  """Nothing the exporter calls imports it back: the building blocks use
  each other only, never the exporter (their package) or its steps; the
  runtime's LiteRT runner uses none of them."""
  mods = _modules()
  for m in BLOCKS:
    assert not imports_of(mods[m], mods) & {"nsl_ser.export", *STEPS}, m
  assert not any(d.startswith("nsl_ser.export")
                 for d in import_graph()["nsl_ser.runtime.litert"])


def closure(graph: Dict[str, Set[str]], roots) -> Set[str]:
  """Every nsl_ser module ``roots`` reach through their imports."""
  seen, todo = set(), list(roots)
  while todo:
    m = todo.pop()
    if m not in seen:
      seen.add(m)
      todo.extend(graph.get(m, ()))
  return seen


# what the runtime (predict, calibrate) may import: numpy-only libraries
# shared with training, nothing that needs TensorFlow
RUNTIME_MAY_IMPORT = {"nsl_ser", "nsl_ser.front_end", "nsl_ser.audio",
                      "nsl_ser.corpora", "nsl_ser.early_exit",
                      "nsl_ser.functionals", "nsl_ser.normalization",
                      "nsl_ser.evaluation", "nsl_ser.atomic", "nsl_ser.logs",
                      "nsl_ser.cli"}


def test_runtime_imports_nothing_from_training_or_export():
  graph = import_graph()
  runtime = {m for m in graph if m.startswith("nsl_ser.runtime")}
  assert {"nsl_ser.runtime.litert", "nsl_ser.runtime.predictor",
          "nsl_ser.runtime.calibration"} <= runtime
  # the .keras path (nsl_ser.keras_predictor, imported lazily for .keras
  # models) is the one door back to TensorFlow
  graph = {m: d - {"nsl_ser.keras_predictor"} for m, d in graph.items()}
  commands = {"nsl_ser.cli.predict", "nsl_ser.cli.calibrate",
              "nsl_ser.cli.stream"}
  reached = closure(graph, runtime | commands)
  outside = reached - runtime - RUNTIME_MAY_IMPORT - commands
  assert outside == set()


def test_closure_follows_imports():
  assert closure({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a"}}, ["a"]) == {"a", "b", "c"}


def test_training_does_not_reach_into_inference():
  """The training layer takes window_starts and the front end from the
  features layer, never from the runtime's predictor."""
  graph = import_graph()
  for m in ("nsl_ser.augment", "nsl_ser.data", "nsl_ser.training",
            "nsl_ser.features", "nsl_ser.models", "nsl_ser.source",
            "nsl_ser.self_distill", "nsl_ser.nsl_train", "nsl_ser.functionals"):
    assert not any(d.startswith("nsl_ser.runtime") for d in closure(graph, [m])), m
