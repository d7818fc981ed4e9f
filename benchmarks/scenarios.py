"""The workloads: which SKUs a client reserves, and how many units each starts with."""

from __future__ import annotations

import random
from dataclasses import dataclass

Line = tuple[int, int]
"""A cart line as (SKU index, quantity); systems turn the index into their SKU name."""


@dataclass(frozen=True)
class Scenario:
    """A catalogue of `skus` SKUs; each reservation is a cart of `lines` distinct SKUs."""

    name: str
    skus: int
    lines: int
    description: str
    sellout_stock: int
    """Units per SKU in the sell-out phase (small, so the stock runs out under load)."""
    sellout_attempts: int
    """Reservation attempts in the sell-out phase, over all clients."""

    def pick(self, rng: random.Random) -> list[Line]:
        """The next cart: `lines` distinct SKUs, one unit each, sorted by SKU.

        Sorted, so the row-lock baselines lock in one order and never deadlock.
        """
        if self.skus == 1:
            return [(0, 1)]
        if self.lines == 1:
            return [(rng.randrange(self.skus), 1)]
        return [(i, 1) for i in sorted(rng.sample(range(self.skus), self.lines))]


def sku_name(index: int) -> str:
    """The SKU string every system uses for index `index`."""
    return f"SKU-{index:05d}"


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("hot", 1, 1, "every client reserves 1 unit of the same SKU", 400, 800),
        Scenario("spread", 10_000, 1, "1 unit of a random SKU out of 10,000", 1, 3_000),
        Scenario("cart5", 10_000, 5, "a cart of 5 random SKUs out of 10,000", 1, 1_500),
    )
}
