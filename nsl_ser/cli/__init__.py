"""``nsl-ser <command> [--flags]``: dispatches to one absl app per stage.

Each command is a module ``nsl_ser.cli.<command>`` (dashes become
underscores) defining its absl flags and ``main(argv)``. Only the chosen
module is imported, so flags of different stages never collide.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "prepare": "corpus folder -> utterance TFRecords",
    "train-source": "source CNN on the source corpus",
    "embed": "source-model embeddings of target utterances",
    "build-graph": "similarity graph over training utterances + packing",
    "train-student": "graph-regularised student on target speech",
    "predict": "emotions of audio files, with early exits",
    "report": "report.md with plots of a pipeline run",
    "run": "the whole pipeline in one command",
    "export": "int8 TFLite models for phones, MCUs and the Edge TPU",
}


def _usage() -> str:
  rows = "\n".join(f"  {k:<14} {v}" for k, v in COMMANDS.items())
  return ("usage: nsl-ser <command> [--flags]   (nsl-ser <command> --help)\n\n"
          f"commands:\n{rows}\n")


def main(argv=None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    sys.stdout.write(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    sys.stderr.write(f"nsl-ser: unknown command {command!r}\n\n{_usage()}")
    sys.exit(2)
  module = importlib.import_module(f"nsl_ser.cli.{command.replace('-', '_')}")
  from absl import app
  sys.argv = [f"nsl-ser {command}"] + argv[2:]
  app.run(module.main, argv=sys.argv)


