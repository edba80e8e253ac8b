"""Paid image edits through the OpenAI API, built so that a run cannot overspend or pay twice.

The study's synthetic images are made by editing a square crop of a real seed image with a GPT
image model (`client.images.edit`, mask alpha = 0 where the model may edit). Each call costs
money, so this module puts four guards around it:

- a content-addressed cache (`cache_key` over model, prompt, image, mask, size, quality and
  candidate index): a request already answered makes no call, also after a crash or a kill,
  and a moderation refusal is remembered so a rerun does not pay for it again;
- a `Budget` reserved before every HTTP attempt from the one price table
  (resources/image_prices.yaml): a run stops before the call that would pass `max_usd`;
- bounded retries of our own, with the client's retries off by default (`make_client`): an
  attempt the client retried behind our back would be invisible to the Budget, and a retry
  after a timeout can be billed twice (there is no idempotency key on image calls);
- the key is read only from OPENAI_API_KEY by the client and never written, printed or logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import httpx2
import openai
from tqdm import tqdm

from dermsynth.errors import DermsynthError
from dermsynth.openai_budget import Budget, BudgetExceeded, estimate, price, price_table, request_price
from dermsynth.openai_images import ImageCache, box_mask, check_pair, decode, paste_outside_mask, to_png

log = logging.getLogger("dermsynth.openai")

DEFAULT_MODEL = "gpt-image-2"
OK, BLOCKED, ERROR, SKIPPED = "ok", "moderation_blocked", "error", "skipped_budget"
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_*\-]{6,}")

__all__ = [
    "DEFAULT_MODEL",
    "Budget",
    "BudgetExceeded",
    "EditRequest",
    "ImageCache",
    "Outcome",
    "RetryPolicy",
    "box_mask",
    "cache_key",
    "dry_run",
    "edit_once",
    "estimate",
    "make_client",
    "paste_outside_mask",
    "price",
    "run_edits",
]


@dataclass(frozen=True)
class EditRequest:
    """One image edit; ``meta`` (seed md5, condition, ...) travels into the cache record but not the key."""

    prompt: str
    image: bytes = field(repr=False)
    mask: bytes = field(repr=False)
    candidate: int = 0
    model: str = DEFAULT_MODEL
    size: str = "1024x1024"
    quality: str = "medium"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def cache_key(req: EditRequest) -> str:
    """sha256 over everything that changes the paid answer: model, prompt, image, mask, size, quality, candidate."""
    digest = hashlib.sha256(b"dermsynth-edit-v1")
    parts = [req.model.encode(), req.prompt.encode(), req.image, req.mask, req.size.encode(), req.quality.encode()]
    for part in [*parts, str(int(req.candidate)).encode()]:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


# ----- client and one call -----------------------------------------------------------------------


def make_client(base_url: str | None = None, timeout: float = 300.0, max_retries: int = 0) -> openai.OpenAI:
    """An OpenAI client whose key comes only from OPENAI_API_KEY; DermsynthError before any work if unset.

    ``max_retries`` defaults to 0 so every HTTP attempt goes through `edit_once`'s loop and the
    Budget; a positive value stacks the client's own retries under ours (those are not counted).
    """
    if not os.environ.get("OPENAI_API_KEY", "").strip():
        raise DermsynthError("OPENAI_API_KEY is not set: export it in the environment (it is never read from a file)")
    return openai.OpenAI(base_url=base_url, timeout=timeout, max_retries=max_retries)


@dataclass(frozen=True)
class RetryPolicy:
    """Our retries on top of the client's: 429, 5xx, 408/409, timeouts and connection errors."""

    max_attempts: int = 4
    base_delay: float = 2.0
    max_delay: float = 60.0
    max_retry_after: float = 120.0


@dataclass(frozen=True)
class Outcome:
    """What became of one request. ``png`` is set by `edit_once`; `run_edits` gives ``path`` instead."""

    status: str
    png: bytes | None = field(default=None, repr=False)
    request_id: str | None = None
    detail: str = ""
    attempts: int = 0
    key: str = ""
    request_ids: tuple[str, ...] = ()
    client_request_ids: tuple[str, ...] = ()
    from_cache: bool = False
    path: str | None = None


@dataclass(frozen=True)
class _Attempt:
    """How one HTTP attempt ended: with an image (``png``) or a failure, and whether it may have been billed."""

    detail: str
    request_id: str | None
    retry: bool = False
    billed: bool = True
    wait: float | None = None
    blocked: bool = False
    png: bytes | None = None


def _header(err: openai.APIStatusError, name: str) -> str | None:
    return err.response.headers.get(name) if getattr(err, "response", None) is not None else None


def _retry_after(err: openai.APIStatusError, cap: float) -> float | None:
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = _header(err, name)
        try:
            seconds = float(value) / scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and seconds >= 0:
            return min(seconds, cap)
    return None


def _classify(err: openai.APIError, policy: RetryPolicy) -> _Attempt:
    """Whether a failed attempt is retried and whether the API may have billed it."""
    if isinstance(err, openai.APIStatusError):
        status, rid = err.status_code, err.request_id or _header(err, "x-request-id")
        detail = f"HTTP {status} {err.code or ''}: {err.message}".replace(" :", ":")
        if isinstance(err, openai.BadRequestError) and err.code == "moderation_blocked":
            return _Attempt(detail, rid, retry=False, billed=False, blocked=True)
        wait = _retry_after(err, policy.max_retry_after) if status == 429 else None
        retry = status in (408, 409, 429) or status >= 500
        return _Attempt(detail, rid, retry=retry, billed=status == 504, wait=wait)
    if isinstance(err, openai.APIConnectionError):
        never_sent = isinstance(err.__cause__, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)
        return _Attempt(f"{type(err).__name__}: {err.message}", None, retry=True, billed=not never_sent)
    return _Attempt(f"{type(err).__name__}: {err}", None, retry=False, billed=True)


def _redact(text: str) -> str:
    """Hide anything shaped like an API key (a server may echo one in an error message)."""
    return _KEY_PATTERN.sub("sk-[REDACTED]", text)


def _backoff(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.base_delay * 2 ** (attempt - 1), policy.max_delay) * (1 - 0.25 * random.random())


def _decode_response(resp: Any) -> bytes:
    """PNG bytes of the first image of an ImagesResponse; DermsynthError for a malformed body."""
    if isinstance(resp, str | bytes):
        raise DermsynthError(f"body is not a JSON images response: {resp[:60]!r}")
    data = getattr(resp, "data", None)
    if not data:
        raise DermsynthError("response has no data")
    b64 = getattr(data[0], "b64_json", None)
    if not isinstance(b64, str) or not b64:
        raise DermsynthError("response data[0] has no b64_json")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as err:
        raise DermsynthError(f"b64_json is not valid base64 ({err})") from err
    image = decode(raw, "b64_json")
    return raw if raw.startswith(b"\x89PNG") else to_png(image)


def _call(client: openai.OpenAI, req: EditRequest, timeout: float, client_request_id: str) -> Any:
    return client.images.with_raw_response.edit(
        model=req.model,
        prompt=req.prompt,
        image=("image.png", req.image, "image/png"),
        mask=("mask.png", req.mask, "image/png"),
        n=1,
        size=req.size,
        quality=req.quality,
        timeout=timeout,
        extra_headers={"X-Client-Request-Id": client_request_id},
    )


def _attempt(client: openai.OpenAI, req: EditRequest, timeout: float, cid: str, policy: RetryPolicy) -> _Attempt:
    try:
        raw = _call(client, req, timeout, cid)
    except openai.APIError as err:
        return _classify(err, policy)
    try:  # a 2xx answer was billed whatever its body holds
        return _Attempt("", raw.request_id, png=_decode_response(raw.parse()))
    except (DermsynthError, ValueError, TypeError, openai.APIError) as err:
        return _Attempt(f"malformed response: {err}", raw.request_id)


class _Unlimited:
    def reserve(self, usd: float) -> None: ...
    def commit(self, usd: float) -> None: ...
    def release(self, usd: float) -> None: ...


def edit_once(
    client: openai.OpenAI,
    req: EditRequest,
    timeout: float = 300.0,
    *,
    retry: RetryPolicy | None = None,
    budget: Budget | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Outcome:
    """One request, retried within ``retry``; never raises for an API failure, returns an Outcome.

    With a ``budget`` every attempt is reserved first; if that fails the status is "skipped_budget".
    The raw edited image is returned (no paste-back: that is `run_edits`' job).
    """
    policy, key = retry or RetryPolicy(), cache_key(req)
    ledger, usd = (budget, request_price(req)) if budget is not None else (_Unlimited(), 0.0)
    ids: list[str] = []
    cids: list[str] = []

    def done(status: str, attempts: int, detail: str = "", png: bytes | None = None) -> Outcome:
        rid = ids[-1] if ids else None
        log.info(
            "edit %s cand=%d attempts=%d -> %s request_id=%s %s", key[:12], req.candidate, attempts, status, rid, detail
        )
        return Outcome(status, png, rid, detail, attempts, key, tuple(ids), tuple(cids))

    for attempt in range(1, policy.max_attempts + 1):
        try:
            ledger.reserve(usd)
        except BudgetExceeded as err:
            return done(SKIPPED, attempt - 1, str(err))
        cids.append(f"dermsynth-{key[:32]}-{attempt}")
        result = _attempt(client, req, timeout, cids[-1], policy)
        result = replace(result, detail=_redact(result.detail))
        (ledger.commit if result.billed else ledger.release)(usd)
        if result.request_id:
            ids.append(result.request_id)
        if result.png is not None:
            return done(OK, attempt, png=result.png)
        if result.blocked:
            return done(BLOCKED, attempt, result.detail)
        if not result.retry or attempt == policy.max_attempts:
            return done(ERROR, attempt, result.detail)
        wait = result.wait if result.wait is not None else _backoff(policy, attempt)
        log.warning(
            "edit %s attempt %d failed (%s, request_id=%s); retry in %.2fs",
            key[:12],
            attempt,
            result.detail,
            result.request_id,
            wait,
        )
        sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


# ----- a whole run -------------------------------------------------------------------------------


def _record(req: EditRequest, outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "model": req.model,
        "prompt": req.prompt,
        "size": req.size,
        "quality": req.quality,
        "candidate": req.candidate,
        "request_id": outcome.request_id,
        "request_ids": list(outcome.request_ids),
        "client_request_ids": list(outcome.client_request_ids),
        "attempts": outcome.attempts,
        "detail": outcome.detail,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "meta": req.meta,
    }


def _preflight(requests: Sequence[EditRequest], keys: Sequence[str]) -> None:
    """Everything that could fail after paying is checked before the first call."""
    dupes = [key for key, count in Counter(keys).items() if count > 1]
    if dupes:
        raise DermsynthError(f"{len(dupes)} requests appear twice (same content and candidate), e.g. {dupes[0][:12]}")
    for req in requests:
        request_price(req)
        check_pair(req.image, req.mask)
        try:
            json.dumps(req.meta)
        except (TypeError, ValueError) as err:
            raise DermsynthError(f"meta of request candidate {req.candidate} is not JSON: {err}") from err


def _from_cache(cache: ImageCache, key: str) -> Outcome | None:
    if cache.get(key) is not None:
        return Outcome(OK, key=key, from_cache=True, path=str(cache.png_path(key)), detail="cached")
    blocked = cache.get_blocked(key)
    if blocked is not None:
        return Outcome(BLOCKED, key=key, from_cache=True, request_id=blocked.get("request_id"), detail="cached refusal")
    return None


def _run_one(
    req: EditRequest,
    client: openai.OpenAI,
    cache: ImageCache,
    budget: Budget,
    stop: threading.Event,
    timeout: float,
    retry: RetryPolicy | None,
) -> Outcome:
    key = cache_key(req)
    if stop.is_set():
        return Outcome(SKIPPED, key=key, detail="budget reached before this request")
    out = edit_once(client, req, timeout, retry=retry, budget=budget)
    if out.status == SKIPPED:
        stop.set()
    elif out.status == BLOCKED:
        cache.put_blocked(key, _record(req, out))
    elif out.status == OK and out.png is not None:
        try:
            cache.put(key, paste_outside_mask(req.image, out.png, req.mask), _record(req, out))
        except DermsynthError as err:
            return replace(out, status=ERROR, png=None, detail=f"paste-back failed: {err}")
        return replace(out, png=None, path=str(cache.png_path(key)))
    return replace(out, png=None)


def run_edits(
    requests: Sequence[EditRequest],
    client: openai.OpenAI,
    cache: ImageCache,
    budget: Budget,
    *,
    workers: int = 4,
    timeout: float = 300.0,
    progress: bool = True,
    retry: RetryPolicy | None = None,
) -> list[Outcome]:
    """Outcomes in the order of ``requests``; cached ones make no call, the rest run ``workers`` at a time.

    Stops starting calls at the first BudgetExceeded; the requests not run are "skipped_budget".
    """
    requests = list(requests)
    keys = [cache_key(req) for req in requests]
    outcomes: list[Outcome | None] = [None] * len(requests)
    with cache.lock():
        for i, key in enumerate(keys):
            outcomes[i] = _from_cache(cache, key)
        pending = [i for i, out in enumerate(outcomes) if out is None]
        _preflight([requests[i] for i in pending], keys)
        stop = threading.Event()
        bar = tqdm(total=len(requests), initial=len(requests) - len(pending), disable=not progress, desc="edits")
        kept = sum(out is not None and out.status == OK for out in outcomes)
        calls = 0
        with bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = {
                pool.submit(_run_one, requests[i], client, cache, budget, stop, timeout, retry): i for i in pending
            }
            try:
                for future in as_completed(futures):
                    out = outcomes[futures[future]] = future.result()
                    calls, kept = calls + out.attempts, kept + (out.status == OK)
                    bar.set_postfix(calls=calls, kept=kept, usd=f"{budget.spent_usd:.3f}", refresh=False)
                    bar.update()
            except BaseException:
                stop.set()  # calls in flight finish and are cached (they are paid); the rest are not started
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    done = [out for out in outcomes if out is not None]
    counts = Counter(out.status for out in done)
    log.info("run: %d requests, %d calls, $%.4f spent, %s", len(done), calls, budget.spent_usd, dict(counts))
    if counts[SKIPPED]:
        log.warning(
            "budget of $%.2f reached: %d requests not run (stored images are kept)", budget.max_usd, counts[SKIPPED]
        )
    return done


def dry_run(requests: Sequence[EditRequest], cache: ImageCache | None = None) -> str:
    """Every prompt, the number of calls and images and their cost from the price table; calls nothing.

    With a ``cache``, requests already answered (or refused) are counted as free.
    """
    requests = list(requests)
    todo = [req for req in requests if cache is None or _from_cache(cache, cache_key(req)) is None]
    plan = estimate(todo)
    lines = [f"dry run: {len(requests)} requests, {len(requests) - len(todo)} already in the cache"]
    prompts = Counter(req.prompt for req in todo)
    lines.append(f"prompts ({len(prompts)} distinct):")
    lines += [f"  {count:>5} x {prompt}" for prompt, count in sorted(prompts.items())]
    for (model, quality, size), count in sorted(Counter((r.model, r.quality, r.size) for r in todo).items()):
        usd = price(model, quality, size)
        lines.append(f"  {model} {quality} {size}: {count} x ${usd:.4f} = ${count * usd:.4f}")
        note = price_table()[model].get("note")
        if note:
            lines.append(f"  note on {model}: {note}")
    lines.append(f"calls: {plan['calls']}  images: {plan['images']}  estimated cost: ${plan['usd']:.4f}")
    lines.append("(output images only; input image/prompt tokens are billed on top: leave headroom in max_usd)")
    return "\n".join(lines)
