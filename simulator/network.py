"""The bandwidth model, re-exported: it lives in marketplace/core/allreduce.py so the live market's
gang ranking and the simulator run the same code (DESIGN decision 9)."""

from marketplace.core.allreduce import (
    BITS_PER_BYTE,
    Link,
    allreduce_seconds,
    slowest_link_mbps,
    sync_seconds,
    utilization,
)

__all__ = [
    "BITS_PER_BYTE",
    "Link",
    "allreduce_seconds",
    "slowest_link_mbps",
    "sync_seconds",
    "utilization",
]
