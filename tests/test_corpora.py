from collections import Counter

import pytest

from nsl_ser import corpora


def test_ravdess_on_shared_data(data_dir):
  utts, skipped = corpora.scan(corpora.get_corpus("ravdess"), data_dir)
  assert len(utts) == 1440 and not skipped
  assert Counter(u.speaker for u in utts) == {f"{a:02d}": 60 for a in range(1, 25)}
  counts = Counter(u.emotion for u in utts)
  assert counts["neutral"] == 96 and counts["angry"] == 192 and len(counts) == 8
  by_gender = Counter(u.gender for u in utts)
  assert by_gender == {"m": 720, "f": 720}


def test_emodb_on_shared_data(data_dir):
  utts, skipped = corpora.scan(corpora.get_corpus("emodb"), data_dir)
  assert len(utts) == 535 and not skipped
  letters = {"angry": "W", "boredom": "L", "disgust": "E", "fearful": "A",
             "happy": "F", "sad": "T", "neutral": "N"}
  counts = {letters[k]: v for k, v in Counter(u.emotion for u in utts).items()}
  assert counts == {"W": 127, "L": 81, "E": 46, "A": 69, "F": 71, "T": 62, "N": 79}
  assert len({u.speaker for u in utts}) == 10
  assert len({u.id for u in utts}) == 535


def test_nemo_on_shared_data(data_dir):
  """Names and the corpus' own data.tsv agree on every clip; gender from
  its table; the three corpora share five classes."""
  utts, skipped = corpora.scan(corpora.get_corpus("nemo"), data_dir)
  assert len(utts) == 4481 and not skipped
  assert Counter(u.speaker for u in utts)["MP0"] == 256
  assert {u.speaker: u.gender for u in utts} == corpora.NEMO_SPEAKERS
  counts = Counter(u.emotion for u in utts)
  assert counts == {"neutral": 809, "sad": 769, "happy": 749, "angry": 749,
                    "fearful": 736, "surprised": 669}
  assert corpora.shared_emotions("ravdess", "emodb", "nemo") == (
      "neutral", "happy", "sad", "angry", "fearful")


def test_nemo_data_tsv_is_checked(tmp_path):
  """A clip data.tsv does not list, or lists with another emotion, is
  refused with the reason; without data.tsv the name alone decides."""
  samples = tmp_path / "samples"
  samples.mkdir()
  (tmp_path / "data.tsv").write_text(
      "file_id\temotion\traw_text\tnormalized_text\tspeaker_id\tgender\tage\n"
      "EB0_anger_1.wav\tanger\tA.\ta\t        EB0\tfemale\t27\n"
      "KS0_fear_2.wav\tsadness\tB.\tb\t        KS0\tmale\t23\n", encoding="utf-8")
  parse = corpora.parse_nemo
  u = parse(str(samples / "EB0_anger_1.opus"))
  assert (u.speaker, u.emotion, u.gender) == ("EB0", "angry", "f")
  with pytest.raises(corpora.NameParseError, match="name disagrees"):
    parse(str(samples / "KS0_fear_2.opus"))
  with pytest.raises(corpora.NameParseError, match="not listed"):
    parse(str(samples / "EB0_anger_3.opus"))
  alone = tmp_path / "elsewhere" / "deeper"
  alone.mkdir(parents=True)
  assert parse(str(alone / "TP0_happiness_7.wav")).gender == "m"


@pytest.mark.parametrize("corpus,name,speaker,emotion,gender", [
    ("ravdess", "03-01-05-01-02-01-12.wav", "12", "angry", "f"),
    ("ravdess", "03-02-06-02-01-02-07.wav", "07", "fearful", "m"),
    ("emodb", "16b10Td.wav", "16", "sad", "f"),
    ("tess", "OAF_back_angry.wav", "OAF", "angry", "f"),
    ("tess", "YAF_dog_ps.wav", "YAF", "surprised", "f"),
    ("cremad", "1001_DFA_ANG_XX.wav", "1001", "angry", None),
    ("cremad", "1091_WSI_SAD_HI.wav", "1091", "sad", None),
    ("savee", "DC_sa01.wav", "DC", "sad", "m"),
    ("savee", "KL/su15.wav", "KL", "surprised", "m"),
])
def test_file_name_conventions(corpus, name, speaker, emotion, gender):
  u = corpora.get_corpus(corpus).parse(name)
  assert (u.speaker, u.emotion, u.gender, u.corpus) == (speaker, emotion, gender, corpus)
  assert u.emotion in corpora.get_corpus(corpus).emotions


@pytest.mark.parametrize("corpus,name", [
    ("ravdess", "03-01-09-01-02-01-12.wav"),  # emotion 09
    ("ravdess", "03-01-05-01-02-01-25.wav"),  # actor 25
    ("ravdess", "03-01-01-02-02-01-12.wav"),  # strong neutral
    ("emodb", "17a01Wa.wav"),                 # speaker 17
    ("emodb", "03a01Xa.wav"),                 # emotion letter X
    ("tess", "OAF_back_bored.wav"),
    ("cremad", "1001_DFA_XYZ_XX.wav"),
    ("cremad", "0999_DFA_ANG_XX.wav"),
    ("savee", "a01.wav"),                     # no speaker folder
    ("savee", "XX_a01.wav"),
    ("nemo", "EB0_boredom_1.wav"),            # not a nEMO emotion
    ("nemo", "XY9_anger_1.wav"),              # speaker unknown
    ("nemo", "EB0-anger-1.wav"),
])
def test_bad_names_are_reported(corpus, name):
  with pytest.raises(corpora.NameParseError, match="does not match|not in|unknown|no strong"):
    corpora.get_corpus(corpus).parse(name)


def test_shared_vocabulary_and_cross_corpus_classes():
  assert corpora.shared_emotions("ravdess", "emodb") == (
      "neutral", "happy", "sad", "angry", "fearful", "disgust")
  for c in corpora.CORPORA.values():
    assert set(c.emotions) <= set(corpora.EMOTIONS)
  assert corpora.get_corpus("emodb").emotions[-1] == "boredom"
  with pytest.raises(ValueError, match="unknown corpus"):
    corpora.get_corpus("iemocap")


def test_scan_restricts_classes_and_reports_the_rest(data_dir):
  shared = corpora.shared_emotions("ravdess", "emodb")
  utts, skipped = corpora.scan(corpora.get_corpus("emodb"), data_dir, shared)
  assert len(utts) == 535 - 81 and len(skipped) == 81
  assert all("boredom" in r for _, r in skipped)
