"""What image edits cost and how much a run may spend: the price table and a thread-safe Budget.

Prices live in ONE place, resources/image_prices.yaml (USD per output image by model ->
quality -> size); a combination missing there is an error, never a guess. The Budget holds a
run under its ``max_usd``: each HTTP attempt is reserved before it is sent, so a run never
spends past the ceiling however many calls are in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import yaml

from dermsynth.core.errors import DermsynthError

PRICES_RESOURCE = ("resources", "image_prices.yaml")


@lru_cache(maxsize=1)
def price_table() -> dict[str, Any]:
    text = resources.files("dermsynth").joinpath(*PRICES_RESOURCE).read_text()
    return yaml.safe_load(text)


def price(model: str, quality: str, size: str) -> float:
    """USD per output image from resources/image_prices.yaml; DermsynthError for an unknown combination."""
    try:
        usd = price_table()[model]["usd_per_image"][quality][size]
    except (KeyError, TypeError) as err:
        raise DermsynthError(
            f"no price for model={model!r} quality={quality!r} size={size!r} in dermsynth/resources/image_prices.yaml"
        ) from err
    if not isinstance(usd, int | float) or usd <= 0:
        raise DermsynthError(f"bad price {usd!r} for {model}/{quality}/{size} in image_prices.yaml")
    return float(usd)


class Priced(Protocol):
    model: str
    quality: str
    size: str


def request_price(req: Priced) -> float:
    return price(req.model, req.quality, req.size)


def estimate(requests: Iterable[Priced]) -> dict[str, Any]:
    """Calls, images (n = 1 per call) and USD of ``requests`` from the price table."""
    prices = [request_price(req) for req in requests]
    return {"calls": len(prices), "images": len(prices), "usd": round(sum(prices), 6)}


def affordable(requests: Iterable[Priced], max_usd: float) -> int:
    """How many of ``requests``, in order, a Budget of ``max_usd`` lets through (it reserves before each call)."""
    ceiling, spent, count = _micro(max_usd), 0, 0
    for req in requests:
        spent += _micro(request_price(req))
        if spent > ceiling:
            break
        count += 1
    return count


class BudgetExceeded(DermsynthError):
    """The next call would take spending past the run's max_usd."""


def _micro(usd: float) -> int:
    return round(usd * 1_000_000)


class Budget:
    """A hard ceiling on spending, safe across threads (integer micro-dollars, no float drift).

    ``reserve`` before every HTTP attempt; then ``commit`` if the API may have billed it (a 200,
    a timeout, a connection lost after sending, a 504) or ``release`` if it cannot have (a 4xx
    answer, 429, 500/502/503, a connection never made). Ambiguous cases count as spent.
    """

    def __init__(self, max_usd: float) -> None:
        if max_usd < 0:
            raise DermsynthError(f"max_usd must be >= 0, got {max_usd}")
        self.max_usd = float(max_usd)
        self._max, self._spent, self._reserved = _micro(max_usd), 0, 0
        self._lock = threading.Lock()

    def reserve(self, usd: float) -> None:
        with self._lock:
            if self._spent + self._reserved + _micro(usd) > self._max:
                raise BudgetExceeded(
                    f"a ${usd:.4f} call would pass max_usd=${self.max_usd:.4f} "
                    f"(spent ${self._spent / 1e6:.4f}, in flight ${self._reserved / 1e6:.4f})"
                )
            self._reserved += _micro(usd)

    def commit(self, usd: float) -> None:
        with self._lock:
            self._reserved -= _micro(usd)
            self._spent += _micro(usd)

    def release(self, usd: float) -> None:
        with self._lock:
            self._reserved -= _micro(usd)

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return self._spent / 1e6
