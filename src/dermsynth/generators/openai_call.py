"""One guarded call to the OpenAI images API: the request, its cache key, retries and how errors are judged.

`edit_once` never raises for an API failure: it returns an `Outcome` whose status says what
happened. Errors are sorted by what a retry can do: 429, 5xx, 408/409 and connection errors are
retried with backoff; a moderation refusal is final for that request only; 401, 403, 404 and
other 400s are "fatal" (`fatal_hint` says which parameter to change), because every other request
of the run would fail the same way. The client's own retries are off (`make_client`) so that
every attempt passes through the Budget.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import httpx2
import openai

from dermsynth.core.errors import DermsynthError
from dermsynth.generators.delivery import BLOCKED, ERROR, FATAL, OK, SKIPPED
from dermsynth.generators.openai_budget import Budget, BudgetExceeded, request_price
from dermsynth.generators.openai_images import decode, to_png

log = logging.getLogger("dermsynth.openai")

DEFAULT_MODEL = "gpt-image-2"
_KEY_PATTERN = re.compile(r"sk-[A-Za-z0-9_*\-]{6,}")


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
    hint: str = ""  # for FATAL: what to change (a parameter or the key)


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
    hint: str = ""  # set when no retry can fix the error: the whole run stops


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
        hint = fatal_hint(status, err.code, getattr(err, "param", None))
        if hint:
            return _Attempt(detail, rid, retry=False, billed=False, hint=hint)
        wait = _retry_after(err, policy.max_retry_after) if status == 429 else None
        retry = status in (408, 409, 429) or status >= 500
        return _Attempt(detail, rid, retry=retry, billed=status == 504, wait=wait)
    if isinstance(err, openai.APIConnectionError):
        never_sent = isinstance(err.__cause__, httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout)
        return _Attempt(f"{type(err).__name__}: {err.message}", None, retry=True, billed=not never_sent)
    return _Attempt(f"{type(err).__name__}: {err}", None, retry=False, billed=True)


_PARAMETERS = {"model": "generate.openai.model", "size": "generate.openai.size", "quality": "generate.openai.quality"}


def fatal_hint(status: int, code: str | None, param: str | None = None) -> str:
    """What to change when an HTTP error will fail every request alike; "" when a retry or the next request may work.

    Sending the other requests of a run after a 401, 403, 404 or a 400 other than a moderation
    refusal only repeats the error (and, for a wrong model, can bill nothing but still takes minutes).
    """
    if status == 401:
        return "the API key was refused: check OPENAI_API_KEY (it is read only from the environment)"
    if status == 403:
        return "this key's organisation has no access to the model: change generate.openai.model or ask for access"
    if status == 404:
        if code == "model_not_found":
            return "set generate.openai.model to an image model this key can use (e.g. gpt-image-1)"
        return "the endpoint was not found: check generate.openai.base_url (null for api.openai.com)"
    if status == 429 and code == "insufficient_quota":
        return "the account has no quota left: add credit, or lower generate.candidates"
    if status == 400 and code != "moderation_blocked":
        name = _PARAMETERS.get(param or "", "generate.openai.model, size and quality")
        return f"the request is invalid: check {name}"
    return ""


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

    def done(status: str, attempts: int, detail: str = "", png: bytes | None = None, hint: str = "") -> Outcome:
        rid = ids[-1] if ids else None
        log.info(
            "edit %s cand=%d attempts=%d -> %s request_id=%s %s", key[:12], req.candidate, attempts, status, rid, detail
        )
        return Outcome(status, png, rid, detail, attempts, key, tuple(ids), tuple(cids), hint=hint)

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
        if result.hint:
            return done(FATAL, attempt, result.detail, hint=result.hint)
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
