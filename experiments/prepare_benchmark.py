"""Times `prepare` on the full corpora; writes experiments/results/prepare.json.

  python experiments/prepare_benchmark.py --data_dir=../shared/data
"""
import os
import tempfile

from absl import app, flags

from nsl_ser.prepare import PrepareConfig, prepare
from nsl_ser.results import markdown_table, write_results

flags.DEFINE_string("data_dir", "../shared/data", "Data root.")
flags.DEFINE_list("corpora", ["ravdess", "emodb"], "Corpora to prepare.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  per = {}
  with tempfile.TemporaryDirectory() as tmp:
    for c in FLAGS.corpora:
      s = prepare(PrepareConfig(c, FLAGS.data_dir, os.path.join(tmp, c)))
      per[c] = {k: s[k] for k in ("files_found", "files_read", "skipped",
                                  "audio_hours", "wall_s", "realtime_factor")}
  audio_s = sum(p["audio_hours"] * 3600 for p in per.values())
  wall = sum(p["wall_s"] for p in per.values())
  summary = {f"{c}_{k}": per[c][v] for c in per
             for k, v in (("files", "files_read"), ("skipped", "skipped"))}
  summary["realtime_factor"] = audio_s / wall
  rows = [[c, p["files_found"], p["files_read"], p["skipped"],
           p["audio_hours"], p["wall_s"], p["realtime_factor"]]
          for c, p in per.items()]
  md = markdown_table(["corpus", "found", "read", "skipped", "audio h",
                       "wall s", "× real time"], rows)
  md += (f"\nOverall: {summary['realtime_factor']:.0f}× real time "
         "(goal ≥ 200×), decoding with soundfile + soxr in threads.\n")
  print(write_results("prepare", summary, {"corpora": per}, md))


if __name__ == "__main__":
  app.run(main)
