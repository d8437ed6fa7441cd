"""The log-Mel front end in portable C99, for microcontrollers.

What :class:`nsl_ser.features.LogMel` computes, as C a firmware author
compiles next to the int8 stages (as TFLite Micro's micro_speech ships its
audio preprocessor next to its model): peak normalisation of the window,
25 ms periodic Hann frames every 10 ms, a 512-point real FFT (a 256-point
complex radix-2 FFT plus the split step), the power spectrum, the HTK Mel
filter bank (stored sparse: each band's first bin and weights), the natural
log with the floor, the speaker calibration ``x * scale + shift`` per band
(identity until set), and the int8 quantisation of stage 1's input.

:func:`write_sources` writes ``front_end.h`` (API + constants),
``front_end.c`` (code) and ``front_end_tables.c`` (tables generated from
the front-end parameters); nothing is allocated at run time. A firmware
either hands it a window of audio (``nsl_fe_compute``) or streams the
audio hop by hop as it arrives (``nsl_fe_stream_push``): the state is the
window's Mel power (48 KB instead of 192 KB of float audio), and the peak
normalisation enters exactly at the end, as log(power * gain^2 + floor).
The tests build them with the system C compiler (:func:`build_library`)
and compare their features with the training front end
(:class:`CFrontEnd`).
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from typing import Dict, Optional, Sequence

import numpy as np

from nsl_ser.features import FrontEndConfig, mel_matrix

SOURCES = ("front_end.h", "front_end.c", "front_end_tables.c")
C_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "c")
DEFINES_MARKER = "/* @DEFINES@: the model's constants, written by the export */"


def c_template(name: str, defines: Optional[Dict[str, object]] = None) -> str:
  """The C file ``name`` of ``nsl_ser/c/`` (package data), its
  :data:`DEFINES_MARKER` line replaced by ``#define`` lines of ``defines``."""
  with open(os.path.join(C_DIR, name)) as f:
    text = f.read()
  if defines is None:
    return text
  if DEFINES_MARKER not in text:
    raise ValueError(f"{name}: no {DEFINES_MARKER!r} line")
  return text.replace(DEFINES_MARKER, "\n".join(
      f"#define {k} {v}" for k, v in defines.items()))




def c_float(v: float) -> str:
  """A C float literal that keeps every float32 bit (9 significant digits)."""
  text = f"{float(np.float32(v)):.9g}"
  return (text if any(c in text for c in ".en") else text + ".0") + "f"


def c_floats(name: str, values: np.ndarray, ctype: str = "const float") -> str:
  body = ",\n".join("  " + ", ".join(c_float(v) for v in values[i:i + 6])
                    for i in range(0, len(values), 6))
  return f"{ctype} {name}[{len(values)}] = {{\n{body}\n}};\n"


def c_ints(name: str, values: np.ndarray) -> str:
  body = ",\n".join("  " + ", ".join(str(int(v)) for v in values[i:i + 12])
                    for i in range(0, len(values), 12))
  return f"const int16_t {name}[{len(values)}] = {{\n{body}\n}};\n"


def tables(front_end: FrontEndConfig = FrontEndConfig()) -> Dict[str, np.ndarray]:
  """The generated tables: periodic Hann window, twiddles, and the Mel
  matrix as, per FFT bin, its first band, band count and weights."""
  fe = front_end
  if fe.fft_length & (fe.fft_length - 1) or fe.frame_length > fe.fft_length:
    raise ValueError("the C front end needs a power-of-two fft_length >= "
                     "frame_length")
  n = np.arange(fe.frame_length)
  # tf.signal.hann_window: periodic for even lengths, symmetric for odd
  window = 0.5 - 0.5 * np.cos(2 * np.pi * n / (fe.frame_length - fe.frame_length % 2))
  k = np.arange(fe.fft_length // 2)
  mel = mel_matrix(fe).numpy()  # [bins, bands]
  used = np.flatnonzero(mel.any(axis=1))
  first_bin, last_bin = int(used[0]), int(used[-1]) + 1
  firsts, counts, offsets, weights = [], [], [], []
  for b in range(first_bin, last_bin):
    nz = np.flatnonzero(mel[b])
    lo = int(nz[0]) if len(nz) else 0
    hi = int(nz[-1]) + 1 if len(nz) else 0
    firsts.append(lo)
    counts.append(hi - lo)
    offsets.append(len(weights))
    weights.extend(mel[b, lo:hi])
  return {"window": window, "cos": np.cos(2 * np.pi * k / fe.fft_length),
          "sin": np.sin(2 * np.pi * k / fe.fft_length),
          "first_band": np.array(firsts), "bands": np.array(counts),
          "offset": np.array(offsets), "weights": np.array(weights),
          "first_bin": first_bin, "last_bin": last_bin}


def sources(front_end: FrontEndConfig = FrontEndConfig(),
            input_scale: float = 1.0, input_zero_point: int = 0) -> Dict[str, str]:
  """{name: text} of :data:`SOURCES`; ``input_scale`` / ``input_zero_point``:
  stage 1's input quantisation."""
  from nsl_ser.features import PEAK_FLOOR
  fe, t = front_end, tables(front_end)
  defines = {
      "NSL_FE_SAMPLE_RATE": fe.sample_rate, "NSL_FE_CLIP_SAMPLES": fe.clip_samples,
      "NSL_FE_FRAME_LENGTH": fe.frame_length, "NSL_FE_FRAME_STEP": fe.frame_step,
      "NSL_FE_NUM_FRAMES": fe.num_frames, "NSL_FE_FFT_LENGTH": fe.fft_length,
      "NSL_FE_FFT_HALF": fe.fft_length // 2, "NSL_FE_NUM_BANDS": fe.num_mel_bins,
      "NSL_FE_FIRST_BIN": t["first_bin"], "NSL_FE_LAST_BIN": t["last_bin"],
      "NSL_FE_NUM_WEIGHTS": len(t["weights"]),
      "NSL_FE_PEAK_NORMALIZE": int(fe.peak_normalize),
      "NSL_FE_PEAK_FLOOR": c_float(PEAK_FLOOR),
      "NSL_FE_LOG_FLOOR": c_float(fe.log_floor),
      "NSL_FE_INPUT_SCALE": c_float(input_scale),
      "NSL_FE_INPUT_ZERO_POINT": int(input_zero_point),
  }
  texts = {
      "front_end.h": c_template("front_end.h", defines),
      "front_end.c": c_template("front_end.c"),
      "front_end_tables.c": (
          "/* Generated by nsl_ser/export/micro_front_end.py from the model's "
          "front_end parameters. */\n#include \"front_end.h\"\n\n"
          + c_floats("nsl_fe_window", t["window"])
          + c_floats("nsl_fe_cos", t["cos"]) + c_floats("nsl_fe_sin", t["sin"])
          + c_ints("nsl_fe_bin_first_band", t["first_band"])
          + c_ints("nsl_fe_bin_bands", t["bands"])
          + c_ints("nsl_fe_bin_offset", t["offset"])
          + c_floats("nsl_fe_weights", t["weights"])),
  }
  return texts


def write_sources(out_dir: str, front_end: FrontEndConfig = FrontEndConfig(),
                  input_scale: float = 1.0, input_zero_point: int = 0
                  ) -> Dict[str, str]:
  """Writes :func:`sources` to ``out_dir``; returns them."""
  texts = sources(front_end, input_scale, input_zero_point)
  os.makedirs(out_dir, exist_ok=True)
  for name, text in texts.items():
    tmp = os.path.join(out_dir, name + ".tmp")
    with open(tmp, "w") as f:
      f.write(text)
    os.replace(tmp, os.path.join(out_dir, name))
  return texts


def compiler() -> Optional[str]:
  return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def check_sources(src_dir: str) -> None:
  """Raises ModelError naming the file if a source differs from the
  checksum its export's ``model.json`` records (sources outside an export
  are not checked)."""
  from nsl_ser.runtime import litert
  for name in SOURCES:
    path = os.path.join(src_dir, name)
    if not os.path.exists(path):
      raise litert.ModelError(path, "front-end source missing")
    side = litert.find_sidecar(path)
    if side:
      entry = litert.sidecar_entry(path, side)
      with open(path, "rb") as f:
        if entry.get("sha256") != litert.sha256(f.read()):
          raise litert.ModelError(path, "sha256 differs from model.json "
                                  "(file changed or corrupted)")


def build_library(src_dir: str, out_path: str) -> str:
  """Compiles the sources as a shared library (host tests), C99, -Wall
  -Werror, after :func:`check_sources`. Raises RuntimeError with the
  compiler's output on failure."""
  check_sources(src_dir)
  return compile_library([os.path.join(src_dir, "front_end.c"),
                          os.path.join(src_dir, "front_end_tables.c")],
                         out_path, "the front end")


def compile_library(c_files, out_path: str, what: str) -> str:
  """``c_files`` as a host shared library: C99, -Wall -Wextra -Werror
  -pedantic, no FP contraction. Raises RuntimeError with the compiler's
  output on failure."""
  cc = compiler()
  if cc is None:
    raise RuntimeError(f"no C compiler (cc/gcc or $CC) to build {what}")
  # -ffp-contract=off: no fused multiply-adds, so that the host build rounds
  # the same way on every architecture (the tests compare bit for bit)
  cmd = [cc, "-std=c99", "-O2", "-ffp-contract=off", "-Wall", "-Wextra",
         "-Werror", "-pedantic", "-shared", "-fPIC", "-o", out_path, *c_files,
         "-lm"]
  r = subprocess.run(cmd, capture_output=True, text=True)
  if r.returncode:
    raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr}")
  return out_path


def set_c_calibration(fn, scale: Optional[np.ndarray],
                      shift: Optional[np.ndarray]):
  """Calls a C ``set_calibration(scale, shift)`` (NULL, NULL: none) and
  returns the float32 arrays it now points at, which the caller keeps
  alive (None when reset)."""
  if scale is None:
    fn(None, None)
    return None
  kept = (np.ascontiguousarray(scale, np.float32),
          np.ascontiguousarray(shift, np.float32))
  fn(*(float_ptr(a) for a in kept))
  return kept


def float_ptr(x: np.ndarray):
  """A ctypes float* to a C-contiguous float32 array."""
  return x.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


FRONT_END_C = ("front_end.c", "front_end_tables.c")


def object_sizes(src_dir: str, names: Sequence[str] = FRONT_END_C,
                 cflags=("-Os",)) -> Dict[str, int]:
  """``size``'s text, data and bss summed over the C files ``names`` of
  ``src_dir`` compiled for this host: a proxy for a device's flash (text +
  data) and static RAM (data + bss)."""
  cc = compiler()
  total = {"text": 0, "data": 0, "bss": 0}
  with tempfile.TemporaryDirectory() as td:
    for name in names:
      obj = os.path.join(td, name + ".o")
      subprocess.run([cc, "-std=c99", *cflags, "-c", "-o", obj,
                      os.path.join(src_dir, name)], check=True)
      out = subprocess.run(["size", obj], capture_output=True, text=True,
                           check=True).stdout.split("\n")[1].split()
      for key, v in zip(("text", "data", "bss"), out):
        total[key] += int(v)
  return total


class CFrontEnd:
  """The compiled front end, called through ctypes (host tests)."""

  def __init__(self, library: str, front_end: FrontEndConfig = FrontEndConfig()):
    self.fe = front_end
    self.lib = ctypes.CDLL(library)
    f = ctypes.POINTER(ctypes.c_float)
    self.lib.nsl_fe_compute.argtypes = [f, f]
    self.lib.nsl_fe_set_calibration.argtypes = [f, f]
    self.lib.nsl_fe_quantize.argtypes = [f, ctypes.c_int,
                                         ctypes.POINTER(ctypes.c_int8)]
    self.lib.nsl_fe_stream_bytes.restype = ctypes.c_size_t
    self.lib.nsl_fe_stream_reset.argtypes = [ctypes.c_void_p]
    self.lib.nsl_fe_stream_push.argtypes = [ctypes.c_void_p, f, ctypes.c_int]
    self.lib.nsl_fe_stream_features.argtypes = [ctypes.c_void_p]
    self.lib.nsl_fe_stream_features.restype = f
    self.stream_bytes = int(self.lib.nsl_fe_stream_bytes())
    self._stream = ctypes.create_string_buffer(self.stream_bytes)

  def set_calibration(self, scale: Optional[np.ndarray],
                      shift: Optional[np.ndarray]) -> None:
    self._cal = set_c_calibration(self.lib.nsl_fe_set_calibration, scale, shift)

  def features(self, audio: np.ndarray) -> np.ndarray:
    """[clip_samples] float audio (already fixed to the window) ->
    [num_frames, num_mel_bins] log-Mel."""
    x = np.ascontiguousarray(audio, np.float32)
    if x.shape != (self.fe.clip_samples,):
      raise ValueError(f"audio must be [{self.fe.clip_samples}], got {x.shape}")
    out = np.zeros(self.fe.feature_shape, np.float32)
    self.lib.nsl_fe_compute(float_ptr(x), float_ptr(out))
    return out

  def quantize(self, features: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(features, np.float32)
    out = np.zeros(x.shape, np.int8)
    self.lib.nsl_fe_quantize(float_ptr(x), x.size,
                             out.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)))
    return out

  def stream_reset(self) -> None:
    """Starts a new window on the (one, host-side) stream."""
    self.lib.nsl_fe_stream_reset(self._stream)

  def stream_push(self, samples: np.ndarray) -> int:
    """Pushes float samples; returns the frames computed so far."""
    x = np.ascontiguousarray(samples, np.float32)
    return int(self.lib.nsl_fe_stream_push(self._stream, float_ptr(x), x.size))

  def stream_features(self) -> Optional[np.ndarray]:
    """The window's features (a copy), or None before the window is
    complete."""
    ptr = self.lib.nsl_fe_stream_features(self._stream)
    if not ptr:
      return None
    return np.ctypeslib.as_array(ptr, self.fe.feature_shape).copy()

  def streamed(self, audio: np.ndarray, chunk: int = 0) -> np.ndarray:
    """:meth:`features` computed by the stream, ``chunk`` samples a push
    (default: one hop)."""
    self.stream_reset()
    step = chunk or self.fe.frame_step
    for i in range(0, len(audio), step):
      self.stream_push(audio[i:i + step])
    out = self.stream_features()
    if out is None:
      raise ValueError(f"{len(audio)} samples do not fill a "
                       f"{self.fe.clip_samples}-sample window")
    return out
