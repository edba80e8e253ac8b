import csv
import hashlib
from collections import Counter

import pandas as pd
import pytest
from PIL import Image

from dermsynth import embedded
from dermsynth.core import paths
from dermsynth.core.config import Embedded
from dermsynth.core.study import COUNT_COLUMNS, REAL_COUNTS

from .conftest import SHARED_CSV


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="real metadata CSV not beside the checkout")
def test_count_table_matches_the_real_csv():
    with open(SHARED_CSV) as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in REAL_COUNTS]  # the seven study labels
        counts = Counter((r["label"], int(r["fitzpatrick_scale"])) for r in rows)
    for label, row in REAL_COUNTS.items():
        assert tuple(counts[(label, fst)] for fst in COUNT_COLUMNS) == row


HARD = {"contrast": [0.3, 1.0], "mimicry": 0.5, "tone_shift": 1.0}  # the default regime


def test_plan_follows_the_real_counts():
    plan = Counter(embedded.row_plan(Embedded(seed=1, size_factor=1.0, image_size=32, jpeg_quality=90, **HARD)))
    for label, row in REAL_COUNTS.items():
        assert tuple(plan[(label, fst)] for fst in COUNT_COLUMNS) == row


def test_embedded_dataset_files_and_metadata(embedded_data, params):
    meta = pd.read_csv(paths.dataset_metadata(str(paths.EMBEDDED)), dtype=str, keep_default_na=False)
    assert list(meta.columns) == embedded.COLUMNS
    assert meta["md5hash"].is_unique
    sizes = set()
    for md5 in meta["md5hash"].head(60):
        data = paths.image_file(paths.dataset_images(str(paths.EMBEDDED)), md5).read_bytes()
        assert hashlib.md5(data).hexdigest() == md5
        with Image.open(paths.image_file(paths.dataset_images(str(paths.EMBEDDED)), md5)) as im:
            sizes.add(im.size)
    assert sizes == {(params.embedded.image_size, params.embedded.image_size)}
    # row order carries no label: the metadata is not grouped by label
    runs = (meta["label"] != meta["label"].shift()).sum()
    assert runs > len(meta) / 3
    assert set(meta["fitzpatrick_scale"]) <= {"-1", "1", "2", "3", "4", "5", "6"}


def test_embedded_is_deterministic(tmp_path):
    cfg = Embedded(seed=5, size_factor=0.03, image_size=32, jpeg_quality=90, **HARD)
    a = embedded.build(cfg, tmp_path / "a")
    b = embedded.build(cfg, tmp_path / "b")
    assert a.equals(b)
    c = embedded.build(Embedded(seed=6, size_factor=0.03, image_size=32, jpeg_quality=90, **HARD), tmp_path / "c")
    assert set(a["md5hash"]).isdisjoint(c["md5hash"])
