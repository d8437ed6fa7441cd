"""Re-makes the golden fixture (run from the repository root after the
default model or the front end changed on purpose):

  python tests/golden/make_golden.py

Two 1.5 s slices of RAVDESS clips (CC BY-NC-SA 4.0, see README.md here),
16 kHz 16-bit mono, and what the toolkit computes of them: the numpy front
end's log-Mel of each clip fixed to the model's window, the C front end's
features (the default model's micro/front_end sources), and the default
model's probabilities per exit and its functionals head's, through the
runtime (LiteRT).
"""
import os
import sys
import tempfile

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, ROOT)
# (source clip under ../shared/data/ravdess, emotion, start s)
CLIPS = [("Actor_01/03-01-05-02-01-01-01.flac", "angry", 1.0),
         ("Actor_02/03-01-04-02-02-01-02.flac", "sad", 1.0)]
SECONDS = 1.5


def clip_paths():
  return [os.path.join(HERE, f"{emotion}.wav") for _, emotion, _ in CLIPS]


def numpy_front_end(p, paths):
  """{log_mel_i}: the numpy front end of each clip fixed to the window."""
  from nsl_ser import audio
  from nsl_ser.front_end import clip_log_mel
  return {f"log_mel_{i}": clip_log_mel(audio.load_audio(path, p.front_end.sample_rate),
                                       p.front_end)
          for i, path in enumerate(paths)}


def c_front_end(p, paths, library):
  """{c_features_i}: the C front end (``library``, built from the default
  model's micro/front_end) of each clip fixed to the window."""
  from nsl_ser import audio
  from nsl_ser.export import micro_front_end
  from nsl_ser.front_end import fix_length
  c = micro_front_end.CFrontEnd(library, p.front_end)
  return {f"c_features_{i}": c.features(fix_length(
      audio.load_audio(path, p.front_end.sample_rate), p.front_end.clip_samples))
          for i, path in enumerate(paths)}


def runtime_outputs(p, paths):
  """{head_i, exits_i}: the functionals head and every exit (fused,
  temperature-scaled) of each clip, through the runtime."""
  from nsl_ser import audio
  from nsl_ser.front_end import fix_length
  out = {}
  for i, path in enumerate(paths):
    x = audio.load_audio(path, p.front_end.sample_rate)
    window = fix_length(x, p.front_end.clip_samples)
    p.begin_file(x)
    p.head_probs = p.head_at(0.0)
    out[f"head_{i}"] = p.head_probs
    p.start(window)
    out[f"exits_{i}"] = np.stack([p.exit_probs(e, window) for e in p.exits])
    p.head_probs = None
  return out


def build_c_front_end(out_path):
  """The default model's C front end as a shared library at ``out_path``."""
  from nsl_ser.export import micro_front_end
  from nsl_ser.runtime import predictor
  return micro_front_end.build_library(os.path.join(
      os.path.dirname(predictor.DEFAULT_MODEL), "micro", "front_end"), out_path)


def expected(paths):
  """{name: array} the fixture holds, computed now."""
  from nsl_ser.runtime import predictor
  p = predictor.load_predictor(predictor.DEFAULT_MODEL)
  with tempfile.TemporaryDirectory() as d:
    lib = build_c_front_end(os.path.join(d, "fe.so"))
    return {**numpy_front_end(p, paths), **c_front_end(p, paths, lib),
            **runtime_outputs(p, paths)}


def main():
  from nsl_ser import audio
  data = os.path.join(ROOT, "..", "shared", "data", "ravdess")
  for (src, _, start), path in zip(CLIPS, clip_paths()):
    x = audio.load_audio(os.path.join(data, src), 16000)
    a = int(start * 16000)
    sf.write(path, audio.to_int16(x[a:a + int(SECONDS * 16000)]), 16000,
             subtype="PCM_16")
  np.savez_compressed(os.path.join(HERE, "expected.npz"), **expected(clip_paths()))


if __name__ == "__main__":
  main()
