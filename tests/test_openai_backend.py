"""dermsynth.generators.openai_backend against a fake OpenAI server on 127.0.0.1, through the real openai client.

Every test counts the calls the server received: each one would be a paid image.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermsynth.core.errors import DermsynthError
from dermsynth.generators import openai_backend as ob
from dermsynth.generators.openai_images import edit_area, temp_files
from tests.fake_openai import CANARY, Action, FakeOpenAI, error, inverted, plan, seed_png

REPO = Path(__file__).resolve().parents[1]
LOW = 0.011  # gpt-image-2 / low / 1024x1024 in resources/image_prices.yaml
FAST = ob.RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05, max_retry_after=3.0)
SIZE = 64
BOX = (16, 16, 48, 48)


@pytest.fixture
def server():
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture
def client(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    return ob.make_client(base_url=server.base_url, timeout=5)


def request(prompt: str = "psoriasis plaque on dark skin", candidate: int = 0, seed: int = 0, **kw) -> ob.EditRequest:
    image, mask = seed_png(seed, SIZE), ob.box_mask(SIZE, BOX)
    return ob.EditRequest(prompt, image, mask, candidate, quality=kw.pop("quality", "low"), meta={"seed": seed}, **kw)


def pixels(png_bytes: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(png_bytes)) as im:
        return np.asarray(im.convert("RGB"))


def run(reqs, client, tmp_path: Path, max_usd: float = 10.0, **kw) -> tuple[list[ob.Outcome], ob.Budget]:
    budget = ob.Budget(max_usd)
    kw = {"workers": 4, "timeout": 5, "progress": False, "retry": FAST, **kw}
    return ob.run_edits(reqs, client, ob.ImageCache(tmp_path / "cache"), budget, **kw), budget


# ----- one call ------------------------------------------------------------------------------------


def test_success_returns_the_edited_image_and_request_id(server: FakeOpenAI, client) -> None:
    req = request()
    out = ob.edit_once(client, req, timeout=5, retry=FAST)
    assert (out.status, out.attempts, out.request_id) == ("ok", 1, "req_fake_1")
    assert np.array_equal(pixels(out.png), pixels(inverted(req.image)))
    [call] = server.calls
    assert (call.prompt, call.model, call.n, call.size, call.quality) == (
        req.prompt,
        "gpt-image-2",
        "1",
        "1024x1024",
        "low",
    )
    assert call.has_mask
    assert call.authorized
    assert call.key32 == ob.cache_key(req)[:32]


def test_429_honours_retry_after_then_succeeds(server: FakeOpenAI, client) -> None:
    server.push(error(429, "rate_limit_exceeded", "slow down", retry_after="1"))
    budget = ob.Budget(1.0)
    start = time.monotonic()
    out = ob.edit_once(client, request(), timeout=5, retry=FAST, budget=budget)
    assert time.monotonic() - start >= 1.0  # retry-after, not the 0.01 s backoff
    assert (out.status, out.attempts, len(server.calls), len(server.successes())) == ("ok", 2, 2, 1)
    assert out.request_ids == ("req_fake_1", "req_fake_2")
    assert budget.spent_usd == pytest.approx(LOW)  # the 429 was not billed


def test_500_then_success(server: FakeOpenAI, client) -> None:
    server.push(error(500, None, "The server had an error"))
    budget = ob.Budget(1.0)
    out = ob.edit_once(client, request(), timeout=5, retry=FAST, budget=budget)
    assert (out.status, out.attempts, len(server.calls), len(server.successes())) == ("ok", 2, 2, 1)
    assert budget.spent_usd == pytest.approx(LOW)


def test_stalled_response_times_out_then_succeeds_and_counts_as_spent(server: FakeOpenAI, client) -> None:
    server.push(Action(stall=1.5))
    budget = ob.Budget(1.0)
    out = ob.edit_once(client, request(), timeout=0.4, retry=FAST, budget=budget)
    assert (out.status, out.attempts, len(server.calls)) == ("ok", 2, 2)
    assert out.request_ids == ("req_fake_2",)
    assert len(out.client_request_ids) == 2
    assert budget.spent_usd == pytest.approx(2 * LOW)  # a timeout may have been billed: counted


def test_retries_are_bounded(server: FakeOpenAI, client) -> None:
    server.push(*[error(503, None, "overloaded")] * 5)
    out = ob.edit_once(client, request(), timeout=5, retry=FAST)
    assert (out.status, out.attempts, len(server.calls)) == ("error", 3, 3)
    assert "503" in out.detail
    assert out.request_ids == ("req_fake_1", "req_fake_2", "req_fake_3")


def test_other_4xx_is_an_error_and_not_retried(server: FakeOpenAI, client) -> None:
    server.push(error(413, "payload_too_large", "Image too large"))
    out = ob.edit_once(client, request(), timeout=5, retry=FAST)
    assert (out.status, out.attempts, len(server.calls), out.request_id) == ("error", 1, 1, "req_fake_1")
    assert out.hint == ""


@pytest.mark.parametrize(
    ("status", "code", "hint"),
    [
        (400, "invalid_value", "generate.openai"),
        (401, "invalid_api_key", "OPENAI_API_KEY"),
        (403, "permission_denied", "generate.openai.model"),
        (404, "model_not_found", "generate.openai.model"),
        (404, None, "generate.openai.base_url"),
        (429, "insufficient_quota", "quota"),
    ],
)
def test_an_error_no_retry_can_fix_is_fatal_with_a_hint(server: FakeOpenAI, client, status, code, hint) -> None:
    server.push(error(status, code, "fake"))
    out = ob.edit_once(client, request(), timeout=5, retry=FAST)
    assert (out.status, out.attempts, len(server.calls)) == ("fatal_error", 1, 1)
    assert hint in out.hint


def test_a_fatal_error_stops_the_run_after_one_request(server: FakeOpenAI, client, tmp_path: Path) -> None:
    server.default = error(404, "model_not_found", "The model `gpt-image-9` does not exist.")
    outcomes, budget = run([request(candidate=k) for k in range(12)], client, tmp_path, workers=4)
    assert len(server.calls) == 1  # the first request runs alone: `workers` would have sent 4
    assert [o.status for o in outcomes].count("fatal_error") == 1
    assert [o.status for o in outcomes].count("not_sent") == 11
    assert "HTTP 404 model_not_found" in outcomes[1].detail  # the requests not sent say why
    assert budget.spent_usd == 0


def test_moderation_blocked_is_recorded_and_never_retried(server: FakeOpenAI, client, tmp_path: Path) -> None:
    server.push(error(400, "moderation_blocked", "Your request was rejected by the safety system"))
    out = ob.edit_once(client, request(), timeout=5, retry=FAST)
    assert (out.status, out.attempts, len(server.calls), out.request_id) == ("moderation_blocked", 1, 1, "req_fake_1")

    server.push(error(400, "moderation_blocked", "Your request was rejected by the safety system"))
    [first], budget = run([request()], client, tmp_path)
    assert (first.status, len(server.calls), budget.spent_usd) == ("moderation_blocked", 2, 0.0)
    [again], _ = run([request()], client, tmp_path)  # the refusal is remembered: no second paid attempt
    assert (again.status, again.attempts, again.from_cache, len(server.calls)) == ("moderation_blocked", 0, True, 2)


@pytest.mark.parametrize(
    "body",
    [
        {"created": 1, "data": [{}]},
        {"created": 1, "data": [{"b64_json": "%%% not base64 %%%"}]},
        {"created": 1, "data": [{"b64_json": base64.b64encode(b"not a png at all").decode()}]},
        {"created": 1},
        b"<html>gateway</html>",
    ],
    ids=["no-b64", "bad-base64", "not-an-image", "no-data", "html"],
)
def test_malformed_body_is_an_error_not_a_crash(server: FakeOpenAI, client, body) -> None:
    server.push(Action(body=body, content_type="text/html" if isinstance(body, bytes) else "application/json"))
    budget = ob.Budget(1.0)
    out = ob.edit_once(client, request(), timeout=5, retry=FAST, budget=budget)
    assert (out.status, out.attempts, len(server.calls), out.png) == ("error", 1, 1, None)
    assert "malformed" in out.detail
    assert out.request_id == "req_fake_1"
    assert budget.spent_usd == pytest.approx(LOW)  # a 200 is billed whatever its body


# ----- pixels ----------------------------------------------------------------------------------------


def test_box_mask_marks_the_box_with_alpha_zero() -> None:
    area = edit_area(ob.box_mask((40, 30), (5, 10, 25, 20)))
    assert area.shape == (30, 40)
    assert area.sum() == 20 * 10
    assert area[10:20, 5:25].all()
    with pytest.raises(DermsynthError):
        ob.box_mask(16, (8, 8, 20, 12))


@pytest.mark.parametrize("scale", [1, 2], ids=["same-size", "returned-larger"])
def test_paste_back_keeps_the_original_outside_the_mask(server: FakeOpenAI, client, tmp_path: Path, scale) -> None:
    server.push(Action(scale=scale))  # the server changes EVERY pixel, and may answer at another size
    req = request()
    [out], _ = run([req], client, tmp_path)
    assert (out.status, len(server.successes())) == ("ok", 1)
    result, original = pixels(Path(out.path).read_bytes()), pixels(req.image)
    inside = edit_area(req.mask)
    assert result.shape == original.shape
    assert np.array_equal(result[~inside], original[~inside])
    if scale == 1:
        assert np.array_equal(result[inside], 255 - original[inside])
    else:
        assert (result[inside] != original[inside]).mean() > 0.9


# ----- cache, plan, budget ---------------------------------------------------------------------


def test_cache_rerun_makes_no_calls_and_a_change_makes_one(server: FakeOpenAI, client, tmp_path: Path) -> None:
    reqs = [request(candidate=k, seed=s) for s in range(2) for k in range(3)]
    first, _ = run(reqs, client, tmp_path)
    assert [o.status for o in first] == ["ok"] * 6
    assert len(server.calls) == 6
    again, budget = run(reqs, client, tmp_path)
    assert all(o.status == "ok" and o.from_cache and o.attempts == 0 for o in again)
    assert len(server.calls) == 6
    assert budget.spent_usd == 0
    [new_prompt], _ = run([replace(reqs[0], prompt="psoriasis, more scale")], client, tmp_path)
    [new_candidate], _ = run([replace(reqs[0], candidate=3)], client, tmp_path)
    assert (new_prompt.attempts, new_candidate.attempts, len(server.calls)) == (1, 1, 8)
    assert len(ob.ImageCache(tmp_path / "cache").keys()) == 8


def test_cache_ignores_incomplete_or_corrupt_entries(tmp_path: Path) -> None:
    cache = ob.ImageCache(tmp_path)
    good = seed_png(1, 8)
    cache.put("a" * 64, good, {"prompt": "p"})
    assert cache.get("a" * 64) == good
    cache.png_path("b" * 64).write_bytes(good)  # killed between the png and its json
    cache.put("c" * 64, good, {"prompt": "p"})
    cache.png_path("c" * 64).write_bytes(good[:40])  # truncated png under a complete record
    assert cache.get("b" * 64) is None
    assert cache.get("c" * 64) is None
    assert cache.keys() == ["a" * 64]


def test_a_damaged_cached_image_is_named_before_it_is_paid_for_again(
    server: FakeOpenAI, client, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    [first], _ = run([request()], client, tmp_path)
    cache = ob.ImageCache(tmp_path / "cache")
    png = cache.png_path(first.key)
    png.write_bytes(png.read_bytes()[:40])  # truncated on disk after it was stored
    with caplog.at_level(logging.WARNING, logger="dermsynth.openai"):
        [again], _ = run([request()], client, tmp_path)
    assert (again.status, again.from_cache, len(server.calls)) == ("ok", False, 2)
    (warning,) = [r.getMessage() for r in caplog.records if "cached image" in r.getMessage()]
    assert str(png) in warning
    assert "sha256 differs" in warning
    assert "requested (and paid for) again" in warning
    assert cache.inspect(first.key) == (cache.get(first.key), "")  # stored afresh


def test_a_second_run_on_the_same_cache_is_refused(server: FakeOpenAI, client, tmp_path: Path) -> None:
    with ob.ImageCache(tmp_path / "cache").lock(), pytest.raises(DermsynthError, match="another run"):
        run([request()], client, tmp_path)
    assert server.calls == []


def test_dry_run_cost_is_calls_times_the_table_price(server: FakeOpenAI, client, tmp_path: Path) -> None:
    reqs = [request(f"prompt {i % 2}", candidate=i, quality="medium") for i in range(5)]
    assert ob.estimate(reqs) == {
        "calls": 5,
        "images": 5,
        "usd": pytest.approx(5 * ob.price("gpt-image-2", "medium", "1024x1024")),
    }
    text = ob.dry_run(reqs)
    assert "prompt 0" in text
    assert "prompt 1" in text
    assert "calls: 5  images: 5" in text
    assert f"${5 * 0.042:.4f}" in text
    assert "UNVERIFIED" in text
    assert server.calls == []
    run(reqs[:2], client, tmp_path)
    assert "calls: 3  images: 3" in ob.dry_run(reqs, ob.ImageCache(tmp_path / "cache"))


def test_dry_run_compares_the_estimate_with_the_budget() -> None:
    reqs = [request(candidate=k) for k in range(16)]  # 16 x $0.011
    assert ob.affordable(reqs, 0.10) == 9
    assert ob.affordable(reqs, 0.011) == 1
    assert ob.affordable(reqs, 0.0109) == 0
    assert "covers 9 of the 16 requests to send: the run would stop after 9 images" in ob.dry_run(reqs, max_usd=0.1)
    assert "covers all 16 requests" in ob.dry_run(reqs, max_usd=16 * LOW)


def test_unknown_price_is_an_error_before_any_call(server: FakeOpenAI, client, tmp_path: Path) -> None:
    with pytest.raises(DermsynthError, match="no price"):
        ob.price("gpt-image-2", "medium", "999x999")
    with pytest.raises(DermsynthError, match="no price"):
        ob.price("dall-e-2", "standard", "1024x1024")
    with pytest.raises(DermsynthError, match="no price"):
        run([request(), request(candidate=1, size="999x999")], client, tmp_path)
    assert server.calls == []


def test_budget_stops_before_the_call_that_would_exceed_it(server: FakeOpenAI, client, tmp_path: Path) -> None:
    reqs = [request(candidate=k) for k in range(10)]
    max_usd = 0.05  # floor(0.05 / 0.011) = 4 calls
    outcomes, budget = run(reqs, client, tmp_path, max_usd=max_usd)
    statuses = [o.status for o in outcomes]
    assert len(server.calls) == int(max_usd // LOW) == 4
    assert statuses.count("ok") == 4
    assert statuses.count("skipped_budget") == 6
    assert budget.spent_usd == pytest.approx(4 * LOW)
    assert budget.spent_usd <= max_usd


def test_budget_is_exact_across_threads() -> None:
    budget, granted = ob.Budget(1.0), []

    def worker() -> None:
        for _ in range(50):
            try:
                budget.reserve(0.011)
            except ob.BudgetExceeded:
                return
            granted.append(1)
            budget.commit(0.011)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 90
    assert budget.spent_usd == pytest.approx(0.99)
    budget.reserve(0.005)
    budget.release(0.005)
    assert budget.spent_usd == pytest.approx(0.99)


# ----- secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "], ids=["unset", "empty", "blank"])
def test_missing_key_fails_before_any_request(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, value) -> None:
    if value is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", value)
    with pytest.raises(DermsynthError, match="OPENAI_API_KEY"):
        ob.make_client(base_url=server.base_url)
    assert server.calls == []


def test_key_is_never_written_printed_or_logged(server: FakeOpenAI, client, tmp_path: Path, caplog, capfd) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, the openai client's and httpx2's included
    echo = error(401, "invalid_api_key", f"Incorrect API key provided: {CANARY}")  # worst case: a server echoes it
    first = [error(429, "rate_limit_exceeded", retry_after="0"), error(400, "moderation_blocked"), Action(stall=1)]
    server.push(*first, *[Action()] * 4, echo)  # the echo (a fatal 401) answers the last request
    reqs = [request(candidate=k) for k in range(6)]
    outcomes, _ = run(reqs, client, tmp_path, timeout=0.5, progress=True, workers=1)
    print(ob.dry_run(reqs, ob.ImageCache(tmp_path / "cache")), outcomes)
    assert [o.status for o in outcomes].count("ok") == 4
    assert {o.status for o in outcomes} == {"ok", "moderation_blocked", "fatal_error"}
    assert "sk-[REDACTED]" in caplog.text
    assert all(call.authorized for call in server.calls)  # the key WAS sent, to the server only
    captured = capfd.readouterr()
    assert "calls=" in captured.err
    assert "req_fake_" in caplog.text
    for text in (captured.out, captured.err, caplog.text):
        assert CANARY not in text  # ...without the key
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 6
    for path in written:
        assert CANARY.encode() not in path.read_bytes(), path


# ----- kill and resume ------------------------------------------------------------------------------


def test_kill_and_resume_pays_once_per_stored_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(delay=0.01)
    folder, requests = tmp_path / "cache", plan()
    assert len(requests) == 3 * 16 * 8 == 384
    env = {**os.environ, "OPENAI_API_KEY": CANARY}
    port = str(server.server.server_address[1])
    with open(tmp_path / "child.err", "wb") as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_openai", port, str(folder)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        deadline = time.monotonic() + 40
        while child.poll() is None and len(list(folder.glob("*.json"))) < 60 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    server.wait_quiet()  # requests the child sent before it died are still phase 1
    before = set(ob.ImageCache(folder).keys())
    assert 0 < len(before) < 384

    server.phase = 2
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    client = ob.make_client(base_url=server.base_url, timeout=5)
    outcomes = ob.run_edits(requests, client, ob.ImageCache(folder), ob.Budget(100), workers=4, progress=False)
    server.close()

    assert [o.status for o in outcomes].count("ok") == 384
    again = [c for c in server.calls if c.phase == 2]
    # one call per image not yet stored, none for the rest
    assert len(again) == 384 - len(before), (len(again), len(before), [c.status for c in again if c.status != 200])
    assert not {c.key32 for c in again} & {key[:32] for key in before}
    assert len(ob.ImageCache(folder).keys()) == 384 == len(list(folder.glob("*.png")))
    assert temp_files(folder) == []
    assert CANARY.encode() not in (tmp_path / "child.err").read_bytes()
