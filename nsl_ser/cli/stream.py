"""nsl-ser stream [--input=-|FILE]: emotions of live audio, window by window.

Reads raw 16-bit little-endian mono PCM at --rate from stdin (``--input=-``,
the default; ``--format=wav`` for a WAV stream), or an audio file played as
if live (``--realtime`` paces it at its own speed). The staged phone model
runs hop by hop as the samples arrive (``frame_power`` per 10 ms frame;
``log_mel`` and the stages when a window ends) and one JSON line per window
is printed as soon as the window's last sample is in: start, end (seconds
from the stream's start), emotion, confidence, exit, latency_ms (from that
last sample to the answer). Windows without speech are ``no_speech``. At the
end of the input, the audio after the last window is classified as
``predict`` classifies a short clip.

Calibration: ``--calibration=speaker.json`` (``nsl-ser calibrate``), or
``--running_calibration``: the speaker's statistics estimated from every
speech window so far, shrunk toward the model's reference while they are
few, so the answers improve as the speaker talks.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Iterator

import numpy as np
from absl import flags

from nsl_ser import early_exit
from nsl_ser.runtime import (calibration, litert, model_folder, predictor,
                             stream, vad)

FLAGS = flags.FLAGS
flags.DEFINE_string("model", predictor.DEFAULT_MODEL, "A staged phone .tflite.")
flags.DEFINE_string("input", "-", "'-' (stdin) or an audio file.")
flags.DEFINE_enum("format", "raw", ["raw", "wav"], "stdin: raw s16le PCM or "
                  "a WAV stream (16-bit PCM).")
flags.DEFINE_integer("rate", 16000, "Sample rate of raw stdin audio.",
                     lower_bound=1000)
flags.DEFINE_integer("channels", 1, "Channels of raw stdin audio (mixed to "
                     "mono).", lower_bound=1)
flags.DEFINE_bool("realtime", False, "Play --input FILE at its own speed.")
flags.DEFINE_float("tau", 0.8, "Early-exit threshold.")
flags.DEFINE_enum("policy", "max_prob", list(early_exit.POLICIES),
                  "Confidence measure.")
flags.DEFINE_float("hop_seconds", 1.5, "Hop between windows.", lower_bound=0.01)
flags.DEFINE_bool("vad", True, "Mark windows without speech no_speech.")
flags.DEFINE_float("min_speech", vad.MIN_SPEECH_SECONDS,
                   "Seconds of speech a window needs.", lower_bound=0.0)
flags.DEFINE_string("calibration", None, "A speaker's statistics "
                    "(nsl-ser calibrate).")
flags.DEFINE_bool("running_calibration", False, "Calibrate to the speaker "
                  "from the stream itself, improving as it goes.")

CHUNK_SECONDS = 0.01  # one frame hop: what a microphone callback delivers


def _wav_header(f) -> tuple:
  """(rate, channels) of a 16-bit PCM WAV stream, read up to its data."""
  riff = f.read(12)
  if len(riff) < 12 or riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
    raise ValueError("stdin: not a WAV stream (no RIFF/WAVE header)")
  rate = channels = bits = None
  while True:
    head = f.read(8)
    if len(head) < 8:
      raise ValueError("stdin: WAV stream ends before its data chunk")
    cid, size = head[:4], int.from_bytes(head[4:], "little")
    if cid == b"data":
      break
    body = f.read(size + (size & 1))
    if cid == b"fmt ":
      fmt = int.from_bytes(body[0:2], "little")
      channels = int.from_bytes(body[2:4], "little")
      rate = int.from_bytes(body[4:8], "little")
      bits = int.from_bytes(body[14:16], "little")
      if fmt not in (1, 0xFFFE) or bits != 16:
        raise ValueError(f"stdin: WAV format {fmt} with {bits} bits; "
                         "16-bit PCM is supported")
  if rate is None:
    raise ValueError("stdin: WAV stream without a fmt chunk")
  return rate, channels


def _pcm_chunks(f, rate: int, channels: int) -> Iterator[np.ndarray]:
  """Float mono chunks of s16le PCM from a binary stream, as they come."""
  step = 2 * channels * max(1, int(rate * CHUNK_SECONDS))
  rest = b""
  while True:
    data = f.read(step)
    if not data:
      break
    data = rest + data
    usable = len(data) - len(data) % (2 * channels)
    rest = data[usable:]
    x = np.frombuffer(data[:usable], "<i2").astype(np.float32) / 32768.0
    yield x.reshape(-1, channels).mean(axis=1)


def _file_chunks(path: str, realtime: bool) -> Iterator[tuple]:
  """(samples, rate) blocks of an audio file, paced in real time if asked."""
  import soundfile as sf
  info = sf.info(path)
  block = max(1, int(info.samplerate * CHUNK_SECONDS))
  t0, done = time.perf_counter(), 0
  for b in sf.blocks(path, blocksize=block, dtype="float32", always_2d=True):
    done += len(b)
    if realtime:
      wait = t0 + done / info.samplerate - time.perf_counter()
      if wait > 0:
        time.sleep(wait)
    yield b.mean(axis=1), info.samplerate


def chunks(sample_rate: int) -> Iterator[np.ndarray]:
  """The input as float mono chunks at the model's ``sample_rate``."""
  import soxr
  if FLAGS.input == "-":
    f = sys.stdin.buffer
    rate, ch = (_wav_header(f) if FLAGS.format == "wav"
                else (FLAGS.rate, FLAGS.channels))
    source = ((x, rate) for x in _pcm_chunks(f, rate, ch))
  else:
    from nsl_ser import audio
    kind = audio.file_kind(FLAGS.input)
    if kind is not None:
      raise ValueError(f"{FLAGS.input}: " + ("file not found" if kind == "missing"
                                             else f"is {kind}"))
    source = _file_chunks(FLAGS.input, FLAGS.realtime)
  resampler = None
  for x, rate in source:
    if rate != sample_rate:
      resampler = resampler or soxr.ResampleStream(rate, sample_rate, 1)
      x = resampler.resample_chunk(x.astype(np.float32))
    yield x
  if resampler is not None:
    yield resampler.resample_chunk(np.zeros(0, np.float32), last=True)


def _print(w: stream.LiveWindow) -> None:
  sys.stdout.write(json.dumps({
      "start": round(w.start, 3), "end": round(w.end, 3), "emotion": w.emotion,
      "confidence": round(w.confidence, 4), "exit": w.exit,
      "latency_ms": round(w.latency_ms, 2)}) + "\n")
  sys.stdout.flush()


def main(argv) -> None:
  if len(argv) > 1:
    sys.exit("usage: nsl-ser stream [--input=-|FILE] [--flags]")
  try:
    p = predictor.load_predictor(FLAGS.model)
    if FLAGS.calibration:
      p.set_speaker(calibration.load(FLAGS.calibration, p.front_end))
    live = stream.LiveClassifier(p, FLAGS.hop_seconds, FLAGS.tau, FLAGS.policy,
                                 FLAGS.min_speech, FLAGS.vad,
                                 running=FLAGS.running_calibration)
  except (model_folder.ModelFolderError, litert.ModelError,
          calibration.CalibrationFileError) as e:
    sys.stderr.write(f"nsl-ser stream: {e}\n")
    sys.exit(2)
  try:
    for x in chunks(p.front_end.sample_rate):
      for w in live.push(x):
        _print(w)
    for w in live.flush():
      _print(w)
  except ValueError as e:
    sys.stderr.write(f"nsl-ser stream: {e}\n")
    sys.exit(2)
  except (BrokenPipeError, KeyboardInterrupt):
    os._exit(0)
