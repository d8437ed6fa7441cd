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


def import_graph() -> Dict[str, Set[str]]:
  """{module: the nsl_ser modules it imports anywhere in its source}."""
  mods = _modules()
  graph = {}
  for name, path in mods.items():
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
    graph[name] = {d for d in deps if d in mods and d != name
                   and not name.startswith(d + ".")}  # a package's own parent
  return graph


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
  assert "nsl_ser.export" in graph and "nsl_ser.micro" in graph["nsl_ser.export.mcu"]
  assert cycles(graph) == []


def test_exporter_is_the_only_orchestrator():
  """Nothing the exporter calls imports it back."""
  graph = import_graph()
  callees = ("nsl_ser.convert", "nsl_ser.micro", "nsl_ser.qat",
             "nsl_ser.edgetpu", "nsl_ser.micro_front_end", "nsl_ser.litert")
  for m in callees:
    assert not any(d.startswith("nsl_ser.export") for d in graph[m]), m
