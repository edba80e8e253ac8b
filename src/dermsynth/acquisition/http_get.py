"""HTTP GET for the image download: one request, then retries with backoff, every failure a status.

Kept apart from acquire.py so that the network rules (what is retried, how long to wait, what
is too large, which redirects are followed) sit in one small place, standard library only.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

HTTP_SCHEMES = ("http", "https")
MAX_RETRY_AFTER = 30.0
MAX_BACKOFF = 60.0
USER_AGENT = "dermsynth/0.1 (Fitzpatrick 17k image fetch)"


@dataclass(frozen=True)
class Reply:
    """One HTTP attempt: a body (status "") or a failure status, and whether trying again may help."""

    status: str
    detail: str = ""
    body: bytes = b""
    content_type: str = ""
    retryable: bool = False
    retry_after: float | None = None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow a redirect only to another http(s) URL (urllib would also follow one to ftp)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: Any, code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        if urllib.parse.urlsplit(newurl).scheme.lower() not in HTTP_SCHEMES:
            raise urllib.error.HTTPError(newurl, code, f"redirect to non-http(s) URL {newurl}", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _retry_after(headers: Any) -> float | None:
    """A numeric Retry-After header in seconds, capped at MAX_RETRY_AFTER; None if absent or a date."""
    value = str(headers.get("Retry-After", "") if headers is not None else "").strip()
    return min(float(value), MAX_RETRY_AFTER) if value.isdigit() else None


def _read_body(response: Any, max_bytes: int) -> Reply:
    """The body, refused when Content-Length says it is too large or it runs past ``max_bytes``."""
    content_type = response.headers.get("Content-Type", "") or ""
    length = (response.headers.get("Content-Length", "") or "").strip()
    if length.isdigit() and int(length) > max_bytes:
        return Reply("too_large", f"Content-Length {int(length)} bytes is over max_bytes {max_bytes}")
    body = response.read(max_bytes + 1)
    if len(body) > max_bytes:
        return Reply("too_large", f"body runs past max_bytes {max_bytes} (stopped reading)")
    return Reply("", body=body, content_type=content_type)


def _request(url: str, timeout: float, max_bytes: int) -> Reply:
    """One GET; every network failure becomes a status."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
    opener = urllib.request.build_opener(_HttpOnlyRedirects)
    try:
        with opener.open(request, timeout=timeout) as response:
            return _read_body(response, max_bytes)
    except http.client.InvalidURL as err:  # control characters, a bad port: the row's URL, not the network
        return Reply("bad_url", str(err))
    except urllib.error.HTTPError as err:
        retry_after = _retry_after(err.headers)
        err.close()
        retryable = err.code == 429 or err.code >= 500
        return Reply(f"http_{err.code}", f"HTTP {err.code} {err.reason}", retryable=retryable, retry_after=retry_after)
    except TimeoutError:
        return Reply("timeout", f"no response within {timeout:g} s", retryable=True)
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError):
            return Reply("timeout", f"no connection within {timeout:g} s", retryable=True)
        return Reply("connection_error", str(err.reason), retryable=True)
    except (OSError, http.client.HTTPException) as err:
        return Reply("connection_error", f"{type(err).__name__}: {err}", retryable=True)


def _wait(reply: Reply, attempt: int, backoff: float) -> float:
    """Seconds before the next try: the server's Retry-After, else backoff * 2**attempt."""
    if reply.retry_after is not None:
        return reply.retry_after
    return min(backoff * 2**attempt, MAX_BACKOFF)


def fetch(url: str, timeout: float, max_bytes: int, retries: int, backoff: float) -> tuple[Reply, int]:
    """GET with retries on timeouts, connection errors, 429 and 5xx; return the last reply and attempts made."""
    attempts = 0
    while True:
        reply = _request(url, timeout, max_bytes)
        attempts += 1
        if not reply.retryable or attempts > retries:
            return reply, attempts
        time.sleep(_wait(reply, attempts - 1, backoff))
