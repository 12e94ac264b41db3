"""What a paid harvest will cost before it spends anything, and the budget that stops it.

Google bills the Street View Static API per image request; metadata requests are free
(the assumption here, as in Google's current price list for Street View metadata). The
default price is the published list price per 1,000 image requests (:data:`PRICE_PER_1000`,
without the monthly free allowance or volume discounts): pass the price you pay, and
check the current price list. Retries count as billed requests, as for ``max_requests``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PRICE_PER_1000 = 7.00
"""USD per 1,000 Street View Static API image requests: the list price as of the March 2025
price list, written down without network access and never checked against the live page;
check the current price list."""
PRICE_PUBLISHED = "March 2025"
CURRENCY = "USD"


def paid_budget(max_cost: float | None, price_per_1000: float | None) -> int | None:
    """Image requests that fit in ``max_cost`` at ``price_per_1000`` (None: no budget;
    a free service, price 0, has none either)."""
    if max_cost is None or not price_per_1000:
        return None
    return int(math.floor(float(max_cost) * 1000.0 / float(price_per_1000) + 1e-9))


def cost(requests: int, price_per_1000: float) -> float:
    """The price of ``requests`` billed requests."""
    return int(requests) * float(price_per_1000) / 1000.0


def duration(requests: int, rate: float | None) -> str:
    """How long ``requests`` take at ``rate`` per second, in words."""
    if not rate:
        return "no rate limit"
    seconds = int(requests) / float(rate)
    if seconds < 90:
        shown = f"{seconds:.0f} s"
    elif seconds < 90 * 60:
        shown = f"{seconds / 60:.0f} min"
    else:
        shown = f"{seconds / 3600:.1f} h"
    return f"about {shown} at {float(rate):g} requests/s"


@dataclass(frozen=True)
class CostEstimate:
    """The requests a run will make and what they cost.

    ``paid`` are the billed image requests, ``free`` the metadata requests (free, see the
    module docstring); ``upper_bound`` when neighbouring points may share images and some
    points have none, so fewer will be made; ``rough`` when it is a typical figure that
    may be passed (``gsv-historical`` cannot know how many dated panoramas each point has).
    """

    provider: str
    points: int
    paid: int
    free: int
    rate: float | None
    price_per_1000: float
    upper_bound: bool = False
    rough: bool = False

    @property
    def cost(self) -> float:
        return cost(self.paid, self.price_per_1000)

    def line(self) -> str:
        most = "about " if self.rough else "at most " if self.upper_bound else ""
        free = f" and {self.free:,} free metadata requests" if self.free else ""
        return (
            f"{self.provider}: {most}{self.paid:,} image requests{free} for {self.points:,} "
            f"points, {duration(self.paid + self.free, self.rate)}; estimated cost "
            f"{most}{CURRENCY} {self.cost:,.2f} at {CURRENCY} {self.price_per_1000:.2f} per 1,000 "
            f"image requests (`price_per_1000`; metadata assumed free)"
        )
