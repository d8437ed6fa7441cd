"""The test suite from a fresh clone, as CI runs it (issue 28):

  python experiments/suite_benchmark.py --runs=5

Clones the repository's committed HEAD next to ``../shared`` (the corpora
the tests read), runs ``.ci/run`` there (``make test``: a new virtualenv,
the install, the suite) ``--runs`` times in a row, each in a new clone, and
writes experiments/results/suite.{json,md}: the wall time of each run
(install included), its pytest summary line and return code. Summary:
``fresh_clone_test_s`` (the slowest run), ``consecutive_green`` (runs in a
row that passed, from the first), ``runs``.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time

from absl import app, flags

from nsl_ser.results import markdown_table, write_results

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F = flags.FLAGS
flags.DEFINE_integer("runs", 5, "Fresh clones, one after the other.")
flags.DEFINE_string("name", "suite", "Results name.")
flags.DEFINE_string("results_dir", None, "Default: experiments/results.")


def one_run(k: int) -> dict:
  """A fresh clone beside ../shared, .ci/run in it; the clone is removed."""
  clone = os.path.join(os.path.dirname(REPO), f".suite_clone_{os.getpid()}_{k}")
  shutil.rmtree(clone, ignore_errors=True)
  subprocess.run(["git", "clone", "-q", REPO, clone], check=True)
  head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, check=True,
                        capture_output=True, text=True).stdout.strip()
  t0 = time.time()
  r = subprocess.run([os.path.join(clone, ".ci", "run")], cwd=clone,
                     capture_output=True, text=True)
  wall = time.time() - t0
  shutil.rmtree(clone, ignore_errors=True)
  found = re.findall(r"^=* ?([0-9]+ (?:passed|failed|error).*?) in ([0-9.]+)s",
                     r.stdout, re.M)
  line, pytest_s = (found[-1][0], float(found[-1][1])) if found else ("", None)
  return {"run": k, "commit": head, "returncode": r.returncode, "wall_s": wall,
          "pytest_s": pytest_s, "pytest": line,
          "tail": r.stdout[-1500:] if r.returncode else ""}


def main(argv):
  del argv
  runs = []
  for k in range(F.runs):
    runs.append(one_run(k))
    print(runs[-1]["pytest"], f"{runs[-1]['wall_s']:.0f} s", flush=True)
  green = 0
  for r in runs:
    if r["returncode"] != 0:
      break
    green += 1
  summary = {"fresh_clone_test_s": max(r["wall_s"] for r in runs),
             "consecutive_green": green, "runs": len(runs),
             "pytest_s_max": max((r["pytest_s"] or 0.0) for r in runs)}
  md = markdown_table(["run", "commit", "wall (s), install included",
                       "pytest (s)", "pytest", "exit"],
                      [[r["run"], r["commit"][:8], f"{r['wall_s']:.0f}",
                        r["pytest_s"], r["pytest"], r["returncode"]]
                       for r in runs])
  md += ("\nEach run: a new `git clone` of the committed HEAD beside "
         "`../shared`, then `.ci/run` (`make test`: virtualenv, "
         "`pip install -e .[train,dev]`, the suite) on this shared 2-core "
         "machine. Goal: at most 12 min (720 s), five runs in a row green.\n")
  print(write_results(F.name, summary, {"runs_detail": runs}, md,
                      out_dir=F.results_dir or os.path.join(REPO, "experiments", "results")))


if __name__ == "__main__":
  app.run(main)
