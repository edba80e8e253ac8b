"""Curation: near-duplicates of test images are rejected, human decisions gate the stage, the sheet renders."""

import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pandas as pd
import pytest
import yaml

from dermsynth import curate, generate, quality
from dermsynth.core import files, paths


@pytest.fixture
def generated(embedded_data, params):
    from dermsynth import validate

    assert validate.main(params) == 0
    generate.main(params)
    assert quality.main(params) == 0
    return params


def test_a_copy_of_a_test_image_is_rejected(generated, capsys):
    params = generated
    manifest = pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME, dtype=str)
    splits = pd.read_csv(paths.SPLITS_TABLE, dtype=str)
    test_md5 = splits.loc[splits["role"] == "test", "md5hash"].iloc[0]
    leaked = manifest["file"].iloc[0]
    shutil.copyfile(
        paths.image_file(paths.dataset_images(params.dataset.root), test_md5),
        paths.GENERATED / paths.IMAGES_NAME / leaked,
    )
    assert curate.main(params) == 0
    scores = pd.read_csv(paths.CURATED / "scores.csv", dtype={"nearest_test_md5": str})
    row = scores.set_index("file").loc[leaked]
    assert row["nearest_test_phash"] == 0
    assert row["nearest_test_md5"] == test_md5
    assert not row["selected"]
    assert row["decision"].startswith("rejected: near-duplicate")
    assert leaked not in set(pd.read_csv(paths.CURATED / paths.MANIFEST_NAME)["file"])
    assert leaked in (paths.VALIDATION_REPORTS / "near_duplicates.md").read_text()
    others = scores[scores["file"] != leaked]
    assert (others["nearest_test_phash"] > params.curate.near_duplicate_bits).all()


def test_human_mode_refuses_until_every_candidate_has_a_decision(generated, workdir):
    params = generated
    reviewed = replace(params.curate, keep=2, mode="human", decisions=str(workdir / "decisions.csv"))
    human = replace(params, curate=reviewed)
    with pytest.raises(curate.CurationPending, match="have no decision in"):
        curate.main(human)
    template = pd.read_csv(paths.CURATION_REPORTS / "decisions_template.csv", dtype=str, keep_default_na=False)
    assert set(template["decision"]) == {""}
    template["decision"] = ["accept" if i % 3 == 0 else "reject" for i in range(len(template))]
    template.iloc[:-1].to_csv(workdir / "decisions.csv", index=False)
    with pytest.raises(curate.CurationPending, match="1 candidates have no decision"):
        curate.main(human)  # one still missing
    template.to_csv(workdir / "decisions.csv", index=False)
    assert curate.main(human) == 0
    kept = pd.read_csv(paths.CURATED / paths.MANIFEST_NAME)
    assert set(kept["file"]) == set(template.loc[template["decision"] == "accept", "file"])
    assert set(kept["decision"]) == {"reviewer: accept"}


def test_pending_decisions_are_one_line_naming_the_files_to_fill(generated, workdir, raw_params):
    """`dermsynth curate` in human mode without decisions: exit 1, one line, the sheet and template named."""
    raw_params["curate"].update(mode="human", decisions="decisions.csv")
    (workdir / "params.yaml").write_text(yaml.safe_dump(raw_params))
    done = subprocess.run([sys.executable, "-m", "dermsynth", "curate"], cwd=workdir, capture_output=True, text=True)
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("dermsynth curate: error: ")
    assert "have no decision in decisions.csv" in line
    assert "contact_sheet.html" in line
    assert "decisions_template.csv" in line


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_contact_sheet_renders_in_headless_chromium_with_every_image(generated, workdir):
    assert curate.main(generated) == 0
    sheet = (paths.CURATION_REPORTS / "contact_sheet.html").read_text()
    n_images = len(re.findall(r"<img ", sheet))
    probe = sheet.replace(
        "</body>",
        "<script>window.addEventListener('load',()=>{const i=[...document.images];"
        "document.title='loaded='+i.filter(x=>x.complete&&x.naturalWidth>0).length+' of '+i.length})"
        "</script></body>",
    )
    files.write_text(workdir / "probe.html", probe)
    done = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={workdir / 'chromium'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            (workdir / "probe.html").as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    title = re.search(r"<title>(.*?)</title>", done.stdout)
    assert title is not None, done.stderr[-2000:]
    candidates = len(pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME))
    assert n_images == candidates + len(set(pd.read_csv(paths.GENERATED / paths.MANIFEST_NAME)["seed_md5hash"]))
    assert title.group(1) == f"loaded={n_images} of {n_images}"
