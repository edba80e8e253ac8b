import csv
import hashlib
from collections import Counter
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dermsynth import embedded
from dermsynth.core import paths
from dermsynth.core.config import Embedded
from dermsynth.core.study import COUNT_COLUMNS, REAL_COUNTS, label_partitions, real_metadata, source_of
from dermsynth.imaging import parametric

from .conftest import SHARED_CSV


@pytest.mark.skipif(not SHARED_CSV.exists(), reason="real metadata CSV not beside the checkout")
def test_count_table_matches_the_real_csv():
    with open(SHARED_CSV) as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"] in REAL_COUNTS]  # the seven study labels
        counts = Counter((r["label"], int(r["fitzpatrick_scale"])) for r in rows)
    for label, row in REAL_COUNTS.items():
        assert tuple(counts[(label, fst)] for fst in COUNT_COLUMNS) == row


HARD = {"contrast": [0.3, 1.0], "mimicry": 0.5, "tone_shift": 1.0}  # the default regime
SEVEN = {"image_size": 32, "jpeg_quality": 90, "labels": "study", **HARD}


def test_plan_follows_the_real_counts():
    plan = Counter(embedded.row_plan(Embedded(seed=1, size_factor=1.0, **SEVEN)))
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
    cfg = Embedded(seed=5, size_factor=0.03, **SEVEN)
    a = embedded.build(cfg, tmp_path / "a")
    b = embedded.build(cfg, tmp_path / "b")
    assert a.equals(b)
    c = embedded.build(Embedded(seed=6, size_factor=0.03, **SEVEN), tmp_path / "c")
    assert set(a["md5hash"]).isdisjoint(c["md5hash"])


def test_other_labels_copy_the_real_csv_per_label_skin_type_source_and_qc():
    cfg = Embedded(seed=1, size_factor=1.0, image_size=32, jpeg_quality=90, labels="all", **HARD)
    plan = Counter(embedded.other_plan(cfg))
    real = Counter((r["label"], int(r["fitzpatrick_scale"]), source_of(r["url"]) or "", r["qc"])
                   for r in real_metadata() if r["label"] not in REAL_COUNTS)  # fmt: skip
    assert plan == real
    assert len({label for label, *_ in plan}) == 107
    half = Counter(label for label, *_ in embedded.other_plan(Embedded(**{**cfg.__dict__, "size_factor": 0.5})))
    assert sum(half.values()) == pytest.approx(sum(real.values()) / 2, rel=0.02)


def test_the_seven_are_the_same_images_whichever_labels_are_generated(tmp_path):
    small = {"seed": 5, "size_factor": 0.03, "image_size": 32, "jpeg_quality": 90, **HARD}
    seven = embedded.build(Embedded(labels="study", **small), tmp_path / "seven")
    every = embedded.build(Embedded(labels="all", **small), tmp_path / "all")
    mine = every[every["label"].isin(REAL_COUNTS)]
    assert mine["md5hash"].tolist() == seven["md5hash"].tolist()  # same images, same order: the same study
    planned = {label for label, *_ in embedded.other_plan(Embedded(labels="all", **small))}
    assert set(every["label"]) == planned | set(REAL_COUNTS)
    assert len(planned) > 100
    for md5 in mine["md5hash"].head(20):
        assert (tmp_path / "all" / "images" / f"{md5}.jpg").read_bytes() == (
            tmp_path / "seven" / "images" / f"{md5}.jpg"
        ).read_bytes()
    real_qc = {r["qc"] for r in real_metadata() if r["label"] in REAL_COUNTS}
    assert set(mine["qc"]) <= real_qc
    assert set(seven["qc"]) == {""}
    others = every[~every["label"].isin(REAL_COUNTS)]
    assert (others["nine_partition_label"] == others["label"].map(lambda lab: label_partitions()[lab][0])).all()
    assert others["url"].str.contains("dermaamin|atlasdermatologico").mean() > 0.9


def test_labels_of_one_family_look_more_alike_than_labels_of_different_families():
    labels = {label: family for label, (family, _) in label_partitions().items() if label not in REAL_COUNTS}
    vectors = {label: parametric.morphology(label, family).vector() for label, family in labels.items()}
    within, between = [], []
    for a, b in combinations(sorted(labels), 2):
        (within if labels[a] == labels[b] else between).append(np.linalg.norm(vectors[a] - vectors[b]))
    assert np.mean(within) < 0.6 * np.mean(between)
    assert parametric.morphology("acne", "inflammatory") == parametric.morphology("acne", "inflammatory")
    alikes = parametric.look_alikes("acne", "inflammatory", ("acne", "acne vulgaris", "rosacea", "lichen planus"))
    assert len(alikes) == 2
    assert "acne" not in alikes


def test_the_second_atlas_is_framed_closer_under_a_warm_cast():
    rgb = np.full((32, 32, 3), 150, dtype=np.uint8)
    rgb[12:20, 12:20] = 60  # a dark lesion in the middle
    seen = parametric.atlas_look(rgb, np.random.default_rng(0))
    assert seen.shape == rgb.shape
    assert (seen < 100).all(axis=2).sum() > (rgb < 100).all(axis=2).sum()  # the lesion fills more of the frame
    assert seen[0, 0, 0] > 150 > seen[0, 0, 2]  # red up, blue down on the plain skin
