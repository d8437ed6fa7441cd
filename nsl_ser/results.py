"""Writing experiment results: ``<name>.json`` + ``<name>.md`` side by side."""
from __future__ import annotations

import datetime
import json
import math
import os
import platform
import shlex
import sys
from typing import Any, Dict, Sequence

from nsl_ser.atomic import atomic_write_text

RESULTS_DIR = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "experiments", "results")


def command_line() -> str:
  return " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])]
                  + sys.argv[1:])


def machine() -> Dict[str, Any]:
  return {"cpus": os.cpu_count(), "python": platform.python_version(),
          "platform": platform.platform()}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
  def fmt(v):
    return f"{v:.2f}" if isinstance(v, float) else str(v)
  lines = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
  return "\n".join(lines) + "\n"


def finite(value: Any) -> Any:
  """``value`` with every non-finite float (NaN, inf) as None, recursively:
  strict JSON has no NaN."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [finite(v) for v in value]
  return value


def write_results(name: str, summary: Dict[str, float], details: Dict[str, Any],
                  markdown: str, out_dir: str = RESULTS_DIR) -> str:
  """Writes ``summary`` (flat numbers; a key whose number is not finite is
  left out) + details (non-finite numbers as null) to JSON and a markdown
  page."""
  os.makedirs(out_dir, exist_ok=True)
  summary = {k: v for k, v in summary.items()
             if not (isinstance(v, float) and not math.isfinite(v))}
  cmd = command_line()
  stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  payload = finite({"summary": summary, "command": cmd, "date": stamp,
                    "machine": machine(), **details})
  path = os.path.join(out_dir, f"{name}.json")
  atomic_write_text(path, json.dumps(finite(json.loads(json.dumps(
      payload, default=float))), indent=2, allow_nan=False) + "\n")
  atomic_write_text(os.path.join(out_dir, f"{name}.md"),
                    f"# {name}\n\nProduced by `{cmd}` on {stamp} "
                    f"({os.cpu_count()} CPUs).\n\n{markdown}")
  return path
