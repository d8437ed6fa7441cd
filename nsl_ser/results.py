"""Writing experiment results: ``<name>.json`` + ``<name>.md`` side by side."""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import sys
from typing import Any, Dict, Sequence

from nsl_ser.prepare import atomic_write_text

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


def write_results(name: str, summary: Dict[str, float], details: Dict[str, Any],
                  markdown: str, out_dir: str = RESULTS_DIR) -> str:
  """Writes ``summary`` (flat numbers) + details to JSON and a markdown page."""
  os.makedirs(out_dir, exist_ok=True)
  cmd = command_line()
  stamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
  payload = {"summary": summary, "command": cmd, "date": stamp,
             "machine": machine(), **details}
  path = os.path.join(out_dir, f"{name}.json")
  atomic_write_text(path, json.dumps(payload, indent=2, default=float) + "\n")
  atomic_write_text(os.path.join(out_dir, f"{name}.md"),
                    f"# {name}\n\nProduced by `{cmd}` on {stamp} "
                    f"({os.cpu_count()} CPUs).\n\n{markdown}")
  return path
