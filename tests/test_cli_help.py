"""`nsl-ser <command> --help`: the command's docstring and its own flags."""
import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _help(*args):
  r = subprocess.run([sys.executable, "-m", "nsl_ser.cli", *args], cwd=ROOT,
                     capture_output=True, text=True,
                     env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert r.returncode == 0, r.stderr[-2000:]
  return r.stdout


def _first_doc_line(command):
  """Read, not imported: importing would define its flags in this process."""
  path = os.path.join(ROOT, "nsl_ser", "cli", command.replace("-", "_") + ".py")
  return ast.get_docstring(ast.parse(open(path).read())).splitlines()[0]


# TensorFlow's and absl's own flags (listed by --helpfull only).
FOREIGN = ("--logtostderr", "--verbosity", "--flagfile", "--undefok",
           "--test_srcdir", "tensorflow", "absl.")


@pytest.mark.parametrize("command,flag,own", [
    ("predict", "--help", ["--tau", "--hop_seconds", "--min_speech", "--[no]vad",
                           "--model", "--output"]),
    ("run", "--helpshort", ["--work_dir", "--seed", "--data_dir", "--[no]quick"]),
    # shared training flags, defined in nsl_ser.cli.common
    ("train-source", "-h", ["--epochs", "--learning_rate", "--mixup", "--seed",
                            "--out_dir"]),
])
def test_command_help_lists_its_flags(command, flag, own):
  out = _help(command, flag)
  assert out.startswith(_first_doc_line(command))
  for name in own:
    assert f"  {name}:" in out, (name, out)
  if command == "predict":  # defaults are shown
    assert "--tau: Early-exit threshold" in out and "(default: '0.8')" in out
  for name in FOREIGN:
    assert name not in out, (name, out)
  assert "--helpfull" in out


def test_help_command_form():
  assert _help("help", "predict").startswith(_first_doc_line("predict"))
  assert "commands:" in _help("--help")
