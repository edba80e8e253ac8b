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

import json
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import openai
from tqdm import tqdm

from dermsynth.core.errors import DermsynthError
from dermsynth.generators.delivery import BLOCKED, ERROR, FATAL, NOT_SENT, OK, SKIPPED
from dermsynth.generators.openai_budget import (
    Budget,
    BudgetExceeded,
    affordable,
    estimate,
    price,
    price_table,
    request_price,
)
from dermsynth.generators.openai_call import (
    DEFAULT_MODEL,
    EditRequest,
    Outcome,
    RetryPolicy,
    cache_key,
    edit_once,
    fatal_hint,
    make_client,
)
from dermsynth.generators.openai_images import ImageCache, box_mask, check_pair, paste_outside_mask

log = logging.getLogger("dermsynth.openai")

__all__ = [
    "BLOCKED",
    "DEFAULT_MODEL",
    "ERROR",
    "FATAL",
    "NOT_SENT",
    "OK",
    "SKIPPED",
    "Budget",
    "BudgetExceeded",
    "EditRequest",
    "ImageCache",
    "Outcome",
    "RetryPolicy",
    "affordable",
    "box_mask",
    "cache_key",
    "dry_run",
    "edit_once",
    "estimate",
    "fatal_hint",
    "make_client",
    "paste_outside_mask",
    "price",
    "run_edits",
]


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
    stored, damage = cache.inspect(key)
    if stored is not None:
        return Outcome(OK, key=key, from_cache=True, path=str(cache.png_path(key)), detail="cached")
    if damage:
        log.warning("cached image %s; it will be requested (and paid for) again", damage)
    blocked = cache.get_blocked(key)
    if blocked is not None:
        return Outcome(BLOCKED, key=key, from_cache=True, request_id=blocked.get("request_id"), detail="cached refusal")
    return None


MALFORMED_LIMIT = 3  # answers in a row whose body is not an images response: the endpoint is not the API
MALFORMED_HINT = (
    "the server does not answer as the OpenAI images API (a proxy, gateway or wrong address?): "
    "check generate.openai.base_url (null for api.openai.com)"
)


class _Stop:
    """Why a run stops starting calls: the budget, or an error that no retry can fix (the first reason wins)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status: str | None = None
        self.detail = ""
        self.malformed = 0  # 2xx answers in a row whose body was no image: each one billed

    def answer(self, out: Outcome) -> Outcome:
        """Count malformed answers in a row; the MALFORMED_LIMIT-th one becomes fatal and stops the run."""
        with self._lock:
            if out.status == OK:
                self.malformed = 0
                return out
            if out.status != ERROR or not out.detail.startswith("malformed response"):
                return out
            self.malformed += 1
            if self.malformed < MALFORMED_LIMIT:
                return out
        detail = f"{MALFORMED_LIMIT} malformed answers in a row, the last: {out.detail}"
        self.set(NOT_SENT, f"not sent: the run stopped at {detail}")
        return replace(out, status=FATAL, detail=detail, hint=MALFORMED_HINT)

    def set(self, status: str, detail: str) -> None:
        with self._lock:
            if self.status is None:
                self.status, self.detail = status, detail

    def outcome(self, key: str) -> Outcome | None:
        return None if self.status is None else Outcome(self.status, key=key, detail=self.detail)


def _run_one(
    req: EditRequest,
    client: openai.OpenAI,
    cache: ImageCache,
    budget: Budget,
    stop: _Stop,
    timeout: float,
    retry: RetryPolicy | None,
) -> Outcome:
    key = cache_key(req)
    stopped = stop.outcome(key)
    if stopped is not None:
        return stopped
    out = stop.answer(edit_once(client, req, timeout, retry=retry, budget=budget))
    if out.status == SKIPPED:
        stop.set(SKIPPED, f"budget reached before this request: {out.detail}")
    elif out.status == FATAL:
        stop.set(NOT_SENT, f"not sent: the run stopped at {out.detail}")
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

    The first uncached request runs alone, so a wrong model, key or size costs one request and
    not ``workers``. Calls stop being started at the first BudgetExceeded (the rest are
    "skipped_budget") or the first error no retry can fix ("fatal_error"; the rest are "not_sent").
    """
    requests = list(requests)
    keys = [cache_key(req) for req in requests]
    outcomes: list[Outcome | None] = [None] * len(requests)
    with cache.lock():
        for i, key in enumerate(keys):
            outcomes[i] = _from_cache(cache, key)
        pending = [i for i, out in enumerate(outcomes) if out is None]
        _preflight([requests[i] for i in pending], keys)
        stop = _Stop()
        bar = tqdm(total=len(requests), initial=len(requests) - len(pending), disable=not progress, desc="edits")
        tally = {"calls": 0, "kept": sum(out is not None and out.status == OK for out in outcomes)}

        def finish(i: int, out: Outcome) -> None:
            outcomes[i] = out
            tally["calls"] += out.attempts
            tally["kept"] += out.status == OK
            bar.set_postfix(calls=tally["calls"], kept=tally["kept"], usd=f"{budget.spent_usd:.3f}", refresh=False)
            bar.update()

        with bar, ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            try:
                if pending:
                    finish(pending[0], _run_one(requests[pending[0]], client, cache, budget, stop, timeout, retry))
                futures = {
                    pool.submit(_run_one, requests[i], client, cache, budget, stop, timeout, retry): i
                    for i in pending[1:]
                }
                for future in as_completed(futures):
                    finish(futures[future], future.result())
            except BaseException:
                stop.set(SKIPPED, "interrupted")  # calls in flight finish and are cached (they are paid)
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    done = [out for out in outcomes if out is not None]
    counts = Counter(out.status for out in done)
    log.info("run: %d requests, %d calls, $%.4f spent, %s", len(done), tally["calls"], budget.spent_usd, dict(counts))
    if counts[SKIPPED]:
        log.warning(
            "budget of $%.2f reached: %d requests not run (stored images are kept)", budget.max_usd, counts[SKIPPED]
        )
    return done


def dry_run(requests: Sequence[EditRequest], cache: ImageCache | None = None, max_usd: float | None = None) -> str:
    """Every prompt, the number of calls and images and their cost from the price table; calls nothing.

    With a ``cache``, requests already answered (or refused) are counted as free. With
    ``max_usd``, says how many of the remaining requests the budget covers.
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
    if max_usd is not None:
        fits = affordable(todo, max_usd)
        if fits < len(todo):
            lines.append(
                f"WARNING: generate.openai.max_usd ${max_usd:.2f} covers {fits} of the {len(todo)} requests to send: "
                f"the run would stop after {fits} images; raise max_usd to at least ${plan['usd']:.2f} "
                "or lower generate.candidates"
            )
        else:
            lines.append(f"budget: generate.openai.max_usd ${max_usd:.2f} covers all {len(todo)} requests")
    return "\n".join(lines)
