import json
import os

import pytest

from nsl_ser import splits
from conftest import SPLITS_DIR


@pytest.mark.parametrize("corpus", ["ravdess", "emodb"])
def test_packaged_splits_equal_shared(corpus):
  with open(os.path.join(SPLITS_DIR, f"{corpus}.json")) as f:
    shared = json.load(f)
  assert splits.load_split_file(corpus) == shared


@pytest.mark.parametrize("corpus", ["ravdess", "emodb"])
def test_no_speaker_in_two_partitions(corpus):
  for fold in range(splits.num_folds(corpus)):
    s = splits.get_split(corpus, fold, SPLITS_DIR)
    assert s.train and s.val and s.test
    assert not (s.train & s.val) and not (s.train & s.test) and not (s.val & s.test)


def test_emodb_fold_protocol():
  s = splits.get_split("emodb", 4)
  assert s.test == {"15", "16"} and s.val == {"03", "08"}
  assert len(s.train) == 6
  tests = [splits.get_split("emodb", k).test for k in range(5)]
  assert set().union(*tests) == {"03", "08", "09", "10", "11", "12", "13",
                                  "14", "15", "16"}
  with pytest.raises(ValueError):
    splits.get_split("emodb", 5)
