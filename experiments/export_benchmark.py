"""Edge export benchmark: size, accuracy and latency of the exported models.

  python experiments/export_benchmark.py --student=work/student/model.keras \
      --source=work/source/model.keras --records_dir=work/records/emodb \
      --fold=0 --out_dir=work/export_benchmark

Side by side, in one run, on the EmoDB fold's TEST speakers:
  * the source model, float, audio in (phone) and features in;
  * the student exported by ``nsl_ser.export.export_all``: float and int8
    phone models (audio in, every exit signature), the MCU stage chain and
    the single full-int8 feature-input model (the Edge TPU model);
  * file bytes, UAR per exit (float vs int8), LiteRT latency per 3 s clip
    (1 thread, median after warm-up) with the front end included (audio in)
    and excluded (features in), TFLite Micro arena bytes per stage;
  * the microcontroller path from audio: the exported C99 front end
    (micro/front_end, built with the system compiler) -> int8 features ->
    the stage chain, its features against the training front end, its UAR,
    flash (stages + front-end code and tables) and arena;
  * the adaptive policy of ``nsl-ser predict`` on the phone model for a
    range of tau, timed per clip, the full model through the same code
    (tau > 1: one call of its ``full`` signature) as the reference;
  * the same policy on the microcontroller path, measured on this host for
    a range of tau: C front end -> (C functionals head on the window's
    features) -> TFLite Micro stages 1..k, stopping at the first exit
    whose (fused) probabilities reach tau (``micro.run_adaptive``).
With a functionals head (``--functionals_head``; by default the pipeline's
student ``metrics.json`` next to ``--student``) it is exported with the
student and every exit is fused with it, as ``nsl-ser predict`` and the
microcontroller contract do; the CNN alone is reported next to it.
Writes experiments/results/export.{json,md}.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Callable

import numpy as np
from absl import app, flags, logging

from nsl_ser import evaluation, export, functionals, models, source, splits
from nsl_ser.export import micro
from nsl_ser.runtime import litert
from nsl_ser.features import DFT_MODES, FrontEndConfig, LogMel
from nsl_ser.compat import tf
from nsl_ser.results import RESULTS_DIR, markdown_table, write_results

F = flags.FLAGS
flags.DEFINE_string("student", None, "Student with exits (.keras).")
flags.DEFINE_string("source", None, "Source model (.keras).")
flags.DEFINE_string("records_dir", "work/records/emodb", "Prepared EmoDB.")
flags.DEFINE_string("corpus", "emodb", "Corpus of --records_dir.")
flags.DEFINE_integer("fold", 0, "Split fold (test speakers are evaluated).")
flags.DEFINE_string("out_dir", "work/export_benchmark", "Scratch folder.")
flags.DEFINE_integer("num_calibration", 200, "Training clips for calibration.")
flags.DEFINE_integer("runs", 100, "Timed runs per latency (median).")
flags.DEFINE_integer("warmup", 10, "Untimed runs before timing.")
flags.DEFINE_enum("quantization", "auto", list(export.QUANTIZATION_MODES),
                  "int8 method, as `nsl-ser export --quantization`.")
flags.DEFINE_float("tau", 0.8, "Early-exit threshold of the adaptive row "
                   "(docs/devices.md's recommendation).")
flags.DEFINE_string("functionals_head", "auto",
                    "JSON file whose 'functionals_head' is the student's head "
                    "(the pipeline's student metrics.json); 'auto': the "
                    "metrics.json next to --student if it has one; '': none.")
flags.DEFINE_integer("phone_passes", 5, "Timed passes over the test clips "
                     "per tau on the phone model (median per clip).")
flags.DEFINE_integer("mcu_passes", 3, "Timed passes over the test clips per "
                     "tau on the microcontroller path (median per clip).")
flags.DEFINE_string("name", "export", "Results name.")
flags.DEFINE_string("results_dir", None, "Default: experiments/results.")
flags.mark_flags_as_required(["student", "source"])


def uar(labels: np.ndarray, probs: np.ndarray, k: int) -> float:
  return 100 * evaluation.uar(labels, np.argmax(probs, -1), k)


def front_end_model(front_end: FrontEndConfig, dft: str = "fft") -> bytes:
  """The phone models' front end alone (audio -> features, as
  ``LogMel.framewise``), to time it: float RFFT ("fft", the float and the
  default int8 phone model's) or int8-weight DFT ("matmul")."""
  mod = tf.Module()
  mod.layer = LogMel(front_end, dft=dft)
  mod.fn = tf.function(lambda a: {"features": mod.layer.framewise(a)}, input_signature=[
      tf.TensorSpec([1, front_end.clip_samples], tf.float32, name="audio")])
  conv = tf.lite.TFLiteConverter.from_concrete_functions(
      [mod.fn.get_concrete_function()], mod)
  data = conv.convert()
  return export.quantize_front_end(data, front_end) if dft == "matmul" else data


def fft_only_ms(fe: FrontEndConfig, audio: np.ndarray) -> float:
  """A floor for any front end on this host: scipy's pocketfft (float32,
  1 worker) of one window's Hann-windowed frames, nothing else."""
  import scipy.fft
  idx = (np.arange(fe.num_frames)[:, None] * fe.frame_step
         + np.arange(fe.frame_length)[None, :])
  frames = (audio[idx] * np.hanning(fe.frame_length + 1)[:-1]).astype(np.float32)
  return litert.median_ms(
      lambda: scipy.fft.rfft(frames, n=fe.fft_length, axis=1, workers=1),
      F.runs, F.warmup)


def chain_probs(stages, feats_q: np.ndarray, qps, k: int) -> np.ndarray:
  """Dequantised exit_k of the stage chain for every clip."""
  out = []
  for x in feats_q:
    o = micro.run_chain(stages, x[None], deepest=k)
    out.append(qps[k - 1].dequantize(o[f"exit_{k}"])[0])
  return np.stack(out)


def chain_vs_full(model: litert.Model, audio: np.ndarray, names: list,
                  full: dict | None = None) -> float:
  """Largest difference between the exits of the staged model's
  front_end + stage_1..K, chained as predict runs them, and those of its
  one-call ``full`` signature (``full``: already computed) on ``audio``."""
  full = full if full is not None else litert.phone_exits(model, audio)
  chain, diff = litert.StagedRunner(model), 0.0
  for i, a in enumerate(audio):
    x = chain.features(a[None])
    for k, n in enumerate(names, start=1):
      p, x = chain.stage(k, x)
      diff = max(diff, float(np.abs(p[0] - full[n][i]).max()))
  return diff


def front_end_macs(fe: FrontEndConfig, dft: str) -> int:
  """Multiply-accumulates of one clip's log-Mel: the int8 phone model's DFT
  matmuls ("matmul": the frame folded on the window's symmetry, then two
  [L/2, bins] products) or a radix-2 real FFT ("fft": (N/4) log2(N/2)
  complex butterflies of 4 real MACs, plus the split step), plus a pass
  over the frame (window or fold), the power and the (sparse) Mel bank."""
  from nsl_ser import features
  from nsl_ser.export import micro_front_end
  lo, hi = features.mel_bin_range(fe)
  bins = hi - lo
  if dft == "matmul":
    spectrum = 2 * (fe.frame_length - features.fold_centre(fe.frame_length)) * bins
  else:
    half = fe.fft_length // 2
    spectrum = 4 * (half // 2) * int(np.log2(half)) + 4 * bins
  mel = len(micro_front_end.tables(fe)["weights"])
  return int(fe.num_frames * (fe.frame_length + spectrum + 2 * bins + mel))


def c_libraries(sdir: str, fe: FrontEndConfig, k: int, with_head: bool,
                build_dir: str):
  """The export's C front end and (``with_head``) C head, built once on
  this host into ``build_dir``: (CFrontEnd, CFunctionals or None)."""
  from nsl_ser.export import micro_front_end, micro_functionals
  src = os.path.join(sdir, "micro", "front_end")
  cfe = micro_front_end.CFrontEnd(micro_front_end.build_library(
      src, os.path.join(build_dir, "fe.so")), fe)
  chead = (micro_functionals.CFunctionals(
      micro_functionals.build_library(src, os.path.join(build_dir, "fx.so")),
      functionals.num_functionals(fe.num_mel_bins), k)
      if with_head else None)
  return cfe, chead


def stream_but_last_hop(reset: Callable[[], None],
                        push: Callable[[np.ndarray], int], hop: int,
                        audio: np.ndarray) -> np.ndarray:
  """A new window on a stream (the C front end's ``stream_reset`` /
  ``stream_push``, or a ``litert.PhoneStream``'s ``reset`` / ``push``)
  with all but its last hop pushed (as if they had arrived earlier);
  returns that last hop."""
  reset()
  push(audio[:-hop])
  return audio[-hop:]


def mcu_from_audio(sdir: str, c, audio: np.ndarray, feats: np.ndarray,
                   stages, out_q, names) -> dict:
  """The exported C front end ``c`` (built on this host), then the int8
  stages; the C code's sizes."""
  from nsl_ser.export import micro_front_end
  src = os.path.join(sdir, "micro", "front_end")
  cf = np.stack([c.features(a) for a in audio])
  streamed = np.stack([c.streamed(a) for a in audio])
  q = c.quantize(cf)
  ms = litert.median_ms(lambda: c.features(audio[0]), F.runs, F.warmup)
  tail_ms = []  # streaming: the work left when the window's last hop arrives
  for _ in range(F.runs):
    last = stream_but_last_hop(c.stream_reset, c.stream_push,
                               c.fe.frame_step, audio[0])
    t0 = time.perf_counter()
    c.stream_push(last)
    c.stream_features()
    tail_ms.append((time.perf_counter() - t0) * 1e3)
  code = micro_front_end.object_sizes(src)
  head_c = ("functionals.c", "functionals_tables.c")
  head = (micro_front_end.object_sizes(src, head_c)
          if os.path.exists(os.path.join(src, head_c[0])) else
          {"text": 0, "data": 0, "bss": 0})
  probs = {n: chain_probs(stages, q, out_q, k) for k, n in enumerate(names, 1)}
  return {"probs": probs, "max_abs_diff": float(np.abs(cf - feats).max()),
          "stream_max_abs_diff": float(np.abs(streamed - cf).max()),
          "stream_state_bytes": c.stream_bytes,
          "front_end_ms": ms, "stream_tail_ms": float(np.median(tail_ms)),
          "front_end_code_bytes": code["text"] + code["data"],
          "head_code_bytes": head["text"] + head["data"],
          "static_ram_bytes": sum(d["data"] + d["bss"] for d in (code, head))}


def load_head() -> dict | None:
  """The student's functionals head (``--functionals_head``), or None."""
  path = F.functionals_head
  if path == "auto":
    path = os.path.join(os.path.dirname(F.student), "metrics.json")
    if not os.path.exists(path):
      return None
  if not path:
    return None
  with open(path) as f:
    head = json.load(f).get("functionals_head")
  if head is None and F.functionals_head != "auto":
    raise ValueError(f"{path}: no 'functionals_head'")
  return head


def phone_stream(phone_path: str, audio: np.ndarray) -> dict:
  """The phone model's streaming front end (``litert.PhoneStream``):
  its features against the ``front_end`` signature's on every clip; the
  work left when a window's last hop arrives (``tail_ms``: its last frame,
  then the peak normalisation and log) and a whole window pushed hop by hop
  (``window_ms``: every frame's ``frame_power`` call, from Python)."""
  from nsl_ser.runtime import predictor
  p = predictor.load_predictor(phone_path)
  stream = p.stream()
  chain = litert.StagedRunner(p.model)

  def window(a: np.ndarray) -> np.ndarray:
    stream.reset()
    for i in range(0, len(a), stream.frame_step):
      stream.push(a[i:i + stream.frame_step])
    return stream.features()

  diff = max(float(np.abs(window(a) - chain.features(a[None])).max())
             for a in audio)
  tail = []
  for _ in range(F.runs):
    last = stream_but_last_hop(stream.reset, stream.push, stream.frame_step,
                               audio[0])
    t = time.perf_counter()
    stream.push(last)
    stream.features()
    tail.append((time.perf_counter() - t) * 1e3)
  return {"max_abs_diff": diff, "tail_ms": float(np.median(tail)),
          "window_ms": litert.median_ms(lambda: window(audio[0]),
                                        max(F.runs // 5, 5), 1),
          "state_bytes": stream.state_bytes}


def op_costs_ms(data: bytes, sig: str, rounds: int = 7,
                **inputs: np.ndarray) -> list:
  """Each op of signature ``sig`` in order with its time: the latency of
  the signature cut after the op (its output then the op's) minus that of
  the cut before it. Every cut is called the same way, so the differences
  cancel the call's own cost (``ms`` of the first op keeps it); the cuts
  are timed in turn, ``rounds`` times, and each keeps its lowest median
  (the machine's noise only adds)."""
  def cut(n: int) -> litert.Model:
    m = litert.model_t(data)
    sd = next(d for d in m.signatureDefs if d.signatureKey.decode() == sig)
    sg = m.subgraphs[sd.subgraphIndex]
    sg.operators = sg.operators[:n]
    sg.outputs = [sg.operators[-1].outputs[0]]
    sd.outputs = sd.outputs[:1]
    sd.outputs[0].tensorIndex = sg.outputs[0]
    return litert.Model(litert.pack(m))

  m = litert.model_t(data)
  sd = next(d for d in m.signatureDefs if d.signatureKey.decode() == sig)
  ops = m.subgraphs[sd.subgraphIndex].operators
  cuts = [cut(n) for n in range(1, len(ops) + 1)]
  best = np.full(len(cuts), np.inf)
  for _ in range(rounds):
    for n, c in enumerate(cuts):
      best[n] = min(best[n], c.latency_ms(sig, F.runs, F.warmup, **inputs))
  return [{"op": litert.op_name(m, op.opcodeIndex), "ms": float(t - p)}
          for op, t, p in zip(ops, best, np.concatenate([[0.0], best[:-1]]))]


TAUS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.01)


def phone_tau_curve(phone_path: str, audio: np.ndarray, y: np.ndarray,
                    k: int, head_probs: np.ndarray | None = None) -> list:
  """``nsl-ser predict``'s policy on the phone model for every tau of
  :data:`TAUS` (``predictor.classify_window``: the front end, then stages
  1..k until the top probability, fused with ``head_probs`` of the clip's
  utterance when given, reaches tau; tau 1.01 is the one-call ``full``
  signature). Per clip the median of ``--phone_passes`` timed windows,
  the taus interleaved within each pass; mean over clips. ``mean_ms_stream``:
  the same policy on live audio (``predictor.classify_streamed``): the
  window's frames went through the streaming front end as they arrived,
  the clock starts at its last hop (tau 1.01: every stage in turn); the
  answers must equal the buffered ones."""
  from nsl_ser.runtime import predictor
  p = predictor.load_predictor(phone_path)
  stream = p.stream()

  def one(i: int, tau: float, streamed: bool = False):
    p.head_probs = None if head_probs is None else head_probs[i]
    if not streamed:
      return predictor.classify_window(p, audio[i], tau, "max_prob")
    last = stream_but_last_hop(stream.reset, stream.push, stream.frame_step,
                               audio[i])
    return predictor.classify_streamed(p, stream, last, tau, "max_prob")

  for i in range(min(F.warmup, len(audio))):
    for tau in TAUS:
      one(i, tau)
      one(i, tau, True)
  ms = np.zeros((2, len(TAUS), F.phone_passes, len(audio)))
  res = {}
  for r in range(F.phone_passes):
    for t, tau in enumerate(TAUS):
      for i in range(len(audio)):
        probs, name, ms[0, t, r, i] = one(i, tau)
        res[t, i] = (probs, name)
        ps, ns, ms[1, t, r, i] = one(i, tau, True)
        if ns != name or (tau <= 1 and not np.array_equal(ps, probs)):
          raise RuntimeError(f"clip {i}, tau {tau}: the streamed front end "
                             f"changed the answer ({ns} vs {name})")
  curve = []
  for t, tau in enumerate(TAUS):
    used = [res[t, i][1] for i in range(len(audio))]
    curve.append({"tau": tau,
                  "uar": uar(y, np.stack([res[t, i][0]
                                          for i in range(len(audio))]), k),
                  "exits": {n: used.count(n) for n in sorted(set(used))},
                  "mean_ms": float(np.median(ms[0, t], axis=0).mean()),
                  "mean_ms_stream": float(np.median(ms[1, t], axis=0).mean())})
  return curve


def mcu_adaptive(cfe, chead, tflm, out_q, audio: np.ndarray,
                 y: np.ndarray, k: int) -> list:
  """The early-exit policy on the microcontroller path, timed on this
  host for every tau of :data:`TAUS` (0: always exit 1; 1.01: always
  the full chain): per clip, the C front end ``cfe``, with a head the C
  head ``chead`` on the window's features (``nsl_fx_compute`` +
  ``nsl_fx_probs``: what a device with one window of audio computes), then
  TFLite Micro stages 1..k with ``nsl_fx_fuse_exit`` after each
  (``micro.run_adaptive``). Median of ``--mcu_passes`` per clip, mean over
  clips. ``mean_ms`` starts from the window's audio (``nsl_fe_compute``);
  ``mean_ms_stream`` from its last hop, the earlier hops having gone
  through the streaming front end as they arrived (``nsl_fe_stream_push``,
  untimed)."""

  def one(a: np.ndarray, tau: float, stream: bool = False):
    last = (stream_but_last_hop(cfe.stream_reset, cfe.stream_push,
                                cfe.fe.frame_step, a) if stream else None)
    t0 = time.perf_counter()
    if stream:
      cfe.stream_push(last)
      f = cfe.stream_features()
    else:
      f = cfe.features(a)
    fuse = None
    if chead is not None:
      hp = chead.probs(chead.functionals(f))
      fuse = lambda p, j: chead.fuse_exit(hp, p, j)
    p, e = micro.run_adaptive(tflm, cfe.quantize(f)[None], out_q, tau, fuse)
    return p, e, (time.perf_counter() - t0) * 1e3

  for a in audio[:F.warmup]:
    one(a, 1.01)
  ms = np.zeros((2, len(TAUS), F.mcu_passes, len(audio)))
  res = {}
  for r in range(F.mcu_passes):
    for t, tau in enumerate(TAUS):
      for i, a in enumerate(audio):
        p, e, ms[0, t, r, i] = one(a, tau)
        res[t, i] = (p, e)
        ps, es, ms[1, t, r, i] = one(a, tau, stream=True)
        if es != e or not np.array_equal(ps, p):
          raise RuntimeError(f"clip {i}: the streamed front end changed "
                             "the exits' answer")
  curve = []
  for t, tau in enumerate(TAUS):
    probs = np.stack([res[t, i][0] for i in range(len(audio))])
    used = np.array([res[t, i][1] for i in range(len(audio))])
    curve.append({"tau": tau, "uar": uar(y, probs, k),
                  "exit_share": (np.bincount(used - 1, minlength=len(tflm))
                                 / len(used)).tolist(),
                  "mean_ms": float(np.median(ms[0, t], axis=0).mean()),
                  "mean_ms_stream": float(np.median(ms[1, t], axis=0).mean())})
  return curve


def main(argv):
  del argv
  t0 = time.time()
  fe = FrontEndConfig()
  labels = source.read_labels(F.records_dir)
  nk = len(labels)
  split = splits.get_split(F.corpus, F.fold)
  student = models.load_model(F.student)
  src = models.load_model(F.source)
  names = export.output_names(student)
  deepest = names[-1]

  train_audio, _, _ = export.load_audio(F.records_dir, labels, sorted(split.train), fe)
  idx = export.calibration_subset(len(train_audio), F.num_calibration)
  test_audio, y, test_ids = export.load_audio(F.records_dir, labels,
                                              sorted(split.test), fe)
  head_dict = load_head()
  head = functionals.LinearHead.from_dict(head_dict) if head_dict else None
  test_feats = export.features_of(test_audio, fe)
  logging.info("%d calibration clips, %d test clips", len(idx), len(y))

  sdir = os.path.join(F.out_dir, "student")
  side = export.export_all(
      student, sdir, labels, train_audio[idx],
      export.ExportConfig(front_end=fe, quantization=F.quantization),
      qat_data=export.QATData(F.records_dir, F.corpus, F.fold),
      provenance={"corpus": F.corpus, "fold": F.fold, "partition": "train"},
      functionals_head=head_dict)
  phone_dft = side["files"]["model_int8.tflite"]["front_end_dft"]
  src_phone = export.convert_phone(src, fe)
  src_feat = export.convert_float(export.exits_model(src))
  src_name = export.output_names(src)[0]
  fe_bytes = front_end_model(fe)
  fe_int8_bytes = front_end_model(fe, "matmul")
  os.makedirs(os.path.join(F.out_dir, "source"), exist_ok=True)
  for fname, data in (("model_float.tflite", src_phone),
                      ("features_float.tflite", src_feat)):
    with open(os.path.join(F.out_dir, "source", fname), "wb") as f:
      f.write(data)

  # ---- accuracy ----------------------------------------------------------
  keras_probs = export.exits_model(student).predict(test_feats, verbose=0)
  keras_probs = keras_probs if isinstance(keras_probs, list) else [keras_probs]
  phone = {p: litert.Model.from_file(os.path.join(sdir, f"model_{p}.tflite"))
           for p in ("float", "int8")}
  probs = {"keras": dict(zip(names, keras_probs))}
  for p, m in phone.items():
    probs[f"phone_{p}"] = litert.phone_exits(m, test_audio)
  chain_diff = {  # reference kernels: exactly the same int8 arithmetic
      "xnnpack": chain_vs_full(phone["int8"], test_audio, names,
                               probs["phone_int8"]),
      "reference": chain_vs_full(litert.Model(
          phone["int8"].data, "int8 phone, reference kernels",
          reference_kernels=True), test_audio, names)}
  stage_files = [os.path.join(sdir, f"micro/stage_{k}_int8.tflite")
                 for k in range(1, len(names) + 1)]
  stages = [litert.Model.from_file(p) for p in stage_files]
  q_in = stages[0].inputs()[0].qparams
  feats_q = q_in.quantize(test_feats)
  out_q = [micro.stage_output_qparams(s.data, f"exit_{k}")
           for k, s in enumerate(stages, start=1)]
  probs["mcu_int8"] = {n: chain_probs(stages, feats_q, out_q, k)
                       for k, n in enumerate(names, start=1)}
  tpu = litert.Model.from_file(os.path.join(sdir, "edgetpu/model_int8.tflite"))
  probs["full_int8_features"] = litert.run_batch(tpu, None, "features", test_feats)
  src_m = litert.Model(src_phone, "source phone")
  src_probs = litert.run_batch(src_m, src_name, "audio", test_audio)[src_name]
  uars = {v: {n: uar(y, p, nk) for n, p in d.items()} for v, d in probs.items()}
  if src_probs.shape[-1] == nk:  # a source trained on the target's classes
    uars["source_float"] = {src_name: uar(y, src_probs, nk)}
  # else: the source classifies the source corpus' classes (RAVDESS: 8); it
  # is here for size and latency only.
  agree = {n: float(np.mean(probs["phone_int8"][n].argmax(-1)
                            == probs["phone_float"][n].argmax(-1)))
           for n in names}

  # TFLM vs LiteRT on the int8 stages (a few clips): bit-identical with
  # LiteRT's reference kernels; XNNPACK may round differently by a few LSB.
  tflm = [micro.MicroModel.from_file(p) for p in stage_files]
  ref = [litert.Model.from_file(p, reference_kernels=True) for p in stage_files]
  identical, xnn_lsb = True, 0
  for x in feats_q[:8]:
    a, b, c = (micro.run_chain(r, x[None]) for r in (tflm, ref, stages))
    identical &= all(np.array_equal(a[n], b[n]) for n in a)
    xnn_lsb = max([xnn_lsb] + [int(np.abs(a[n].astype(int) - c[n]).max()) for n in a])

  c_dir = tempfile.TemporaryDirectory()  # the C code, built once
  cfe, chead = c_libraries(sdir, fe, nk, head is not None, c_dir.name)
  mcu = mcu_from_audio(sdir, cfe, test_audio, test_feats, stages, out_q, names)
  probs["mcu_int8_from_audio"] = mcu.pop("probs")
  uars["mcu_int8_from_audio"] = {n: uar(y, p, nk)
                                 for n, p in probs["mcu_int8_from_audio"].items()}
  phone_int8 = os.path.join(sdir, "model_int8.tflite")
  curve_cnn = phone_tau_curve(phone_int8, test_audio, y, nk)
  pstream = phone_stream(phone_int8, test_audio)
  hp = None
  if head is not None:  # what predict runs: every exit fused with the head
    from nsl_ser import augment, records
    hp = functionals.first_utterance_probs(head, augment.utterance_features(
        records.list_shards(F.records_dir), labels, test_ids, fe))
    for v in ("phone_int8", "mcu_int8_from_audio"):
      probs[f"{v}_fused"] = dict(zip(names, functionals.fuse(
          [probs[v][n] for n in names], hp)))
      uars[f"{v}_fused"] = {n: uar(y, p, nk)
                            for n, p in probs[f"{v}_fused"].items()}
    uars["functionals_head"] = {"head": uar(y, hp, nk)}
  curve = (phone_tau_curve(phone_int8, test_audio, y, nk, hp)
           if hp is not None else curve_cnn)
  adapt, adapt_cnn = (min((c for c in cv if 0 < c["tau"] <= 1),
                          key=lambda c: abs(c["tau"] - F.tau))
                      for cv in (curve, curve_cnn))
  full_predict, full_predict_cnn = curve[-1], curve_cnn[-1]
  mcu_curve = mcu_adaptive(cfe, chead, tflm, out_q, test_audio, y, nk)
  c_dir.cleanup()
  mcu_at = {c["tau"]: c for c in mcu_curve}
  mcu_tau = min((c for c in mcu_curve if 0 < c["tau"] <= 1),
                key=lambda c: abs(c["tau"] - F.tau))
  fused_full = uars["phone_int8_fused" if hp is not None else "phone_int8"][deepest]

  # ---- latency (1 thread, median) -----------------------------------------
  def lat(m: litert.Model, sig, **inputs) -> float:
    return m.latency_ms(sig, runs=F.runs, warmup=F.warmup, **inputs)

  a1, f1 = test_audio[:1], test_feats[:1]
  latency = {"source_phone_float": lat(src_m, src_name, audio=a1),
             "source_features_float": lat(litert.Model(src_feat), None, features=f1),
             "front_end_float": lat(litert.Model(fe_bytes), None, audio=a1),
             "front_end_int8_dft": lat(litert.Model(fe_int8_bytes), None,
                                       audio=a1)}
  latency["fft_only_scipy"] = fft_only_ms(fe, a1[0])
  alt = "matmul" if phone_dft == "fft" else "fft"
  alt_phone = litert.Model(export.convert_staged_phone(
      student, fe, train_audio[idx], dft=alt), f"staged int8, {alt}")
  phone_alt_bytes = len(alt_phone.data)
  for k, n in ((1, names[0]), (len(names), deepest)):
    latency[f"phone_int8_{alt}/{n}"] = litert.median_ms(
        litert.staged_call(alt_phone, a1, k), F.runs, F.warmup)
  latency[f"phone_int8_{alt}/full_signature"] = lat(alt_phone, "full", audio=a1)
  for p, m in phone.items():
    if litert.is_staged(m):
      ms = litert.exit_latencies_ms(m, a1[0], F.runs, F.warmup)
      latency.update({f"phone_{p}/{n}": ms[n] for n in names})
      latency[f"phone_{p}/full_signature"] = ms["full"]
    else:
      latency.update({f"phone_{p}/{n}": lat(m, n, audio=a1) for n in names})
  latency["full_int8_features"] = lat(tpu, None, features=f1)
  stage_1_ops = op_costs_ms(phone["int8"].data, "stage_1", features=f1)
  x = feats_q[:1]
  for k, st in enumerate(stages, start=1):
    latency[f"mcu_stage_{k}_features"] = lat(st, None, **{st.inputs()[0].name: x})
    x = st.run(None, raw=True, **{st.inputs()[0].name: x}).get(f"block{k}_act")
  latency["mcu_chain_features"] = sum(latency[f"mcu_stage_{k}_features"]
                                      for k in range(1, len(stages) + 1))
  x = feats_q[:1]
  for k, st in enumerate(tflm, start=1):  # host TFLM: relative cost proxy
    latency[f"tflm_stage_{k}"] = st.latency_ms(x, runs=max(F.runs // 5, 10),
                                               warmup=2)
    x = st(x, raw=True).get(f"block{k}_act")
  latency["tflm_chain"] = sum(latency[f"tflm_stage_{k}"]
                              for k in range(1, len(tflm) + 1))

  # ---- sizes / arena -----------------------------------------------------
  files = side["files"]
  stage_bytes = [files[f"micro/stage_{k}_int8.tflite"]["bytes"]
                 for k in range(1, len(names) + 1)]
  arena = side["micro"]["arena_bytes"]
  sizes = {"source_phone_float": len(src_phone),
           "source_features_float": len(src_feat),
           "phone_float": files["model_float.tflite"]["bytes"],
           "phone_int8": files["model_int8.tflite"]["bytes"],
           "full_int8_features": files["edgetpu/model_int8.tflite"]["bytes"],
           "mcu_stages": stage_bytes, "mcu_total": sum(stage_bytes)}

  # the export's int8 phone model and the one with the other DFT
  phone_key = {phone_dft: "phone_int8", alt: f"phone_int8_{alt}"}
  phone_bytes = {phone_dft: sizes["phone_int8"], alt: phone_alt_bytes}
  summary = {
      "quantization": side["quantization"]["method"],
      "int8_bytes": sizes["mcu_total"],
      "int8_full_model_bytes": sizes["full_int8_features"],
      "phone_int8_bytes": sizes["phone_int8"],
      "mcu_arena_bytes": max(arena),
      "uar_float": uars["phone_float"][deepest],
      "uar_int8": uars["phone_int8"][deepest],
      "uar_mcu_int8": uars["mcu_int8"][deepest],
      "uar_source": uars.get("source_float", {}).get(src_name, float("nan")),
      "latency_source_ms": latency["source_phone_float"],
      # the one-call model (staged: its full signature)
      "latency_int8_ms": latency.get("phone_int8/full_signature",
                                     latency[f"phone_int8/{deepest}"]),
      "latency_exit_1_ms": latency[f"phone_int8/{names[0]}"],
      "latency_full_student_ms": latency.get("phone_int8/full_signature",
                                             latency[f"phone_int8/{deepest}"]),
      "latency_exit_4_chain_ms": latency[f"phone_int8/{deepest}"],
      "latency_front_end_ms": latency["front_end_float"],
      "latency_front_end_int8_dft_ms": latency["front_end_int8_dft"],
      "latency_source_features_ms": latency["source_features_float"],
      "latency_int8_features_ms": latency["full_int8_features"],
      "latency_exit_1_features_ms": latency["mcu_stage_1_features"],
      "latency_full_student_features_ms": latency["mcu_chain_features"],
      "latency_exit_1_tflm_ms": latency["tflm_stage_1"],
      "latency_full_student_tflm_ms": latency["tflm_chain"],
      # issue 12's fields
      "phone_bytes": sizes["phone_int8"],
      "phone_dft": phone_dft,
      # both DFTs' phone models, whichever is the export's
      **{f"phone_{d}_bytes": phone_bytes[d] for d in DFT_MODES},
      **{f"latency_exit_1_audio_{d}_ms": latency[f"{phone_key[d]}/{names[0]}"]
         for d in DFT_MODES},
      **{f"latency_full_audio_{d}_ms": latency[f"{phone_key[d]}/full_signature"]
         for d in DFT_MODES},
      "front_end_macs": front_end_macs(fe, phone_dft),
      **{f"front_end_{d}_macs": front_end_macs(fe, d) for d in DFT_MODES},
      "latency_fft_only_scipy_ms": latency["fft_only_scipy"],
      "latency_front_end_phone_ms": latency[
          "front_end_int8_dft" if phone_dft == "matmul" else "front_end_float"],
      "cnn_macs": int(side["exit_macs"][deepest]),
      "latency_exit_1_audio_ms": latency[f"phone_int8/{names[0]}"],
      # the one-call full model (the chain to exit_K: latency_int8_ms)
      "latency_full_audio_ms": latency.get("phone_int8/full_signature",
                                           latency[f"phone_int8/{deepest}"]),
      # predict's policy, timed per clip; the full model through the same
      # code (tau > 1: one call of the full signature)
      "latency_adaptive_audio_ms": adapt["mean_ms"],
      "latency_full_predict_audio_ms": full_predict["mean_ms"],
      "uar_adaptive": adapt["uar"],
      "phone_adaptive_exit_1_share": adapt["exits"].get(names[0], 0) / len(y),
      # live audio: the streaming front end (frame_power as each frame
      # arrives, log_mel at the window's end), timed from the last hop
      "latency_phone_stream_front_end_ms": pstream["tail_ms"],
      "latency_phone_stream_window_ms": pstream["window_ms"],
      "latency_phone_stream_exit_1_ms": curve[0]["mean_ms_stream"],
      "latency_phone_stream_full_ms": full_predict["mean_ms_stream"],
      "latency_phone_stream_adaptive_ms": adapt["mean_ms_stream"],
      "phone_stream_max_abs_diff": pstream["max_abs_diff"],
      "phone_stream_state_bytes": pstream["state_bytes"],
      # what stage 1 (exit 1's own work) spends its time on
      "latency_phone_stage_1_ms": sum(r["ms"] for r in stage_1_ops),
      "latency_phone_stage_1_conv_ms": sum(r["ms"] for r in stage_1_ops
                                           if r["op"] == "CONV_2D"),
      # the stage chain against the one-call full signature, all exits
      "phone_chain_vs_full_reference_max_diff": chain_diff["reference"],
      "phone_chain_vs_full_xnnpack_max_diff": chain_diff["xnnpack"],
      # what predict runs: with a head, every exit fused with it
      "uar_full": fused_full,
      "fused_with_head": int(hp is not None),
      "uar_head": uars.get("functionals_head", {}).get("head", float("nan")),
      "uar_full_cnn": uars["phone_int8"][deepest],
      "uar_adaptive_cnn": adapt_cnn["uar"],
      "latency_adaptive_cnn_audio_ms": adapt_cnn["mean_ms"],
      "latency_full_predict_cnn_audio_ms": full_predict_cnn["mean_ms"],
      "tau": F.tau,
      # the microcontroller path on this host (C front end [+ C head] +
      # TFLM stages until the exit policy stops)
      "latency_mcu_exit_1_audio_ms": mcu_at[0.0]["mean_ms"],
      "latency_mcu_full_audio_ms": mcu_at[1.01]["mean_ms"],
      "latency_mcu_adaptive_audio_ms": mcu_tau["mean_ms"],
      "uar_mcu_full": mcu_at[1.01]["uar"],
      "uar_mcu_adaptive": mcu_tau["uar"],
      "mcu_adaptive_exit_1_share": mcu_tau["exit_share"][0],
      # streaming (nsl_fe_stream_*): earlier hops computed as they arrived;
      # timed from the window's last hop to the answer
      "latency_mcu_stream_front_end_ms": mcu["stream_tail_ms"],
      "latency_mcu_stream_exit_1_ms": mcu_at[0.0]["mean_ms_stream"],
      "latency_mcu_stream_full_ms": mcu_at[1.01]["mean_ms_stream"],
      "latency_mcu_stream_adaptive_ms": mcu_tau["mean_ms_stream"],
      "mcu_stream_state_bytes": mcu["stream_state_bytes"],
      "mcu_window_audio_bytes": 4 * fe.clip_samples,  # nsl_fe_compute's input
      "mcu_stream_max_abs_diff": mcu["stream_max_abs_diff"],
      "mcu_front_end_max_abs_diff": mcu["max_abs_diff"],
      "latency_mcu_front_end_c_ms": mcu["front_end_ms"],
      "uar_mcu_end_to_end": uars["mcu_int8_from_audio"][deepest],
      # stages + C front end + C head (code and tables)
      "mcu_flash_bytes": (sizes["mcu_total"] + mcu["front_end_code_bytes"]
                          + mcu["head_code_bytes"]),
      "mcu_front_end_code_bytes": mcu["front_end_code_bytes"],
      "mcu_head_code_bytes": mcu["head_code_bytes"],
      # the C code's static buffers (data + bss), next to the TFLM arena
      "mcu_static_ram_bytes": mcu["static_ram_bytes"],
  }
  s = summary
  targets = {
      "int8_bytes<=100KiB": s["int8_bytes"] <= 100 * 1024,
      "mcu_arena<=64KiB": s["mcu_arena_bytes"] <= 64 * 1024,
      "uar_int8_within_1.5": s["uar_float"] - s["uar_int8"] <= 1.5,
      "int8_latency<=source/10 (audio in)":
          s["latency_int8_ms"] <= s["latency_source_ms"] / 10,
      "int8_latency<=source/10 (audio in, the other DFT)": s[
          f"latency_full_audio_{alt}_ms"] <= s["latency_source_ms"] / 10,
      "int8_latency<=source/10 (features in)":
          s["latency_int8_features_ms"] <= s["latency_source_features_ms"] / 10,
      "exit_1<=full/3 (audio in)":
          s["latency_exit_1_ms"] <= s["latency_full_student_ms"] / 3,
      "exit_1<=full/3 (features in)":
          s["latency_exit_1_features_ms"] <= s["latency_full_student_features_ms"] / 3,
      "exit_1<=full/3 (TFLM, host)":
          s["latency_exit_1_tflm_ms"] <= s["latency_full_student_tflm_ms"] / 3,
      "phone_bytes<=150KB": s["phone_bytes"] <= 150_000,
      "front_end_macs<=cnn_macs (int8 phone's front end)":
          s["front_end_macs"] <= s["cnn_macs"],
      "front_end_ms<=cnn_ms (int8 phone, audio in)":
          s["latency_front_end_phone_ms"] <= s["latency_int8_features_ms"],
      "exit_1<=full/3 (phone, streamed audio)":
          s["latency_phone_stream_exit_1_ms"]
          <= s["latency_phone_stream_full_ms"] / 3,
      "front_end_ms<=cnn_ms (phone, streamed, last hop)":
          s["latency_phone_stream_front_end_ms"] <= s["latency_int8_features_ms"],
      "adaptive_ms<full_ms (phone, streamed)":
          s["latency_phone_stream_adaptive_ms"] < s["latency_phone_stream_full_ms"],
      "adaptive_ms<full_ms (audio in, both through predict)":
          s["latency_adaptive_audio_ms"] < s["latency_full_predict_audio_ms"],
      "adaptive_ms<full_ms (audio in, vs the bare full signature)":
          s["latency_adaptive_audio_ms"] < s["latency_full_audio_ms"],
      "uar_adaptive_within_1_of_full": s["uar_full"] - s["uar_adaptive"] <= 1,
      "mcu_end_to_end_within_1.5_of_float":
          s["uar_float"] - s["uar_mcu_end_to_end"] <= 1.5,
      "mcu_arena<=64KB": s["mcu_arena_bytes"] <= 64_000,
      "mcu exit_1<=full/3 (audio in, host)":
          s["latency_mcu_exit_1_audio_ms"] <= s["latency_mcu_full_audio_ms"] / 3,
      "mcu exit_1<=full/3 (streamed audio, host)":
          s["latency_mcu_stream_exit_1_ms"] <= s["latency_mcu_stream_full_ms"] / 3,
      "mcu front_end_ms<=cnn_ms (streamed, last hop, host)":
          s["latency_mcu_stream_front_end_ms"] <= s["latency_full_student_tflm_ms"],
      "mcu adaptive_ms<full_ms (audio in, host)":
          s["latency_mcu_adaptive_audio_ms"] < s["latency_mcu_full_audio_ms"],
      "mcu uar_adaptive_within_1_of_full":
          s["uar_mcu_full"] - s["uar_mcu_adaptive"] <= 1,
  }
  details = {
      "flags": {k: F[k].value for k in ("student", "source", "records_dir",
                                        "corpus", "fold", "num_calibration",
                                        "runs", "warmup", "quantization")},
      "quantization": side["quantization"],
      "test_clips": int(len(y)), "calibration_clips": int(len(idx)),
      "uar": uars, "int8_float_agreement": agree, "latency_ms": latency,
      "bytes": sizes, "mcu_arena_bytes": arena,
      "mcu_boundaries": side["micro"]["boundaries"],
      "tflm_equals_litert_reference": identical,
      "tflm_vs_litert_xnnpack_max_lsb": xnn_lsb, "targets": targets,
      "exit_macs": side["exit_macs"], "phone_tau_curve": curve,
      "phone_tau_curve_cnn": curve_cnn, "mcu_tau_curve": mcu_curve,
      "mcu_front_end": mcu, "phone_stream": pstream,
      "phone_stage_1_ops": stage_1_ops,
      "wall_s": time.time() - t0,
  }
  rows = [[n, f"{uars['keras'][n]:.1f}", f"{uars['phone_float'][n]:.1f}",
           f"{uars['phone_int8'][n]:.1f}", f"{uars['mcu_int8'][n]:.1f}",
           f"{uars['mcu_int8_from_audio'][n]:.1f}",
           f"{uars['full_int8_features'][n]:.1f}", f"{100 * agree[n]:.0f}%",
           f"{latency[f'phone_float/{n}']:.2f}", f"{latency[f'phone_int8/{n}']:.2f}",
           f"{latency[f'mcu_stage_{k}_features']:.3f}", stage_bytes[k - 1],
           arena[k - 1]]
          for k, n in enumerate(names, start=1)]
  md = ("## Student, per exit (EmoDB fold %d test speakers, %d clips)\n\n"
        % (F.fold, len(y)) + markdown_table(
            ["exit", "UAR Keras", "UAR phone float", "UAR phone int8",
             "UAR MCU int8", "UAR MCU int8 (C front end)",
             "UAR full int8 (features)", "int8=float",
             "ms float (audio)", "ms int8 (audio)", "ms MCU stage k (features)",
             "stage bytes", "TFLM arena"], rows))
  if hp is not None:
    md += ("\nWith the functionals head (UAR %.1f alone on these clips), "
           "every exit fused with it as `nsl-ser predict` does (UAR per exit "
           "1…K): phone int8 %s; MCU int8 from audio %s.\n"
           % (uars["functionals_head"]["head"],
              " / ".join(f"{uars['phone_int8_fused'][n]:.1f}" for n in names),
              " / ".join(f"{uars['mcu_int8_from_audio_fused'][n]:.1f}"
                         for n in names)))
  md += ("\n## Early exits on the phone model (LiteRT, 1 thread, audio in)"
         "\n\nPer clip, `nsl-ser predict`'s policy as it runs "
         "(`predictor.classify_window`): the `front_end` signature, then "
         "`stage_1`, `stage_2`, ... (int8 activations passed on) until the "
         "exit's %sprobabilities reach τ; τ 1.01 is the one-call `full` "
         "signature through the same code. Median of %d passes per clip (τ "
         "interleaved), mean over the %d clips. *Streamed*: live audio "
         "(`predictor.classify_streamed`): the window's frames went through "
         "the `frame_power` signature as they arrived (`litert.PhoneStream`, "
         "%d B of state), so the clock starts at the last hop: its frame, "
         "`log_mel` (the window's peak normalisation and log), then the "
         "stages as above (τ 1.01: all of them); same answers, features "
         "%s `front_end`'s.\n\n"
         % ("fused " if hp is not None else "", F.phone_passes, len(y),
            pstream["state_bytes"],
            "bit for bit" if pstream["max_abs_diff"] == 0
            else "within %.1g of" % pstream["max_abs_diff"])
         + markdown_table(
             ["τ", "UAR %", "exits used", "mean ms", "ms / full",
              "mean ms (streamed)", "ms / full (streamed)"]
             + (["UAR % (CNN alone)", "mean ms (CNN alone)"]
                if hp is not None else []),
             [[f"{c['tau']:.2f}", f"{c['uar']:.1f}",
               " / ".join(str(c["exits"].get(n, 0)) for n in names),
               f"{c['mean_ms']:.3f}",
               f"{c['mean_ms'] / full_predict['mean_ms']:.2f}",
               f"{c['mean_ms_stream']:.3f}",
               f"{c['mean_ms_stream'] / full_predict['mean_ms_stream']:.2f}"]
              + ([f"{cc['uar']:.1f}", f"{cc['mean_ms']:.3f}"]
                 if hp is not None else [])
              for c, cc in zip(curve, curve_cnn)]))
  save_1 = 1 - curve[0]["mean_ms"] / full_predict["mean_ms"]
  save_tau = 1 - adapt["mean_ms"] / full_predict["mean_ms"]
  fe_ms, bare_ms = s["latency_front_end_phone_ms"], s["latency_full_audio_ms"]
  md += ("\nStopping at exit 1 on every clip saves %.0f %% of the one-call "
         "model's time here: the front end alone (%.2f ms) is %.0f %% of the "
         "bare `full` signature's %.2f ms, and every exit needs it. At τ "
         "%.2f the saving is %.1f %% (on the microcontroller path %.0f %%).\n"
         % (100 * save_1, fe_ms, 100 * fe_ms / bare_ms, bare_ms, adapt["tau"],
            100 * save_tau, 100 * (1 - mcu_tau["mean_ms"]
                                   / mcu_at[1.01]["mean_ms"])))
  md += ("\nStreamed, the front end's work at the window's end is one frame "
         "and the log (%.3f ms, against %.2f ms for the whole window; "
         "the CNN %.3f ms): exit 1 then takes %.2f× the full chain's time "
         "and τ %.2f %.2f×. The frames cost the same MACs, spread over the "
         "window as it arrives: %.2f ms a window here, one `frame_power` call "
         "a hop from Python (the buffered `front_end` signature: %.2f ms).\n"
         % (pstream["tail_ms"], fe_ms, s["latency_int8_features_ms"],
            curve[0]["mean_ms_stream"] / full_predict["mean_ms_stream"],
            adapt["tau"], adapt["mean_ms_stream"] / full_predict["mean_ms_stream"],
            pstream["window_ms"], fe_ms))
  md += ("\nThe int8 phone model's DFT here: `%s` (--int8_dft), %d B, front "
         "end %.1f M MACs a window; the other one, `%s`: %d B, %.1f M MACs, "
         "buffered exit 1 %.2f ms and the one-call model %.2f ms (this "
         "model: %.2f / %.2f ms). Streamed, the DFT runs in `frame_power` "
         "as the frames arrive, not at the window's end.\n"
         % (phone_dft, s["phone_bytes"], s["front_end_macs"] / 1e6, alt,
            s[f"phone_{alt}_bytes"], s[f"front_end_{alt}_macs"] / 1e6,
            s[f"latency_exit_1_audio_{alt}_ms"], s[f"latency_full_audio_{alt}_ms"],
            s["latency_exit_1_audio_ms"], s["latency_full_audio_ms"]))
  md += ("\nWhere exit 1's own work goes (the phone's `stage_1` on features, "
         "each op timed as the difference of the signature cut after it and "
         "before it; the first row includes the call): %s; in all %.3f ms "
         "of the CNN's %.3f ms, for %d k of its %.1f M MACs (the "
         "convolution has one input channel).\n"
         % (", ".join(f"{r['op']} {1e3 * r['ms']:.1f} µs" for r in stage_1_ops),
            s["latency_phone_stage_1_ms"], s["latency_int8_features_ms"],
            side["exit_macs"][names[0]] // 1000, s["cnn_macs"] / 1e6))
  md += ("\n## Early exits on the microcontroller path (this host)\n\n"
         "Per clip, timed together: the C front end, %sthen TFLite Micro "
         "stages 1..k until the exit's %sprobabilities reach τ "
         "(`micro.run_adaptive`). Median of %d passes per clip, mean over "
         "the %d clips; τ 0 always stops at exit 1, τ 1.01 always runs the "
         "full chain. Host TFLM (reference kernels) and the C code built "
         "here: a proxy for relative cost on a device. *Streamed*: the same, "
         "but the front end consumed the window hop by hop as it arrived "
         "(`nsl_fe_stream_push`, %d B of state instead of the window's "
         "%d B of float audio), so the clock starts at the last hop: "
         "one frame, the log with the window's peak, then as above "
         "(same answers).\n\n"
         % ("the C functionals head on the window's features, "
            if hp is not None else "", "fused " if hp is not None else "",
            F.mcu_passes, len(y), mcu["stream_state_bytes"],
            4 * fe.clip_samples)
         + markdown_table(["τ", "UAR %", "exit shares", "mean ms",
                           "ms / full", "mean ms (streamed)",
                           "ms / full (streamed)"],
                          [[f"{c['tau']:.2f}", f"{c['uar']:.1f}",
                            " / ".join(f"{v:.2f}" for v in c["exit_share"]),
                            f"{c['mean_ms']:.2f}",
                            f"{c['mean_ms'] / mcu_at[1.01]['mean_ms']:.2f}",
                            f"{c['mean_ms_stream']:.2f}",
                            f"{c['mean_ms_stream'] / mcu_at[1.01]['mean_ms_stream']:.2f}"]
                           for c in mcu_curve]))
  md += "\n## Summary\n\n" + markdown_table(
      ["metric", "value"], [[k, f"{v:.3f}" if isinstance(v, float) else v]
                            for k, v in summary.items()])
  md += "\n## Targets\n\n" + markdown_table(
      ["target", "met"], [[k, "yes" if v else "NO"] for k, v in targets.items()])
  md += ("\nLatency: LiteRT (XNNPACK), 1 thread, median of %d runs after %d "
         "warm-up runs, one 3 s clip. 'audio' includes the log-Mel front end: "
         "float RFFT (%.2f ms alone; the float phone model's, and the int8 "
         "one's unless exported with --int8_dft=matmul), int8-weight DFT "
         "matmul (%.2f ms alone; scipy's pocketfft of the same frames alone, "
         "float32, 1 worker: %.2f ms, a floor for any front end here); "
         "'features' excludes it. int8 method: %s. Bytes: KiB = 1024 B; int8_bytes is the sum of "
         "the MCU stage models; TFLM arena is RecordingMicroAllocator's total "
         "on x86-64. TFLM and LiteRT (reference kernels) stage outputs "
         "identical: %s; LiteRT with XNNPACK differs from TFLM by at most %d "
         "LSB. TFLM latency is the Python TFLM interpreter on this host "
         "(reference kernels), a proxy for relative cost on a device.\n"
         % (F.runs, F.warmup, latency["front_end_float"],
            latency["front_end_int8_dft"], latency["fft_only_scipy"],
            side["quantization"]["method"],
            identical, xnn_lsb))
  md += ("\nMicrocontroller from audio: the exported C99 front end "
         "(`micro/front_end`, %d B of code and tables compiled with -Os on "
         "this host) differs from the training front end by at most %.1e "
         "nats and takes %.2f ms a clip here (float32, no SIMD); the C "
         "functionals head %d B; flash (stages + front end + head) %d B, "
         "largest arena %d B, the C code's static buffers %d B. Adaptive (tau %.2f, "
         "phone int8, audio in, exits run one after another as `nsl-ser "
         "predict` does%s): UAR %.1f vs full %.1f, mean %.3f ms vs full "
         "%.3f ms through the same code (the bare `full` signature %.3f ms); "
         "exits used %s.\n"
         % (mcu["front_end_code_bytes"], mcu["max_abs_diff"], mcu["front_end_ms"],
            mcu["head_code_bytes"], summary["mcu_flash_bytes"],
            summary["mcu_arena_bytes"], mcu["static_ram_bytes"], F.tau,
            ", every exit fused with the utterance's functionals head"
            if hp is not None else "",
            adapt["uar"], summary["uar_full"], adapt["mean_ms"],
            full_predict["mean_ms"], summary["latency_full_audio_ms"],
            adapt["exits"]))
  path = write_results(F.name, summary, details, md,
                       out_dir=F.results_dir or RESULTS_DIR)
  logging.info("wrote %s in %.0f s", path, time.time() - t0)


if __name__ == "__main__":
  app.run(main)
