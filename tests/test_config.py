import pytest

from dermsynth.analysis import grid
from dermsynth.core import config

from .conftest import REPO


def test_committed_params_are_valid():
    params = config.parse(config.read_yaml(REPO / "params.yaml"))
    assert params.dose.levels == [2, 8, 16]
    assert grid.dose_levels(params) == [2, 8, 16, 32]  # the paper's doses; 32 is the synthetic_and_seed arm
    assert params.curate.keep == 4
    assert params.generate.candidates == 8


def test_unknown_key_is_rejected(raw_params):
    raw_params["train"]["epochz"] = 3
    with pytest.raises(config.ConfigError, match="epochz"):
        config.parse(raw_params)


def test_missing_key_is_rejected(raw_params):
    del raw_params["split"]["seed"]
    with pytest.raises(config.ConfigError, match=r"split\.seed: missing"):
        config.parse(raw_params)


def test_cross_field_rules(raw_params):
    raw_params["dose"]["levels"] = [1000]
    raw_params["prepare"]["conditions"] = ["psoriasis", "not a label"]
    with pytest.raises(config.ConfigError) as err:
        config.parse(raw_params)
    assert "1000" in str(err.value)
    assert "not a label" in str(err.value)


def test_doses_beyond_the_original_need_a_curated_pool_that_large(raw_params):
    """64 and 128 synthetic images (the original's follow-up) fit once seeds x kept candidates reach them."""
    raw_params["split"]["seeds_per_group"] = 16
    raw_params["generate"]["candidates"] = 16
    raw_params["curate"]["keep"] = 8
    raw_params["dose"]["levels"] = [2, 8, 16, 32, 64]
    params = config.parse(raw_params)
    assert grid.dose_levels(params)[-2:] == [64, 128]  # 128, the whole set: the synthetic_and_seed arm
    raw_params["curate"]["keep"] = 4
    with pytest.raises(config.ConfigError, match=r"dose\.levels: 64 is not between 1 and 63"):
        config.parse(raw_params)


@pytest.mark.parametrize("level", [0, 4])  # shrunk params: 2 seeds x curate.keep 2 = 4, the whole set
def test_a_dose_that_another_arm_already_trains_is_refused(raw_params, level):
    raw_params["dose"]["levels"] = [2, level]
    with pytest.raises(config.ConfigError, match=rf"dose\.levels: {level} is not between 1 and 3: dose 0 is the seed"):
        config.parse(raw_params)


def test_fitz_only_is_never_listed_among_the_arms_trained_per_condition(raw_params):
    raw_params["train"]["arms"] = ["fitz_only", "seed"]
    with pytest.raises(config.ConfigError, match=r"train\.arms: fitz_only is always trained, once per direction"):
        config.parse(raw_params)


def test_shared_trainings_are_named_once():
    params = config.load(REPO / "params.yaml")
    runs = grid.planned_runs(params)
    assert len(runs) == 36  # 2 directions x 3 conditions x 4 arms + 3 conditions x 4 dose levels
    assert len(grid.trainings(params)) == 29  # 3 fitz_only per direction -> 1; dose32 is synthetic_and_seed
    fitz = {r["trained"] for r in runs if r["arm"] == "fitz_only"}
    assert fitz == {"light_to_dark-fitz_only", "dark_to_light-fitz_only"}
    whole = next(r for r in runs if r["name"] == "light_to_dark-psoriasis-dose32")
    assert whole["trained"] == "light_to_dark-psoriasis-synthetic_and_seed"


def test_repeats_must_be_positive(raw_params):
    raw_params["train"]["repeats"] = 0
    with pytest.raises(config.ConfigError, match=r"train\.repeats must be at least 1"):
        config.parse(raw_params)


def test_seeded_conditions_must_cover_the_trained_ones(raw_params):
    raw_params["train"]["conditions"] = ["psoriasis", "squamous_cell_carcinoma"]  # generate.conditions: psoriasis
    with pytest.raises(config.ConfigError, match=r"squamous_cell_carcinoma.*has no seeds"):
        config.parse(raw_params)
    raw_params["split"]["seed_conditions"] = "all"
    config.parse(raw_params)
    raw_params["split"]["seed_conditions"] = "some"
    with pytest.raises(config.ConfigError, match="seed_conditions"):
        config.parse(raw_params)


def test_the_real_data_configuration_file_is_valid_and_becomes_dvc_arguments():
    from .conftest import REPO

    overrides = config.read_overrides(REPO / "configs" / "real-data.yaml")
    assert overrides["dataset.root"] == "data"
    args = config.set_arguments(overrides)
    assert "-S dataset.root=data" in args
    assert "-S train.standardize=false" in args


def test_an_override_naming_a_missing_key_is_refused(tmp_path, monkeypatch):
    from .conftest import REPO

    monkeypatch.chdir(REPO)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train.epochz: 3\n")
    with pytest.raises(config.ConfigError, match=r"train\.epochz: no such key"):
        config.read_overrides(bad)
    bad.write_text("features.crop: 999\n")  # valid key, but crop > resize
    with pytest.raises(config.ConfigError, match="crop exceeds"):
        config.read_overrides(bad)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "lr", "1e-4", r"params\.train\.lr: expected a number, got '1e-4' \(text: YAML reads 1e-4"),
        ("train", "repeats", "two", r"params\.train\.repeats: expected a whole number, got 'two'"),
        ("train", "epochs", 2.5, r"params\.train\.epochs: expected a whole number, got 2\.5"),
        ("train", "standardize", "yes", r"params\.train\.standardize: expected true or false, got 'yes'"),
        ("train", "arms", "seed", r"params\.train\.arms: expected a list of strings, got 'seed'"),
        ("generate", "allow_partial", 1, r"params\.generate\.allow_partial: expected true or false, got 1"),
        ("dose", "levels", [2, "8"], r"params\.dose\.levels\[1\]: expected a whole number, got '8'"),
        ("features", "precision", None, r"params\.features\.precision: expected a string, got None"),
    ],
)
def test_a_value_of_the_wrong_type_fails_on_load_naming_key_and_value(raw_params, section, key, value, message):
    raw_params[section][key] = value
    with pytest.raises(config.ConfigError, match=message):
        config.parse(raw_params)


def test_openai_block_types_and_ranges_are_checked(raw_params):
    raw_params["generate"]["openai"]["base_url"] = 8080
    with pytest.raises(config.ConfigError, match=r"generate\.openai\.base_url: expected a string or null, got 8080"):
        config.parse(raw_params)
    raw_params["generate"]["openai"]["base_url"] = None
    raw_params["generate"]["openai"]["workers"] = 0
    with pytest.raises(config.ConfigError, match=r"generate\.openai\.workers must be >= 1, got 0"):
        config.parse(raw_params)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("train", "dropout", 1.0, r"train\.dropout must be in \[0, 1\), got 1\.0"),
        ("train", "lr", 0, r"train\.lr must be > 0, got 0\.0"),
        ("generate", "strength", [0.9, 0.1], r"generate\.strength must be \[low, high\] within \[0, 1\]"),
        ("curate", "near_duplicate_bits", 65, r"curate\.near_duplicate_bits must be in 0\.\.64, got 65"),
        ("features", "backbone", "resnet50", r"features\.backbone must be one of vgg16, efficientnet_lite0"),
    ],
)
def test_a_value_out_of_range_fails_on_load(raw_params, section, key, value, message):
    raw_params[section][key] = value
    with pytest.raises(config.ConfigError, match=message):
        config.parse(raw_params)


def test_ints_are_accepted_where_numbers_are_expected(raw_params):
    raw_params["train"]["lr"] = 1
    raw_params["generate"]["openai"]["max_usd"] = 5
    params = config.parse(raw_params)
    assert params.train.lr == 1.0
    assert isinstance(params.train.lr, float)
    assert isinstance(params.generate.openai.max_usd, float)


def test_every_key_is_required_params_yaml_is_the_one_source_of_values(raw_params):
    del raw_params["generate"]["openai"]["max_usd"]
    del raw_params["tune"]["trials"]
    with pytest.raises(config.ConfigError, match=r"generate\.openai\.max_usd: missing"):
        config.parse(raw_params)


def test_the_whole_set_dose_reports_what_its_training_had(workdir, params):
    """A short curated set (rejections, an accepted partial run) makes the whole-set point smaller than planned."""
    runs = {r["name"]: r for r in grid.planned_runs(params)}
    whole = runs["light_to_dark-psoriasis-dose4"]  # shrunk params: 2 seeds x curate.keep 2
    assert whole["trained"] == "light_to_dark-psoriasis-synthetic_and_seed"
    training = workdir / "models" / whole["trained"] / "training.json"
    training.parent.mkdir(parents=True)
    training.write_text('{"n_train": 100, "n_synthetic": 3, "histories": []}')
    assert grid.dose_of(whole) == 3
    assert grid.dose_of(runs["light_to_dark-psoriasis-dose2"]) == 2  # trained for its level: never read
    assert grid.dose_of(runs["light_to_dark-psoriasis-seed"]) is None
