"""A generation run that does not deliver its plan stops and says why (`dermsynth generate` as a user runs it).

One small project (embedded data, prepared and split) is shared; each test runs the real
command against a fake OpenAI server on 127.0.0.1 with its own params and its own cache, and
counts the requests the server received: each one would be paid.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import REPO, project_copy, run_ok, shrink, tool_env
from .fake_openai import CANARY, Action, FakeOpenAI, error

CANDIDATES = 4  # 4 seeds (2 per group) x 4 candidates = 16 planned requests


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = project_copy(tmp_path_factory.mktemp("delivery"), with_annotations=False)
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    raw["generate"]["candidates"] = CANDIDATES
    raw["split"]["seed_draws"] = 1  # requests are counted per seed image; draws: test_split, test_pipeline
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for stage in ("embedded", "prepare", "split", "validate"):
        run_ok(["dermsynth", stage], root)
    return root


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.close()


def generate(project: Path, server: FakeOpenAI | None, *args: str, **changes: object) -> tuple[int, str]:
    """`dermsynth generate` with generate.* (and generate.openai.* under key "openai") changed; code and output."""
    raw = shrink(yaml.safe_load((REPO / "params.yaml").read_text()))
    generate_changes = {k: v for k, v in changes.items() if k not in ("openai", "curate")}
    raw["generate"].update({"candidates": CANDIDATES, **generate_changes})
    raw["curate"].update(changes.get("curate", {}))
    if server is not None:
        raw["generate"]["generator"] = "openai"
        cache = f".cache/openai-{len(list(project.glob('.cache/*')))}"  # a fresh cache: nothing answered yet
        raw["generate"]["openai"].update(base_url=server.base_url, workers=1, timeout=10, cache=cache)
        raw["generate"]["openai"].update(changes.get("openai", {}))
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = tool_env(OPENAI_API_KEY=CANARY)
    done = subprocess.run(["dermsynth", "generate", *args], cwd=project, env=env, capture_output=True, text=True)
    return done.returncode, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("status", "code", "names"),
    [
        (404, "model_not_found", "generate.openai.model"),
        (401, "invalid_api_key", "OPENAI_API_KEY"),
        (403, "permission_denied", "generate.openai.model"),
        (400, "invalid_value", "generate.openai.size"),
    ],
)
def test_an_error_no_retry_can_fix_stops_after_one_request(project, server, status, code, names):
    server.default = error(status, code)
    if status == 400:  # the API names the offending parameter in the error body
        server.default.body["error"]["param"] = "size"
    rc, out = generate(project, server, openai={"model": "gpt-image-2", "workers": 4})
    assert rc == 1
    assert len(server.calls) == 1  # not 16, not `workers`
    assert f"HTTP {status} {code}" in out
    assert "gpt-image-2" in out
    assert names in out
    assert "15 more requests were not sent" in out
    assert "Traceback" not in out
    log = pd.read_csv(project / "build/generated/requests.csv")
    assert log["status"].value_counts().to_dict() == {"not_sent": 15, "fatal_error": 1}


def test_a_budget_below_one_call_is_a_clear_error_without_a_request(project, server):
    rc, out = generate(project, server, openai={"max_usd": 0.01})
    assert rc == 1
    assert server.calls == []
    assert "0 of 16 planned images stored" in out
    assert "budget (generate.openai.max_usd): 16" in out
    assert "max_usd=$0.0100" in out
    assert "Traceback" not in out


def two_errors(server: FakeOpenAI) -> None:
    """The first request gets a body that is not an image; the second is rate-limited until our retries run out."""
    server.push(Action(body=b"<html>oops</html>", content_type="text/html"))
    server.push(*[error(429, "rate_limit_exceeded", retry_after_ms="1")] * 4)


def test_two_errors_of_sixteen_stop_the_run_naming_both_kinds_and_the_log(project, server):
    two_errors(server)
    rc, out = generate(project, server)
    assert rc == 1
    assert "14 of 16 planned images stored" in out
    assert "error malformed response: 1" in out
    assert "error HTTP 429 rate_limit_exceeded: 1" in out
    assert "build/generated/requests.csv" in out
    assert "generate.allow_partial" in out
    assert not (project / "build/generated/manifest.csv").exists()


def test_a_run_of_malformed_answers_stops_like_a_fatal_error(project, server):
    """A 200 whose body is no images response is billed: after 3 in a row the other 13 requests are not sent."""
    server.default = Action(body=b"<html>captive portal</html>", content_type="text/html")
    rc, out = generate(project, server)
    assert rc == 1
    assert len(server.calls) == 3
    (line,) = [x for x in out.splitlines() if x.startswith("dermsynth generate: error:")]
    assert "3 malformed answers in a row, the last: malformed response: body is not a JSON images response" in line
    assert "captive portal" in line  # what was returned
    assert "generate.openai.base_url" in line
    assert "13 more requests were not sent" in line
    log = pd.read_csv(project / "build/generated/requests.csv")
    assert log["status"].value_counts().to_dict() == {"not_sent": 13, "error": 2, "fatal_error": 1}


def test_refusals_are_not_retried_and_the_message_says_how_to_ask_again(project, server):
    server.default = error(400, "moderation_blocked", "Your request was rejected by the safety system")
    cache = {"cache": ".cache/refused"}
    rc, out = generate(project, server, openai=cache)
    assert (rc, len(server.calls)) == (1, 16)
    rc, out = generate(project, server, openai=cache)  # remembered: nothing is asked, nothing paid
    assert (rc, len(server.calls)) == (1, 16)
    (line,) = [x for x in out.splitlines() if x.startswith("dermsynth generate: error:")]
    assert "moderation refusal: 16" in line
    assert "never retried" in line
    assert "`dermsynth cache forget-refusals`" in line
    assert "re-run to retry" not in line  # a re-run would do nothing
    done = subprocess.run(["dermsynth", "cache", "forget-refusals"], cwd=project, env=tool_env(),
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0
    assert "cache forget-refusals (openai): 16 refusals forgotten" in done.stdout
    server.default = Action()
    rc, out = generate(project, server, openai=cache)
    assert (rc, len(server.calls)) == (0, 32)  # asked again, and answered this time


@pytest.mark.slow  # curate, features and two trainings as the CLI runs them
def test_allow_partial_goes_on_and_curate_and_train_report_the_shortfall(project, server):
    two_errors(server)
    rc, out = generate(project, server, allow_partial=True, curate={"keep": CANDIDATES})
    assert rc == 0, out
    assert "WARNING partial set accepted" in out
    log = pd.read_csv(project / "build/generated/requests.csv", dtype={"seed_md5hash": str})
    short = log.loc[log["status"] != "ok", ["seed_md5hash", "seed_group"]].drop_duplicates()
    assert len(short) == 1  # both failures hit the first seed (one worker, plan order)
    md5, group = short.iloc[0]
    assert len(pd.read_csv(project / "build/generated/manifest.csv")) == 14

    run_ok(["dermsynth", "quality"], project)
    out = run_ok(["dermsynth", "curate"], project)
    assert f"{md5} (psoriasis, {group}): {CANDIDATES - 2} of {CANDIDATES}" in out

    run_ok(["dermsynth", "features"], project)
    direction = "light_to_dark" if group == "V-VI" else "dark_to_light"
    arm = ["dermsynth", "train", "--direction", direction, "--condition", "psoriasis", "--arm", "synthetic_and_seed"]
    out = run_ok(arm, project)
    assert f"6 curated images of 'psoriasis' ({group}) of the 8 planned" in out
    assert f"short seeds: {md5} 2 of 4" in out
    done = subprocess.run([*arm, "--dose", "7"], cwd=project, env=tool_env(), capture_output=True, text=True)
    assert done.returncode == 1
    assert "dose 7 needs 7 synthetic images" in done.stdout + done.stderr  # 8, the whole set, is the arm itself
    assert md5 in done.stdout + done.stderr


def test_dry_run_says_how_many_requests_the_budget_covers(project, server):
    rc, out = generate(project, server, "--dry-run", openai={"max_usd": 0.10, "quality": "low"})
    assert rc == 0, out
    assert server.calls == []
    assert "covers 9 of the 16 requests to send" in out  # 0.10 // 0.011 (gpt-image-2 low 1024x1024)
    assert "the run would stop after 9 images" in out


def test_a_hand_run_after_a_bigger_one_leaves_only_its_manifests_files(project):
    assert generate(project, None, generator="tone_transfer")[0] == 0
    assert len(list((project / "build/generated/images").iterdir())) == 16
    rc, out = generate(project, None, generator="tone_transfer", candidates=2, curate={"keep": 2})
    assert rc == 0, out
    manifest = pd.read_csv(project / "build/generated/manifest.csv")
    assert sorted(p.name for p in (project / "build/generated/images").iterdir()) == sorted(manifest["file"])
    assert len(manifest) == 8
