"""What an exported model promises: input contracts, normalisation, licence,
and the sidecar's descriptions of them (no TensorFlow needed)."""
from __future__ import annotations

from typing import Optional

import numpy as np

from nsl_ser.features import FrontEndConfig

SIDECAR = "model.json"
LICENCE = ("Trained on acted emotional-speech corpora: RAVDESS and nEMO "
           "(CC BY-NC-SA 4.0: attribution, non-commercial, share-alike) and "
           "EmoDB (research use only); the model card names the ones used. "
           "These models are derived from them: non-commercial research use "
           "only, same licence terms, cite the corpora.")
DEVICE_CONTRACT = (
    "Phone models take raw mono 16 kHz float audio in [-1, 1), exactly "
    "clip_samples long (centre-crop longer clips, zero-pad shorter ones "
    "evenly on both sides) and compute log-Mel features inside (staged "
    "ones also as a stream: frame_power on each frame's frame_length raw "
    "samples, every frame_step, then log_mel on the window's Mel power "
    "and its peak |x|: the same features). MCU and "
    "Edge TPU models take the log-Mel features computed on the host with "
    "these front_end parameters (nsl_ser.features.log_mel_numpy: the window "
    "scaled to peak 1 if peak_normalize (peak floored at 1/32768), Hann "
    "window, |FFT|^2, HTK Mel filter bank without area normalisation, "
    "natural log of (mel + log_floor)), shape [1, num_frames, num_mel_bins], "
    "quantised with the model input's scale/zero_point; per-band "
    "normalisation is inside the model (stage 1).")

MICRO_USAGE = (
    "Compute the int8 features with micro/front_end (nsl_fe_compute on a "
    "window of audio, or, holding no audio, nsl_fe_stream_push as each hop "
    "arrives and nsl_fe_stream_features when the window is complete: the "
    "same features; then nsl_fe_quantize; nsl_fe_set_calibration for a "
    "calibrated speaker). "
    "With a functionals head (micro/front_end/functionals.h): "
    "nsl_fx_compute on the uncalibrated float features of the whole "
    "utterance (up to NSL_FX_MAX_FRAMES frames: 10 s; its static scratch is "
    "20 bytes a frame; a firmware that buffers less passes the window's "
    "frames, which equals the utterance for clips up to the window) (for a calibrated "
    "speaker: compute them with nsl_fe_set_calibration(0, 0), take the "
    "functionals, then apply the band calibration x * scale + shift "
    "yourself before nsl_fe_quantize), nsl_fx_probs, and "
    "nsl_fx_fuse_exit(q, probs, k - 1) into exit k's dequantised "
    "probabilities before the confidence test (the fusion, then the "
    "sidecar's temperature of that exit, generated into the C tables; "
    "nsl_fx_set_calibration for a calibrated speaker). "
    "Run stage 1 on the int8 features and read exit_1; to go deeper, copy "
    "stage k's int8 block{k}_act output unchanged into stage k+1's input "
    "(the qparams are identical by construction). arena_bytes is the "
    "RecordingMicroAllocator total on a 64-bit host; 32-bit MCUs need "
    "slightly less; keep about 1 KB of margin.")

FUSION_CONTRACT = (
    "functionals head: x = nsl_ser.functionals.functionals(log-Mel of the "
    "whole utterance, hop_s) (423 numbers over the speech frames; an "
    "utterance is the file up to 10 s, else equal chunks no longer: "
    "nsl_ser.functionals.utterance_bounds); in the "
    "speaker-calibrated regime map x per dimension onto 'reference' with "
    "the speaker's own functionals statistics (x * scale + shift as for the "
    "log-Mel bands); z = (x - reference.mean) / sqrt(max(reference.var, "
    "1e-12)) (the same floor in the speaker mapping); q = softmax(coef @ z + intercept); every exit's probabilities "
    "p_k of every window of that utterance become p_k * q / sum(p_k * q) "
    "before the confidence test.")

NORMALIZATION_CONTRACT = (
    "regime 'global' (speaker-independent): the per-band mean/var of the "
    "training speakers' log-Mel frames are inside every model (layer "
    "'norm', stage 1): feed raw log-Mel / audio. To calibrate to a speaker, "
    "map its log-Mel x to x * scale + shift per band before the model, "
    "scale = sqrt(ref_var / spk_var), shift = ref_mean - spk_mean * scale, "
    "where spk are the statistics of the speech frames of that speaker's "
    "unlabelled clips (nsl_ser.normalization.BandStats: keep count, "
    "mean[bands], m2[bands]; merge each clip with Chan's update) and ref "
    "the model's reference statistics (normalization.reference).")


def front_end_spec(front_end: FrontEndConfig) -> dict:
  """The front end as the sidecar records it."""
  return {**front_end.to_dict(), "clip_samples": front_end.clip_samples,
          "frame_length": front_end.frame_length,
          "frame_step": front_end.frame_step, "num_frames": front_end.num_frames,
          "feature_shape": list(front_end.feature_shape),
          "window": "hann", "spectrum": "power", "mel_scale": "htk",
          "log": "natural, log(mel + log_floor)"}


def norm_spec(model) -> dict:
  """The ``norm`` layer's statistics as the sidecar records them."""
  mean, var, count = model.get_layer("norm").get_weights()
  return {"regime": "global", "contract": NORMALIZATION_CONTRACT,
          "norm_layer": {"mean": np.asarray(mean).tolist(),
                         "var": np.asarray(var).tolist(), "count": int(count)}}


def normalization_of(model, metrics: Optional[dict] = None) -> dict:
  """:func:`norm_spec` plus the regime and the reference statistics that a
  training run recorded (its ``metrics.json``), so that the export can be
  calibrated to a speaker."""
  out = norm_spec(model)
  n = (metrics or {}).get("normalization", {})
  out["regime"] = n.get("regime", out["regime"])
  ref = n.get("reference") or n.get("train_stats")
  if ref:
    out["reference"] = ref
  return out
