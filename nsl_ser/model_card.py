"""The default model's card (``tflite_models/default/README.md``).

Every number is read from the sidecar, the training metrics and the
committed result files; nothing is typed in by hand.
"""
from __future__ import annotations

from typing import Optional


def _f(v, digits: int = 1) -> str:
  try:
    return "–" if v != v else f"{v:.{digits}f}"  # NaN
  except TypeError:
    return "–"


LANGUAGES = {
    "ravdess": "English (RAVDESS, North American actors, studio)",
    "emodb": "German (EmoDB, studio)",
    "nemo": "Polish (nEMO, stored through the Opus speech codec)",
}


def render(side: dict, metrics: dict, gen: Optional[dict],
           acc: Optional[dict]) -> str:
  files = side["files"]
  micro = {f: v for f, v in files.items() if f.startswith("micro/")
           and f.endswith(".tflite")}
  labels = side["labels"]
  counts = metrics["counts"]
  norm = side["normalization"]
  regime = norm["regime"]
  temp = side.get("temperature", {}).get("per_exit")
  lines = [
      "# nsl-ser default model",
      "",
      "A small speech-emotion recognition CNN with early exits, int8, for "
      "phones (LiteRT) and microcontrollers (TFLite Micro). `nsl-ser predict "
      "clip.wav` uses it when no `--model` is given.",
      "",
      "## What it is",
      "",
      f"- **Labels** ({len(labels)}): {', '.join(labels)}: the emotions every "
      "training corpus has.",
      f"- **Exits**: {', '.join(side['exits'])} (MACs: "
      + ", ".join(f"{v:,}" for v in side["exit_macs"].values())
      + f"); {side['params']:,} parameters.",
      f"- **Phone model** `model_int8.tflite`: {files['model_int8.tflite']['bytes']:,} "
      "bytes; 16 kHz mono float audio in ("
      f"{side['front_end']['clip_samples']} samples = "
      f"{side['front_end']['clip_samples'] / side['front_end']['sample_rate']:.0f} s). "
      "Staged: `front_end` (audio -> log-Mel) once per window, then "
      "`stage_1` ... `stage_K` (each returns its exit and the activations "
      "the next stage takes), or `full` (audio -> every exit) in one call; "
      "for live audio `frame_power` (each frame's audio as it arrives) and "
      "`log_mel` (the window's end) replace `front_end`, with the same "
      "features (`nsl_ser.runtime.litert.PhoneStream`).",
      *([f"- **Functionals head**: {len(side['functionals_head']['coef'][0])} "
         "statistics of the utterance's log-Mel speech frames + logistic "
         "regression (sidecar `functionals_head`; trained on every "
         "utterance and its speed-perturbed copies, C chosen on "
         f"{len(metrics.get('functionals_head_validation', []))} validation "
         "speakers, then refit on all), fused with every exit of every "
         "window (product of experts) before the confidence test; `predict` "
         "applies it, `micro/front_end/functionals.{h,c}` is the same in C."]
        if side.get("functionals_head") else []),
      f"- **Microcontroller**: int8 stages `micro/stage_k_int8.tflite` "
      f"({sum(v['bytes'] for v in micro.values()):,} bytes in all, largest "
      f"arena {max(side.get('micro', {}).get('arena_bytes', [0])):,} bytes) "
      "and the front end in C99 (`micro/front_end/`), which computes the "
      "training features within 2e-3 nats.",
      "- Trained by `nsl-ser train-default` (the default recipe of "
      "`nsl_ser/recipe.py`: speed perturbation 0.9/1.0/1.1, cosine learning "
      "rate, mean of the last 10 epochs' weights, self-distilled exits), "
      f"regime `{regime}`, {metrics['epochs_run']} epochs; int8 by post-"
      "training quantisation.",
      "",
      "## Training data",
      "",
      "Every speaker of every corpus found (nothing held out):",
      "",
      "| corpus | speakers | " + " | ".join(labels) + " |",
      "|---|---|" + "---|" * len(labels),
  ]
  for c, by_label in counts.items():
    lines.append(f"| {c} | {metrics['speakers'].get(c, '?')} | "
                 + " | ".join(str(by_label[l]) for l in labels) + " |")
  lines += ["", "## Measured", ""]
  if gen:
    s = gen["summary"]
    lines += [
        "From `experiments/results/generalization.json`: the same recipe, "
        f"regime `{regime}`, with a whole corpus or some speakers held out "
        "(this model itself has none held out), on the five classes all "
        "three corpora share. UAR in %, mean over 3 seeds; chance 20.0. "
        "Beside it the better of openSMILE eGeMAPS / ComParE + linear SVM "
        "on the same split (`experiments/results/baselines.json`).",
        "",
        "| held out | independent | calibrated | CNN alone (ind. / cal.) "
        "| SVM (ind. / cal.) |",
        "|---|---|---|---|---|",
    ]
    rows = [(f"loco_{c}", f"all of {name} (trained on the other two)",
             f"baseline_loco_{c}")
            for c, name in (("ravdess", "RAVDESS"), ("emodb", "EmoDB"),
                            ("nemo", "nEMO"))]
    rows.append(("pooled_heldout", "speakers of all three (RAVDESS 19–24, "
                 "EmoDB 03, 08, nEMO KD0, TP0)", None))
    for key, name, base in rows:
      lines.append(
          f"| {name} | {_f(s.get(f'{key}_independent'))} | "
          f"{_f(s.get(f'{key}_calibrated'))} | "
          f"{_f(s.get(f'{key}_independent_cnn'))} / "
          f"{_f(s.get(f'{key}_calibrated_cnn'))} | "
          + (f"{_f(s.get(f'{base}_independent'))} / "
             f"{_f(s.get(f'{base}_calibrated'))} |" if base else "– |"))
    lines += [
        "",
        "The first two columns are the model as `predict` runs it"
        + (": its exits fused with the functionals head."
           if side.get("functionals_head") else "."),
        "",
        f"**Confidence**: expected calibration error on the held-out speakers "
        f"{_f(s.get('default_model_ece_unscaled'))} % as trained, "
        f"{_f(s.get('default_model_ece_scaled'))} % after temperature scaling "
        "fitted on the validation speakers (reliability diagram in "
        "`experiments/results/generalization.md`). "
        + ("The temperatures are applied." if temp else
           "Scaling did not help, so none is applied: the probabilities are "
           "the network's own."),
    ]
    if temp:
      lines.append("The sidecar's per-exit temperatures ("
                   + ", ".join(f"{k} {v:.2f}" for k, v in temp.items())
                   + ") are applied by `nsl-ser predict` and by the C head's "
                   "`nsl_fx_fuse_exit`, so `--tau` compares calibrated "
                   "confidences.")
  else:
    lines.append("No generalisation results were found when this card was "
                 "written.")
  if acc:
    a = acc["summary"]
    lines += ["", "In-corpus, the same recipe on EmoDB alone (7 classes, 5 "
              "folds × 3 seeds, `experiments/results/accuracy.json`): UAR "
              f"{_f(a.get('uar_average_speed_independent'))} speaker-independent, "
              f"{_f(a.get('uar_average_speed_calibrated'))} speaker-calibrated "
              "for the CNN alone"
              + ("; fused with the functionals head, as `predict` runs it, "
                 f"int8: {_f(a.get('uar_int8_independent'))} / "
                 f"{_f(a.get('uar_int8_calibrated'))}"
                 if side.get("functionals_head") else "")
              + " (openSMILE ComParE + SVM: 76.6 / 82.7)."]
  lines += [
      "",
      "## Normalisation contract",
      "",
      "Emotion is relative to a speaker's own voice. The model was trained "
      + ("with every training speaker's log-Mel features mapped onto the "
         "reference statistics (sidecar `normalization.reference`, per band) "
         "with that speaker's own statistics. "
         if regime == "speaker" else
         "on raw log-Mel features (statistics inside the model). ")
      + "Two ways to use it:",
      "",
      "- **Speaker-independent** (a stranger's first utterance): feed audio "
      "to `model_int8.tflite`. The reference statistics are inside the model.",
      "- **Speaker-calibrated**: collect the speaker's per-band statistics "
      "over a few unlabelled clips (`nsl-ser calibrate clips/ "
      "--out=speaker.json`, or on a device the running update below), map "
      "each log-Mel frame `x` to `x * scale + shift` with `scale = "
      "sqrt(ref_var / spk_var)`, `shift = ref_mean - spk_mean * scale`, and "
      "feed them to `stage_1` (phone) or through `nsl_fe_set_calibration` "
      "(microcontroller). `nsl-ser predict --calibrate=DIR|self` does this. "
      "The functionals head is calibrated the same way, per functional, "
      "with the speaker's functionals statistics (`nsl-ser calibrate` "
      "keeps them; `nsl_fx_set_calibration` in C).",
      "",
      "The running update per clip (Chan et al.), `count`, `mean[b]`, "
      "`m2[b]` kept: `n = count + n_c; d = mean_c - mean; mean += d * n_c / n; "
      "m2 += m2_c + d² · count · n_c / n; count = n`; `var = m2 / count`.",
      "",
      "## Intended use and known limits",
      "",
      "- Research and prototyping of on-device emotion recognition on "
      "**acted** speech. All training speech is acted and read: "
      + "; ".join(LANGUAGES.get(c, c) for c in counts)
      + ". Spontaneous speech, other languages, noisy rooms and children "
      "are untested and will do worse (see the held-out corpora above).",
      f"- {len(labels)} categories only ({', '.join(labels)}); no calm, "
      "surprise, boredom, contempt or mixed emotions (a category a "
      "training corpus lacks is left out). A clip is always given one of "
      f"the {len(labels)} (no 'other'); `predict` marks silent windows "
      "`no_speech`.",
      "- Accuracy differs a lot between speakers (see the spreads above); "
      "calibrating on a speaker's clips helps most.",
      "- Not for decisions about people (hiring, health, policing, "
      "surveillance).",
      "",
      "## Licence",
      "",
      side.get("licence", ""),
      "",
  ]
  return "\n".join(lines)
