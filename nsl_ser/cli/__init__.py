"""``nsl-ser <command> [--flags]``: dispatches to one absl app per stage.

Each command is a module ``nsl_ser.cli.<command>`` (dashes become
underscores) defining its absl flags and ``main(argv)``. Only the chosen
module is imported, so flags of different stages never collide.

``nsl-ser <command> --help`` (or ``--helpshort``, ``-h``, ``nsl-ser help
<command>``) prints the command module's docstring and the flags defined by
nsl_ser modules (the command's own and the shared ones of
nsl_ser.cli.common), then exits 0; ``--helpfull`` adds every library's flags
(TensorFlow, absl).
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType
from typing import List

COMMANDS = {
    "prepare": "corpus folder -> utterance TFRecords",
    "train-source": "source CNN on the source corpus",
    "embed": "source-model embeddings of target utterances",
    "build-graph": "similarity graph over training utterances + packing",
    "train-student": "graph-regularised student on target speech",
    "predict": "emotions of audio files, with early exits",
    "stream": "emotions of live audio (stdin or a file), window by window",
    "report": "report.md with plots of a pipeline run",
    "run": "the whole pipeline in one command",
    "export": "int8 TFLite models for phones, MCUs and the Edge TPU",
    "train-default": "the default model from every corpus found, installed",
    "calibrate": "a speaker's statistics from unlabelled clips (speaker.json)",
}


# what the training extra adds (pip install "nsl-ser[train]")
TRAIN_PACKAGES = ("tensorflow", "tf_keras", "neural_structured_learning",
                  "tensorflow_model_optimization", "tflite_micro", "librosa",
                  "tqdm", "sklearn", "matplotlib")


def wants_verbose(args: List[str]) -> bool:
  """``--verbosity=N`` / ``-v N`` with N >= 1 among the arguments."""
  for i, a in enumerate(args):
    v = None
    if a.startswith(("--verbosity=", "-v=")):
      v = a.split("=", 1)[1]
    elif a in ("--verbosity", "-v") and i + 1 < len(args):
      v = args[i + 1]
    if v is not None:
      try:
        return int(v) >= 1
      except ValueError:
        return False
  return False


def import_command(command: str) -> ModuleType:
  """The command's module; a training command without the training extra
  exits 2 with one line saying what to install."""
  try:
    return importlib.import_module(f"nsl_ser.cli.{command.replace('-', '_')}")
  except ModuleNotFoundError as e:
    if (e.name or "").split(".")[0] not in TRAIN_PACKAGES:
      raise
    sys.stderr.write(f"nsl-ser {command}: needs the training extra (no "
                     f"module {e.name.split('.')[0]}): pip install "
                     "\"nsl-ser[train]\"\n")
    sys.exit(2)


def _usage() -> str:
  rows = "\n".join(f"  {k:<14} {v}" for k, v in COMMANDS.items())
  return ("usage: nsl-ser <command> [--flags]   (nsl-ser <command> --help)\n\n"
          f"commands:\n{rows}\n")


HELP_ARGS = ("-h", "-?", "--help", "-help", "--helpshort", "-helpshort")


def wants_help(args: List[str]) -> bool:
  """A help flag among the command's arguments (before a ``--``)."""
  args = args[:args.index("--")] if "--" in args else args
  return any(a in HELP_ARGS for a in args)


def adopt_package_flags(prog: str) -> None:
  """Makes every flag defined by an nsl_ser module a key flag of ``prog``
  (absl's name for the main module), so absl's short help lists them."""
  from absl import flags
  for module, fs in flags.FLAGS.flags_by_module_dict().items():
    if module.split(".")[0] == "nsl_ser":
      for f in fs:
        flags.FLAGS.register_key_flag_for_module(prog, f)


def command_help(prog: str, module: ModuleType) -> str:
  """The command's docstring followed by its flags (name, help, default)."""
  from absl import flags
  doc = (module.__doc__ or f"{prog} [--flags]").strip()
  lines = flags.FLAGS.main_module_help().strip("\n").split("\n")
  if lines[0] == f"{prog}:":  # absl's heading: the module's name
    lines = lines[1:]
  if not any(lines):
    return doc + "\n"
  return (f"{doc}\n\nflags:\n" + "\n".join(lines) +
          "\n\nTry --helpfull for the flags of every library too.\n")


def main(argv=None) -> None:
  argv = list(sys.argv if argv is None else argv)
  if len(argv) == 3 and argv[1] == "help" and argv[2] in COMMANDS:
    argv = [argv[0], argv[2], "--help"]
  if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
    sys.stdout.write(_usage())
    sys.exit(0 if len(argv) >= 2 else 2)
  command = argv[1]
  if command not in COMMANDS:
    sys.stderr.write(f"nsl-ser: unknown command {command!r}\n\n{_usage()}")
    sys.exit(2)
  if wants_verbose(argv[2:]):
    from nsl_ser.logs import VERBOSE_ENV
    os.environ[VERBOSE_ENV] = "1"
  module = import_command(command)
  from absl import app
  prog = f"nsl-ser {command}"
  sys.argv = [prog] + argv[2:]
  adopt_package_flags(prog)  # absl reads the main module's key flags by argv[0]
  if wants_help(argv[2:]):
    sys.stdout.write(command_help(prog, module))
    sys.exit(0)
  # absl's own usage (--helpfull, flag errors) prints __main__'s docstring.
  sys.modules["__main__"].__doc__ = module.__doc__
  app.run(module.main, argv=sys.argv)


