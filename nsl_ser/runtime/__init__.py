"""What runs a deployed model: LiteRT, numpy, soundfile, soxr and absl
only (``pip install nsl-ser``; no TensorFlow).

- :mod:`litert`: the LiteRT interpreter, signatures, the staged chain,
  live-audio streams, the model's sidecar;
- :mod:`predictor`: windows, exits, the functionals head, file results;
- :mod:`vad`, :mod:`confidence`: voice activity, temperatures;
- :mod:`calibration`: a speaker's statistics from unlabelled clips.

Training and export may import this package; it never imports them
(tests/test_imports.py).
"""
