"""The blinded reader study: its plan and store, blinding of the served bytes, the analysis, the browser session."""

from __future__ import annotations

import io
import os
import re
import shutil
import threading
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from dermsynth.core import config
from dermsynth.review import analysis, store

from .conftest import REPO

Z = 1.959964


@pytest.fixture
def planned(embedded_data: Path, params: config.Params) -> Path:
    """The small embedded study with candidates from the real `generate` stage, and a 12-image review plan."""
    from dermsynth import generate, review_cli

    generate.main(params)
    review_cli.plan_study(params)
    return embedded_data / params.review.db


def test_the_plan_is_half_real_half_synthetic_in_every_cell(planned: Path, params: config.Params):
    with store.connect(planned) as conn:
        items = pd.read_sql_query("SELECT * FROM items", conn)
    assert len(items) == params.review.images == 12
    counts = items.groupby(["fst_group", "label", "kind"]).size().unstack()
    assert (counts["real"] == counts["synthetic"]).all()  # the shrunk study: one condition, two seed groups
    assert set(items["fst_group"]) == {"I-II", "V-VI"}
    with pytest.raises(store.ReviewError, match="already holds a planned study"):
        store.add_items(planned, items)


def jpeg_parts(data: bytes) -> tuple[list[int], bytes]:
    """The JPEG's marker sequence (up to the scan) and its quantisation tables' bytes."""
    markers, tables, i = [], b"", 2
    while i < len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        markers.append(marker)
        if marker == 0xDB:
            tables += data[i + 4 : i + 2 + length]
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            break
        i += 2 + length
    return markers, tables


def test_nothing_served_tells_real_from_synthetic(planned: Path, params: config.Params):
    from dermsynth.review.app import create_app

    token = store.add_reader(planned, "ann", params.review.seed)
    client = create_app(planned, ["psoriasis"], params.review.size, params.review.jpeg_quality).test_client()
    seen: dict[str, list] = {"real": [], "synthetic": []}
    for position in range(params.review.images):
        kind = store.item_at(planned, token, position)["kind"]
        page = client.get(f"/r/{token}").get_data(as_text=True)
        image = client.get(f"/r/{token}/image/{position}")
        data = image.get_data()
        with Image.open(io.BytesIO(data)) as im:
            properties = (im.format, im.size, im.mode, sorted(im.info) == ["jfif", "jfif_density", "jfif_unit",
                          "jfif_version"], im.getexif() == {})  # fmt: skip
        headers = sorted((k, v) for k, v in image.headers.items() if k != "Content-Length")
        seen[kind].append((re.sub(r"\d+", "N", page), headers, properties, jpeg_parts(data)))
        store.answer(planned, token, position, True, 3, "psoriasis", "")
    assert len(seen["real"]) == len(seen["synthetic"]) == 6
    everything = seen["real"] + seen["synthetic"]
    assert all(entry == everything[0] for entry in everything)  # page, headers, format, size, metadata, tables
    assert everything[0][2] == ("JPEG", (params.review.size,) * 2, "RGB", True, True)
    markers = everything[0][3][0]
    assert markers[0] == 0xE0  # the JFIF header first
    assert 0xC0 in markers  # a baseline frame
    assert not set(markers) & {0xE1, 0xE2, 0xED, 0xFE}  # no EXIF/XMP, ICC, Photoshop or comment segment
    with store.connect(planned) as conn:
        items = pd.read_sql_query("SELECT key FROM items", conn)["key"]
    for key in items:  # no file name, md5 or candidate name reaches the browser
        assert key.split(".")[0] not in "".join(e[0] for e in everything)


def simulated(db: Path) -> dict[str, str]:
    """Four images (A, B real; C, D synthetic) and three readers with known behaviour; their tokens."""
    items = pd.DataFrame(
        {
            "path": ["a.jpg", "b.jpg", "c.jpg", "d.jpg"],
            "kind": ["real", "real", "synthetic", "synthetic"],
            "label": ["psoriasis"] * 4,
            "fst_group": ["I-II", "V-VI", "I-II", "V-VI"],
            "key": ["A", "B", "C", "D"],
        }
    )
    store.add_items(db, items)
    tokens = {name: store.add_reader(db, name, 0) for name in ("right", "believer", "wrong")}
    truth = {"A": True, "B": True, "C": False, "D": False}
    for name, token in tokens.items():
        for position in range(4):
            key = "ABCD"[store.item_at(db, token, position)["item"] - 1]
            judged = {"right": truth[key], "believer": True, "wrong": not truth[key]}[name]
            diagnosed = name == "right" or (name == "believer" and truth[key])
            store.answer(db, token, position, judged, 4, "psoriasis" if diagnosed else "folliculitis", "")
    return tokens


def test_the_analysis_matches_values_computed_by_hand(tmp_path: Path):
    from dermsynth.analysis.stats import wilson

    db = tmp_path / "review.db"
    simulated(db)
    result = analysis.analyse(store.answers(db), kept={"C"}, z=Z)
    assert result["readers"] == 3
    assert result["answers"] == 12
    everyone = result["realism"]["all"]
    assert everyone["rate"] == 0.5  # right 4/4, believer 2/4, wrong 0/4
    assert (everyone["low"], everyone["high"]) == pytest.approx(wilson(6, 12, Z))
    assert result["realism"]["by_group"]["I-II"]["rate"] == 0.5
    assert result["realism"]["by_reader"]["right"]["rate"] == 1.0
    assert result["sensitivity"]["rate"] == pytest.approx(2 / 6)  # only "right" calls synthetic synthetic
    assert result["specificity"]["rate"] == pytest.approx(4 / 6)
    # Fleiss: every image 2 "real" : 1 "synthetic"; P_i = 1/3, P_e = (2/3)^2 + (1/3)^2 = 5/9 -> (1/3 - 5/9) / (4/9)
    assert result["agreement"]["fleiss_kappa"] == pytest.approx(-0.5)
    assert result["agreement"]["cohen_kappa"] == pytest.approx(
        {"believer|right": 0.0, "believer|wrong": 0.0, "right|wrong": -1.0}
    )
    assert result["diagnosis"]["real"]["rate"] == pytest.approx(4 / 6)
    assert result["diagnosis"]["synthetic"]["rate"] == pytest.approx(2 / 6)
    assert result["curation"] == {
        "kept": {"candidates": 1, "judged_real": pytest.approx(2 / 3)},
        "not_kept": {"candidates": 1, "judged_real": pytest.approx(2 / 3)},
        "difference": pytest.approx(0.0),
    }
    assert "Fleiss' kappa -0.500" in analysis.markdown(result)


def test_the_report_command_writes_the_same_numbers_and_logs_them_to_mlflow(workdir: Path, params: config.Params):
    import json

    from mlflow import MlflowClient

    from dermsynth import review_cli

    simulated(workdir / params.review.db)
    assert review_cli.report(params) == 0  # no curated manifest here: the curation link is left out
    written = json.loads((workdir / "reports/review/report.json").read_text())
    assert written["realism"]["all"]["rate"] == 0.5
    assert written["agreement"]["fleiss_kappa"] == pytest.approx(-0.5)
    assert written["curation"] is None
    assert "not photographs of patients" in (workdir / "reports/review/report.md").read_text()
    assert len(pd.read_csv(workdir / "reports/review/answers.csv")) == 12
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("dermsynth").experiment_id], "tags.stage = 'review'")[0]
    assert run.data.metrics["review/accuracy"] == 0.5
    assert run.data.metrics["review/fleiss_kappa"] == pytest.approx(-0.5)
    assert run.data.tags["readers"] == "3"


def test_export_turns_answers_into_curation_decisions(workdir: Path, params: config.Params, raw_params: dict):
    from dermsynth import review_cli

    simulated(workdir / params.review.db)
    (workdir / "annotations").mkdir()
    (workdir / "annotations/decisions.csv").write_text("file,decision,note\nC,accept,by hand\nZ,reject,kept\n")
    raw_params["curate"]["decisions"] = "annotations/decisions.csv"
    assert review_cli.export(config.parse(raw_params)) == 0
    decisions = pd.read_csv(workdir / "annotations/decisions.csv", keep_default_na=False)
    assert list(decisions["file"]) == ["C", "D", "Z"]  # the study's verdicts replace C's, Z is left alone
    # C and D: 2 of 3 readers called them real, but only "right" (1 of 3) diagnosed them: rejected
    assert list(decisions["decision"]) == ["reject", "reject", "reject"]
    assert decisions["note"].iloc[0] == "reader study: 67% of 3 judged real, 33% diagnosed"


def test_published_answers_become_the_study_reports_section(workdir: Path, params: config.Params, raw_params: dict):
    from dermsynth import review_cli
    from dermsynth.views.report_sections import reader_study_section

    answers = workdir / "annotations/review_answers.csv"
    answers.parent.mkdir()
    answers.write_text(",".join(analysis.PUBLISHED) + "\n")  # as committed: no study yet
    empty = "\n".join(reader_study_section(answers, None, Z, "simulated"))
    assert "No reader study published yet" in empty
    assert "review publish" in empty
    tokens = simulated(workdir / params.review.db)
    store.answer(workdir / params.review.db, tokens["right"], 0, True, 5, "psoriasis", "looks like my patient X")
    raw_params["review"]["answers"] = str(answers)
    assert review_cli.publish(config.parse(raw_params)) == 0
    published = pd.read_csv(answers, keep_default_na=False)
    assert len(published) == 12
    assert "note" not in published.columns
    assert "patient X" not in answers.read_text()
    section = "\n".join(reader_study_section(answers, {"C"}, Z, "simulated images"))
    assert section.startswith("## Reader study: real or synthetic?")
    expected = analysis.analyse(store.answers(workdir / params.review.db), {"C"}, Z)
    assert f"| all | {analysis.fmt(expected['realism']['all'])} |" in section
    assert f"Fleiss' kappa {expected['agreement']['fleiss_kappa']:.3f}" in section
    assert "**Data: simulated images.**" in section
    assert "Judged-real rate of candidates curation kept" in section


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_a_reader_completes_a_study_in_chromium_and_resumes_after_a_reload(planned: Path, params: config.Params):
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    from dermsynth.review.app import create_app

    token = store.add_reader(planned, "ann", params.review.seed)
    app = create_app(planned, ["psoriasis", "folliculitis"], params.review.size, params.review.jpeg_quality)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/r/{token}"
    clicked = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(url)
            for i in range(12):
                if i == 5:  # reload midway: the page resumes at the sixth image
                    page.reload()
                assert page.inner_text("#progress") == f"{i + 1} / 12"
                page.wait_for_function("() => document.querySelector('#image').complete")
                assert page.eval_on_selector("#image", "img => img.naturalWidth") == params.review.size
                judged = "real" if i % 3 else "synthetic"
                condition = ["psoriasis", "folliculitis"][i % 2]
                page.check(f"#{judged}")
                page.check(f"#conf{i % 5 + 1}")
                page.select_option("#condition", condition)
                page.fill("#note", f"note {i}")
                clicked.append((i, judged == "real", i % 5 + 1, condition, f"note {i}"))
                if i == 11:  # DERMSYNTH_REVIEW_SCREENSHOT=reports/figures/review_page.png keeps it
                    shot = os.environ.get("DERMSYNTH_REVIEW_SCREENSHOT") or str(planned.parent / "review_page.png")
                    page.screenshot(path=str(REPO / shot) if not Path(shot).is_absolute() else shot, full_page=True)
                with page.expect_navigation():  # the answer is stored, then the next image's page loads
                    page.click("#submit")
            assert "all 12 images are answered" in page.inner_text("#done")
            browser.close()
    finally:
        server.shutdown()
    stored = store.answers(planned)
    order = [store.item_at(planned, token, p)["item"] for p in range(12)]
    got = stored.set_index("item").loc[order]
    assert (
        list(zip(range(12), got["judged_real"] == 1, got["confidence"], got["condition"], got["note"], strict=True))
        == clicked
    )
