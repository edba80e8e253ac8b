import pandas as pd
import pytest

from dermsynth.core import paths
from dermsynth.generators import annotations


@pytest.fixture
def raw_params(raw_params: dict) -> dict:
    """One draw of the seeds: these tests count requests per seed image (draws: test_split, test_pipeline)."""
    raw_params["split"]["seed_draws"] = 1
    return raw_params


def seeds_table() -> pd.DataFrame:
    return pd.read_csv(paths.SEEDS_TABLE, dtype=str, keep_default_na=False)


def test_init_writes_defaults_and_keeps_refined_rows(embedded_data, params):
    images = paths.dataset_images(params.dataset.root)
    path = embedded_data / "annotations" / "seeds.csv"
    seeds = seeds_table()
    table, added = annotations.init(seeds.head(3), images, path)
    assert added == 3
    size = params.embedded.image_size
    first = table.iloc[0]
    assert (int(first["crop_x0"]), int(first["crop_y0"]), int(first["crop_size"])) == (0, 0, size)
    assert first["body_part"] == "skin"
    refined = table.copy()
    refined.loc[0, ["body_part", "noun"]] = ["back", "man"]
    refined.to_csv(path, index=False)
    table, added = annotations.init(seeds, images, path)
    assert added == len(seeds) - 3
    assert table.loc[table["md5hash"] == first["md5hash"], "body_part"].item() == "back"


def test_prompt_follows_the_template_and_the_seed_group():
    row = pd.Series({"label": "psoriasis", "body_part": "back", "noun": "man", "group": "V-VI"})
    assert annotations.prompt(row) == "An image of psoriasis on the back of a dark-skinned man."
    assert "light-skinned" in annotations.prompt(row.replace("V-VI", "I-II"))


def test_seeds_without_a_row_get_defaults_and_bad_rows_are_named(embedded_data, params):
    images = paths.dataset_images(params.dataset.root)
    path = embedded_data / "annotations" / "seeds.csv"
    seeds = seeds_table()
    annotations.init(seeds.head(1), images, path)
    rows = annotations.for_seeds(seeds.head(2), images, path)
    assert list(rows["source"]) == ["file", "default"]
    table = annotations.read(path)
    table.loc[0, "crop_size"] = "999"
    table.to_csv(path, index=False)
    with pytest.raises(annotations.AnnotationError, match=f"seed {seeds['md5hash'].iloc[0]}: crop"):
        annotations.for_seeds(seeds.head(1), images, path)
    table.loc[0, ["crop_size", "mask_box"]] = ["10", "0 0 20 5"]
    table.to_csv(path, index=False)
    with pytest.raises(annotations.AnnotationError, match="outside the 10-px crop"):
        annotations.for_seeds(seeds.head(1), images, path)
