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
