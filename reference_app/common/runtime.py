"""How a service process runs: the garbage collector tuned for serving requests."""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLDS", "tune_gc"]

GC_THRESHOLDS = (20_000, 10, 10)
"""Allocations between young-generation collections (CPython's default is 700), then
the default ratios for the older ones. A request allocates thousands of short-lived
objects that reference counting frees at once; at 700 the collector walks the young
generation several times per request for nothing. Measured: about a fifth less CPU
per reserve in the inventory service (docs/benchmarks.md)."""


def tune_gc() -> None:
    """Freeze what start-up made (never garbage) and collect the young generation less often.

    Call once per service process, from its entry point (``app_from_env``),
    never in a process that creates apps again and again (tests).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
